package llmtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// openAIRequest is the part of a Chat Completions request the fake reads.
type openAIRequest struct {
	Model    string `json:"model"`
	Stream   bool   `json:"stream"`
	Messages []struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"`
	} `json:"messages"`
	StreamOptions struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
}

func (q *openAIRequest) prompt() string {
	parts := make([]string, len(q.Messages))
	for i, m := range q.Messages {
		parts[i] = contentText(m.Content)
	}
	return strings.Join(parts, " ")
}

func openAIError(w http.ResponseWriter, status int, message string) {
	typ, code := "invalid_request_error", any(nil)
	switch {
	case status == 401:
		code = "invalid_api_key"
	case status == 429:
		typ, code = "requests", "rate_limit_exceeded"
	case status >= 500:
		typ = "server_error"
	}
	if message == "" {
		message = defaultFailMessage(status,
			"Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.")
	}
	writeJSON(w, status, map[string]openAIErrorBody{"error": {message, typ, nil, code}})
}

// openAIErrorBody is an error as OpenAI sends it, in its field order.
type openAIErrorBody struct {
	Message string `json:"message"`
	Type    string `json:"type"`
	Param   any    `json:"param"`
	Code    any    `json:"code"`
}

func (s *Server) openAIChat(w http.ResponseWriter, r *http.Request) {
	rec, p, ok := s.begin(w, r, true)
	if !ok {
		return
	}
	var q openAIRequest
	switch err := json.Unmarshal(rec.Body, &q); {
	case err != nil:
		openAIError(w, 400, "We could not parse the JSON body of your request.")
	case p.fail:
		p.failHeader(w)
		openAIError(w, p.FailStatus, p.FailMessage)
	case q.Model == "":
		openAIError(w, 400, "you must provide a model parameter")
	case len(q.Messages) == 0:
		openAIError(w, 400, "[] is too short - 'messages'")
	case !q.Stream:
		input, output := p.inputTokens(q.prompt()), p.outputTokens(len(p.Deltas))
		writeJSON(w, http.StatusOK, map[string]any{
			"id": fmt.Sprintf("chatcmpl-fake%06d", rec.Seq), "object": "chat.completion",
			"created": time.Now().Unix(), "model": q.Model, "system_fingerprint": "fp_fake",
			"choices": []map[string]any{{
				"index": 0, "logprobs": nil, "finish_reason": p.stopReason("stop"),
				"message": map[string]any{"role": "assistant", "content": p.text(), "refusal": nil},
			}},
			"usage": map[string]int{"prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output},
		})
	default:
		ow := &openAIWire{p: p, usage: q.StreamOptions.IncludeUsage, input: p.inputTokens(q.prompt())}
		ow.head = fmt.Sprintf(`data: {"id":"chatcmpl-fake%06d","object":"chat.completion.chunk","created":%d,"model":%s,"system_fingerprint":"fp_fake","choices":[`,
			rec.Seq, time.Now().Unix(), rawJSON(q.Model))
		s.run(w, r, rec, p, "text/event-stream; charset=utf-8", ow)
		return
	}
	s.end(rec, false)
}

// openAIWire streams as Chat Completions does: unnamed SSE events, each a
// chat.completion.chunk, then a usage chunk when asked for, then [DONE].
type openAIWire struct {
	p     plan
	usage bool // stream_options.include_usage: every chunk has "usage", null until the last
	input int
	head  string // a chunk up to its choices
	buf   []byte
}

// chunk is one chat.completion.chunk with the given choices JSON.
func (o *openAIWire) chunk(dst []byte, choices string, usage string) []byte {
	dst = append(dst, o.head...)
	dst = append(dst, choices...)
	dst = append(dst, ']')
	if o.usage {
		dst = append(dst, `,"usage":`...)
		dst = append(dst, usage...)
	}
	return append(dst, "}\n\n"...)
}

func (o *openAIWire) open() []byte {
	return o.chunk(nil, `{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}`, "null")
}

func (o *openAIWire) delta(quoted []byte) []byte {
	o.buf = append(o.buf[:0], o.head...)
	o.buf = append(o.buf, `{"index":0,"delta":{"content":`...)
	o.buf = append(o.buf, quoted...)
	o.buf = append(o.buf, `},"logprobs":null,"finish_reason":null}]`...)
	if o.usage {
		o.buf = append(o.buf, `,"usage":null`...)
	}
	return append(o.buf, "}\n\n"...)
}

func (o *openAIWire) fail(message string) []byte {
	return fmt.Appendf(nil, "data: %s\n\n", rawJSON(map[string]openAIErrorBody{"error": {message, "server_error", nil, nil}}))
}

func (o *openAIWire) close(sent int) []byte {
	out := o.chunk(nil, fmt.Sprintf(`{"index":0,"delta":{},"logprobs":null,"finish_reason":%s}`, rawJSON(o.p.stopReason("stop"))), "null")
	if o.usage {
		output := o.p.outputTokens(sent)
		out = o.chunk(out, "", fmt.Sprintf(
			`{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}`,
			o.input, output, o.input+output))
	}
	return append(out, "data: [DONE]\n\n"...)
}

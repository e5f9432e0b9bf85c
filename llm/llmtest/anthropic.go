package llmtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// anthropicRequest is the part of a Messages API request the fake reads.
type anthropicRequest struct {
	Model     string          `json:"model"`
	MaxTokens int             `json:"max_tokens"`
	Stream    bool            `json:"stream"`
	System    json.RawMessage `json:"system"`
	Messages  []struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"`
	} `json:"messages"`
}

func (q *anthropicRequest) prompt() string {
	var b strings.Builder
	b.WriteString(contentText(q.System))
	for _, m := range q.Messages {
		b.WriteString(" ")
		b.WriteString(contentText(m.Content))
	}
	return b.String()
}

// contentText reads Anthropic content given as a string or as blocks.
func contentText(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var blocks []struct {
		Text string `json:"text"`
	}
	_ = json.Unmarshal(raw, &blocks)
	parts := make([]string, len(blocks))
	for i, bl := range blocks {
		parts[i] = bl.Text
	}
	return strings.Join(parts, " ")
}

// anthropicErrorTypes are the error types Anthropic names per status.
var anthropicErrorTypes = map[int]string{
	400: "invalid_request_error",
	401: "authentication_error",
	403: "permission_error",
	404: "not_found_error",
	413: "request_too_large",
	429: "rate_limit_error",
	500: "api_error",
	504: "timeout_error",
	529: "overloaded_error",
}

// anthropicErrorBody is an error as Anthropic sends it, in its field order.
type anthropicErrorBody struct {
	Type  string `json:"type"`
	Error struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"error"`
	RequestID string `json:"request_id,omitempty"`
}

func newAnthropicError(typ, message, requestID string) anthropicErrorBody {
	e := anthropicErrorBody{Type: "error", RequestID: requestID}
	e.Error.Type, e.Error.Message = typ, message
	return e
}

func anthropicError(w http.ResponseWriter, seq, status int, message string) {
	typ := anthropicErrorTypes[status]
	if typ == "" {
		typ = "api_error"
	}
	if message == "" {
		message = defaultFailMessage(status, "invalid x-api-key")
	}
	reqID := fmt.Sprintf("req_fake%06d", seq)
	w.Header().Set("Request-Id", reqID)
	writeJSON(w, status, newAnthropicError(typ, message, reqID))
}

func defaultFailMessage(status int, unauthorized string) string {
	switch status {
	case 401:
		return unauthorized
	case 429:
		return "Number of request tokens has exceeded your per-minute rate limit"
	case 529:
		return "Overloaded"
	}
	return http.StatusText(status)
}

func (s *Server) anthropicMessages(w http.ResponseWriter, r *http.Request) {
	rec, p, ok := s.begin(w, r, true)
	if !ok {
		return
	}
	var q anthropicRequest
	switch err := json.Unmarshal(rec.Body, &q); {
	case err != nil:
		anthropicError(w, rec.Seq, 400, "invalid JSON: "+err.Error())
	case p.fail:
		p.failHeader(w)
		anthropicError(w, rec.Seq, p.FailStatus, p.FailMessage)
	case q.Model == "":
		anthropicError(w, rec.Seq, 400, "model: Field required")
	case q.MaxTokens <= 0:
		anthropicError(w, rec.Seq, 400, "max_tokens: Field required")
	case len(q.Messages) == 0:
		anthropicError(w, rec.Seq, 400, "messages: at least one message is required")
	case !q.Stream:
		stop := p.stopReason("end_turn")
		writeJSON(w, http.StatusOK, anthropicMessage{
			ID: fmt.Sprintf("msg_fake%06d", rec.Seq), Type: "message", Role: "assistant",
			Content: []map[string]any{{"type": "text", "text": p.text()}}, Model: q.Model, StopReason: &stop,
			Usage: anthropicUsage{InputTokens: p.inputTokens(q.prompt()), OutputTokens: p.outputTokens(len(p.Deltas))},
		})
	default:
		w.Header().Set("Request-Id", fmt.Sprintf("req_fake%06d", rec.Seq))
		s.run(w, r, rec, p, "text/event-stream; charset=utf-8", &anthropicWire{p: p, seq: rec.Seq, model: q.Model, input: p.inputTokens(q.prompt())})
		return
	}
	s.end(rec, false)
}

func (p plan) stopReason(normal string) string {
	if p.StopReason != "" {
		return p.StopReason
	}
	return normal
}

// anthropicWire streams as the Messages API does: named SSE events, each
// with a data line holding its JSON.
type anthropicWire struct {
	p     plan
	seq   int
	model string
	input int
	buf   []byte
}

func sse(event string, data []byte) []byte {
	return fmt.Appendf(nil, "event: %s\ndata: %s\n\n", event, data)
}

// anthropicMessage is a message object, in the API's field order.
type anthropicMessage struct {
	ID           string           `json:"id"`
	Type         string           `json:"type"`
	Role         string           `json:"role"`
	Content      []map[string]any `json:"content"`
	Model        string           `json:"model"`
	StopReason   *string          `json:"stop_reason"`
	StopSequence *string          `json:"stop_sequence"`
	Usage        anthropicUsage   `json:"usage"`
}

type anthropicUsage struct {
	InputTokens              int `json:"input_tokens"`
	CacheCreationInputTokens int `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int `json:"cache_read_input_tokens"`
	OutputTokens             int `json:"output_tokens"`
}

func (a *anthropicWire) open() []byte {
	start := struct {
		Type    string           `json:"type"`
		Message anthropicMessage `json:"message"`
	}{"message_start", anthropicMessage{
		ID: fmt.Sprintf("msg_fake%06d", a.seq), Type: "message", Role: "assistant",
		Content: []map[string]any{}, Model: a.model,
		Usage: anthropicUsage{InputTokens: a.input, OutputTokens: 1},
	}}
	out := sse("message_start", rawJSON(start))
	out = append(out, sse("content_block_start", []byte(`{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`))...)
	return append(out, sse("ping", []byte(`{"type": "ping"}`))...)
}

func (a *anthropicWire) delta(quoted []byte) []byte {
	a.buf = append(a.buf[:0], "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":"...)
	a.buf = append(a.buf, quoted...)
	return append(a.buf, "}}\n\n"...)
}

func (a *anthropicWire) fail(message string) []byte {
	return sse("error", rawJSON(newAnthropicError("overloaded_error", message, "")))
}

func (a *anthropicWire) close(sent int) []byte {
	out := sse("content_block_stop", []byte(`{"type":"content_block_stop","index":0}`))
	out = append(out, sse("message_delta", fmt.Appendf(nil,
		`{"type":"message_delta","delta":{"stop_reason":%s,"stop_sequence":null},"usage":{"output_tokens":%d}}`,
		rawJSON(a.p.stopReason("end_turn")), a.p.outputTokens(sent)))...)
	return append(out, sse("message_stop", []byte(`{"type":"message_stop"}`))...)
}

// models answers GET /v1/models, which Anthropic and OpenAI share; the
// anthropic-version header every Anthropic client sends tells them apart.
func (s *Server) models(w http.ResponseWriter, r *http.Request) {
	rec, p, ok := s.begin(w, r, false)
	if !ok {
		return
	}
	defer s.end(rec, false)
	anthropic := r.Header.Get("Anthropic-Version") != ""
	// Model lists never fail by FailFirst; p.fail here means a wrong key.
	if p.fail {
		if anthropic {
			anthropicError(w, rec.Seq, http.StatusUnauthorized, "")
		} else {
			openAIError(w, http.StatusUnauthorized, "")
		}
		return
	}
	if anthropic {
		names := DefaultModels("anthropic")
		data := make([]map[string]any, len(names))
		for i, n := range names {
			data[i] = map[string]any{
				"type": "model", "id": n, "display_name": n,
				"created_at": time.Date(2025, 10, 1, 0, 0, 0, 0, time.UTC).Format(time.RFC3339),
			}
		}
		writeJSON(w, http.StatusOK, map[string]any{
			"data": data, "has_more": false, "first_id": names[0], "last_id": names[len(names)-1],
		})
		return
	}
	names := DefaultModels("openai")
	data := make([]map[string]any, len(names))
	for i, n := range names {
		data[i] = map[string]any{"id": n, "object": "model", "created": 1715367049, "owned_by": "system"}
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": data})
}

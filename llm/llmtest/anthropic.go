package llmtest

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
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
	Temperature   *float64 `json:"temperature"`
	TopP          *float64 `json:"top_p"`
	StopSequences []string `json:"stop_sequences"`
}

// openAIOnly are fields of OpenAI's Chat Completions that the Messages API
// lacks, which it refuses as extra inputs.
var openAIOnly = []string{
	"audio", "frequency_penalty", "function_call", "functions", "logit_bias", "logprobs", "max_completion_tokens",
	"modalities", "n", "parallel_tool_calls", "prediction", "presence_penalty", "prompt_cache_key", "reasoning_effort",
	"response_format", "safety_identifier", "seed", "stop", "store", "stream_options", "top_logprobs", "user",
	"verbosity", "web_search_options",
}

// checkParams returns what Anthropic would answer 400 for in the sampling
// parameters of body, as Anthropic words it, or "".
func (q *anthropicRequest) checkParams(body []byte) string {
	var fields map[string]json.RawMessage
	_ = json.Unmarshal(body, &fields)
	for _, name := range openAIOnly {
		if _, ok := fields[name]; ok {
			return name + ": Extra inputs are not permitted"
		}
	}
	for name, v := range map[string]*float64{"temperature": q.Temperature, "top_p": q.TopP} {
		switch {
		case v == nil:
		case *v < 0:
			return name + ": Input should be greater than or equal to 0"
		case *v > 1:
			return name + ": Input should be less than or equal to 1"
		}
	}
	for _, stop := range q.StopSequences {
		if strings.TrimSpace(stop) == "" {
			return "stop_sequences: each stop sequence must contain non-whitespace"
		}
	}
	return ""
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

// contentBlock is one block of Anthropic content, of the kinds the fake
// knows: text and document.
type contentBlock struct {
	Type   string `json:"type"`
	Text   string `json:"text"`
	Title  string `json:"title"`
	Source struct {
		Type      string `json:"type"`
		MediaType string `json:"media_type"`
		Data      string `json:"data"`
	} `json:"source"`
}

// contentBlocks reads Anthropic content given as a string (one text block)
// or as blocks.
func contentBlocks(raw json.RawMessage) ([]contentBlock, error) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return []contentBlock{{Type: "text", Text: s}}, nil
	}
	var blocks []contentBlock
	err := json.Unmarshal(raw, &blocks)
	return blocks, err
}

// contentText reads the text of Anthropic content given as a string or as
// blocks.
func contentText(raw json.RawMessage) string {
	blocks, _ := contentBlocks(raw)
	var parts []string
	for _, bl := range blocks {
		if bl.Type == "text" {
			parts = append(parts, bl.Text)
		}
	}
	return strings.Join(parts, " ")
}

// check returns what Anthropic would answer 400 for in the messages'
// content, as Anthropic words it, or "".
func (q *anthropicRequest) check() string {
	for i, m := range q.Messages {
		blocks, err := contentBlocks(m.Content)
		if err != nil {
			return fmt.Sprintf("messages.%d.content: Input should be a valid list", i)
		}
		for j, bl := range blocks {
			at := fmt.Sprintf("messages.%d.content.%d", i, j)
			switch bl.Type {
			case "text", "image":
			case "document":
				if msg := checkDocument(bl); msg != "" {
					return at + ".document.source" + msg
				}
			default:
				return fmt.Sprintf("%s: Input tag '%s' found using 'type' does not match any of the expected tags", at, bl.Type)
			}
		}
	}
	return ""
}

func checkDocument(bl contentBlock) string {
	switch src := bl.Source; src.Type {
	case "base64":
		if src.MediaType != "application/pdf" {
			return ".base64.media_type: Input should be 'application/pdf'"
		}
		if _, err := base64.StdEncoding.DecodeString(src.Data); err != nil || src.Data == "" {
			return ".base64.data: The PDF specified was not valid base64"
		}
	case "text":
		if src.MediaType != "text/plain" {
			return ".text.media_type: Input should be 'text/plain'"
		}
	default:
		return fmt.Sprintf(": Input tag '%s' found using 'type' does not match any of the expected tags", src.Type)
	}
	return ""
}

// Document is a document block the fake received in an Anthropic request.
type Document struct {
	Title     string
	MediaType string
	Data      []byte // decoded from base64
}

// Documents returns the document blocks of an Anthropic Messages request,
// in order, with their data decoded.
func (r *Request) Documents() []Document {
	var q anthropicRequest
	_ = json.Unmarshal(r.Body, &q)
	var docs []Document
	for _, m := range q.Messages {
		blocks, _ := contentBlocks(m.Content)
		for _, bl := range blocks {
			if bl.Type != "document" {
				continue
			}
			d := Document{Title: bl.Title, MediaType: bl.Source.MediaType, Data: []byte(bl.Source.Data)}
			if bl.Source.Type == "base64" {
				d.Data, _ = base64.StdEncoding.DecodeString(bl.Source.Data)
			}
			docs = append(docs, d)
		}
	}
	return docs
}

// anthropicVersions are the values of the anthropic-version header the API
// takes.
var anthropicVersions = map[string]bool{"2023-06-01": true, "2023-01-01": true}

// anthropicHeaders returns the status and message Anthropic answers a
// request with that lacks its key or version header, else 0.
func anthropicHeaders(r *http.Request) (int, string) {
	if r.Header.Get("X-Api-Key") == "" {
		return http.StatusUnauthorized, "x-api-key header is required"
	}
	switch v := r.Header.Get("Anthropic-Version"); {
	case v == "":
		return http.StatusBadRequest, "anthropic-version: header is required"
	case !anthropicVersions[v]:
		return http.StatusBadRequest, fmt.Sprintf("anthropic-version: invalid version %q", v)
	}
	return 0, ""
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
	status, msg := anthropicHeaders(r)
	switch err := json.Unmarshal(rec.Body, &q); {
	case status != 0:
		anthropicError(w, rec.Seq, status, msg)
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
	case q.check() != "":
		anthropicError(w, rec.Seq, 400, q.check())
	case q.checkParams(rec.Body) != "":
		anthropicError(w, rec.Seq, 400, q.checkParams(rec.Body))
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

// isAnthropic reports whether r comes from an Anthropic client: to the
// Messages API, or with the headers every Anthropic client sends to the
// /v1/models path it shares with OpenAI.
func isAnthropic(r *http.Request) bool {
	return r.URL.Path == "/v1/messages" || r.Header.Get("Anthropic-Version") != "" || r.Header.Get("X-Api-Key") != ""
}

// models answers GET /v1/models, which Anthropic and OpenAI share.
func (s *Server) models(w http.ResponseWriter, r *http.Request) {
	rec, p, ok := s.begin(w, r, false)
	if !ok {
		return
	}
	defer s.end(rec, false)
	if isAnthropic(r) {
		anthropicModels(w, r, rec.Seq, p)
		return
	}
	// Model lists never fail by FailFirst; p.fail here means a wrong key.
	if p.fail {
		openAIError(w, http.StatusUnauthorized, "")
		return
	}
	names := DefaultModels("openai")
	data := make([]map[string]any, len(names))
	for i, n := range names {
		data[i] = map[string]any{"id": n, "object": "model", "created": 1715367049, "owned_by": "system"}
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": data})
}

// anthropicModels answers Anthropic's GET /v1/models a page at a time, as
// limit (1 to 1000, default 20) and after_id ask.
func anthropicModels(w http.ResponseWriter, r *http.Request, seq int, p plan) {
	if status, msg := anthropicHeaders(r); status != 0 {
		anthropicError(w, seq, status, msg)
		return
	}
	if p.fail {
		anthropicError(w, seq, http.StatusUnauthorized, "")
		return
	}
	limit := 20
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			anthropicError(w, seq, http.StatusBadRequest, "limit: Input should be less than or equal to 1000")
			return
		}
		limit = n
	}
	names := DefaultModels("anthropic")
	if after := r.URL.Query().Get("after_id"); after != "" {
		i := slices.Index(names, after)
		if i < 0 {
			anthropicError(w, seq, http.StatusBadRequest, "after_id: no such model")
			return
		}
		names = names[i+1:]
	}
	more := len(names) > limit
	names = names[:min(limit, len(names))]
	data := make([]map[string]any, len(names))
	for i, n := range names {
		data[i] = map[string]any{
			"type": "model", "id": n, "display_name": n,
			"created_at": time.Date(2025, 10, 1, 0, 0, 0, 0, time.UTC).Format(time.RFC3339),
		}
	}
	var first, last any
	if len(names) > 0 {
		first, last = names[0], names[len(names)-1]
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": data, "has_more": more, "first_id": first, "last_id": last})
}

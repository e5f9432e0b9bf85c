package httpapi

// Anthropic's Messages API wire format: the named events of a streamed
// answer and Anthropic's error shape, for the coming /v1/messages, which
// lets Anthropic's SDKs reach every provider through Ferry.

import (
	"net/http"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/chat"
	"github.com/ferryhq/ferry/llm"
)

// messagesDialect is a streamed Messages answer: message_start,
// content_block_start and a ping before the first text; a
// content_block_delta per delta; then content_block_stop, message_delta
// with the stop reason and usage, and message_stop. A failure after the
// first byte is an error event, which ends an Anthropic stream.
type messagesDialect struct {
	id    string // "msg_…"
	model string // as the client named it
	input int    // estimated input tokens, for message_start
	sse   sseFrames
}

func (d *messagesDialect) header(h http.Header) { setSSEHeaders(h) }
func (d *messagesDialect) keepalive() []byte    { return messagesPing }
func (d *messagesDialect) errors() errorShape   { return anthropicShape{} }

// messagesPing is Anthropic's own keepalive, which its SDKs skip.
var messagesPing = []byte("event: ping\ndata: {\"type\": \"ping\"}\n\n")

type messagesUsage struct {
	InputTokens  int `json:"input_tokens"`
	OutputTokens int `json:"output_tokens"`
}

type messageStart struct {
	Type    string `json:"type"`
	Message struct {
		ID           string        `json:"id"`
		Type         string        `json:"type"`
		Role         string        `json:"role"`
		Model        string        `json:"model"`
		Content      []any         `json:"content"`
		StopReason   *string       `json:"stop_reason"`
		StopSequence *string       `json:"stop_sequence"`
		Usage        messagesUsage `json:"usage"`
	} `json:"message"`
}

type contentBlockStart struct {
	Type         string `json:"type"`
	Index        int    `json:"index"`
	ContentBlock struct {
		Type string `json:"type"`
		Text string `json:"text"`
	} `json:"content_block"`
}

type contentBlockDelta struct {
	Type  string `json:"type"`
	Index int    `json:"index"`
	Delta struct {
		Type string `json:"type"`
		Text string `json:"text"`
	} `json:"delta"`
}

type contentBlockStop struct {
	Type  string `json:"type"`
	Index int    `json:"index"`
}

type messageDelta struct {
	Type  string `json:"type"`
	Delta struct {
		StopReason   string  `json:"stop_reason"`
		StopSequence *string `json:"stop_sequence"`
	} `json:"delta"`
	Usage messagesUsage `json:"usage"`
}

type messageStop struct {
	Type string `json:"type"`
}

// open appends the events before the first text.
func (d *messagesDialect) open(b []byte) []byte {
	var ms messageStart
	ms.Type = "message_start"
	ms.Message.ID, ms.Message.Type, ms.Message.Role, ms.Message.Model = d.id, "message", "assistant", d.model
	ms.Message.Content = []any{}
	ms.Message.Usage.InputTokens = d.input
	b = d.sse.named(b, "message_start", ms)
	var cs contentBlockStart
	cs.Type, cs.ContentBlock.Type = "content_block_start", "text"
	b = d.sse.named(b, "content_block_start", cs)
	return append(b, messagesPing...)
}

func (d *messagesDialect) text(b []byte, delta llm.Delta, first bool) []byte {
	if first {
		b = d.open(b)
	}
	b = append(b, "event: content_block_delta\n"...)
	return messagesDeltaFrame.data(b, delta.Text)
}

// messagesDeltaFrame is a text delta's data, the same for every stream:
// one text block, at index 0.
var messagesDeltaFrame = func() textFrame {
	var cd contentBlockDelta
	cd.Type, cd.Delta.Type = "content_block_delta", "text_delta"
	return newTextFrame(cd, `"text":`)
}()

func (d *messagesDialect) fail(b []byte, fe *ferry.Error, _ bool) []byte {
	return d.sse.named(b, "error", anthropicShape{}.body(statusOf[fe.Code], fe))
}

func (d *messagesDialect) done(b []byte, res *chat.Result, started bool) []byte {
	if !started {
		b = d.open(b)
	}
	b = d.sse.named(b, "content_block_stop", contentBlockStop{Type: "content_block_stop"})
	var md messageDelta
	md.Type, md.Delta.StopReason = "message_delta", stopReason(res.StopReason)
	md.Usage = messagesUsage{InputTokens: res.Usage.InputTokens, OutputTokens: res.Usage.OutputTokens}
	b = d.sse.named(b, "message_delta", md)
	return d.sse.named(b, "message_stop", messageStop{Type: "message_stop"})
}

// stopReason maps a provider's stop reason to Anthropic's.
func stopReason(stop string) string {
	switch stop {
	case "length", "max_tokens":
		return "max_tokens"
	case "tool_calls", "tool_use":
		return "tool_use"
	case "content_filter", "refusal":
		return "refusal"
	case "stop_sequence":
		return "stop_sequence"
	}
	return "end_turn"
}

// anthropicShape is an error as Anthropic's API words it:
// {"type": "error", "error": {"type", "message"}}.
type anthropicShape struct{}

type anthropicError struct {
	Type  string `json:"type"`
	Error struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"error"`
}

// anthropicErrorTypes are Anthropic's error types by status.
var anthropicErrorTypes = map[int]string{
	http.StatusBadRequest:            "invalid_request_error",
	http.StatusUnauthorized:          "authentication_error",
	http.StatusForbidden:             "permission_error",
	http.StatusNotFound:              "not_found_error",
	http.StatusRequestEntityTooLarge: "request_too_large",
	http.StatusTooManyRequests:       "rate_limit_error",
	http.StatusServiceUnavailable:    "overloaded_error",
	http.StatusGatewayTimeout:        "timeout_error",
}

func (anthropicShape) contentType() string { return "application/json" }

func (anthropicShape) body(status int, fe *ferry.Error) any {
	e := anthropicError{Type: "error"}
	e.Error.Type, e.Error.Message = anthropicErrorTypes[status], fe.Message
	if e.Error.Type == "" {
		e.Error.Type = "api_error"
		if status < 500 {
			e.Error.Type = "invalid_request_error"
		}
	}
	return e
}

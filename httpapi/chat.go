package httpapi

import (
	"context"
	"net/http"

	"github.com/danielgtaylor/huma/v2"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/chat"
	"github.com/ferryhq/ferry/llm"
)

// chatBody is the seed's ChatRequest, plus conversation_id.
type chatBody struct {
	Message        string   `json:"message" doc:"The user's message: not empty or only white space, at most 200000 characters."`
	SystemPrompt   string   `json:"system_prompt,omitempty" doc:"System prompt; default FERRY_SYSTEM_PROMPT."`
	Model          string   `json:"model,omitempty" maxLength:"200" doc:"provider/model, or a bare name (claude-* is Anthropic); default FERRY_DEFAULT_MODEL." example:"claude-sonnet-4-6"`
	MaxTokens      int      `json:"max_tokens,omitempty" minimum:"1" maximum:"1000000" doc:"Longest answer, in tokens; default 4096."`
	ConversationID string   `json:"conversation_id,omitempty" maxLength:"64" doc:"Continue this conversation; its earlier messages are sent as history. Absent: a new conversation."`
	Temperature    *float64 `json:"temperature,omitempty" minimum:"0" maximum:"2" doc:"Sampling temperature; Anthropic models take 0 to 1, and above that answer 400. Default: the model's."`
	TopP           *float64 `json:"top_p,omitempty" minimum:"0" maximum:"1" doc:"Nucleus sampling: draw from the likeliest tokens whose probabilities add up to top_p. Default: the model's."`
	Cache          *bool    `json:"cache,omitempty" doc:"false: neither answer from the answer cache nor store this answer in it. Default true (see FERRY_CACHE_TTL)."`
}

type chatInput struct {
	Body chatBody
}

func (b chatBody) request(endpoint string) chat.Request {
	return chat.Request{Message: b.Message, SystemPrompt: b.SystemPrompt, Model: b.Model, MaxTokens: b.MaxTokens,
		ConversationID: b.ConversationID, Endpoint: endpoint, Sampling: llm.Sampling{Temperature: b.Temperature, TopP: b.TopP},
		NoCache: b.Cache != nil && !*b.Cache}
}

// Events of /ai/chat/stream besides the seed's {"text"} and {"done"}; old
// clients ignore fields they do not know.
type startEvent struct {
	ConversationID string `json:"conversation_id"`
	MessageID      string `json:"message_id"`
	Model          string `json:"model"`
}

type textEvent struct {
	Text string `json:"text"`
}

type doneEvent struct {
	Done       bool       `json:"done"`
	StopReason string     `json:"stop_reason,omitempty"`
	Usage      *usageBody `json:"usage,omitempty"`
}

type usageBody struct {
	InputTokens  int `json:"input_tokens"`
	OutputTokens int `json:"output_tokens"`
}

func chatStreamOperation() huma.Operation {
	return huma.Operation{OperationID: "chat-stream", Method: "POST", Path: "/ai/chat/stream", Tags: []string{"ai"},
		Summary: "Chat, streaming the answer as server-sent events",
		Description: "Events: first {conversation_id, message_id, model}; then {\"text\": …} per delta; " +
			"on a failure after the stream began {\"error\": {code, message, status}}; finally {\"done\": true, usage, stop_reason}. " +
			"A `: keepalive` comment is sent after 15 s of silence.",
		Responses: map[string]*huma.Response{"200": {Description: "An event stream.",
			Content: map[string]*huma.MediaType{"text/event-stream": {Schema: &huma.Schema{Type: "string"}}}}},
	}
}

// handleChatStream answers with the turn's events. Everything that can be
// refused is refused (with a 4xx) by Prepare, before the first byte; an
// upstream failure before the first delta still gets its own status.
func handleChatStream(s *server, c *chat.Service) func(context.Context, *chatInput) (*huma.StreamResponse, error) {
	return func(ctx context.Context, in *chatInput) (*huma.StreamResponse, error) {
		turn, err := c.Prepare(ctx, principal(ctx), in.Body.request("/ai/chat/stream"))
		if err != nil {
			return nil, err
		}
		return streamed(func(w http.ResponseWriter, r *http.Request) {
			setCacheHeader(w.Header(), turn.Cache)
			s.resumable(w, r, &seedDialect{turn: turn}, turn, turn.Stream)
		}), nil
	}
}

// seedDialect is the seed's event stream: a start event naming the
// conversation, message and model; {"text"} per delta; on a failure
// {"error": {code, message, status}}; and last {"done": true}. Every event
// has an id. The start event goes with the first delta, not before, so
// that an upstream that fails before answering still gets its own status.
type seedDialect struct {
	turn *chat.Turn
	sse  sseFrames
}

func (d *seedDialect) header(h http.Header) { setSSEHeaders(h) }
func (d *seedDialect) keepalive() []byte    { return sseKeepalive }
func (d *seedDialect) errors() errorShape   { return problemShape{} }

func (d *seedDialect) open(b []byte) []byte {
	t := d.turn
	return d.sse.event(b, startEvent{ConversationID: t.ConversationID, MessageID: t.AssistantMessageID, Model: t.Provider + "/" + t.Model})
}

func (d *seedDialect) text(b []byte, delta llm.Delta, first bool) []byte {
	if first {
		b = d.open(b)
	}
	return seedText.data(d.sse.nextID(b), delta.Text)
}

// seedText is the frame of a {"text"} event.
var seedText = newTextFrame(textEvent{}, `"text":`)

func (d *seedDialect) fail(b []byte, fe *ferry.Error, started bool) []byte {
	if !started {
		b = d.open(b)
	}
	b = d.sse.event(b, errorEvent{Error: errorBody{Code: fe.Code, Message: fe.Message, Status: statusOf[fe.Code]}})
	return d.sse.event(b, doneEvent{Done: true})
}

func (d *seedDialect) done(b []byte, res *chat.Result, started bool) []byte {
	if !started {
		b = d.open(b) // an empty answer still names its conversation
	}
	return d.sse.event(b, doneEvent{Done: true, StopReason: res.StopReason,
		Usage: &usageBody{InputTokens: res.Usage.InputTokens, OutputTokens: res.Usage.OutputTokens}})
}

// errorEvent is the event a failure after the first byte becomes, before
// the done event.
type errorEvent struct {
	Error errorBody `json:"error"`
}

type errorBody struct {
	Code    ferry.Code `json:"code"`
	Message string     `json:"message"`
	Status  int        `json:"status"`
}

type chatOutput struct {
	Cache string `header:"X-Cache" doc:"hit when the answer came from the answer cache, else miss."`
	Body  struct {
		ConversationID string    `json:"conversation_id"`
		MessageID      string    `json:"message_id"`
		Model          string    `json:"model"`
		Text           string    `json:"text"`
		StopReason     string    `json:"stop_reason"`
		Usage          usageBody `json:"usage"`
	}
}

// handleChat is /ai/chat/stream answered in one piece.
func handleChat(c *chat.Service) func(context.Context, *chatInput) (*chatOutput, error) {
	return func(ctx context.Context, in *chatInput) (*chatOutput, error) {
		turn, err := c.Prepare(ctx, principal(ctx), in.Body.request("/ai/chat"))
		if err != nil {
			return nil, err
		}
		res, err := turn.Stream(ctx, nil)
		if err != nil {
			return nil, err
		}
		out := &chatOutput{Cache: cacheHeader(turn.Cache)}
		out.Body.ConversationID, out.Body.MessageID = turn.ConversationID, turn.AssistantMessageID
		out.Body.Model, out.Body.Text, out.Body.StopReason = turn.Provider+"/"+res.Model, res.Text, res.StopReason
		out.Body.Usage = usageBody{InputTokens: res.Usage.InputTokens, OutputTokens: res.Usage.OutputTokens}
		return out, nil
	}
}

type modelBody struct {
	ID       string `json:"id" doc:"Routable name, provider/model."`
	Provider string `json:"provider"`
	Name     string `json:"name" doc:"The provider's own name."`
}

type modelsOutput struct {
	Body struct {
		Default string      `json:"default" doc:"The model used when a request names none."`
		Items   []modelBody `json:"items"`
	}
}

func handleModels(router *llm.Router) func(context.Context, *struct{}) (*modelsOutput, error) {
	return func(ctx context.Context, _ *struct{}) (*modelsOutput, error) {
		models, err := router.Models(ctx)
		if err != nil {
			return nil, err
		}
		out := &modelsOutput{}
		out.Body.Items = make([]modelBody, len(models))
		for i, m := range models {
			out.Body.Items[i] = modelBody{ID: m.ID, Provider: m.Provider, Name: m.Name}
		}
		if p, name, err := router.Resolve(""); err == nil {
			out.Body.Default = p.Name() + "/" + name
		}
		return out, nil
	}
}

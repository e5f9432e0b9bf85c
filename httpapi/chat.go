package httpapi

import (
	"context"
	"errors"
	"net/http"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/chat"
	"github.com/ferryhq/ferry/llm"
)

// chatBody is the seed's ChatRequest, plus conversation_id.
type chatBody struct {
	Message        string `json:"message" minLength:"1" doc:"The user's message."`
	SystemPrompt   string `json:"system_prompt,omitempty" doc:"System prompt; default FERRY_SYSTEM_PROMPT."`
	Model          string `json:"model,omitempty" maxLength:"200" doc:"provider/model, or a bare name (claude-* is Anthropic); default FERRY_DEFAULT_MODEL." example:"claude-sonnet-4-6"`
	MaxTokens      int    `json:"max_tokens,omitempty" minimum:"1" maximum:"1000000" doc:"Longest answer, in tokens; default 4096."`
	ConversationID string `json:"conversation_id,omitempty" maxLength:"64" doc:"Continue this conversation; its earlier messages are sent as history. Absent: a new conversation."`
}

type chatInput struct {
	Body chatBody
}

func (b chatBody) request(endpoint string) chat.Request {
	return chat.Request{Message: b.Message, SystemPrompt: b.SystemPrompt, Model: b.Model, MaxTokens: b.MaxTokens,
		ConversationID: b.ConversationID, Endpoint: endpoint}
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

// errDraining is why a stream stops when the server shuts down.
var errDraining = ferry.Errorf(ferry.Unavailable, "the server is restarting; send the message again")

func chatStreamOperation() huma.Operation {
	return huma.Operation{OperationID: "chat-stream", Method: "POST", Path: "/ai/chat/stream", Tags: []string{"ai"},
		Summary: "Chat, streaming the answer as server-sent events",
		Description: "Events: first {conversation_id, message_id, model}; then {\"text\": …} per delta; " +
			"on a failure after the stream began {\"error\": {code, message, status}}; finally {\"done\": true, usage, stop_reason}. " +
			"A `: keepalive` comment is sent after 15 s of silence.",
		Security: authenticated,
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
		return &huma.StreamResponse{Body: func(hctx huma.Context) {
			r, w := humago.Unwrap(hctx)
			s.streamTurn(r, w, turn)
		}}, nil
	}
}

func (s *server) streamTurn(r *http.Request, w http.ResponseWriter, turn *chat.Turn) {
	ctx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)
	stop := context.AfterFunc(s.opts.Draining, func() { cancel(errDraining) })
	defer stop()

	sse := newSSE(w, s.opts.Keepalive)
	defer sse.Close()
	// The start event goes with the first delta, not before, so that an
	// upstream that fails before answering still gets its own status.
	announced := false
	start := startEvent{ConversationID: turn.ConversationID, MessageID: turn.AssistantMessageID, Model: turn.Provider + "/" + turn.Model}
	// withStart puts the start event before events the first time.
	withStart := func(events ...any) []any {
		if announced {
			return events
		}
		announced = true
		return append([]any{start}, events...)
	}
	res, err := turn.Stream(ctx, func(text string) error {
		return sse.Send(withStart(textEvent{Text: text})...)
	})
	if r.Context().Err() != nil {
		return // the client left; the turn is stored as cancelled
	}
	if err != nil {
		if errors.Is(err, context.Canceled) {
			err = context.Cause(ctx)
		}
		fe := s.public(r.Context(), err)
		if !sse.Started() {
			sse.Close()
			var h http.Header
			if fe.RetryAfter > 0 {
				h = http.Header{"Retry-After": {retryAfter(fe.RetryAfter)}}
			}
			writeProblem(w, statusOf[fe.Code], fe.Message, h)
			return
		}
		sse.Send(withStart(newErrorEvent(fe), doneEvent{Done: true})...)
		return
	}
	// An empty answer still names its conversation.
	sse.Send(withStart(doneEvent{Done: true, StopReason: res.StopReason,
		Usage: &usageBody{InputTokens: res.Usage.InputTokens, OutputTokens: res.Usage.OutputTokens}})...)
}

type chatOutput struct {
	Body struct {
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
		res, err := turn.Stream(ctx, func(string) error { return nil })
		if err != nil {
			return nil, err
		}
		out := &chatOutput{}
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

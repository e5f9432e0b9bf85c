package httpapi

// The OpenAI-compatible API: POST /v1/chat/completions and GET /v1/models in
// the wire format of OpenAI's Chat Completions API, so that OpenAI's SDKs,
// and the tools built on them, reach every configured provider through
// Ferry. Calls are stateless (nothing is stored as a conversation), but each
// is written to the usage log. Every error on these operations, whoever
// raises it, takes OpenAI's shape {"error": {message, type, param, code}}.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/chat"
	"github.com/ferryhq/ferry/llm"
)

// openAIOperation marks op as part of the OpenAI-compatible API: signed in
// by bearer token (API key or access token, as OpenAI's SDKs send it) and
// answering errors in OpenAI's shape.
func openAIOperation(op huma.Operation) huma.Operation {
	op.Tags = []string{"openai"}
	if op.Responses == nil {
		op.Responses = map[string]*huma.Response{}
	}
	op.Responses["default"] = &huma.Response{Description: `An error, in OpenAI's shape: {"error": {"message", "type", "param", "code"}}.`,
		Content: map[string]*huma.MediaType{"application/json": {Schema: &huma.Schema{Type: "object"}}}}
	return withErrors(op, openAIShape{})
}

// openAIShape is an error as OpenAI's API words it. Code is Ferry's error
// code ("invalid", "rate_limited", "upstream" …); param names the request
// field that was wrong, if one was.
type openAIShape struct{}

type openAIErrorBody struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

type openAIErrorEnvelope struct {
	Error openAIErrorBody `json:"error"`
}

func (openAIShape) contentType() string { return "application/json" }

func (openAIShape) body(status int, fe *ferry.Error) any {
	typ := "invalid_request_error"
	switch {
	case status == http.StatusUnauthorized:
		typ = "authentication_error"
	case status == http.StatusForbidden:
		typ = "permission_error"
	case status == http.StatusTooManyRequests:
		typ = "rate_limit_error"
	case status >= 500:
		typ = "server_error"
	}
	e := openAIErrorEnvelope{Error: openAIErrorBody{Message: fe.Message, Type: typ}}
	if fe.Code != "" {
		code := string(fe.Code)
		e.Error.Code = &code
	}
	if param := firstField(fe.Fields); param != "" {
		e.Error.Param = &param
	}
	return e
}

// completionRequest is a Chat Completions request. Of the fields it does
// not name, those Ferry cannot relay are refused and the others kept as
// they were sent (see openai_params.go).
type completionRequest struct {
	_                   struct{}            `json:"-" additionalProperties:"true"`
	Model               string              `json:"model" maxLength:"200" doc:"provider/model, or a bare name routed as /ai/chat routes it (claude-* is Anthropic, gpt-* OpenAI, llama3.2 Ollama); empty: FERRY_DEFAULT_MODEL." example:"anthropic/claude-sonnet-4-6"`
	Messages            []completionMessage `json:"messages" minItems:"1" maxItems:"10000"`
	Stream              bool                `json:"stream,omitempty" doc:"Stream chat.completion.chunk events, ending with data: [DONE]."`
	StreamOptions       *streamOptions      `json:"stream_options,omitempty"`
	MaxTokens           int                 `json:"max_tokens,omitempty" minimum:"1" maximum:"1000000" doc:"Longest answer, in tokens (older name of max_completion_tokens)."`
	MaxCompletionTokens int                 `json:"max_completion_tokens,omitempty" minimum:"1" maximum:"1000000" doc:"Longest answer, in tokens; default: the provider's."`
	N                   *int                `json:"n,omitempty" doc:"Only 1: Ferry returns one choice; anything else is a 400."`
	Logprobs            *bool               `json:"logprobs,omitempty" doc:"Only false: log probabilities are not supported; true is a 400."`
	Temperature         *float64            `json:"temperature,omitempty" doc:"0 to 2; Anthropic models take 0 to 1. Outside the provider's range: a 400. Default: the model's."`
	TopP                *float64            `json:"top_p,omitempty" doc:"0 to 1. Default: the model's."`
	Stop                stopSequences       `json:"stop,omitempty"`
	Seed                *int64              `json:"seed,omitempty" doc:"OpenAI-compatible servers and Ollama; Anthropic: a 400."`
	PresencePenalty     *float64            `json:"presence_penalty,omitempty" doc:"-2 to 2; OpenAI-compatible servers and Ollama; Anthropic: a 400 unless 0."`
	FrequencyPenalty    *float64            `json:"frequency_penalty,omitempty" doc:"-2 to 2; OpenAI-compatible servers and Ollama; Anthropic: a 400 unless 0."`
	ResponseFormat      *responseFormat     `json:"response_format,omitempty"`
	User                string              `json:"user,omitempty" doc:"An opaque id of your end user: OpenAI's user, Anthropic's metadata.user_id; Ollama has none and goes without."`
	Cache               *bool               `json:"cache,omitempty" doc:"Ferry's own: false neither answers from the answer cache nor stores this answer in it (see FERRY_CACHE_TTL); never sent upstream."`

	others map[string]json.RawMessage // the fields not named above, as sent
}

type streamOptions struct {
	_            struct{} `json:"-" additionalProperties:"true"`
	IncludeUsage bool     `json:"include_usage,omitempty" doc:"End the stream with a chunk holding usage and no choices."`
}

type completionMessage struct {
	_       struct{}       `json:"-" additionalProperties:"true"`
	Role    string         `json:"role" enum:"system,developer,user,assistant" doc:"system and developer messages become the system prompt."`
	Content messageContent `json:"content,omitempty" doc:"A string, or an array of text parts; may be null or absent in an assistant message."`
}

// messageContent is a message's content as OpenAI accepts it: a string, or
// an array of content parts of which Ferry takes the text ones.
type messageContent struct {
	raw json.RawMessage
}

func (c *messageContent) UnmarshalJSON(b []byte) error {
	c.raw = append(c.raw[:0], b...)
	return nil
}

func (messageContent) Schema(huma.Registry) *huma.Schema {
	part := &huma.Schema{Type: "object", Required: []string{"type"}, AdditionalProperties: true,
		Properties: map[string]*huma.Schema{
			"type": {Type: "string", Description: `Only "text" is supported.`},
			"text": {Type: "string"},
		}}
	return &huma.Schema{OneOf: []*huma.Schema{{Type: "string"}, {Type: "array", Items: part}}}
}

// text returns the content's text; parts are joined by newlines.
func (c messageContent) text() (string, error) {
	if len(c.raw) == 0 || string(c.raw) == "null" {
		return "", nil
	}
	var s string
	if json.Unmarshal(c.raw, &s) == nil {
		return s, nil
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal(c.raw, &parts); err != nil {
		return "", errors.New("must be a string or an array of content parts")
	}
	texts := make([]string, len(parts))
	for i, p := range parts {
		if p.Type != "text" {
			return "", fmt.Errorf("content parts of type %q are not supported; send text", p.Type)
		}
		texts[i] = p.Text
	}
	return strings.Join(texts, "\n"), nil
}

type completionInput struct {
	Body completionRequest
}

// completion is one stateless call for /v1/chat/completions, admitted
// and ready to send.
type completion struct {
	id      string
	created int64
	model   string // the name the answer reports: the request's, or the default's
	usage   bool   // stream_options.include_usage
	call    *chat.Call
}

// newCompletion checks the request and sends it through the chat funnel's
// Start. Errors: Invalid (naming the setting when the model's provider is
// not configured; naming the parameter when Ferry or the provider cannot
// honour it), and those of chat.Service.Start.
func newCompletion(ctx context.Context, c *chat.Service, who *ferry.Principal, b *completionRequest) (*completion, error) {
	var req llm.Request
	var system []string
	for i, m := range b.Messages {
		text, err := m.Content.text()
		if err != nil {
			return nil, ferry.InvalidField(fmt.Sprintf("messages[%d].content", i), err.Error())
		}
		switch {
		case m.Role == "system" || m.Role == "developer":
			system = append(system, text)
		case m.Role == "assistant" && text == "":
			// A tool-call turn, whose calls Ferry does not pass on: no text
			// for the model, and Anthropic refuses empty messages.
		default:
			req.Messages = append(req.Messages, llm.TextMessage(m.Role, text))
		}
	}
	if len(req.Messages) == 0 {
		return nil, ferry.InvalidField("messages", "needs a user message besides system ones")
	}
	req.System = strings.Join(system, "\n\n")
	req.MaxTokens = b.MaxCompletionTokens
	if req.MaxTokens == 0 {
		req.MaxTokens = b.MaxTokens
	}
	var err error
	if req.Sampling, err = b.sampling(); err != nil {
		return nil, err
	}
	call, err := c.Start(ctx, who, "/v1/chat/completions", b.Model, req, chat.UseCache(b.Cache == nil || *b.Cache))
	if err != nil {
		return nil, err
	}
	out := &completion{id: "chatcmpl-" + randomHex(12), created: time.Now().Unix(), model: strings.TrimSpace(b.Model),
		usage: b.StreamOptions != nil && b.StreamOptions.IncludeUsage, call: call}
	if out.model == "" {
		out.model = call.Provider + "/" + call.Model
		if call.Model == "" {
			out.model = call.Provider
		}
	}
	return out, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// finishReason maps a provider's stop reason to OpenAI's finish_reason.
func finishReason(stop string) string {
	switch stop {
	case "max_tokens", "length":
		return "length"
	case "tool_use", "tool_calls":
		return "tool_calls"
	case "refusal", "content_filter":
		return "content_filter"
	}
	return "stop"
}

type completionUsage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

func newCompletionUsage(u llm.Usage) *completionUsage {
	return &completionUsage{PromptTokens: u.InputTokens, CompletionTokens: u.OutputTokens, TotalTokens: u.InputTokens + u.OutputTokens}
}

// chatCompletion is the answer to a request that does not stream.
type chatCompletion struct {
	ID      string             `json:"id"`
	Object  string             `json:"object" enum:"chat.completion"`
	Created int64              `json:"created"`
	Model   string             `json:"model"`
	Choices []completionChoice `json:"choices"`
	Usage   *completionUsage   `json:"usage"`
}

type completionChoice struct {
	Index        int             `json:"index"`
	Message      completionReply `json:"message"`
	Logprobs     any             `json:"logprobs"`
	FinishReason string          `json:"finish_reason"`
}

type completionReply struct {
	Role    string  `json:"role"`
	Content string  `json:"content"`
	Refusal *string `json:"refusal"`
}

// completionChunk is one event of a streamed answer.
type completionChunk struct {
	ID      string           `json:"id"`
	Object  string           `json:"object"`
	Created int64            `json:"created"`
	Model   string           `json:"model"`
	Choices []chunkChoice    `json:"choices"`
	Usage   *completionUsage `json:"usage,omitempty"`
}

type chunkChoice struct {
	Index        int        `json:"index"`
	Delta        chunkDelta `json:"delta"`
	Logprobs     any        `json:"logprobs"`
	FinishReason *string    `json:"finish_reason"`
}

type chunkDelta struct {
	Role    string  `json:"role,omitempty"`
	Content *string `json:"content,omitempty"`
}

func (c *completion) chunk(d chunkDelta, finish *string) completionChunk {
	return completionChunk{ID: c.id, Object: "chat.completion.chunk", Created: c.created, Model: c.model,
		Choices: []chunkChoice{{Delta: d, FinishReason: finish}}}
}

func chatCompletionsOperation(reg huma.Registry) huma.Operation {
	return openAIOperation(huma.Operation{OperationID: "openai-chat-completions", Method: "POST", Path: "/v1/chat/completions",
		Summary: "Chat, in OpenAI's Chat Completions format, with any configured provider",
		Description: "For OpenAI's SDKs: base URL <ferry>/v1, API key a Ferry API key (fk_…) or access token. " +
			"With stream: chat.completion.chunk events, a usage chunk when stream_options.include_usage, then data: [DONE]; " +
			"a failure after the first chunk arrives as data: {\"error\": …} before [DONE]. Nothing is stored as a conversation; " +
			"every call is written to the usage log. Sampling parameters reach the provider under its own names; " +
			"one the provider cannot honour is a 400 whose param names it, and so are tools, tool_choice, functions, " +
			"function_call, audio, modalities other than [\"text\"], top_logprobs, logprobs: true and n other than 1. " +
			"Other fields reach OpenAI-compatible servers as sent; for Anthropic and Ollama they are a 400, " +
			"except metadata, store, service_tier, parallel_tool_calls, prompt_cache_key and safety_identifier, which they go without.",
		Responses: map[string]*huma.Response{"200": {Description: "A chat.completion, or with stream an event stream of chat.completion.chunk.",
			Content: map[string]*huma.MediaType{
				"application/json":  {Schema: reg.Schema(reflect.TypeFor[chatCompletion](), true, "")},
				"text/event-stream": {Schema: &huma.Schema{Type: "string"}},
			}}},
	})
}

// handleChatCompletions answers POST /v1/chat/completions. Everything that
// can be refused is refused before the first byte with its own status; an
// upstream failure before the first delta still gets its own status too.
// OpenAI's clients cannot resume a stream, so one that leaves cancels the
// upstream call.
func handleChatCompletions(s *server) func(context.Context, *completionInput) (*huma.StreamResponse, error) {
	return func(ctx context.Context, in *completionInput) (*huma.StreamResponse, error) {
		c, err := newCompletion(ctx, s.svc.Chat, principal(ctx), &in.Body)
		if err != nil {
			return nil, err
		}
		if in.Body.Stream {
			d := newChunkDialect(c)
			return streamed(func(w http.ResponseWriter, r *http.Request) {
				setCacheHeader(w.Header(), c.call.Cache)
				s.stream(w, r, d, func(ctx context.Context, emit func(llm.Delta) error) (*chat.Result, error) {
					return c.call.Stream(ctx, emit)
				})
			}), nil
		}
		res, err := c.call.Stream(ctx, nil)
		if err != nil {
			return nil, err
		}
		out := chatCompletion{ID: c.id, Object: "chat.completion", Created: c.created, Model: c.model,
			Choices: []completionChoice{{Message: completionReply{Role: "assistant", Content: res.Text}, FinishReason: finishReason(res.StopReason)}},
			Usage:   newCompletionUsage(res.Usage)}
		return &huma.StreamResponse{Body: func(hctx huma.Context) {
			_, w := humago.Unwrap(hctx)
			w.Header().Set("Content-Type", "application/json")
			setCacheHeader(w.Header(), c.call.Cache)
			enc := json.NewEncoder(w)
			enc.SetEscapeHTML(false)
			enc.Encode(out)
		}}, nil
	}
}

// chunkDialect is OpenAI's streamed Chat Completions: a role chunk, a
// chunk per delta, a finish chunk, a usage chunk when asked for, then
// data: [DONE]. A failure after the first chunk is a data: {"error": …}
// event before [DONE].
type chunkDialect struct {
	c       *completion
	sse     sseFrames
	opening []byte    // the role's chunk, whole
	frame   textFrame // a delta's chunk
}

// newChunkDialect returns c's dialect with its first chunks made: by the
// handler, before the stream, whose goroutine a reflective encode deep in
// its calls would grow (see offload.go).
func newChunkDialect(c *completion) *chunkDialect {
	d := &chunkDialect{c: c}
	empty := ""
	d.opening = d.sse.data(nil, c.chunk(chunkDelta{Role: "assistant", Content: &empty}, nil))
	d.frame = newTextFrame(c.chunk(chunkDelta{Content: &empty}, nil), `"content":`)
	return d
}

func (d *chunkDialect) header(h http.Header) { setSSEHeaders(h) }
func (d *chunkDialect) keepalive() []byte    { return sseKeepalive }
func (d *chunkDialect) errors() errorShape   { return openAIShape{} }

// open appends the chunk that names the role, which OpenAI sends first.
func (d *chunkDialect) open(b []byte) []byte {
	return append(b, d.opening...)
}

func (d *chunkDialect) text(b []byte, delta llm.Delta, first bool) []byte {
	if first {
		b = d.open(b)
	}
	return d.frame.data(b, delta.Text)
}

func (d *chunkDialect) fail(b []byte, fe *ferry.Error, _ bool) []byte {
	b = d.sse.data(b, openAIShape{}.body(statusOf[fe.Code], fe))
	return append(b, "data: [DONE]\n\n"...)
}

func (d *chunkDialect) done(b []byte, res *chat.Result, started bool) []byte {
	if !started {
		b = d.open(b)
	}
	finish := finishReason(res.StopReason)
	b = d.sse.data(b, d.c.chunk(chunkDelta{}, &finish))
	if d.c.usage {
		b = d.sse.data(b, completionChunk{ID: d.c.id, Object: "chat.completion.chunk", Created: d.c.created, Model: d.c.model,
			Choices: []chunkChoice{}, Usage: newCompletionUsage(res.Usage)})
	}
	return append(b, "data: [DONE]\n\n"...)
}

type openAIModel struct {
	ID      string `json:"id" doc:"Routable name, provider/model."`
	Object  string `json:"object" enum:"model"`
	Created int64  `json:"created" doc:"Always 0: providers do not all say."`
	OwnedBy string `json:"owned_by" doc:"The provider."`
}

type openAIModelsOutput struct {
	Body struct {
		Object string        `json:"object" enum:"list"`
		Data   []openAIModel `json:"data"`
	}
}

// handleOpenAIModels lists the models of every configured provider in
// OpenAI's list format.
func handleOpenAIModels(router *llm.Router) func(context.Context, *struct{}) (*openAIModelsOutput, error) {
	return func(ctx context.Context, _ *struct{}) (*openAIModelsOutput, error) {
		models, err := router.Models(ctx)
		if err != nil {
			return nil, err
		}
		out := &openAIModelsOutput{}
		out.Body.Object = "list"
		out.Body.Data = make([]openAIModel, len(models))
		for i, m := range models {
			out.Body.Data[i] = openAIModel{ID: m.ID, Object: "model", OwnedBy: m.Provider}
		}
		return out, nil
	}
}

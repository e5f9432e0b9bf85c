package httpapi

// Ollama's native API behind Ferry's accounts: /ollama/generate,
// /ollama/chat and /ollama/tags forward to OLLAMA_BASE_URL's /api/generate,
// /api/chat and /api/tags and pass Ollama's answers through: NDJSON lines
// as they arrive, and errors in Ollama's own {"error": …} shape. Code
// written for the seed's /ollama/generate, or for Ollama itself, keeps
// working; each generation passes the chat funnel like any model call.

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/chat"
	"github.com/ferryhq/ferry/llm"
	"github.com/ferryhq/ferry/llm/ollama"
)

// ollamaInput takes the body raw: every field Ollama knows is forwarded as
// the client sent it.
type ollamaInput struct {
	RawBody []byte
}

// ollamaOperation documents a proxied Ollama endpoint whose body is a JSON
// object with the given fields and any others Ollama takes.
func ollamaOperation(id, path, summary string, fields map[string]*huma.Schema) huma.Operation {
	props := map[string]*huma.Schema{
		"model":  {Type: "string", Default: ollama.DefaultModel, Description: "Ollama's model name."},
		"stream": {Type: "boolean", Default: true, Description: "Stream NDJSON, one object per line; false: one JSON object."},
	}
	for k, v := range fields {
		props[k] = v
	}
	schema := &huma.Schema{Type: "object", AdditionalProperties: true, Properties: props,
		Description: "Ollama's own request body: fields besides these (system, options, format, images, keep_alive, …) are forwarded unchanged."}
	return withErrors(huma.Operation{OperationID: id, Method: "POST", Path: path, Tags: []string{"ollama"}, Summary: summary,
		Description: "Proxied to Ollama (OLLAMA_BASE_URL). Ollama's answer passes through: NDJSON lines as they arrive; " +
			"errors as {\"error\": …}, and a failure after the stream began as an {\"error\": …} line.",
		SkipValidateBody: true, // ollama.ParseNative checks the fields Ferry reads; Ollama checks the rest
		RequestBody:      &huma.RequestBody{Required: true, Content: map[string]*huma.MediaType{"application/json": {Schema: schema}}},
		Responses: map[string]*huma.Response{"200": {Description: "Ollama's answer.", Content: map[string]*huma.MediaType{
			"application/x-ndjson": {Schema: &huma.Schema{Type: "string"}},
			"application/json":     {Schema: &huma.Schema{Type: "object"}},
		}}},
	}, ollamaShape{})
}

func ollamaGenerateOperation() huma.Operation {
	return ollamaOperation("ollama-generate", "/ollama/generate", "Generate with Ollama (its /api/generate)", map[string]*huma.Schema{
		"prompt": {Type: "string"}, "system": {Type: "string"},
	})
}

func ollamaChatOperation() huma.Operation {
	return ollamaOperation("ollama-chat", "/ollama/chat", "Chat with Ollama (its /api/chat)", map[string]*huma.Schema{
		"messages": {Type: "array", Items: &huma.Schema{Type: "object", AdditionalProperties: true}},
	})
}

func ollamaTagsOperation() huma.Operation {
	return withErrors(huma.Operation{OperationID: "ollama-tags", Method: "GET", Path: "/ollama/tags", Tags: []string{"ollama"},
		Summary: "Ollama's models (its /api/tags), proxied",
		Responses: map[string]*huma.Response{"200": {Description: "Ollama's answer, as it sent it.",
			Content: map[string]*huma.MediaType{"application/json": {Schema: &huma.Schema{Type: "object"}}}}},
	}, ollamaShape{})
}

// handleOllamaGenerate passes a generation of Ollama's own API (path
// "/api/generate" or "/api/chat") through the chat funnel as endpoint: the
// body goes to Ollama as the client sent it, and Ollama's NDJSON comes
// back line by line. Ollama's clients cannot resume a stream, so one that
// leaves cancels the generation.
func handleOllamaGenerate(s *server, endpoint, path string) func(context.Context, *ollamaInput) (*huma.StreamResponse, error) {
	return func(ctx context.Context, in *ollamaInput) (*huma.StreamResponse, error) {
		n, err := ollama.ParseNative(path, in.RawBody)
		if err != nil {
			return nil, err
		}
		system, msgs := n.Messages()
		call, err := s.svc.Chat.Start(ctx, principal(ctx), endpoint, llm.Ollama+"/"+n.Model,
			llm.Request{System: system, Messages: msgs})
		if err != nil {
			return nil, err
		}
		return &huma.StreamResponse{Body: func(hctx huma.Context) {
			r, w := humago.Unwrap(hctx)
			s.stream(w, r, ndjsonDialect{stream: n.Stream}, func(ctx context.Context, emit func(llm.Delta) error) (*chat.Result, error) {
				return call.Relay(ctx, func(ctx context.Context, progress func()) (*chat.Result, error) {
					final, err := s.svc.Ollama.Forward(ctx, n, func(b []byte) error {
						progress()
						return emit(llm.Delta{Text: string(b)})
					})
					return &chat.Result{Model: final.Model, StopReason: final.StopReason, Usage: final.Usage}, err
				})
			})
		}}, nil
	}
}

// ndjsonDialect relays Ollama's own answer: NDJSON lines (or one JSON
// object) as they came, and a failure after the first byte as an
// {"error": …} line, as Ollama ends a stream that failed. NDJSON has no
// comment line, so there is no keepalive.
type ndjsonDialect struct {
	stream bool
}

func (d ndjsonDialect) header(h http.Header) {
	ct := "application/json"
	if d.stream {
		ct = "application/x-ndjson"
	}
	h.Set("Content-Type", ct)
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
}

func (ndjsonDialect) keepalive() []byte  { return nil }
func (ndjsonDialect) errors() errorShape { return ollamaShape{} }

func (ndjsonDialect) text(b []byte, d llm.Delta, _ bool) []byte { return append(b, d.Text...) }

func (ndjsonDialect) fail(b []byte, fe *ferry.Error, _ bool) []byte {
	line, _ := json.Marshal(ollamaShape{}.body(0, fe))
	return append(append(b, line...), '\n')
}

func (ndjsonDialect) done(b []byte, _ *chat.Result, _ bool) []byte { return b }

// ollamaShape is an error as Ollama words it: {"error": "…"}.
type ollamaShape struct{}

type ollamaErrorBody struct {
	Error string `json:"error"`
}

func (ollamaShape) contentType() string { return "application/json" }

func (ollamaShape) body(_ int, fe *ferry.Error) any { return ollamaErrorBody{Error: fe.Message} }

type ollamaTagsOutput struct {
	Body json.RawMessage
}

// handleOllamaTags answers Ollama's model list as Ollama wrote it. Listing
// is not a model call, so it is not in the usage log.
func handleOllamaTags(o *ollama.Provider) func(context.Context, *struct{}) (*ollamaTagsOutput, error) {
	return func(ctx context.Context, _ *struct{}) (*ollamaTagsOutput, error) {
		raw, err := o.Tags(ctx)
		if err != nil {
			return nil, err
		}
		return &ollamaTagsOutput{Body: raw}, nil
	}
}

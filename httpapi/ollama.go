package httpapi

// Ollama's native API behind Ferry's accounts. Ollama's own paths under
// /ollama/api/, so that its official clients work with the host
// "http://…/ollama" and a Ferry key in their headers, and the seed's
// /ollama/generate, /ollama/chat and /ollama/tags, forward to
// OLLAMA_BASE_URL and pass Ollama's answers through: NDJSON lines as they
// arrive, one JSON object when not streamed, and errors in Ollama's own
// {"error": …} shape. Generating and embedding are model calls and pass
// the chat funnel like any; listing, showing and the version only read;
// managing Ollama's models (pull, push, create, copy, delete) is refused.

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/danielgtaylor/huma/v2"

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

func ollamaGenerateOperation(id, path string) huma.Operation {
	return ollamaOperation(id, path, "Generate with Ollama (its /api/generate)", map[string]*huma.Schema{
		"prompt": {Type: "string"}, "system": {Type: "string"},
	})
}

func ollamaChatOperation(id, path string) huma.Operation {
	return ollamaOperation(id, path, "Chat with Ollama (its /api/chat)", map[string]*huma.Schema{
		"messages": {Type: "array", Items: &huma.Schema{Type: "object", AdditionalProperties: true}},
	})
}

func ollamaEmbedOperation() huma.Operation {
	op := ollamaOperation("ollama-api-embed", "/ollama/api/embed", "Embed texts with Ollama (its /api/embed)", map[string]*huma.Schema{
		"input": {Description: "A text, or a list of texts, to embed.", OneOf: []*huma.Schema{
			{Type: "string"}, {Type: "array", Items: &huma.Schema{Type: "string"}}}},
	})
	schema := op.RequestBody.Content["application/json"].Schema
	delete(schema.Properties, "stream") // an embedding is always one JSON object
	op.Responses["200"].Content = map[string]*huma.MediaType{"application/json": {Schema: &huma.Schema{Type: "object"}}}
	return op
}

// ollamaLookupOperation documents a proxied Ollama endpoint that only
// reads (see ollama.Provider.Lookup).
func ollamaLookupOperation(id, method, path, summary string) huma.Operation {
	op := huma.Operation{OperationID: id, Method: method, Path: path, Tags: []string{"ollama"}, Summary: summary,
		Responses: map[string]*huma.Response{"200": {Description: "Ollama's answer, as it sent it.",
			Content: map[string]*huma.MediaType{"application/json": {Schema: &huma.Schema{Type: "object"}}}}},
	}
	if method == http.MethodPost {
		op.SkipValidateBody = true // Ollama checks it
		op.RequestBody = &huma.RequestBody{Required: true, Content: map[string]*huma.MediaType{"application/json": {Schema: &huma.Schema{
			Type: "object", AdditionalProperties: true, Required: []string{"model"},
			Properties: map[string]*huma.Schema{"model": {Type: "string", Description: "Ollama's model name."}}}}}}
	}
	return withErrors(op, ollamaShape{})
}

// ollamaRefusedOperation is an endpoint of Ollama's API that Ferry does
// not pass on; refuseOllama answers it. It is left out of the docs.
func ollamaRefusedOperation(id, method, path string) huma.Operation {
	return withErrors(huma.Operation{OperationID: id, Method: method, Path: path, Tags: []string{"ollama"}, Hidden: true,
		// Not read at all: a model upload must hear why it is refused,
		// not that it is too large.
		MaxBodyBytes: -1,
	}, ollamaShape{})
}

// handleOllamaGenerate passes a model call of Ollama's own API (path
// "/api/generate", "/api/chat" or "/api/embed") through the chat funnel as
// endpoint: the body goes to Ollama as the client sent it, and Ollama's
// NDJSON comes back line by line, or its one JSON object whole. Ollama's
// clients cannot resume a stream, so one that leaves cancels the call.
func handleOllamaGenerate(s *server, endpoint, path string) func(context.Context, *ollamaInput) (*huma.StreamResponse, error) {
	return func(ctx context.Context, in *ollamaInput) (*huma.StreamResponse, error) {
		n, err := ollama.ParseNative(path, in.RawBody)
		if err != nil {
			return nil, err
		}
		system, msgs := n.Messages()
		call, err := s.svc.Chat.Start(ctx, principal(ctx), endpoint, llm.Ollama+"/"+n.Model,
			llm.Request{System: system, Messages: msgs}, chat.UseCache(false))
		if err != nil {
			return nil, err
		}
		return streamed(func(w http.ResponseWriter, r *http.Request) {
			s.stream(w, r, ndjsonDialect{stream: n.Stream}, func(ctx context.Context, emit func(llm.Delta) error) (*chat.Result, error) {
				return call.Relay(ctx, func(ctx context.Context, progress func()) (*chat.Result, error) {
					final, err := s.svc.Ollama.Forward(ctx, n, func(b []byte) error {
						progress()
						return emit(llm.Delta{Text: string(b)})
					})
					return &chat.Result{Model: final.Model, StopReason: final.StopReason, Usage: final.Usage}, err
				})
			})
		}), nil
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

// ollamaRawOutput is Ollama's JSON answer, passed on as it came.
type ollamaRawOutput struct {
	Body json.RawMessage
}

// handleOllamaLookup answers GET path (/api/tags, /api/ps, /api/version)
// as Ollama does. Reading is not a model call, so it is not in the usage
// log.
func handleOllamaLookup(o *ollama.Provider, path string) func(context.Context, *struct{}) (*ollamaRawOutput, error) {
	return func(ctx context.Context, _ *struct{}) (*ollamaRawOutput, error) {
		raw, err := o.Lookup(ctx, path, nil)
		if err != nil {
			return nil, err
		}
		return &ollamaRawOutput{Body: raw}, nil
	}
}

// handleOllamaShow answers Ollama's POST /api/show, one model's details,
// with the body sent as the client wrote it once it is known to be a JSON
// object.
func handleOllamaShow(o *ollama.Provider) func(context.Context, *ollamaInput) (*ollamaRawOutput, error) {
	return func(ctx context.Context, in *ollamaInput) (*ollamaRawOutput, error) {
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(in.RawBody, &fields); err != nil || fields == nil {
			if fe := ferry.InvalidJSON(in.RawBody, err); fe != nil {
				return nil, fe
			}
			return nil, ferry.Errorf(ferry.Invalid, "the body must be a JSON object")
		}
		raw, err := o.Lookup(ctx, "/api/show", in.RawBody)
		if err != nil {
			return nil, err
		}
		return &ollamaRawOutput{Body: raw}, nil
	}
}

// errOllamaManage is the answer to the endpoints of Ollama's API that
// change which models it has: they act on the machine that every user's
// calls share, and Ferry's accounts are for using models, not for
// administering Ollama, admins' included.
var errOllamaManage = ferry.Errorf(ferry.Forbidden,
	"Ferry does not pass on Ollama's model management (pull, push, create, copy, delete); manage models on the Ollama host, e.g. `ollama pull llama3.2`")

// errOllamaEmbeddings answers Ollama's deprecated /api/embeddings, which
// /api/embed replaced.
var errOllamaEmbeddings = ferry.Errorf(ferry.NotFound,
	"Ferry serves Ollama's /api/embed (ollama.embed in its clients), not /api/embeddings, which it replaced")

// refuseOllama answers an endpoint of Ollama's API that Ferry does not
// pass on with err.
func refuseOllama(err *ferry.Error) func(context.Context, *struct{}) (*struct{}, error) {
	return func(context.Context, *struct{}) (*struct{}, error) { return nil, err }
}

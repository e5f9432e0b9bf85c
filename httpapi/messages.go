package httpapi

// Anthropic's Messages API: POST /v1/messages and
// POST /v1/messages/count_tokens in Anthropic's wire format, so that
// Anthropic's SDKs, and the tools built on them, reach every configured
// provider through Ferry with a Ferry API key. Calls are stateless (nothing
// is stored as a conversation), but each is written to the usage log.
// Every error on these operations, whoever raises it, takes Anthropic's
// shape {"type": "error", "error": {"type", "message"}}, and a request
// Ferry cannot take is a 400, as Anthropic answers, not huma's 422: the
// body is decoded here (messages_body.go) rather than by huma's schema.

import (
	"context"
	"encoding/json"
	"mime"
	"net/http"
	"reflect"
	"strings"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/chat"
	"github.com/ferryhq/ferry/extract"
	"github.com/ferryhq/ferry/llm"
)

// anthropicSecurity is how Anthropic's operations are signed in: an API
// key (or access token) in x-api-key, as Anthropic's SDKs send
// ANTHROPIC_API_KEY, or as a bearer token, as they send
// ANTHROPIC_AUTH_TOKEN. authenticate reads x-api-key only where an
// operation's security names the scheme.
var anthropicSecurity = []map[string][]string{{apiKeyScheme: {}}, {"bearer": {}}}

// apiKeyScheme is the security scheme of the x-api-key header.
const apiKeyScheme = "x-api-key"

// anthropicOperation marks op as part of Anthropic's Messages API: signed
// in by x-api-key or bearer token, its body read up to
// FERRY_MAX_UPLOAD_BYTES (Anthropic's own request limit, 32 MiB, by
// default: a request may carry PDFs), and its errors in Anthropic's shape.
func anthropicOperation(op huma.Operation, maxUpload int64) huma.Operation {
	op.Tags = []string{"anthropic"}
	op.Security = anthropicSecurity
	op.MaxBodyBytes = maxUpload
	if op.Metadata == nil {
		op.Metadata = map[string]any{}
	}
	op.Metadata[bodyLimitKey] = maxUploadSetting
	// The body is decoded by decodeMessagesBody, which answers 400s with
	// the field; huma would answer 422.
	op.SkipValidateBody = true
	if op.Responses == nil {
		op.Responses = map[string]*huma.Response{}
	}
	op.Responses["default"] = &huma.Response{Description: `An error, in Anthropic's shape: {"type": "error", "error": {"type", "message"}}.`,
		Content: map[string]*huma.MediaType{"application/json": {Schema: &huma.Schema{Type: "object"}}}}
	return withErrors(op, anthropicShape{})
}

// messagesInput is a Messages request as it came: huma reads the body
// (under the operation's limit) and decodeMessagesBody decodes it.
type messagesInput struct {
	ContentType string `header:"Content-Type"`
	RawBody     []byte
}

// body decodes in's body, refusing a content type other than JSON with
// 415, as every JSON operation does.
func (in *messagesInput) body(counting bool) (*messagesBody, error) {
	if mt, _, _ := mime.ParseMediaType(in.ContentType); in.ContentType != "" && mt != "application/json" {
		return nil, &ferry.Error{Code: ferry.UnsupportedMediaType, Message: sendJSON(in.ContentType, "application/json")}
	}
	return decodeMessagesBody(in.RawBody, counting)
}

func messagesOperation(reg huma.Registry, maxUpload int64) huma.Operation {
	return anthropicOperation(huma.Operation{OperationID: "anthropic-messages", Method: "POST", Path: "/v1/messages",
		Summary: "Chat, in Anthropic's Messages format, with any configured provider",
		Description: "For Anthropic's SDKs: base URL <ferry> (the SDK adds /v1/messages), API key a Ferry API key (fk_…) " +
			"in x-api-key, or an API key or access token as Authorization: Bearer; anthropic-version is accepted and not required. " +
			"model routes as everywhere in Ferry (provider/name, or a bare name: claude-* is Anthropic); max_tokens is required, " +
			"as Anthropic requires it. With stream: message_start, content_block_start, ping, content_block_delta per piece, " +
			"content_block_stop, message_delta (stop_reason and usage), message_stop; a failure after the first event is an " +
			"error event. Content: a string or text and document blocks. A base64 PDF document reaches Anthropic models whole; " +
			"other models get its text, extracted page by page as /analyze/pdf does (a PDF without a text layer is a 400 for them); " +
			"a plain-text document is text for every model. temperature, top_p, top_k and stop_sequences reach the provider " +
			"under its own names, and one it cannot honour is a 400 naming it; so are tools, thinking, images and other blocks. " +
			"Nothing is stored as a conversation; every call is written to the usage log. " +
			"The body may be up to FERRY_MAX_UPLOAD_BYTES.",
		RequestBody: &huma.RequestBody{Required: true, Content: map[string]*huma.MediaType{
			"application/json": {Schema: reg.Schema(reflect.TypeFor[messagesBody](), true, "")}}},
		Responses: map[string]*huma.Response{"200": {Description: "A message, or with stream an event stream of Anthropic's events.",
			Content: map[string]*huma.MediaType{
				"application/json":  {Schema: reg.Schema(reflect.TypeFor[anthropicMessage](), true, "")},
				"text/event-stream": {Schema: &huma.Schema{Type: "string"}},
			}}},
	}, maxUpload)
}

func countTokensOperation(reg huma.Registry, maxUpload int64) huma.Operation {
	return anthropicOperation(huma.Operation{OperationID: "anthropic-count-tokens", Method: "POST", Path: "/v1/messages/count_tokens",
		Summary: "Estimate the input tokens of a Messages request",
		Description: "The body of /v1/messages without max_tokens and stream. The count is Ferry's estimate, not the provider's " +
			"tokenizer: about 4 characters a token for Latin text, a token a character for others, and 2000 tokens a page " +
			"for a PDF an Anthropic model reads whole. Nothing is sent upstream or logged.",
		RequestBody: &huma.RequestBody{Required: true, Content: map[string]*huma.MediaType{
			"application/json": {Schema: reg.Schema(reflect.TypeFor[messagesBody](), true, "")}}},
	}, maxUpload)
}

// anthropicMessage is the answer to a request that does not stream: Anthropic's
// Message object.
type anthropicMessage struct {
	ID           string        `json:"id"`
	Type         string        `json:"type" enum:"message"`
	Role         string        `json:"role" enum:"assistant"`
	Model        string        `json:"model"`
	Content      []textContent `json:"content"`
	StopReason   string        `json:"stop_reason" enum:"end_turn,max_tokens,stop_sequence,tool_use,refusal"`
	StopSequence *string       `json:"stop_sequence"`
	Usage        messagesUsage `json:"usage"`
}

type textContent struct {
	Type string `json:"type" enum:"text"`
	Text string `json:"text"`
}

type countTokensOutput struct {
	Body struct {
		InputTokens int `json:"input_tokens" doc:"Ferry's estimate."`
	}
}

// handleMessages answers POST /v1/messages. Everything that can be refused
// is refused before the first byte with its own status; an upstream
// failure before the first delta still gets its own status too.
// Anthropic's clients cannot resume a stream, so one that leaves cancels
// the upstream call.
func handleMessages(s *server) func(context.Context, *messagesInput) (*huma.StreamResponse, error) {
	return func(ctx context.Context, in *messagesInput) (*huma.StreamResponse, error) {
		b, err := in.body(false)
		if err != nil {
			return nil, err
		}
		req, provider, err := s.messagesRequest(ctx, b)
		if err != nil {
			return nil, err
		}
		call, err := s.svc.Chat.Start(ctx, principal(ctx), "/v1/messages", b.Model, req, chat.UseCache(b.Cache == nil || *b.Cache))
		if err != nil {
			return nil, anthropicNames(err)
		}
		model := strings.TrimSpace(b.Model)
		if model == "" {
			model = provider.Name() + "/" + call.Model
		}
		id := "msg_" + randomHex(12)
		if b.Stream {
			d := &messagesDialect{id: id, model: model, input: estimateInput(req, documentPages)}
			return streamed(func(w http.ResponseWriter, r *http.Request) {
				setCacheHeader(w.Header(), call.Cache)
				s.stream(w, r, d, func(ctx context.Context, emit func(llm.Delta) error) (*chat.Result, error) {
					return call.Stream(ctx, emit)
				})
			}), nil
		}
		res, err := call.Stream(ctx, nil)
		if err != nil {
			return nil, err
		}
		out := anthropicMessage{ID: id, Type: "message", Role: "assistant", Model: model, Content: []textContent{},
			StopReason: stopReason(res.StopReason), Usage: messagesUsage{InputTokens: res.Usage.InputTokens, OutputTokens: res.Usage.OutputTokens}}
		if res.Text != "" {
			out.Content = append(out.Content, textContent{Type: "text", Text: res.Text})
		}
		return &huma.StreamResponse{Body: func(hctx huma.Context) {
			_, w := humago.Unwrap(hctx)
			w.Header().Set("Content-Type", "application/json")
			setCacheHeader(w.Header(), call.Cache)
			enc := json.NewEncoder(w)
			enc.SetEscapeHTML(false)
			enc.Encode(out)
		}}, nil
	}
}

// handleCountTokens answers POST /v1/messages/count_tokens with Ferry's
// estimate of the request's input, after the checks /v1/messages makes
// (the model routes, the content converts), so that a request it counts
// is one /v1/messages takes.
func handleCountTokens(s *server) func(context.Context, *messagesInput) (*countTokensOutput, error) {
	return func(ctx context.Context, in *messagesInput) (*countTokensOutput, error) {
		b, err := in.body(true)
		if err != nil {
			return nil, err
		}
		req, provider, err := s.messagesRequest(ctx, b)
		if err != nil {
			return nil, err
		}
		if err := req.Sampling.Check(provider.Name(), provider.Supports()); err != nil {
			return nil, anthropicNames(err)
		}
		pages := documentPages
		if pdf, ok := s.svc.PDF.(pageCounter); ok {
			pages = func(d *llm.Document) int {
				if doc, err := pdf.Inspect(ctx, d.Data, extract.Options{}); err == nil && doc.PageCount > 0 {
					return doc.PageCount
				}
				return documentPages(d)
			}
		}
		out := &countTokensOutput{}
		out.Body.InputTokens = estimateInput(req, pages)
		return out, nil
	}
}

// pageCounter reads a PDF's page count without its text; *extract.PDF is
// one.
type pageCounter interface {
	Inspect(ctx context.Context, data []byte, o extract.Options) (*extract.Document, error)
}

// tokensPerPDFPage is what a PDF page read whole is taken to cost:
// Anthropic reads each page as text and as an image, 1,500 to 3,000
// tokens a page by its documentation.
const tokensPerPDFPage = 2000

// documentPages guesses a PDF's pages from its size, for an estimate that
// must not wait for the PDF to be read: one page per 50 KiB, at least one.
func documentPages(d *llm.Document) int { return max(1, len(d.Data)/(50<<10)) }

// estimateInput is req's input in tokens by chat.EstimateTokens, with a
// document part at tokensPerPDFPage for each of its pages.
func estimateInput(req llm.Request, pages func(*llm.Document) int) int {
	n := chat.EstimateTokens(req.System)
	for _, m := range req.Messages {
		for _, p := range m.Parts {
			switch p.Kind {
			case llm.PartText:
				n += chat.EstimateTokens(p.Text)
			case llm.PartDocument:
				n += tokensPerPDFPage * pages(p.Document)
			}
		}
	}
	return n
}

// anthropicNames renames the fields of an error from the funnel, which
// names sampling parameters as OpenAI's API does, to the Messages API's.
func anthropicNames(err error) error {
	fe, ok := err.(*ferry.Error)
	if !ok {
		return err
	}
	problem, ok := fe.Fields["stop"]
	if !ok {
		return err
	}
	return ferry.InvalidField("stop_sequences", problem)
}

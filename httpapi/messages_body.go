package httpapi

// The body of a Messages request: decoded and checked here, every refusal
// a 400 naming the field as Anthropic's API refuses it, then turned into
// the llm.Request the chat funnel sends to whichever provider the model
// routes to.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/danielgtaylor/huma/v2"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/extract"
	"github.com/ferryhq/ferry/llm"
)

// messagesBody is a Messages API request as Ferry reads it. Other fields
// are refused (see messagesRefused), but for the few that change nothing
// in the answer (messagesInert).
type messagesBody struct {
	Model         string            `json:"model" maxLength:"200" doc:"provider/model, or a bare name routed as everywhere in Ferry (claude-* is Anthropic, gpt-* OpenAI, llama3.2 Ollama); empty: FERRY_DEFAULT_MODEL." example:"claude-sonnet-4-6"`
	MaxTokens     *int              `json:"max_tokens" minimum:"1" doc:"Longest answer, in tokens. Required, as Anthropic requires it."`
	Messages      []messagesTurn    `json:"messages" minItems:"1" doc:"The conversation so far, user and assistant turns; the last is usually the user's."`
	System        messagesContent   `json:"system,omitempty" doc:"The system prompt: a string or text blocks."`
	Stream        bool              `json:"stream,omitempty" doc:"Stream Anthropic's events."`
	Temperature   *float64          `json:"temperature,omitempty" minimum:"0" doc:"0 to 1 for Anthropic models, 0 to 2 for OpenAI's and Ollama's. Default: the model's."`
	TopP          *float64          `json:"top_p,omitempty" minimum:"0" maximum:"1" doc:"Default: the model's."`
	TopK          *int              `json:"top_k,omitempty" minimum:"0" doc:"Anthropic and Ollama models; OpenAI's: a 400."`
	StopSequences []string          `json:"stop_sequences,omitempty" doc:"Sequences that end the answer; Anthropic refuses ones of white space only."`
	Metadata      *messagesMetadata `json:"metadata,omitempty"`
	Cache         *bool             `json:"cache,omitempty" doc:"Ferry's own: false neither answers from the answer cache nor stores this answer in it (see FERRY_CACHE_TTL); never sent upstream."`

	_ struct{} `json:"-" additionalProperties:"true"`
}

type messagesMetadata struct {
	UserID string `json:"user_id,omitempty" maxLength:"256" doc:"An opaque id of your end user: Anthropic's metadata.user_id, OpenAI's user."`
}

type messagesTurn struct {
	Role    string          `json:"role" enum:"user,assistant"`
	Content messagesContent `json:"content"`
}

// messagesContent is content as Anthropic takes it: a string, or an array
// of content blocks.
type messagesContent struct {
	raw json.RawMessage
}

func (c *messagesContent) UnmarshalJSON(b []byte) error {
	c.raw = append(c.raw[:0], b...)
	return nil
}

func (messagesContent) Schema(huma.Registry) *huma.Schema {
	block := &huma.Schema{Type: "object", Required: []string{"type"}, AdditionalProperties: true,
		Properties: map[string]*huma.Schema{
			"type":   {Type: "string", Description: `"text", or "document" with a base64 PDF or plain-text source.`},
			"text":   {Type: "string"},
			"source": {Type: "object", AdditionalProperties: true, Description: `{"type": "base64", "media_type": "application/pdf", "data"} or {"type": "text", "media_type": "text/plain", "data"}.`},
			"title":  {Type: "string"},
		}}
	return &huma.Schema{OneOf: []*huma.Schema{{Type: "string"}, {Type: "array", Items: block}}}
}

// messagesFields are the request fields messagesBody reads.
var messagesFields = []string{"model", "max_tokens", "messages", "system", "stream", "temperature", "top_p", "top_k",
	"stop_sequences", "metadata", "cache"}

// messagesInert are the Messages fields that change nothing in the
// answer's text: every provider goes without them.
var messagesInert = []string{"service_tier", "cache_control"}

// messagesRefused are the Messages fields whose effect Ferry cannot
// relay, each with the values that ask for nothing (as JSON without
// spaces; besides null, [] and {}) and why anything else is refused.
var messagesRefused = []unrelayedField{
	{"tools", nil, "tool use is not supported yet; leave it out"},
	{"tool_choice", []string{`{"type":"none"}`, `{"type":"auto"}`}, `tool use is not supported yet; leave it out`},
	{"thinking", []string{`{"type":"disabled"}`}, `extended thinking is not supported yet; leave it out or send {"type": "disabled"}`},
	{"mcp_servers", nil, "MCP servers are not supported; leave it out"},
	{"container", nil, "containers are not supported; leave it out"},
}

// decodeMessagesBody reads a Messages request. counting is true for
// count_tokens, which takes neither max_tokens nor stream.
func decodeMessagesBody(raw []byte, counting bool) (*messagesBody, error) {
	var all map[string]json.RawMessage
	if err := json.Unmarshal(raw, &all); err != nil {
		if fe := ferry.InvalidJSON(raw, err); fe != nil {
			return nil, fe
		}
		return nil, ferry.Errorf(ferry.Invalid, "the body must be a JSON object: a Messages request")
	}
	var b messagesBody
	if err := json.Unmarshal(raw, &b); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return nil, ferry.InvalidField(te.Field, fmt.Sprintf("must be %s, not %s", jsonKind(te.Type.Kind().String()), te.Value))
		}
		return nil, ferry.Errorf(ferry.Invalid, "the body is not a Messages request: %v", err)
	}
	for name, v := range all {
		if slices.Contains(messagesFields, name) || slices.Contains(messagesInert, name) || isUnset(v) {
			continue
		}
		i := slices.IndexFunc(messagesRefused, func(u unrelayedField) bool { return u.name == name })
		switch {
		case i < 0:
			return nil, ferry.InvalidField(name, "Ferry does not relay this field; leave it out")
		case !slices.Contains(messagesRefused[i].unset, compact(v)):
			return nil, ferry.InvalidField(name, messagesRefused[i].why)
		}
	}
	if counting {
		if _, ok := all["stream"]; ok {
			return nil, ferry.InvalidField("stream", "count_tokens does not stream; leave it out")
		}
	} else if b.MaxTokens == nil {
		return nil, ferry.InvalidField("max_tokens", "required: the longest answer, in tokens")
	}
	switch {
	case b.MaxTokens != nil && *b.MaxTokens < 1:
		return nil, ferry.InvalidField("max_tokens", "must be at least 1")
	case len(b.Messages) == 0:
		return nil, ferry.InvalidField("messages", "at least one message is required")
	case b.TopK != nil && *b.TopK < 0:
		return nil, ferry.InvalidField("top_k", "must not be negative")
	case b.Temperature != nil && *b.Temperature < 0:
		return nil, ferry.InvalidField("temperature", "must not be negative")
	case slices.Contains(b.StopSequences, ""):
		return nil, ferry.InvalidField("stop_sequences", "a stop sequence must not be empty")
	}
	for i, m := range b.Messages {
		if m.Role != "user" && m.Role != "assistant" {
			why := `must be "user" or "assistant"`
			if m.Role == "system" {
				why += `; the system prompt goes in the top-level field system`
			}
			return nil, ferry.InvalidField(fmt.Sprintf("messages[%d].role", i), why)
		}
	}
	return &b, nil
}

// jsonKind names a Go kind as JSON's type.
func jsonKind(kind string) string {
	switch {
	case kind == "string":
		return "a string"
	case kind == "bool":
		return "true or false"
	case strings.HasPrefix(kind, "int"):
		return "an integer"
	case strings.HasPrefix(kind, "float"):
		return "a number"
	case kind == "slice":
		return "an array"
	}
	return "an object"
}

// contentBlock is one block of Anthropic content, of the kinds Ferry
// relays: text and document.
type contentBlock struct {
	Type   string `json:"type"`
	Text   string `json:"text"`
	Title  string `json:"title"`
	Source *struct {
		Type      string `json:"type"`
		MediaType string `json:"media_type"`
		Data      string `json:"data"`
	} `json:"source"`
}

// blocks reads c as blocks: a string is one text block; null or absent is
// none.
func (c messagesContent) blocks() ([]contentBlock, error) {
	if len(c.raw) == 0 || string(c.raw) == "null" {
		return nil, nil
	}
	var s string
	if json.Unmarshal(c.raw, &s) == nil {
		return []contentBlock{{Type: "text", Text: s}}, nil
	}
	var blocks []contentBlock
	if err := json.Unmarshal(c.raw, &blocks); err != nil {
		return nil, errors.New("must be a string or an array of content blocks")
	}
	return blocks, nil
}

// systemText is the system prompt: the string, or the text blocks joined
// by blank lines.
func (b *messagesBody) systemText() (string, error) {
	blocks, err := b.System.blocks()
	if err != nil {
		return "", ferry.InvalidField("system", "must be a string or an array of text blocks")
	}
	texts := make([]string, len(blocks))
	for i, bl := range blocks {
		if bl.Type != "text" {
			return "", ferry.InvalidField(fmt.Sprintf("system[%d].type", i), fmt.Sprintf("the system prompt takes text blocks, not %q", bl.Type))
		}
		texts[i] = bl.Text
	}
	return strings.Join(texts, "\n\n"), nil
}

// messagesRequest turns b into the request for the provider b.Model
// routes to, which it returns too. A base64 PDF becomes a document part
// for a provider that reads PDFs, and its text, extracted page by page as
// /analyze/pdf does, for the others; a plain-text document becomes text.
// Errors: Invalid naming the field, those of Router.Resolve, and of the
// PDF reader (encrypted, damaged, no text layer).
func (s *server) messagesRequest(ctx context.Context, b *messagesBody) (llm.Request, llm.Provider, error) {
	var req llm.Request
	provider, _, err := s.svc.LLM.Resolve(b.Model)
	if err != nil {
		return req, nil, err
	}
	if req.System, err = b.systemText(); err != nil {
		return req, nil, err
	}
	for i, m := range b.Messages {
		blocks, err := m.Content.blocks()
		if err != nil {
			return req, nil, ferry.InvalidField(fmt.Sprintf("messages[%d].content", i), err.Error())
		}
		msg := llm.Message{Role: m.Role, Parts: make([]llm.Part, 0, len(blocks))}
		for j, bl := range blocks {
			part, err := s.contentPart(ctx, provider, bl)
			if err != nil {
				if fe, ok := err.(*ferry.Error); ok && fe.Code == ferry.Invalid && len(fe.Fields) == 0 {
					// A refusal of the block itself: name it.
					err = ferry.InvalidField(fmt.Sprintf("messages[%d].content[%d]", i, j), fe.Message)
				}
				return req, nil, err
			}
			msg.Parts = append(msg.Parts, part)
		}
		req.Messages = append(req.Messages, msg)
	}
	if b.MaxTokens != nil {
		req.MaxTokens = *b.MaxTokens
	}
	req.Sampling = llm.Sampling{Temperature: b.Temperature, TopP: b.TopP, TopK: b.TopK, Stop: b.StopSequences}
	if b.Metadata != nil {
		req.Sampling.User = b.Metadata.UserID
	}
	return req, provider, nil
}

// contentPart is block bl as provider p takes it.
func (s *server) contentPart(ctx context.Context, p llm.Provider, bl contentBlock) (llm.Part, error) {
	switch bl.Type {
	case "text":
		return llm.Part{Kind: llm.PartText, Text: bl.Text}, nil
	case "document":
	case "image":
		return llm.Part{}, ferry.Errorf(ferry.Invalid, "image blocks are not supported yet: send text, or a PDF as a document block")
	default:
		return llm.Part{}, ferry.Errorf(ferry.Invalid, "%q blocks are not supported: Ferry relays text and document blocks", bl.Type)
	}
	src := bl.Source
	switch {
	case src == nil:
		return llm.Part{}, ferry.Errorf(ferry.Invalid, "a document needs a source")
	case src.Type == "text" && src.MediaType == "text/plain":
		return llm.Part{Kind: llm.PartText, Text: documentText(bl.Title, src.Data)}, nil
	case src.Type != "base64":
		return llm.Part{}, ferry.Errorf(ferry.Invalid,
			`source type %q is not supported: send a PDF as {"type": "base64", "media_type": "application/pdf", "data": …} or text as {"type": "text", "media_type": "text/plain", "data": …}`, src.Type)
	case src.MediaType != extract.PDFType:
		return llm.Part{}, ferry.Errorf(ferry.Invalid, "a base64 document must be application/pdf, not %q", src.MediaType)
	}
	data, err := base64.StdEncoding.DecodeString(src.Data)
	switch {
	case err != nil:
		return llm.Part{}, ferry.Errorf(ferry.Invalid, "the document's data is not valid base64")
	case !extract.IsPDF(data):
		return llm.Part{}, ferry.Errorf(ferry.Invalid, "the document is not a PDF: it has no %%PDF- header in its first 1024 bytes")
	case p.Accepts(llm.PartDocument):
		return llm.Part{Kind: llm.PartDocument, Document: &llm.Document{Name: bl.Title, MediaType: extract.PDFType, Data: data}}, nil
	case s.svc.PDF == nil:
		return llm.Part{}, ferry.Errorf(ferry.Invalid, "%s models do not read PDFs, and this server does not extract their text: ask an Anthropic model", p.Name())
	}
	doc, err := s.svc.PDF.Extract(ctx, data, extract.Options{})
	if err != nil {
		return llm.Part{}, withoutFields(err)
	}
	if err := doc.RequireText(); err != nil {
		return llm.Part{}, withoutFields(err)
	}
	return llm.Part{Kind: llm.PartText, Text: documentText(bl.Title, pagesText(doc))}, nil
}

// documentText is a document's text for a model, after a line that names
// it, as a stored conversation sends a PDF's text.
func documentText(title, text string) string {
	if title == "" {
		title = "(untitled)"
	}
	return fmt.Sprintf("Document %q:\n\n%s", title, text)
}

// withoutFields is err with its fields dropped when it is a refusal of
// the PDF reader's, which names the upload's form field (file, password):
// here the PDF is a content block, which the caller names.
func withoutFields(err error) error {
	var fe *ferry.Error
	if !errors.As(err, &fe) || fe.Code == ferry.Internal {
		return err
	}
	c := *fe
	c.Fields = nil
	return &c
}

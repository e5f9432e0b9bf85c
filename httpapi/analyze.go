package httpapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strings"

	"github.com/danielgtaylor/huma/v2"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/chat"
	"github.com/ferryhq/ferry/extract"
	"github.com/ferryhq/ferry/llm"
)

// PDFReader reads the text of uploaded PDFs; *extract.PDF is one. Its
// errors are extract's refusals (*ferry.Error) or its own failures.
type PDFReader interface {
	Extract(ctx context.Context, data []byte, o extract.Options) (*extract.Document, error)
}

// DefaultMaxUploadBytes is FERRY_MAX_UPLOAD_BYTES's default, Anthropic's
// request limit: 32 MiB.
const DefaultMaxUploadBytes = 32 << 20

// maxUploadSetting names the setting behind /analyze/pdf's body limit.
const maxUploadSetting = "FERRY_MAX_UPLOAD_BYTES"

// defaultQuestion is the seed's question when a request asks none.
const defaultQuestion = "请总结这份文档的主要内容"

// maxDocumentPages is how many pages of a PDF a model that reads PDFs
// whole takes: Anthropic reads at most 100.
const maxDocumentPages = 100

// maxFieldBytes bounds each text field of the form; the question is a
// message, so it gets what a message may have (in UTF-8, up to 4 bytes a
// character).
const maxFieldBytes = 4 * chat.MaxMessageChars

// analyzeInput is /analyze/pdf's request: a multipart form, read whole
// (up to FERRY_MAX_UPLOAD_BYTES) and parsed here, and the seed's question
// in the query; model and conversation_id may be in either, the form
// winning.
type analyzeInput struct {
	Question       string `query:"question" maxLength:"200000" doc:"The question about the document; the form field question wins. Default: 请总结这份文档的主要内容."`
	Model          string `query:"model" maxLength:"200" doc:"provider/model or a bare name, as in /ai/chat/stream; the form field wins."`
	ConversationID string `query:"conversation_id" maxLength:"64" doc:"Continue this conversation; the form field wins."`
	Cache          string `query:"cache" enum:"true,false" doc:"false: neither answer from the answer cache nor store this answer in it (see FERRY_CACHE_TTL); the form field wins. Default true."`
	ContentType    string `header:"Content-Type"`
	RawBody        []byte `contentType:"multipart/form-data"`
}

// analyzeForm is what the form and the query ask, merged.
type analyzeForm struct {
	file                                      []byte
	filename                                  string
	question, model, conversationID, password string
	cache                                     string // "", "true" or "false"
}

// analyzeOperation is /analyze/pdf: its body is a multipart form whose
// schema is given here, read under its own limit, FERRY_MAX_UPLOAD_BYTES.
func analyzeOperation(maxUpload int64) huma.Operation {
	str := func(doc string) *huma.Schema { return &huma.Schema{Type: "string", Description: doc} }
	return huma.Operation{OperationID: "analyze-pdf", Method: "POST", Path: "/analyze/pdf", Tags: []string{"ai"},
		Summary: "Ask about a PDF, streaming the answer as server-sent events",
		Description: "A multipart form with the PDF in the field `file`. Anthropic models read the PDF itself (at most 100 pages); " +
			"the others its text, extracted page by page. The turn is stored in a conversation with the document, and later turns " +
			"there (conversation_id) still see it. Events as /ai/chat/stream. Refusals before anything is spent: " +
			"not a PDF (415), over FERRY_MAX_UPLOAD_BYTES (413, from Content-Length before the body is read), " +
			"too many pages for the model (413), encrypted without the right password (400), damaged (400), " +
			"no text layer for a model that reads only text (400).",
		MaxBodyBytes: maxUpload,
		// The form is parsed by readAnalyzeForm; huma, which has no
		// multipart format of its own here, would refuse it as 415.
		SkipValidateBody: true,
		Metadata:         map[string]any{bodyLimitKey: maxUploadSetting},
		RequestBody: &huma.RequestBody{Required: true, Content: map[string]*huma.MediaType{"multipart/form-data": {Schema: &huma.Schema{
			Type: "object", Required: []string{"file"},
			Properties: map[string]*huma.Schema{
				"file":            {Type: "string", Format: "binary", Description: "The PDF (recognised by its %PDF- header, whatever its declared type)."},
				"question":        str("The question; wins over the query parameter. Default: 请总结这份文档的主要内容."),
				"model":           str("provider/model or a bare name; default FERRY_DEFAULT_MODEL."),
				"conversation_id": str("Continue this conversation."),
				"password":        str("The user or owner password of an encrypted PDF."),
				"cache":           {Type: "string", Enum: []any{"true", "false"}, Description: "false: neither answer from the answer cache nor store this answer in it; wins over the query parameter. Default true."},
			}}}}},
		Responses: map[string]*huma.Response{"200": {Description: "An event stream, as /ai/chat/stream's.",
			Content: map[string]*huma.MediaType{"text/event-stream": {Schema: &huma.Schema{Type: "string"}}}}},
	}
}

// handleAnalyzePDF checks the upload, reads the PDF, and streams the
// answer as /ai/chat/stream does. Every refusal comes before the model is
// asked: the form, the PDF header, the model, the PDF itself (pages,
// password, damage, text layer), then Prepare's.
func handleAnalyzePDF(s *server, c *chat.Service) func(context.Context, *analyzeInput) (*huma.StreamResponse, error) {
	return func(ctx context.Context, in *analyzeInput) (*huma.StreamResponse, error) {
		f, err := readAnalyzeForm(in)
		if err != nil {
			return nil, err
		}
		doc, err := s.readPDF(ctx, f)
		if err != nil {
			return nil, err
		}
		turn, err := c.Prepare(ctx, principal(ctx), chat.Request{Message: f.question, Model: f.model,
			ConversationID: f.conversationID, Endpoint: "/analyze/pdf", Document: doc, NoCache: f.cache == "false"})
		if err != nil {
			return nil, err
		}
		return streamed(func(w http.ResponseWriter, r *http.Request) {
			setCacheHeader(w.Header(), turn.Cache)
			s.resumable(w, r, &seedDialect{turn: turn}, turn, turn.Stream)
		}), nil
	}
}

// readPDF checks that f's file is a PDF that f's model can read, and
// reads it: its pages, and its text with page markers. A model that reads
// PDFs whole gets the file too, unless it needed a password (the model
// could not open it).
func (s *server) readPDF(ctx context.Context, f *analyzeForm) (*chat.Document, error) {
	if !extract.IsPDF(f.file) {
		return nil, &ferry.Error{Code: ferry.UnsupportedMediaType, Fields: map[string]string{"file": "not a PDF"},
			Message: "the file is not a PDF: it has no %PDF- header in its first 1024 bytes; send a PDF in the field file"}
	}
	provider, _, err := s.svc.LLM.Resolve(f.model)
	if err != nil {
		return nil, err
	}
	whole := provider.Accepts(llm.PartDocument)
	opts := extract.Options{Password: f.password}
	if whole {
		opts.MaxPages = maxDocumentPages
	}
	if s.svc.PDF == nil {
		return nil, ferry.Errorf(ferry.Unavailable, "this server does not read PDFs")
	}
	doc, err := s.svc.PDF.Extract(ctx, f.file, opts)
	var fe *ferry.Error
	if errors.As(err, &fe) && fe.Fields["file"] == "too many pages" {
		return nil, &ferry.Error{Code: fe.Code, Fields: fe.Fields,
			Message: fmt.Sprintf("%s, or ask a model that reads text (%s models read at most %d pages of a PDF)", fe.Message, provider.Name(), maxDocumentPages)}
	}
	if err != nil {
		return nil, err
	}
	if !whole {
		if err := doc.RequireText(); err != nil {
			return nil, err
		}
	}
	d := &chat.Document{Name: f.filename, MediaType: extract.PDFType, Pages: doc.PageCount, Text: pagesText(doc), Data: f.file}
	if whole && doc.Encrypted && f.password != "" {
		// The model would need the password too: it gets the text.
		d.TextOnly = true
	}
	return d, nil
}

// pagesText is the text of doc's pages, each after a "--- page N ---"
// line; a page without text keeps its line.
func pagesText(doc *extract.Document) string {
	var b strings.Builder
	for _, p := range doc.Pages {
		fmt.Fprintf(&b, "--- page %d ---\n", p.Number)
		b.WriteString(strings.TrimRight(p.Text, "\n"))
		b.WriteString("\n\n")
	}
	return strings.TrimRight(b.String(), "\n") + "\n"
}

// readAnalyzeForm parses in's multipart form: one file in the field file,
// and the text fields question, model, conversation_id and password, which
// win over the query's. Anything else is refused, naming the field.
func readAnalyzeForm(in *analyzeInput) (*analyzeForm, error) {
	mt, params, err := mime.ParseMediaType(in.ContentType)
	if err != nil || mt != "multipart/form-data" || params["boundary"] == "" {
		return nil, &ferry.Error{Code: ferry.UnsupportedMediaType, Fields: map[string]string{"body": "not multipart/form-data"},
			Message: "send the PDF as multipart/form-data, in the field file (curl -F file=@doc.pdf)"}
	}
	f := &analyzeForm{question: in.Question, model: in.Model, conversationID: in.ConversationID, cache: in.Cache}
	mr := multipart.NewReader(bytes.NewReader(in.RawBody), params["boundary"])
	seen := map[string]bool{}
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, ferry.InvalidField("body", "not a well-formed multipart form: "+err.Error())
		}
		name := part.FormName()
		if seen[name] {
			return nil, ferry.InvalidField(name, "given more than once")
		}
		seen[name] = true
		if name == "file" {
			// A copy: RawBody's buffer is huma's, reused after the
			// handler returns, while the stream and the writer still
			// need the file.
			if f.file, err = io.ReadAll(part); err != nil {
				return nil, ferry.InvalidField("file", "could not be read: "+err.Error())
			}
			f.filename = part.FileName()
			continue
		}
		dst := map[string]*string{"question": &f.question, "model": &f.model, "conversation_id": &f.conversationID,
			"password": &f.password, "cache": &f.cache}[name]
		if dst == nil {
			return nil, ferry.InvalidField(name, "unknown field: send file, question, model, conversation_id, password and cache")
		}
		v, err := io.ReadAll(io.LimitReader(part, maxFieldBytes+1))
		switch {
		case err != nil:
			return nil, ferry.InvalidField(name, "could not be read: "+err.Error())
		case len(v) > maxFieldBytes:
			return nil, ferry.InvalidField(name, fmt.Sprintf("at most %d bytes", maxFieldBytes))
		case bytes.IndexByte(v, 0) >= 0:
			// PostgreSQL cannot store NUL in text (see refuseNUL, which
			// leaves multipart bodies to their handler).
			return nil, ferry.InvalidField(name, "must not contain a NUL character")
		}
		*dst = string(v)
	}
	switch {
	case !seen["file"]:
		return nil, ferry.InvalidField("file", "required: the PDF, as a file field of the form (curl -F file=@doc.pdf)")
	case len(f.file) == 0:
		return nil, ferry.InvalidField("file", "the file is empty: send a PDF")
	}
	if f.cache != "" && f.cache != "true" && f.cache != "false" {
		return nil, ferry.InvalidField("cache", "true or false")
	}
	if strings.TrimSpace(f.question) == "" {
		f.question = defaultQuestion
	}
	return f, nil
}

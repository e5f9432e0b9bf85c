package httpapi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/extract"
	"github.com/ferryhq/ferry/ingest"
	"github.com/ferryhq/ferry/search"
)

// maxDocumentsPerRequest is how many documents one request may submit.
const maxDocumentsPerRequest = 1000

// collectionBody is a collection with its documents counted by status.
type collectionBody struct {
	Name      string         `json:"name"`
	Documents int            `json:"documents" doc:"How many documents it holds, whatever their status."`
	Status    map[string]int `json:"status" doc:"Documents by status (queued, extracting, chunking, embedding, indexed, failed); statuses with none are absent."`
	Chunks    int64          `json:"chunks" doc:"Chunks in the search index."`
	CreatedAt time.Time      `json:"created_at"`
}

// collectionSummary is a collection as listed.
type collectionSummary struct {
	Name      string    `json:"name"`
	Chunks    int64     `json:"chunks"`
	CreatedAt time.Time `json:"created_at"`
}

// documentBody is a document and where its ingestion is.
type documentBody struct {
	ID         string          `json:"id"`
	Collection string          `json:"collection"`
	ExternalID string          `json:"external_id" doc:"The client's id; posting it again replaces the document. The document's id when none was given."`
	Title      string          `json:"title"`
	Metadata   json.RawMessage `json:"metadata"`
	Status     string          `json:"status" enum:"queued,extracting,chunking,embedding,indexed,failed"`
	Error      string          `json:"error,omitempty" doc:"Why it failed; while it is retried, why the last attempt failed."`
	Pages      int             `json:"pages"`
	Chunks     int             `json:"chunks"`
	CreatedAt  time.Time       `json:"created_at"`
	UpdatedAt  time.Time       `json:"updated_at"`
}

func newDocumentBody(d *search.Document) documentBody {
	return documentBody{ID: d.ID, Collection: d.Collection, ExternalID: d.ExternalID, Title: d.Title, Metadata: d.Metadata,
		Status: string(d.Status), Error: d.Error, Pages: d.Pages, Chunks: d.Chunks, CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt}
}

type collectionPath struct {
	Name string `path:"name" maxLength:"64"`
}

type documentPath struct {
	Name string `path:"name" maxLength:"64"`
	ID   string `path:"id" maxLength:"64"`
}

type createCollectionInput struct {
	Body struct {
		Name string `json:"name" maxLength:"64" doc:"1 to 64 letters, digits, '-', '_' and '.', not starting with '.'."`
	}
}

type collectionOutput struct{ Body collectionBody }

type collectionsOutput struct {
	Body struct {
		Items []collectionSummary `json:"items"`
	}
}

type documentOutput struct{ Body documentBody }

type documentsOutput struct {
	Body struct {
		Items []documentBody `json:"items"`
	}
}

type listDocumentsInput struct {
	Name  string `path:"name" maxLength:"64"`
	After string `query:"after" maxLength:"64" doc:"Only documents after this id (the last of the previous page)."`
	Limit int    `query:"limit" minimum:"1" maximum:"1000" default:"100"`
}

// documentsInput is POST /collections/{name}/documents: a multipart form,
// JSON or NDJSON, read whole and parsed by readDocuments.
type documentsInput struct {
	Name        string `path:"name" maxLength:"64"`
	ContentType string `header:"Content-Type"`
	RawBody     []byte
}

func handleCreateCollection(ing *ingest.Service) func(context.Context, *createCollectionInput) (*collectionOutput, error) {
	return func(ctx context.Context, in *createCollectionInput) (*collectionOutput, error) {
		c, err := ing.Index().CreateCollection(ctx, principal(ctx).User.ID, in.Body.Name)
		if err != nil {
			return nil, err
		}
		return &collectionOutput{Body: collectionBody{Name: c.Name, Status: map[string]int{}, CreatedAt: c.CreatedAt}}, nil
	}
}

func handleListCollections(ing *ingest.Service) func(context.Context, *struct{}) (*collectionsOutput, error) {
	return func(ctx context.Context, _ *struct{}) (*collectionsOutput, error) {
		list, err := ing.Collections(ctx, principal(ctx).User.ID)
		if err != nil {
			return nil, err
		}
		out := &collectionsOutput{}
		out.Body.Items = make([]collectionSummary, len(list))
		for i, c := range list {
			out.Body.Items[i] = collectionSummary{Name: c.Name, Chunks: c.Chunks, CreatedAt: c.CreatedAt}
		}
		return out, nil
	}
}

func handleGetCollection(ing *ingest.Service) func(context.Context, *collectionPath) (*collectionOutput, error) {
	return func(ctx context.Context, in *collectionPath) (*collectionOutput, error) {
		userID := principal(ctx).User.ID
		c, err := ing.Index().Collection(ctx, userID, in.Name)
		if err != nil {
			return nil, err
		}
		counts, err := ing.Counts(ctx, userID, in.Name)
		if err != nil {
			return nil, err
		}
		b := collectionBody{Name: c.Name, Status: map[string]int{}, Chunks: c.Chunks, CreatedAt: c.CreatedAt}
		for st, n := range counts {
			b.Status[string(st)] = n
			b.Documents += n
		}
		return &collectionOutput{Body: b}, nil
	}
}

func handleDeleteCollection(ing *ingest.Service) func(context.Context, *collectionPath) (*struct{}, error) {
	return func(ctx context.Context, in *collectionPath) (*struct{}, error) {
		return nil, ing.Index().DeleteCollection(ctx, principal(ctx).User.ID, in.Name)
	}
}

func handleListDocuments(ing *ingest.Service) func(context.Context, *listDocumentsInput) (*documentsOutput, error) {
	return func(ctx context.Context, in *listDocumentsInput) (*documentsOutput, error) {
		list, err := ing.List(ctx, principal(ctx).User.ID, in.Name, in.After, in.Limit)
		if err != nil {
			return nil, err
		}
		out := &documentsOutput{}
		out.Body.Items = make([]documentBody, len(list))
		for i, d := range list {
			out.Body.Items[i] = newDocumentBody(d)
		}
		return out, nil
	}
}

func handleGetDocument(ing *ingest.Service) func(context.Context, *documentPath) (*documentOutput, error) {
	return func(ctx context.Context, in *documentPath) (*documentOutput, error) {
		d, err := ing.Document(ctx, principal(ctx).User.ID, in.Name, in.ID)
		if err != nil {
			return nil, err
		}
		return &documentOutput{Body: newDocumentBody(d)}, nil
	}
}

func handleDeleteDocument(ing *ingest.Service) func(context.Context, *documentPath) (*struct{}, error) {
	return func(ctx context.Context, in *documentPath) (*struct{}, error) {
		return nil, ing.Delete(ctx, principal(ctx).User.ID, in.Name, in.ID)
	}
}

// addDocumentsOperation is POST /collections/{name}/documents: its body
// is parsed by readDocuments, under its own limit.
func addDocumentsOperation(maxUpload int64) huma.Operation {
	item := &huma.Schema{Type: "object", Required: []string{"text"}, Properties: map[string]*huma.Schema{
		"external_id": {Type: "string", Description: "Your id for the document: posting it again replaces the document."},
		"title":       {Type: "string"},
		"text":        {Type: "string", Description: "The document's text (plain text or Markdown)."},
		"metadata":    {Type: "object", Description: "Any JSON object, kept with the document."},
	}}
	return huma.Operation{OperationID: "add-documents", Method: "POST", Path: "/collections/{name}/documents",
		Tags: []string{"collections"}, Summary: "Add documents to a collection; they are ingested in the background",
		Description: "A multipart form with one or more files in the field `file` (PDF, plain text, Markdown or HTML, recognised by " +
			"their bytes) and, for a single file, optional `external_id`, `title`, `metadata` (a JSON object) and `password` (of an " +
			"encrypted PDF) fields; or a JSON " +
			"object {external_id, title, text, metadata}; or many of those as NDJSON (application/x-ndjson), one a line. " +
			"An `external_id` the collection holds replaces that document. Answers 202 with the documents, queued; " +
			"follow them with GET /collections/{name}/documents/{id}. The collection `default` needs no creating.",
		DefaultStatus: http.StatusAccepted,
		MaxBodyBytes:  maxUpload,
		Metadata:      map[string]any{bodyLimitKey: maxUploadSetting},
		// readDocuments parses every format itself; huma has no multipart
		// or NDJSON format and would refuse them as 415.
		SkipValidateBody: true,
		RequestBody: &huma.RequestBody{Required: true, Content: map[string]*huma.MediaType{
			"application/json":     {Schema: item},
			"application/x-ndjson": {Schema: &huma.Schema{Type: "string", Description: "One JSON object as above per line."}},
			"multipart/form-data": {Schema: &huma.Schema{Type: "object", Required: []string{"file"}, Properties: map[string]*huma.Schema{
				"file":        {Type: "string", Format: "binary", Description: "A PDF, text, Markdown or HTML file; repeat the field for several."},
				"external_id": {Type: "string"}, "title": {Type: "string"},
				"metadata": {Type: "string", Description: "A JSON object."},
				"password": {Type: "string", Description: "The user or owner password of an encrypted PDF; it is checked now and not kept (the PDF is stored without its encryption)."},
			}}},
		}},
	}
}

// errNoIngest answers the collection routes of a server built without an
// ingest.Service.
var errNoIngest = ferry.Errorf(ferry.Unavailable, "collections are not available on this server")

// needIngest wraps a collection handler: without an ingest.Service it
// answers 503.
func needIngest[I, O any](ing *ingest.Service, h func(context.Context, *I) (*O, error)) func(context.Context, *I) (*O, error) {
	if ing != nil {
		return h
	}
	return func(context.Context, *I) (*O, error) { return nil, errNoIngest }
}

func handleAddDocuments(ing *ingest.Service) func(context.Context, *documentsInput) (*documentsOutput, error) {
	return func(ctx context.Context, in *documentsInput) (*documentsOutput, error) {
		uploads, err := readDocuments(in)
		if err != nil {
			return nil, err
		}
		docs, err := ing.Submit(ctx, principal(ctx).User.ID, in.Name, uploads)
		if err != nil {
			return nil, err
		}
		out := &documentsOutput{}
		out.Body.Items = make([]documentBody, len(docs))
		for i, d := range docs {
			out.Body.Items[i] = newDocumentBody(d)
		}
		return out, nil
	}
}

// readDocuments parses the uploads of in after its Content-Type:
// multipart/form-data, JSON (also when none is given) or NDJSON.
func readDocuments(in *documentsInput) ([]ingest.Upload, error) {
	mt, params, err := mime.ParseMediaType(in.ContentType)
	if in.ContentType == "" {
		mt, err = "application/json", nil
	}
	if err != nil {
		return nil, unsupportedDocuments()
	}
	switch mt {
	case "multipart/form-data":
		return readDocumentForm(in.RawBody, params["boundary"])
	case "application/json":
		u, err := decodeDocument(in.RawBody, "")
		if err != nil {
			return nil, err
		}
		return []ingest.Upload{u}, nil
	case "application/x-ndjson", "application/jsonl", "application/jsonlines":
		return readNDJSON(in.RawBody)
	}
	return nil, unsupportedDocuments()
}

func unsupportedDocuments() error {
	return &ferry.Error{Code: ferry.UnsupportedMediaType, Fields: map[string]string{"body": "unsupported Content-Type"},
		Message: "send files as multipart/form-data in the field file (curl -F file=@doc.pdf), " +
			"a JSON object {external_id, title, text, metadata}, or NDJSON of those (application/x-ndjson)"}
}

// jsonDocument is a document sent as JSON.
type jsonDocument struct {
	ExternalID string          `json:"external_id"`
	Title      string          `json:"title"`
	Text       *string         `json:"text"`
	Metadata   json.RawMessage `json:"metadata"`
}

// decodeDocument decodes one JSON document; prefix names it in errors
// ("documents[3]."), or is "" for a lone one.
func decodeDocument(data []byte, prefix string) (ingest.Upload, error) {
	var d jsonDocument
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return ingest.Upload{}, jsonFieldError(err, prefix)
	}
	if dec.More() {
		return ingest.Upload{}, ferry.InvalidField(prefix+"body", "one JSON object expected: send several as NDJSON (application/x-ndjson)")
	}
	if d.Text == nil {
		return ingest.Upload{}, ferry.InvalidField(prefix+"text", "required")
	}
	if string(d.Metadata) == "null" {
		d.Metadata = nil
	}
	return ingest.Upload{ExternalID: d.ExternalID, Title: d.Title, Metadata: d.Metadata, Content: []byte(*d.Text),
		MediaType: extract.PlainType}, nil
}

// jsonFieldError turns a decoding error into Invalid, naming the field
// that was wrong where encoding/json says which.
func jsonFieldError(err error, prefix string) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return ferry.InvalidField(prefix+te.Field, "must be a "+te.Type.String())
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return ferry.InvalidField(prefix+strings.Trim(name, `"`), "unknown field: send external_id, title, text and metadata")
	}
	return ferry.InvalidField(prefix+"body", "not a JSON object: "+err.Error())
}

// readNDJSON decodes one document a line; blank lines are skipped.
func readNDJSON(body []byte) ([]ingest.Upload, error) {
	var out []ingest.Upload
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(nil, len(body)+1)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		if len(out) == maxDocumentsPerRequest {
			return nil, ferry.InvalidField("body", fmt.Sprintf("at most %d documents a request", maxDocumentsPerRequest))
		}
		u, err := decodeDocument(line, fmt.Sprintf("documents[%d].", len(out)))
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	if err := sc.Err(); err != nil {
		return nil, ferry.InvalidField("body", "could not be read: "+err.Error())
	}
	if len(out) == 0 {
		return nil, ferry.InvalidField("body", "no documents: send one JSON object a line")
	}
	return out, nil
}

// readDocumentForm parses a multipart form: files in the field file, and
// external_id, title, metadata and password for a single file.
func readDocumentForm(body []byte, boundary string) ([]ingest.Upload, error) {
	if boundary == "" {
		return nil, unsupportedDocuments()
	}
	var out []ingest.Upload
	fields := map[string]string{}
	mr := multipart.NewReader(bytes.NewReader(body), boundary)
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, ferry.InvalidField("body", "not a well-formed multipart form: "+err.Error())
		}
		name := part.FormName()
		switch name {
		case "file":
			u, err := readFilePart(part, len(out))
			if err != nil {
				return nil, err
			}
			if len(out) == maxDocumentsPerRequest {
				return nil, ferry.InvalidField("file", fmt.Sprintf("at most %d files a request", maxDocumentsPerRequest))
			}
			out = append(out, u)
		case "external_id", "title", "metadata", "password":
			if _, ok := fields[name]; ok {
				return nil, ferry.InvalidField(name, "given more than once")
			}
			v, err := io.ReadAll(io.LimitReader(part, 64<<10+1))
			switch {
			case err != nil:
				return nil, ferry.InvalidField(name, "could not be read: "+err.Error())
			case len(v) > 64<<10:
				return nil, ferry.InvalidField(name, "at most 64 KiB")
			case bytes.IndexByte(v, 0) >= 0:
				return nil, ferry.InvalidField(name, "must not contain a NUL character")
			}
			fields[name] = string(v)
		default:
			return nil, ferry.InvalidField(name, "unknown field: send file, and external_id, title, metadata and password")
		}
	}
	if len(out) == 0 {
		return nil, ferry.InvalidField("file", "required: the document, as a file field of the form (curl -F file=@doc.pdf)")
	}
	if len(fields) > 0 && len(out) > 1 {
		for name := range fields {
			return nil, ferry.InvalidField(name, "only with a single file: send several documents with their ids as NDJSON")
		}
	}
	if len(fields) > 0 {
		out[0].ExternalID, out[0].Title, out[0].Password = fields["external_id"], fields["title"], fields["password"]
		if m := fields["metadata"]; m != "" {
			out[0].Metadata = json.RawMessage(m)
		}
	}
	return out, nil
}

// readFilePart reads the i-th file of a form and says what it is from
// its bytes (see extract.Detect).
func readFilePart(part *multipart.Part, i int) (ingest.Upload, error) {
	// A copy: the body's buffer is huma's, reused once the handler
	// returns, while the document's bytes are written in the request.
	data, err := io.ReadAll(part)
	if err != nil {
		return ingest.Upload{}, ferry.InvalidField("file", "could not be read: "+err.Error())
	}
	filename := strings.ToValidUTF8(strings.ReplaceAll(part.FileName(), "\x00", ""), "")
	mt, err := extract.Detect(data, part.Header.Get("Content-Type"), filename)
	if err != nil {
		var fe *ferry.Error
		if errors.As(err, &fe) {
			fe.Message = fmt.Sprintf("file %d (%s): %s", i+1, filename, fe.Message)
		}
		return ingest.Upload{}, err
	}
	return ingest.Upload{Content: data, MediaType: mt, Filename: filename}, nil
}

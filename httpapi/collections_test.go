package httpapi_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/auth"
	"github.com/ferryhq/ferry/extract"
	"github.com/ferryhq/ferry/httpapi"
	"github.com/ferryhq/ferry/ingest"
	"github.com/ferryhq/ferry/limit"
	"github.com/ferryhq/ferry/search"
	"github.com/ferryhq/ferry/store"
	"github.com/ferryhq/ferry/store/storetest"
)

// collectionsEnv is the API with collections: a harness whose server has
// an ingest.Service, its workers running.
type collectionsEnv struct {
	*harness
	ing *ingest.Service
}

// newCollectionsEnv builds the API over a fresh database of the engine
// with ingestion running, stopped when the test ends.
func newCollectionsEnv(t *testing.T, engine string) *collectionsEnv {
	t.Helper()
	db := storetest.Database(t, engine)
	st, err := store.Open(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	secret := bytes.Repeat([]byte{7}, auth.MinSecretKeyLen)
	tokens, err := auth.NewTokens(secret)
	if err != nil {
		t.Fatal(err)
	}
	free := limit.Policy{Window: time.Hour, SlowAfter: 1000, BlockAfter: 1000}
	svc := auth.NewService(st, tokens, limit.NewMemoryFailures(limit.Policy{}, nil), auth.ServiceOptions{
		Hasher: auth.Hasher{Params: auth.TestPasswordParams}, Registrations: limit.NewMemoryFailures(free, nil)})
	pdf, err := testPDFReader()
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ing, err := ingest.New(context.Background(), st, db, search.New(st), pdf,
		ingest.Options{RetryDelay: 20 * time.Millisecond, PollInterval: 50 * time.Millisecond}, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := ing.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ing.Stop(ctx)
	})
	logs := &syncBuffer{}
	h := httpapi.NewServer(slog.New(slog.NewJSONHandler(logs, nil)), httpapi.Options{Version: "test", MaxBodyBytes: 1 << 20,
		MaxUploadBytes: 4 << 20, Draining: context.Background()}, httpapi.Services{Store: st, Auth: svc, Ingest: ing})
	return &collectionsEnv{harness: &harness{handler: h, store: st, auth: svc, secret: secret, logs: logs}, ing: ing}
}

// docForm is a multipart body: files (name → bytes) and text fields.
func docForm(t *testing.T, files map[string][]byte, fields map[string]string) (body []byte, contentType string) {
	t.Helper()
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	for name, data := range files {
		fw, err := w.CreateFormFile("file", name)
		if err != nil {
			t.Fatal(err)
		}
		fw.Write(data)
	}
	for k, v := range fields {
		w.WriteField(k, v)
	}
	w.Close()
	return b.Bytes(), w.FormDataContentType()
}

// items returns the ids and external ids of a list answer's items.
func items(t *testing.T, res response) (ids, externalIDs []string) {
	t.Helper()
	list, ok := res.json(t)["items"].([]any)
	if !ok {
		t.Fatalf("no items: %s", res.body)
	}
	for _, it := range list {
		m := it.(map[string]any)
		ids = append(ids, m["id"].(string))
		externalIDs = append(externalIDs, m["external_id"].(string))
	}
	return ids, externalIDs
}

// waitIndexed polls the document until it is indexed or failed and
// returns its last answer.
func (e *collectionsEnv) waitIndexed(t *testing.T, cred, collection, id string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		res := e.do(t, request{method: "GET", path: "/collections/" + collection + "/documents/" + id, auth: cred})
		if res.status != http.StatusOK {
			t.Fatalf("GET document: %d %s", res.status, res.body)
		}
		m := res.json(t)
		if m["status"] == "indexed" || m["status"] == "failed" {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("document %s still %v after 60 s", id, m["status"])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// found returns the ids of the documents a search of the user's collection
// finds.
func (e *collectionsEnv) found(t *testing.T, userID, collection, query string) []string {
	t.Helper()
	hits, err := e.ing.Index().Lexical(context.Background(), userID, collection, query, 10)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, h := range hits {
		ids = append(ids, h.DocumentID)
	}
	return ids
}

func TestCollectionsAPI(t *testing.T) {
	t.Parallel()
	for _, engine := range storetest.Engines(t) {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			e := newCollectionsEnv(t, engine)
			ann, bob := e.signUp(t, "ann@example.com"), e.signUp(t, "bob@example.com")
			notPDF, notPDFType := docForm(t, map[string][]byte{"a.pdf": []byte("plain words, not a PDF")}, nil)
			binary, binaryType := docForm(t, map[string][]byte{"x.bin": {0, 1, 2, 3, 0xff}}, nil)
			e.run(t, []scenario{
				{name: "unauthenticated", request: request{method: "GET", path: "/collections"}, status: 401, problem: true},
				{name: "list has default", request: request{method: "GET", path: "/collections", auth: ann.access}, status: 200,
					contains: []string{`"name":"default"`}},
				{name: "create", request: request{method: "POST", path: "/collections", auth: ann.access, body: map[string]string{"name": "papers"}},
					status: 201, contains: []string{`"name":"papers"`}},
				{name: "create again", request: request{method: "POST", path: "/collections", auth: ann.access, body: map[string]string{"name": "papers"}},
					status: 409, problem: true},
				{name: "bad name", request: request{method: "POST", path: "/collections", auth: ann.access, body: map[string]string{"name": "a b"}},
					status: 400, problem: true, contains: []string{"name"}},
				{name: "get empty default", request: request{method: "GET", path: "/collections/default", auth: ann.access}, status: 200,
					contains: []string{`"documents":0`}},
				{name: "other user's collection", request: request{method: "GET", path: "/collections/papers", auth: bob.access}, status: 404, problem: true},
				{name: "other user's documents", request: request{method: "GET", path: "/collections/papers/documents", auth: bob.access}, status: 404, problem: true},
				{name: "post to other user's", request: request{method: "POST", path: "/collections/papers/documents", auth: bob.access,
					body: map[string]string{"text": "x"}}, status: 404, problem: true},
				{name: "missing text", request: request{method: "POST", path: "/collections/papers/documents", auth: ann.access,
					body: map[string]string{"title": "x"}}, status: 400, problem: true, contains: []string{"text"}},
				{name: "unknown field", request: request{method: "POST", path: "/collections/papers/documents", auth: ann.access,
					body: map[string]string{"text": "x", "colour": "red"}}, status: 400, problem: true, contains: []string{"colour"}},
				{name: "metadata not an object", request: request{method: "POST", path: "/collections/papers/documents", auth: ann.access,
					body: map[string]any{"text": "x", "metadata": []int{1}}}, status: 400, problem: true, contains: []string{"metadata"}},
				{name: "bad NDJSON line", request: request{method: "POST", path: "/collections/papers/documents", auth: ann.access,
					body: "{\"text\":\"a\"}\n{\"text\":5}\n", header: map[string]string{"Content-Type": "application/x-ndjson"}},
					status: 400, problem: true, contains: []string{"documents[1].text"}},
				{name: "unsupported type", request: request{method: "POST", path: "/collections/papers/documents", auth: ann.access,
					body: "x", header: map[string]string{"Content-Type": "image/png"}}, status: 415, problem: true},
				{name: "named PDF that is not", request: request{method: "POST", path: "/collections/papers/documents", auth: ann.access,
					body: notPDF, header: map[string]string{"Content-Type": notPDFType}}, status: 415, problem: true},
				{name: "binary file", request: request{method: "POST", path: "/collections/papers/documents", auth: ann.access,
					body: binary, header: map[string]string{"Content-Type": binaryType}}, status: 415, problem: true},
				{name: "nothing was added", request: request{method: "GET", path: "/collections/papers", auth: ann.access}, status: 200,
					contains: []string{`"documents":0`}},
				{name: "delete other user's", request: request{method: "DELETE", path: "/collections/papers", auth: bob.access}, status: 404, problem: true},
			})
		})
	}
}

func TestCollectionsIngestion(t *testing.T) {
	t.Parallel()
	pdf := readSharedPDF(t, fourPages)
	for _, engine := range storetest.Engines(t) {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			e := newCollectionsEnv(t, engine)
			ann, bob := e.signUp(t, "ann@example.com"), e.signUp(t, "bob@example.com")
			// A PDF as a form, with its id and metadata.
			body, ct := docForm(t, map[string][]byte{"paper.pdf": pdf}, map[string]string{"external_id": "paper-1", "metadata": `{"year":2024}`})
			res := e.do(t, request{method: "POST", path: "/collections/default/documents", auth: ann.access, body: body,
				header: map[string]string{"Content-Type": ct}})
			if res.status != http.StatusAccepted || !strings.Contains(res.body, `"status":"queued"`) {
				t.Fatalf("POST PDF: %d %s", res.status, res.body)
			}
			pdfID, _ := items(t, res)
			// Two text documents as NDJSON.
			res = e.do(t, request{method: "POST", path: "/collections/default/documents", auth: ann.access,
				header: map[string]string{"Content-Type": "application/x-ndjson"},
				body: "{\"external_id\":\"n1\",\"title\":\"Owls\",\"text\":\"Owls hunt at night and see well in the dark.\"}\n" +
					"{\"external_id\":\"n2\",\"title\":\"Bees\",\"text\":\"Bees make honey from the nectar of flowers.\"}\n"})
			if res.status != http.StatusAccepted {
				t.Fatalf("POST NDJSON: %d %s", res.status, res.body)
			}
			textIDs, ext := items(t, res)
			if len(textIDs) != 2 || ext[0] != "n1" || ext[1] != "n2" {
				t.Fatalf("NDJSON gave %v %v; want two documents n1, n2", textIDs, ext)
			}
			got := e.waitIndexed(t, ann.access, "default", pdfID[0])
			if got["status"] != "indexed" || got["pages"] != float64(4) || got["chunks"].(float64) < 1 ||
				got["external_id"] != "paper-1" || got["metadata"].(map[string]any)["year"] != float64(2024) {
				t.Fatalf("PDF document: %v; want indexed, 4 pages, its id and metadata", got)
			}
			for _, id := range textIDs {
				if got := e.waitIndexed(t, ann.access, "default", id); got["status"] != "indexed" {
					t.Fatalf("text document: %v; want indexed", got)
				}
			}
			if ids := e.found(t, ann.id, "default", "honey nectar"); len(ids) == 0 || ids[0] != textIDs[1] {
				t.Fatalf("search found %v; want %s first", ids, textIDs[1])
			}
			res = e.do(t, request{method: "GET", path: "/collections/default", auth: ann.access})
			if !strings.Contains(res.body, `"documents":3`) || !strings.Contains(res.body, `"indexed":3`) {
				t.Fatalf("collection: %s; want 3 documents, 3 indexed", res.body)
			}
			// Re-posting an external_id replaces the document: same id,
			// new text, one document.
			res = e.do(t, request{method: "POST", path: "/collections/default/documents", auth: ann.access,
				body: map[string]string{"external_id": "n2", "title": "Wasps", "text": "Wasps build paper nests."}})
			again, _ := items(t, res)
			if res.status != http.StatusAccepted || again[0] != textIDs[1] {
				t.Fatalf("re-POST n2: %d %s; want 202 with id %s", res.status, res.body, textIDs[1])
			}
			if got := e.waitIndexed(t, ann.access, "default", again[0]); got["title"] != "Wasps" {
				t.Fatalf("replaced document: %v", got)
			}
			if ids := e.found(t, ann.id, "default", "honey nectar"); len(ids) != 0 {
				t.Fatalf("the replaced text is still found: %v", ids)
			}
			res = e.do(t, request{method: "GET", path: "/collections/default/documents", auth: ann.access})
			if ids, _ := items(t, res); len(ids) != 3 {
				t.Fatalf("list: %d documents; want 3", len(ids))
			}
			// Bob sees none of it.
			for _, r := range []request{
				{method: "GET", path: "/collections/default/documents/" + textIDs[0], auth: bob.access},
				{method: "DELETE", path: "/collections/default/documents/" + textIDs[0], auth: bob.access},
			} {
				if res := e.do(t, r); res.status != http.StatusNotFound {
					t.Fatalf("bob %s %s: %d; want 404", r.method, r.path, res.status)
				}
			}
			if res := e.do(t, request{method: "GET", path: "/collections/default/documents", auth: bob.access}); !strings.Contains(res.body, `"items":[]`) {
				t.Fatalf("bob's list: %s; want empty", res.body)
			}
			if ids := e.found(t, bob.id, "default", "owls night"); len(ids) != 0 {
				t.Fatalf("bob's search finds ann's documents: %v", ids)
			}
			// Deleting removes it from search at once.
			if ids := e.found(t, ann.id, "default", "owls night"); len(ids) != 1 {
				t.Fatalf("before delete: %v; want the owls", ids)
			}
			if res := e.do(t, request{method: "DELETE", path: "/collections/default/documents/" + textIDs[0], auth: ann.access}); res.status != http.StatusNoContent {
				t.Fatalf("DELETE: %d %s", res.status, res.body)
			}
			if ids := e.found(t, ann.id, "default", "owls night"); len(ids) != 0 {
				t.Fatalf("a deleted document is found: %v", ids)
			}
			if res := e.do(t, request{method: "GET", path: fmt.Sprintf("/collections/default/documents/%s", textIDs[0]), auth: ann.access}); res.status != http.StatusNotFound {
				t.Fatalf("GET deleted: %d; want 404", res.status)
			}
		})
	}
}

func TestDocumentEvents(t *testing.T) {
	t.Parallel()
	e := newCollectionsEnv(t, "sqlite")
	ann, bob := e.signUp(t, "ann@example.com"), e.signUp(t, "bob@example.com")
	res := e.do(t, request{method: "POST", path: "/collections/default/documents", auth: ann.access,
		body: map[string]string{"text": "Lighthouses guide ships along the coast."}})
	ids, _ := items(t, res)
	path := "/collections/default/documents/" + ids[0] + "/events"
	if res := e.do(t, request{method: "GET", path: path, auth: bob.access}); res.status != http.StatusNotFound {
		t.Fatalf("bob following ann's document: %d; want 404", res.status)
	}
	// The stream follows the document until it is indexed, then ends.
	res = e.do(t, request{method: "GET", path: path, auth: ann.access})
	if res.status != http.StatusOK || !strings.HasPrefix(res.header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("events: %d %s", res.status, res.header.Get("Content-Type"))
	}
	events := strings.Split(strings.TrimSpace(res.body), "\n\n")
	lastEvent := events[len(events)-1]
	if !strings.Contains(events[0], `"id":"`+ids[0]+`"`) || !strings.Contains(lastEvent, `"status":"indexed"`) ||
		!strings.Contains(lastEvent, `"done":true`) || !strings.Contains(lastEvent, `"chunks":1`) {
		t.Fatalf("events: %s; want the document first and indexed, done, last", res.body)
	}
	if strings.Count(res.body, `"done":true`) != 1 {
		t.Fatalf("events: %s; want one done event", res.body)
	}
	// A document already indexed: one event, done.
	res = e.do(t, request{method: "GET", path: path, auth: ann.access})
	if strings.Count(res.body, "data: ") != 1 || !strings.Contains(res.body, `"done":true`) {
		t.Fatalf("events of an indexed document: %s; want one done event", res.body)
	}
}

// TestCollectionsEncryptedPDF uploads a real password-protected PDF:
// without its password the document fails with a reason that asks for the
// password field; a wrong password is refused at once; with the right one
// it is indexed and found, and what is stored is no longer encrypted.
func TestCollectionsEncryptedPDF(t *testing.T) {
	t.Parallel()
	pdf := readSharedPDF(t, "pypdf-sample-files/005-libreoffice-writer-password/libreoffice-writer-password.pdf")
	for _, engine := range storetest.Engines(t) {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			e := newCollectionsEnv(t, engine)
			ann := e.signUp(t, "ann@example.com")
			post := func(fields map[string]string) response {
				body, ct := docForm(t, map[string][]byte{"locked.pdf": pdf}, fields)
				return e.do(t, request{method: "POST", path: "/collections/default/documents", auth: ann.access, body: body,
					header: map[string]string{"Content-Type": ct}})
			}
			res := post(map[string]string{"external_id": "locked", "password": "wrong"})
			if res.status != http.StatusBadRequest || !strings.Contains(res.body, "password") {
				t.Fatalf("a wrong password: %d %s; want 400 naming password", res.status, res.body)
			}
			res = post(map[string]string{"external_id": "locked"})
			if res.status != http.StatusAccepted {
				t.Fatalf("no password: %d %s", res.status, res.body)
			}
			ids, _ := items(t, res)
			if got := e.waitIndexed(t, ann.access, "default", ids[0]); got["status"] != "failed" ||
				!strings.Contains(got["error"].(string), "password field") {
				t.Fatalf("without its password: %v; want failed, asking for the password field", got)
			}
			res = post(map[string]string{"external_id": "locked", "password": "openpassword"})
			if res.status != http.StatusAccepted {
				t.Fatalf("the right password: %d %s", res.status, res.body)
			}
			if got := e.waitIndexed(t, ann.access, "default", ids[0]); got["status"] != "indexed" || got["pages"] != float64(1) {
				t.Fatalf("with its password: %v; want indexed, 1 page", got)
			}
			reader, err := testPDFReader()
			if err != nil {
				t.Fatal(err)
			}
			doc, err := reader.Extract(context.Background(), pdf, extract.Options{Password: "openpassword"})
			if err != nil {
				t.Fatal(err)
			}
			words := strings.Fields(doc.Pages[0].Text)
			if len(words) > 8 {
				words = words[:8]
			}
			if found := e.found(t, ann.id, "default", strings.Join(words, " ")); len(found) != 1 || found[0] != ids[0] {
				t.Errorf("search found %v; want %s", found, ids[0])
			}
			// Plain text takes no password.
			body, ct := docForm(t, map[string][]byte{"a.txt": []byte("plain words")}, map[string]string{"password": "x"})
			res = e.do(t, request{method: "POST", path: "/collections/default/documents", auth: ann.access, body: body,
				header: map[string]string{"Content-Type": ct}})
			if res.status != http.StatusBadRequest || !strings.Contains(res.body, "password") {
				t.Errorf("a password with a text file: %d %s; want 400", res.status, res.body)
			}
		})
	}
}

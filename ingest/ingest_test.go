package ingest

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/config"
	"github.com/ferryhq/ferry/extract"
	"github.com/ferryhq/ferry/search"
	"github.com/ferryhq/ferry/store"
	"github.com/ferryhq/ferry/store/storetest"
)

// pdfDir holds the shared real-world PDFs.
const pdfDir = "../../shared/data/pdfs"

// shared is the one PDF reader the tests share: starting PDFium costs
// seconds.
var shared struct {
	once sync.Once
	pdf  *extract.PDF
	err  error
}

// testPDF returns the shared PDF reader, its compiled code cached between
// runs as FERRY_DATA_DIR caches it between restarts.
func testPDF(t testing.TB) *extract.PDF {
	t.Helper()
	shared.once.Do(func() {
		dir, err := os.UserCacheDir()
		if err != nil {
			dir = os.TempDir()
		}
		shared.pdf, shared.err = extract.NewPDF(extract.PDFOptions{CacheDir: filepath.Join(dir, "ferry-test", "pdfium")})
	})
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.pdf
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.pdf != nil {
		shared.pdf.Close()
	}
	os.Exit(code)
}

// env is a migrated database and what ingestion runs on.
type env struct {
	db config.Database
	st *store.Store
	ix *search.Index
}

// newEnv opens a fresh migrated database of the engine.
func newEnv(t *testing.T, engine string) *env {
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
	return &env{db: db, st: st, ix: search.New(st)}
}

// eachEngine runs fn once per engine on a fresh env.
func eachEngine(t *testing.T, fn func(t *testing.T, e *env)) {
	for _, engine := range storetest.Engines(t) {
		t.Run(engine, func(t *testing.T) { fn(t, newEnv(t, engine)) })
	}
}

// service returns a Service on e with fast retries and polling, not
// started; it is stopped when the test ends.
func (e *env) service(t *testing.T, opts Options) *Service {
	t.Helper()
	opts.RetryDelay = cmpOr(opts.RetryDelay, 20*time.Millisecond)
	opts.PollInterval = cmpOr(opts.PollInterval, 50*time.Millisecond)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := New(context.Background(), e.st, e.db, e.ix, testPDF(t), opts, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Stop(ctx)
	})
	return s
}

func cmpOr(a, b time.Duration) time.Duration {
	if a != 0 {
		return a
	}
	return b
}

// newUser stores a user and returns its id.
func (e *env) newUser(t *testing.T, name string) string {
	t.Helper()
	u := &ferry.User{ID: "u-" + name, Email: name + "@example.com", Name: name, Role: ferry.RoleUser}
	if err := e.st.CreateUser(context.Background(), u); err != nil {
		t.Fatal(err)
	}
	return u.ID
}

// submit submits one upload and returns its document.
func submit(t *testing.T, s *Service, userID, collection string, u Upload) *search.Document {
	t.Helper()
	docs, err := s.Submit(context.Background(), userID, collection, []Upload{u})
	if err != nil {
		t.Fatal(err)
	}
	return docs[0]
}

// text is a text upload.
func text(externalID, title, body string) Upload {
	return Upload{ExternalID: externalID, Title: title, Content: []byte(body), MediaType: extract.PlainType}
}

// waitFor waits until the document reaches a final status (indexed or
// failed) and returns it.
func waitFor(t *testing.T, s *Service, userID, collection, id string) *search.Document {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		d, err := s.Document(context.Background(), userID, collection, id)
		if err != nil {
			t.Fatal(err)
		}
		if d.Status == search.StatusIndexed || d.Status == search.StatusFailed {
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("document %s still %s (error %q) after 60 s", id, d.Status, d.Error)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// hits returns the ids of the documents a lexical search finds.
func hits(t *testing.T, ix *search.Index, userID, collection, query string) []string {
	t.Helper()
	hs, err := ix.Lexical(context.Background(), userID, collection, query, 10)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, h := range hs {
		ids = append(ids, h.DocumentID)
	}
	return ids
}

func TestIngestPDFAndText(t *testing.T) {
	pdf, err := os.ReadFile(filepath.Join(pdfDir, "pypdf-resources", "crazyones.pdf"))
	if err != nil {
		t.Fatal(err)
	}
	eachEngine(t, func(t *testing.T, e *env) {
		s := e.service(t, Options{})
		if err := s.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		u := e.newUser(t, "ann")
		p := submit(t, s, u, "default", Upload{Content: pdf, MediaType: extract.PDFType, Filename: "crazyones.pdf"})
		if p.Status != search.StatusQueued || p.ExternalID != p.ID {
			t.Fatalf("submitted: status %s, external_id %q; want queued, the id", p.Status, p.ExternalID)
		}
		tx := submit(t, s, u, "default", text("note-1", "Tides", "The moon pulls the oceans into tides twice a day."))
		got := waitFor(t, s, u, "default", p.ID)
		if got.Status != search.StatusIndexed || got.Pages != 1 || got.Chunks < 1 || got.Title != "crazyones" {
			t.Fatalf("PDF: %+v; want indexed, 1 page, chunks, title from the file name", got)
		}
		if got := waitFor(t, s, u, "default", tx.ID); got.Status != search.StatusIndexed || got.Chunks != 1 {
			t.Fatalf("text: %+v; want indexed with 1 chunk", got)
		}
		if ids := hits(t, e.ix, u, "default", "misfits rebels troublemakers"); len(ids) == 0 || ids[0] != p.ID {
			t.Fatalf("search for the PDF's words found %v; want %s first", ids, p.ID)
		}
		if ids := hits(t, e.ix, u, "default", "moon tides"); len(ids) == 0 || ids[0] != tx.ID {
			t.Fatalf("search for the text's words found %v; want %s first", ids, tx.ID)
		}
		counts, err := s.Counts(context.Background(), u, "default")
		if err != nil || counts[search.StatusIndexed] != 2 || len(counts) != 1 {
			t.Fatalf("counts %v, %v; want 2 indexed", counts, err)
		}
		// The source is gone once indexed.
		var n int
		e.st.Reader().QueryRow(`SELECT COUNT(*) FROM document_sources`).Scan(&n)
		if n != 0 {
			t.Fatalf("%d sources left after indexing; want 0", n)
		}
	})
}

func TestIngestResumesAfterRestart(t *testing.T) {
	eachEngine(t, func(t *testing.T, e *env) {
		u := e.newUser(t, "ann")
		// An instance that accepts the document and stops (or dies)
		// before any worker took its job.
		first := e.service(t, Options{})
		d := submit(t, first, u, "default", text("", "Glaciers", "Glaciers carve valleys over thousands of years."))
		if err := first.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got, _ := first.Document(context.Background(), u, "default", d.ID); got.Status != search.StatusQueued {
			t.Fatalf("before the restart: %s; want queued", got.Status)
		}
		second := e.service(t, Options{})
		if err := second.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := waitFor(t, second, u, "default", d.ID); got.Status != search.StatusIndexed {
			t.Fatalf("after the restart: %+v; want indexed", got)
		}
		if ids := hits(t, e.ix, u, "default", "glaciers valleys"); len(ids) != 1 || ids[0] != d.ID {
			t.Fatalf("search found %v; want %s", ids, d.ID)
		}
	})
}

func TestIngestInterruptedMidJobResumes(t *testing.T) {
	eachEngine(t, func(t *testing.T, e *env) {
		u := e.newUser(t, "ann")
		// The first instance's embedding stage blocks until its workers
		// are stopped: the job is cut off mid-way, after extracting and
		// chunking.
		entered := make(chan struct{}, 1)
		first := e.service(t, Options{Embed: func(ctx context.Context, _ *search.Document, _ []search.Chunk) error {
			entered <- struct{}{}
			<-ctx.Done()
			return ctx.Err()
		}})
		if err := first.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		d := submit(t, first, u, "default", text("k", "Volcanoes", "Volcanoes erupt molten rock called lava."))
		select {
		case <-entered:
		case <-time.After(30 * time.Second):
			t.Fatal("the job never reached the embedding stage")
		}
		got, _ := first.Document(context.Background(), u, "default", d.ID)
		if got.Status != search.StatusEmbedding || got.Pages != 1 {
			t.Fatalf("mid-way: %s, %d pages; want embedding, 1", got.Status, got.Pages)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		first.Stop(ctx)
		second := e.service(t, Options{})
		if err := second.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := waitFor(t, second, u, "default", d.ID); got.Status != search.StatusIndexed || got.Chunks != 1 {
			t.Fatalf("after the restart: %+v; want indexed", got)
		}
		if ids := hits(t, e.ix, u, "default", "lava"); len(ids) != 1 {
			t.Fatalf("search found %v; want the document", ids)
		}
	})
}

func TestIngestFailures(t *testing.T) {
	eachEngine(t, func(t *testing.T, e *env) {
		u := e.newUser(t, "ann")
		var calls atomic.Int32
		s := e.service(t, Options{MaxAttempts: 3, Embed: func(context.Context, *search.Document, []search.Chunk) error {
			calls.Add(1)
			return errors.New("the embedder is down")
		}})
		if err := s.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		// A stage that keeps failing: retried, then failed with its reason.
		d := submit(t, s, u, "default", text("x", "Comets", "Comets have icy nuclei."))
		got := waitFor(t, s, u, "default", d.ID)
		if got.Status != search.StatusFailed || !strings.Contains(got.Error, "the embedder is down") {
			t.Fatalf("%+v; want failed with the embedder's error", got)
		}
		if n := calls.Load(); n != 3 {
			t.Fatalf("the failing stage ran %d times; want 3 (MaxAttempts)", n)
		}
		if ids := hits(t, e.ix, u, "default", "comets"); len(ids) != 0 {
			t.Fatalf("a failed document is found: %v", ids)
		}
		// A damaged PDF is refused for good at once, not retried.
		calls.Store(0)
		bad := submit(t, s, u, "default", Upload{Content: []byte("%PDF-1.7\nnot really a pdf"), MediaType: extract.PDFType})
		got = waitFor(t, s, u, "default", bad.ID)
		if got.Status != search.StatusFailed || got.Error == "" || calls.Load() != 0 {
			t.Fatalf("damaged PDF: %+v after %d embeds; want failed with a reason and no embedding", got, calls.Load())
		}
	})
}

func TestIngestReplaceDeleteIsolation(t *testing.T) {
	eachEngine(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		s := e.service(t, Options{})
		if err := s.Start(ctx); err != nil {
			t.Fatal(err)
		}
		ann, bob := e.newUser(t, "ann"), e.newUser(t, "bob")
		first := submit(t, s, ann, "default", text("doc-1", "Rivers", "Rivers flow into the sea."))
		waitFor(t, s, ann, "default", first.ID)
		// The same external_id again replaces it: same id, new text.
		second := submit(t, s, ann, "default", text("doc-1", "Deserts", "Deserts receive little rain."))
		if second.ID != first.ID {
			t.Fatalf("re-posted external_id got id %s; want %s", second.ID, first.ID)
		}
		if got := waitFor(t, s, ann, "default", first.ID); got.Title != "Deserts" {
			t.Fatalf("title %q after replacing; want Deserts", got.Title)
		}
		if ids := hits(t, e.ix, ann, "default", "rivers sea"); len(ids) != 0 {
			t.Fatalf("the replaced text is still found: %v", ids)
		}
		if ids := hits(t, e.ix, ann, "default", "deserts rain"); len(ids) != 1 {
			t.Fatalf("the new text is found %v; want once", ids)
		}
		list, err := s.List(ctx, ann, "default", "", 0)
		if err != nil || len(list) != 1 {
			t.Fatalf("list: %d documents, %v; want 1", len(list), err)
		}
		// Another user sees none of it.
		if _, err := s.Document(ctx, bob, "default", first.ID); ferry.ErrorCode(err) != ferry.NotFound {
			t.Fatalf("bob reading ann's document: %v; want not found", err)
		}
		if err := s.Delete(ctx, bob, "default", first.ID); ferry.ErrorCode(err) != ferry.NotFound {
			t.Fatalf("bob deleting ann's document: %v; want not found", err)
		}
		if list, _ := s.List(ctx, bob, "default", "", 0); len(list) != 0 {
			t.Fatalf("bob lists %d documents; want 0", len(list))
		}
		if ids := hits(t, e.ix, bob, "default", "deserts rain"); len(ids) != 0 {
			t.Fatalf("bob's search finds ann's document: %v", ids)
		}
		if _, err := s.Submit(ctx, bob, "ann-only", []Upload{text("", "", "x")}); ferry.ErrorCode(err) != ferry.NotFound {
			t.Fatalf("submitting to a missing collection: %v; want not found", err)
		}
		// Deleting removes it from search at once.
		if err := s.Delete(ctx, ann, "default", first.ID); err != nil {
			t.Fatal(err)
		}
		if ids := hits(t, e.ix, ann, "default", "deserts rain"); len(ids) != 0 {
			t.Fatalf("a deleted document is found: %v", ids)
		}
	})
}

func TestSubmitRefusals(t *testing.T) {
	e := newEnv(t, "sqlite")
	s := e.service(t, Options{})
	u := e.newUser(t, "ann")
	for _, tc := range []struct {
		name  string
		up    []Upload
		field string
		code  ferry.Code
	}{
		{"empty", []Upload{text("", "", "")}, "text", ferry.Invalid},
		{"metadata", []Upload{{Content: []byte("x"), MediaType: extract.PlainType, Metadata: []byte(`[1]`)}}, "metadata", ferry.Invalid},
		{"long id", []Upload{text(strings.Repeat("x", 600), "", "y")}, "external_id", ferry.Invalid},
		{"second of two", []Upload{text("", "", "a"), text("", "", "")}, "documents[1].text", ferry.Invalid},
		{"media type", []Upload{{Content: []byte("x"), MediaType: "image/png"}}, "", ferry.UnsupportedMediaType},
	} {
		_, err := s.Submit(context.Background(), u, "default", tc.up)
		var fe *ferry.Error
		if !errors.As(err, &fe) || fe.Code != tc.code || (tc.field != "" && fe.Fields[tc.field] == "") {
			t.Errorf("%s: %v; want %s naming %q", tc.name, err, tc.code, tc.field)
		}
	}
	if list, _ := s.List(context.Background(), u, "default", "", 0); len(list) != 0 {
		t.Fatalf("refused uploads left %d documents", len(list))
	}
}

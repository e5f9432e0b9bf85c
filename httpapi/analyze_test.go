package httpapi_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryhq/ferry/extract"
	"github.com/ferryhq/ferry/llm/llmtest"
	"github.com/ferryhq/ferry/store/storetest"
)

// sharedPDFs is the folder of real-world PDFs (see its manifest.json).
var sharedPDFs = filepath.Join("..", "..", "shared", "data", "pdfs")

// readSharedPDF returns one of the shared PDFs.
func readSharedPDF(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(sharedPDFs, name))
	if err != nil {
		t.Fatalf("the shared PDFs must be at %s: %v", sharedPDFs, err)
	}
	return b
}

// The shared PDFs the tests upload, with what manifest.json says of them.
const (
	fourPages   = "pypdf-sample-files/004-pdflatex-4-pages/pdflatex-4-pages.pdf" // 4 pages of text
	imagesOnly  = "pypdf-sample-files/007-imagemagick-images/imagemagick-images.pdf"
	encrypted   = "pypdf-resources/encryption/r6-user-password.pdf"                 // user password asdfzxcv
	geoTopo     = "pypdf-sample-files/009-pdflatex-geotopo/GeoTopo-komprimiert.pdf" // 117 pages
	encryptedPW = "asdfzxcv"
)

// testPDFReader is the one PDF reader the tests share; its compiled PDFium
// is kept between runs where extract's tests keep theirs, since compiling
// takes minutes under the race detector.
var testPDFReader = sync.OnceValues(func() (*extract.PDF, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = os.TempDir()
	}
	return extract.NewPDF(extract.PDFOptions{CacheDir: filepath.Join(dir, "ferry-test", "pdfium"), Instances: 2})
})

// newAnalyzeEnv is a chat environment that reads PDFs, with uploads up to
// maxUpload bytes.
func newAnalyzeEnv(t *testing.T, engine string, maxUpload int64) *chatEnv {
	t.Helper()
	pdf, err := testPDFReader()
	if err != nil {
		t.Fatal(err)
	}
	e := &chatEnv{gateway: newGateway(t, gatewayOptions{engine: engine, pdf: pdf, maxUpload: maxUpload})}
	e.other, _ = e.signIn(t, "b@example.com")
	return e
}

// upload is a multipart form for /analyze/pdf.
type upload struct {
	filename string
	file     []byte // nil: no file field
	fields   map[string]string
}

// encode returns the form's body and content type.
func (u upload) encode(t testing.TB) ([]byte, string) {
	t.Helper()
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	for k, v := range u.fields {
		w.WriteField(k, v)
	}
	if u.file != nil {
		// As browsers send a PDF they do not know: octet-stream.
		fw, err := w.CreateFormFile("file", u.filename)
		if err != nil {
			t.Fatal(err)
		}
		fw.Write(u.file)
	}
	w.Close()
	return b.Bytes(), w.FormDataContentType()
}

// analyze posts u to /analyze/pdf with query and returns the open response.
func (e *chatEnv) analyze(t *testing.T, query url.Values, u upload) *http.Response {
	t.Helper()
	body, ct := u.encode(t)
	req, _ := http.NewRequest("POST", e.url+"/analyze/pdf?"+query.Encode(), bytes.NewReader(body))
	req.Header.Set("Content-Type", ct)
	req.Header.Set("Authorization", "Bearer "+e.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// upstreamText is every text a request to the fake carried: the content
// strings and text blocks of its messages, in order.
func upstreamText(t *testing.T, r *llmtest.Request) string {
	t.Helper()
	var q struct {
		Messages []struct {
			Content json.RawMessage `json:"content"`
		} `json:"messages"`
	}
	if err := r.JSON(&q); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, m := range q.Messages {
		var s string
		if json.Unmarshal(m.Content, &s) == nil {
			b.WriteString(s + "\n")
			continue
		}
		var blocks []struct{ Type, Text string }
		json.Unmarshal(m.Content, &blocks)
		for _, bl := range blocks {
			b.WriteString(bl.Text + "\n")
		}
	}
	return b.String()
}

// TestAnalyzePDF uploads a real four-page PDF to each provider on each
// engine: Anthropic gets the PDF itself as a base64 document block, the
// others its text page by page; the answer streams as /ai/chat/stream's;
// the turn is stored with the document; and a follow-up turn through
// /ai/chat/stream still sends the document.
func TestAnalyzePDF(t *testing.T) {
	file := readSharedPDF(t, fourPages)
	sum := sha256.Sum256(file)
	pdf, err := testPDFReader()
	if err != nil {
		t.Fatal(err)
	}
	doc, err := pdf.Extract(context.Background(), file, extract.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// A line of the last page, as the OpenAI and Ollama fakes must see it.
	lastLine, _, _ := strings.Cut(strings.TrimSpace(doc.Pages[3].Text), "\n")
	for _, engine := range storetest.Engines(t) {
		for _, p := range providers {
			t.Run(engine+"/"+p.name, func(t *testing.T) {
				e := newAnalyzeEnv(t, engine, 0)
				e.fake.SetScript(llmtest.Script{Deltas: []string{"A ", "summary."}, InputTokens: 9, OutputTokens: 2})
				// The seed's question in the query; model in the form.
				resp := e.analyze(t, url.Values{"question": {"What is page 4 about?"}},
					upload{filename: "four.pdf", file: file, fields: map[string]string{"model": p.model}})
				if resp.StatusCode != 200 {
					b, _ := io.ReadAll(resp.Body)
					t.Fatalf("status %d: %s", resp.StatusCode, b)
				}
				evs := allEvents(t, resp.Body)
				s := parseTurn(t, evs)
				if evs[0].data["conversation_id"] == nil || s.text != "A summary." || s.err != nil || s.done["stop_reason"] != p.stop {
					t.Fatalf("events: %+v", evs)
				}
				up := e.fake.Last()
				checkDocumentSent(t, p.name, up, file, lastLine)
				if text := upstreamText(t, up); !strings.Contains(text, "What is page 4 about?") {
					t.Errorf("the question did not reach the upstream: %s", text)
				}

				convID := s.start["conversation_id"].(string)
				answer := e.storedAnswer(t, convID)
				if answer.Content != "A summary." || answer.ID != s.start["message_id"] {
					t.Errorf("stored answer %+v", answer)
				}
				msgs, _ := e.store.Messages(context.Background(), convID)
				docs, err := e.store.TurnDocuments(context.Background(), convID)
				if err != nil || len(docs) != 1 || len(msgs) != 2 {
					t.Fatalf("stored %d documents (%v), %d messages", len(docs), err, len(msgs))
				}
				d := docs[0]
				if d.MessageID != msgs[0].ID || msgs[0].Content != "What is page 4 about?" || d.Name != "four.pdf" || d.Pages != 4 ||
					d.Size != int64(len(file)) || d.SHA256 != hex.EncodeToString(sum[:]) || d.MediaType != "application/pdf" ||
					!bytes.Equal(d.Data, file) || !strings.Contains(d.Text, "--- page 4 ---") {
					t.Errorf("stored document %+v (text %.80q)", *d, d.Text)
				}

				t.Run("the conversation shows the document", func(t *testing.T) {
					status, body := e.get(t, "/conversations/"+convID, e.token)
					msgs, _ := body["messages"].([]any)
					if status != 200 || len(msgs) != 2 {
						t.Fatalf("GET the conversation: %d %v", status, body)
					}
					got, _ := msgs[0].(map[string]any)["document"].(map[string]any)
					if got["name"] != "four.pdf" || got["pages"] != float64(4) || got["size"] != float64(len(file)) ||
						got["sha256"] != hex.EncodeToString(sum[:]) || got["media_type"] != "application/pdf" {
						t.Errorf("the question's document = %v", got)
					}
					if _, ok := msgs[1].(map[string]any)["document"]; ok {
						t.Errorf("the answer shows a document: %v", msgs[1])
					}
				})
				t.Run("a follow-up turn still sees the document", func(t *testing.T) {
					e.fake.SetScript(llmtest.Script{Deltas: []string{"ok"}})
					resp := e.post(t, context.Background(), "/ai/chat/stream", e.token,
						map[string]any{"message": "And page 2?", "model": p.model, "conversation_id": convID})
					parseTurn(t, allEvents(t, resp.Body))
					up := e.fake.Last()
					checkDocumentSent(t, p.name, up, file, lastLine)
					if text := upstreamText(t, up); !strings.Contains(text, "And page 2?") {
						t.Errorf("the follow-up did not reach the upstream: %s", text)
					}
				})
				t.Run("another user cannot continue it", func(t *testing.T) {
					resp := e.post(t, context.Background(), "/ai/chat/stream", e.other,
						map[string]any{"message": "x", "model": p.model, "conversation_id": convID})
					if resp.StatusCode != 404 {
						t.Errorf("status %d, want 404", resp.StatusCode)
					}
				})
			})
		}
	}
}

// checkDocumentSent checks that the upstream request up carried the PDF
// file: to Anthropic as one base64 document block in Anthropic's wire
// format, before the question; to the others as text with page markers
// that holds lastLine.
func checkDocumentSent(t *testing.T, provider string, up *llmtest.Request, file []byte, lastLine string) {
	t.Helper()
	if provider != "anthropic" {
		text := upstreamText(t, up)
		for _, want := range []string{"--- page 1 ---", "--- page 4 ---", lastLine} {
			if !strings.Contains(text, want) {
				t.Errorf("%s upstream text lacks %q:\n%.500s", provider, want, text)
			}
		}
		return
	}
	docs := up.Documents()
	if len(docs) != 1 || docs[0].MediaType != "application/pdf" || !bytes.Equal(docs[0].Data, file) {
		t.Fatalf("document blocks at the Anthropic fake: %d, want the uploaded PDF", len(docs))
	}
	var q struct {
		Messages []struct {
			Content []map[string]any `json:"content"`
		} `json:"messages"`
	}
	if err := up.JSON(&q); err != nil {
		t.Fatal(err)
	}
	first := q.Messages[0].Content
	src, _ := first[0]["source"].(map[string]any)
	if first[0]["type"] != "document" || src["type"] != "base64" || src["media_type"] != "application/pdf" || len(first) < 2 || first[1]["type"] != "text" {
		t.Errorf("first message's blocks: %.300v", first)
	}
}

// TestAnalyzePDFRefusals checks that every refusal of item 2 comes before
// the model is asked, as a 4xx problem that says what to do: not
// multipart, no file, not a PDF (415 even when named .pdf), encrypted
// without or with the wrong password, damaged, too many pages for
// Anthropic, no text layer for a model that reads only text, and too
// large (413 from Content-Length before the body is read, naming
// FERRY_MAX_UPLOAD_BYTES). What a model can read is not refused.
// TestAnalyzePDFCache: the same PDF and question again is a cache hit;
// cache=false, in the query or the form, asks the model again.
func TestAnalyzePDFCache(t *testing.T) {
	file := readSharedPDF(t, fourPages)
	pdf, err := testPDFReader()
	if err != nil {
		t.Fatal(err)
	}
	e := &chatEnv{gateway: newGateway(t, gatewayOptions{pdf: pdf, cache: answerStores()["memory"](t)})}
	e.fake.SetScript(llmtest.Script{Deltas: []string{"A ", "summary."}})
	for i, c := range []struct {
		query  url.Values
		fields map[string]string
		want   string
		calls  int
		status int
	}{
		{nil, nil, "miss", 1, 200},
		{nil, nil, "hit", 1, 200},
		{url.Values{"cache": {"false"}}, nil, "miss", 2, 200},
		{nil, map[string]string{"cache": "false"}, "miss", 3, 200},
		{url.Values{"cache": {"false"}}, map[string]string{"cache": "true"}, "hit", 3, 200},
		{nil, map[string]string{"cache": "no"}, "", 3, 400},
	} {
		resp := e.analyze(t, c.query, upload{filename: "four.pdf", file: file, fields: c.fields})
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != c.status || resp.Header.Get("X-Cache") != c.want {
			t.Errorf("%d (query %v, form %v): %d, X-Cache %q; want %d, %q: %.300s", i, c.query, c.fields,
				resp.StatusCode, resp.Header.Get("X-Cache"), c.status, c.want, b)
		}
		if c.status == 200 && !strings.Contains(string(b), `"done"`) {
			t.Errorf("%d: no done event: %.300s", i, b)
		}
		if n := len(e.fake.Requests()); n != c.calls {
			t.Errorf("%d: the upstream saw %d requests, want %d", i, n, c.calls)
		}
	}
}

func TestAnalyzePDFRefusals(t *testing.T) {
	for _, engine := range storetest.Engines(t) {
		t.Run(engine, func(t *testing.T) {
			e := newAnalyzeEnv(t, engine, 4<<20)
			e.fake.SetScript(llmtest.Script{Deltas: []string{"ok"}})
			for _, c := range []struct {
				name   string
				u      upload
				status int
				want   []string
			}{
				{"no file", upload{fields: map[string]string{"question": "hi"}}, 400, []string{"file", "required"}},
				{"empty file", upload{filename: "a.pdf", file: []byte{}}, 400, []string{"empty"}},
				{"unknown field", upload{filename: "a.pdf", file: readSharedPDF(t, fourPages), fields: map[string]string{"prompt": "x"}}, 400, []string{"prompt", "unknown field"}},
				{"not a PDF", upload{filename: "notes.pdf", file: []byte("plain text, named .pdf")}, 415, []string{"not a PDF", "%PDF-"}},
				{"encrypted without password", upload{filename: "e.pdf", file: readSharedPDF(t, encrypted), fields: map[string]string{"model": "openai/gpt-4o-mini"}},
					400, []string{"password field"}},
				{"encrypted, wrong password", upload{filename: "e.pdf", file: readSharedPDF(t, encrypted), fields: map[string]string{"password": "nope"}},
					400, []string{"password does not open"}},
				{"damaged", upload{filename: "d.pdf", file: []byte("%PDF-1.7\nthis is not what a PDF holds\n%%EOF\n")}, 400, []string{"damaged"}},
				{"too many pages for Anthropic", upload{filename: "geo.pdf", file: readSharedPDF(t, geoTopo), fields: map[string]string{"model": "claude-sonnet-4-6"}},
					413, []string{"117 pages", "100 pages"}},
				{"no text layer for a text model", upload{filename: "scan.pdf", file: readSharedPDF(t, imagesOnly), fields: map[string]string{"model": "ollama/llama3.2"}},
					400, []string{"no text layer", "OCR"}},
			} {
				t.Run(c.name, func(t *testing.T) {
					resp := e.analyze(t, nil, c.u)
					b, _ := io.ReadAll(resp.Body)
					if resp.StatusCode != c.status || resp.Header.Get("Content-Type") != "application/problem+json" {
						t.Fatalf("status %d (%s), want %d: %s", resp.StatusCode, resp.Header.Get("Content-Type"), c.status, b)
					}
					for _, w := range c.want {
						if !strings.Contains(string(b), w) {
							t.Errorf("body lacks %q: %s", w, b)
						}
					}
				})
			}
			t.Run("not multipart", func(t *testing.T) {
				resp := e.post(t, context.Background(), "/analyze/pdf", e.token, map[string]any{"file": "x"})
				b, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != 415 || !strings.Contains(string(b), "multipart/form-data") {
					t.Errorf("status %d: %s", resp.StatusCode, b)
				}
			})
			t.Run("too large, from Content-Length, before 100 Continue", func(t *testing.T) {
				// As curl sends a large file: headers with Expect:
				// 100-continue, then the body only if told to go on.
				conn, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				fmt.Fprintf(conn, "POST /analyze/pdf HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"+
					"Content-Type: multipart/form-data; boundary=xyz\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n", e.token, 5<<20)
				conn.SetReadDeadline(time.Now().Add(10 * time.Second))
				resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != 413 || !strings.Contains(string(b), "FERRY_MAX_UPLOAD_BYTES") {
					t.Errorf("status %d, want 413 naming FERRY_MAX_UPLOAD_BYTES (a 100 Continue first is wrong): %s", resp.StatusCode, b)
				}
			})
			t.Run("too large, without Content-Length", func(t *testing.T) {
				body, ct := upload{filename: "big.pdf", file: append([]byte("%PDF-1.7\n"), make([]byte, 5<<20)...)}.encode(t)
				req, _ := http.NewRequest("POST", e.url+"/analyze/pdf", io.MultiReader(bytes.NewReader(body))) // chunked
				req.Header.Set("Content-Type", ct)
				req.Header.Set("Authorization", "Bearer "+e.token)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != 413 || !strings.Contains(string(b), "FERRY_MAX_UPLOAD_BYTES") {
					t.Errorf("status %d: %s", resp.StatusCode, b)
				}
			})
			t.Run("unauthenticated", func(t *testing.T) {
				body, ct := upload{filename: "a.pdf", file: readSharedPDF(t, fourPages)}.encode(t)
				resp, err := http.Post(e.url+"/analyze/pdf", ct, bytes.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != 401 {
					t.Errorf("status %d, want 401", resp.StatusCode)
				}
			})
			if n := len(e.fake.Requests()); n != 0 {
				t.Fatalf("the refusals reached the upstream %d times", n)
			}

			// What a model can read is answered.
			for _, c := range []struct {
				name string
				u    upload
				sent func(*llmtest.Request) bool
			}{
				{"scanned PDF to Anthropic", upload{filename: "scan.pdf", file: readSharedPDF(t, imagesOnly), fields: map[string]string{"model": "claude-sonnet-4-6"}},
					func(r *llmtest.Request) bool { return len(r.Documents()) == 1 }},
				{"encrypted PDF with its password, to Anthropic as text", upload{filename: "e.pdf", file: readSharedPDF(t, encrypted),
					fields: map[string]string{"model": "claude-sonnet-4-6", "password": encryptedPW}},
					func(r *llmtest.Request) bool {
						return len(r.Documents()) == 0 && strings.Contains(upstreamText(t, r), "--- page 1 ---")
					}},
				{"default question", upload{filename: "a.pdf", file: readSharedPDF(t, fourPages), fields: map[string]string{"model": "openai/gpt-4o-mini"}},
					func(r *llmtest.Request) bool {
						return strings.Contains(upstreamText(t, r), "请总结这份文档的主要内容")
					}},
			} {
				t.Run(c.name, func(t *testing.T) {
					resp := e.analyze(t, nil, c.u)
					if resp.StatusCode != 200 {
						b, _ := io.ReadAll(resp.Body)
						t.Fatalf("status %d: %s", resp.StatusCode, b)
					}
					parseTurn(t, allEvents(t, resp.Body))
					if !c.sent(e.fake.Last()) {
						t.Errorf("upstream got %.400s", e.fake.Last().Body)
					}
				})
			}
		})
	}
}

// Package llmtest fakes the upstreams Ferry's model adapters talk to: one
// httptest server that speaks Anthropic's Messages API, OpenAI's Chat
// Completions API and Ollama's native API on their real paths, byte for
// byte as the real services stream them, so tests and benchmarks drive the
// production adapters and the official SDKs unchanged.
//
// A Script says how the server answers: which text deltas, how fast, and
// how it fails (an HTTP status for the first requests, an error event, a
// hang or a dropped connection mid-stream). The server records every
// request it received and whether the client went away before the answer
// ended.
//
// Point the adapters at it with AnthropicURL, OpenAIURL and OllamaURL.
package llmtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Break says how a scripted stream goes wrong after Script.BreakAfter
// deltas.
type Break int

// The ways a stream can break.
const (
	// NoBreak streams the whole answer.
	NoBreak Break = iota
	// ErrorEvent sends the provider's in-stream error (Anthropic's
	// "event: error" overloaded_error, OpenAI's {"error":…} chunk, Ollama's
	// {"error":…} line) and ends the response.
	ErrorEvent
	// Hang stops sending and holds the response open until the client
	// cancels or the server closes.
	Hang
	// Drop cuts the connection without ending the response.
	Drop
)

// Script says how the server answers chat requests (Anthropic /v1/messages,
// OpenAI /v1/chat/completions, Ollama /api/chat and /api/generate) and
// embeddings (Ollama's /api/embed and OpenAI's /v1/embeddings, whose
// answers only take the failures and InputTokens; see SetEmbedding). The
// zero value streams Deltas(100) successfully.
type Script struct {
	// Deltas are the text pieces of the answer, one event each; nil means
	// Deltas(100).
	Deltas []string
	// Delay is the pause before each delta, for slow-model scenarios and
	// benchmarks; an answer in one piece (Ollama's "stream": false) comes
	// after all of them. A client that leaves during the pause is noticed
	// at once.
	Delay time.Duration
	// OpenWithFirst moves the first Delay before the stream's opening
	// events (Anthropic's message_start, OpenAI's role chunk), which then
	// go out with the first delta: an upstream whose first bytes come with
	// its first token, so that a proxy of its wire and a server of another
	// wire get their first bytes at the same time.
	OpenWithFirst bool
	// StopReason overrides the provider's normal one ("end_turn" for
	// Anthropic, "stop" for OpenAI and Ollama).
	StopReason string
	// InputTokens and OutputTokens are the usage reported; zero means one
	// input token per whitespace-separated word of the prompt, and one
	// output token per delta.
	InputTokens, OutputTokens int

	// FailFirst makes the first FailFirst chat requests after SetScript
	// fail with FailStatus (default 429), carrying FailHeader (for example
	// Retry-After) and the provider's error body with FailMessage.
	FailFirst   int
	FailStatus  int
	FailHeader  http.Header
	FailMessage string

	// Break breaks the stream after BreakAfter deltas; ErrorMessage is the
	// message of an ErrorEvent (default "Overloaded").
	Break        Break
	BreakAfter   int
	ErrorMessage string

	// Fragment writes every event in two flushed pieces, split inside a
	// multi-byte character when the event has one, so that clients must
	// reassemble lines that arrive across reads.
	Fragment bool

	// APIKey, when set, is the key every request must present (x-api-key
	// to Anthropic, Authorization: Bearer to the others); others get the
	// provider's 401. Anthropic requests need an x-api-key and an
	// anthropic-version header even when APIKey is empty, as the real API
	// does.
	APIKey string
}

// Deltas returns n small text pieces, "tok0 " to "tok<n-1> ", the default
// answer when a Script names none.
func Deltas(n int) []string {
	d := make([]string, n)
	for i := range d {
		d[i] = fmt.Sprintf("tok%d ", i)
	}
	return d
}

// DefaultModels lists the models the server offers per provider
// ("anthropic", "openai", "ollama") on the model-list endpoints.
func DefaultModels(provider string) []string {
	switch provider {
	case "anthropic":
		return []string{"claude-sonnet-4-6", "claude-opus-4-1", "claude-haiku-4-5"}
	case "openai":
		return []string{"gpt-4o-mini", "gpt-4o", "o3-mini"}
	case "ollama":
		return []string{"llama3.2:latest", "qwen2.5:7b"}
	}
	return nil
}

// Request is what the server received in one request, and how it ended.
type Request struct {
	Seq    int // 1 for the first request the server received
	Method string
	Path   string
	// Header is the request's header with credentials (Authorization,
	// X-Api-Key) replaced by "REDACTED".
	Header http.Header
	Body   []byte

	done      chan struct{}
	cancelled atomic.Bool
	deltas    atomic.Int64
}

// Done is closed when the server has finished with the request: the answer
// was sent, or the client went away.
func (r *Request) Done() <-chan struct{} { return r.done }

// Cancelled reports whether the client went away (cancelled its request or
// closed the connection) before the answer ended. It is final once Done is
// closed.
func (r *Request) Cancelled() bool { return r.cancelled.Load() }

// DeltasSent counts the text deltas written to the client.
func (r *Request) DeltasSent() int { return int(r.deltas.Load()) }

// JSON decodes the request body into v.
func (r *Request) JSON(v any) error { return json.Unmarshal(r.Body, v) }

// Server is the fake upstream. Its methods are safe for concurrent use.
type Server struct {
	// URL is the server's root, as in http://127.0.0.1:41234.
	URL string

	ts   *httptest.Server
	quit chan struct{}
	stop sync.Once

	mu        sync.Mutex
	script    Script
	quoted    [][]byte // script.Deltas as JSON strings, encoded once per script
	served    int      // chat requests since SetScript
	seq       int
	requests  []*Request
	cancelled int
	embed     func(string) []float32 // SetEmbedding; nil: embedding
}

// NewServer starts a Server that streams the default script. Close it when
// done; Start does that for a test.
func NewServer() *Server {
	s := &Server{quit: make(chan struct{})}
	s.SetScript(Script{})
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/messages", s.anthropicMessages)
	mux.HandleFunc("POST /v1/chat/completions", s.openAIChat)
	mux.HandleFunc("GET /v1/models", s.models)
	mux.HandleFunc("POST /api/chat", s.ollamaChat)
	mux.HandleFunc("POST /api/generate", s.ollamaGenerate)
	mux.HandleFunc("GET /api/tags", s.ollamaTags)
	mux.HandleFunc("GET /api/ps", s.ollamaPS)
	mux.HandleFunc("GET /api/version", s.ollamaVersion)
	mux.HandleFunc("POST /api/show", s.ollamaShow)
	mux.HandleFunc("POST /api/embed", s.ollamaEmbed)
	mux.HandleFunc("POST /v1/embeddings", s.openAIEmbeddings)
	s.ts = httptest.NewServer(mux)
	s.URL = s.ts.URL
	return s
}

// Start is NewServer for a test or benchmark: the server closes when tb
// ends.
func Start(tb testing.TB) *Server {
	s := NewServer()
	tb.Cleanup(s.Close)
	return s
}

// AnthropicURL is the base URL for the Anthropic adapter (ANTHROPIC_BASE_URL).
func (s *Server) AnthropicURL() string { return s.URL }

// OpenAIURL is the base URL for the OpenAI adapter (OPENAI_BASE_URL),
// which by convention includes /v1.
func (s *Server) OpenAIURL() string { return s.URL + "/v1" }

// OllamaURL is the base URL for the Ollama adapter (OLLAMA_BASE_URL).
func (s *Server) OllamaURL() string { return s.URL }

// Close ends hanging streams, then shuts the server down.
func (s *Server) Close() {
	s.stop.Do(func() { close(s.quit) })
	s.ts.Close()
}

// SetScript makes sc the answer to the chat requests that follow, and
// restarts the count that Script.FailFirst applies to.
func (s *Server) SetScript(sc Script) {
	if sc.Deltas == nil {
		sc.Deltas = Deltas(100)
	}
	quoted := make([][]byte, len(sc.Deltas))
	for i, d := range sc.Deltas {
		quoted[i] = rawJSON(d)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.script, s.quoted, s.served = sc, quoted, 0
}

// Requests returns the requests received so far, oldest first.
func (s *Server) Requests() []*Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*Request(nil), s.requests...)
}

// Last returns the latest request received, or nil.
func (s *Server) Last() *Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.requests) == 0 {
		return nil
	}
	return s.requests[len(s.requests)-1]
}

// CancelledCount counts the requests whose client went away before the
// answer ended.
func (s *Server) CancelledCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cancelled
}

// Reset forgets the recorded requests, so that a long benchmark does not
// keep them all.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests, s.cancelled = nil, 0
}

// WaitCancelled waits up to timeout for the latest request to end and
// reports whether its client cancelled it.
func (s *Server) WaitCancelled(timeout time.Duration) bool {
	r := s.Last()
	if r == nil {
		return false
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-r.done:
		return r.Cancelled()
	case <-t.C:
		return false
	}
}

// begin records the request and returns it, its body, and the script to
// answer it with: counted says whether it is a chat request, to which
// FailFirst applies.
func (s *Server) begin(w http.ResponseWriter, r *http.Request, counted bool) (*Request, plan, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<20))
	if err != nil {
		http.Error(w, "cannot read body", http.StatusBadRequest)
		return nil, plan{}, false
	}
	h := r.Header.Clone()
	for _, k := range []string{"Authorization", "X-Api-Key"} {
		if h.Get(k) != "" {
			h.Set(k, "REDACTED")
		}
	}
	rec := &Request{Method: r.Method, Path: r.URL.Path, Header: h, Body: body, done: make(chan struct{})}

	s.mu.Lock()
	s.seq++
	rec.Seq = s.seq
	s.requests = append(s.requests, rec)
	p := plan{Script: s.script, quoted: s.quoted}
	if counted {
		s.served++
		p.fail = s.served <= s.script.FailFirst
	}
	s.mu.Unlock()

	if p.FailStatus == 0 {
		p.FailStatus = http.StatusTooManyRequests
	}
	if p.ErrorMessage == "" {
		p.ErrorMessage = "Overloaded"
	}
	if p.APIKey != "" && presentedKey(r) != p.APIKey {
		p.fail, p.FailStatus, p.FailHeader, p.FailMessage = true, http.StatusUnauthorized, nil, ""
	}
	return rec, p, true
}

// end marks rec finished, noting whether the client left first.
func (s *Server) end(rec *Request, cancelled bool) {
	if cancelled {
		rec.cancelled.Store(true)
		s.mu.Lock()
		s.cancelled++
		s.mu.Unlock()
	}
	close(rec.done)
}

// presentedKey is the key r presents: Anthropic's x-api-key, or the
// bearer credential everyone else sends.
func presentedKey(r *http.Request) string {
	if isAnthropic(r) {
		return r.Header.Get("X-Api-Key")
	}
	k, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return ""
	}
	return k
}

// plan is the script one request is answered with.
type plan struct {
	Script
	quoted [][]byte
	fail   bool
}

func (p plan) outputTokens(sent int) int {
	if p.OutputTokens > 0 {
		return p.OutputTokens
	}
	return sent
}

func (p plan) inputTokens(prompt string) int {
	if p.InputTokens > 0 {
		return p.InputTokens
	}
	return len(strings.Fields(prompt))
}

func (p plan) text() string { return strings.Join(p.Deltas, "") }

func (p plan) failHeader(w http.ResponseWriter) {
	for k, vs := range p.FailHeader {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
}

// writeJSON answers a non-streaming request.
func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// rawJSON is v encoded without HTML escaping, for building events.
func rawJSON(v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

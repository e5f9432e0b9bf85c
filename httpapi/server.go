// Package httpapi is Ferry's HTTP API: every route is in routes.go, one file
// per resource holds its handlers, and errors.go maps domain errors to
// RFC 9457 problem bodies. It is the only package that touches requests and
// responses.
package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/eventlog"
	"github.com/ferryhq/ferry/limit"
)

// Options are the HTTP settings NewServer needs.
type Options struct {
	Version      string
	MaxBodyBytes int64
	// BodyReadTimeout bounds the time a client may take to send a request
	// body, counted from the end of its headers. Zero means 30 s.
	BodyReadTimeout time.Duration
	// Draining is cancelled when the streams still open must end, a little
	// before the shutdown deadline: they end with an error event then,
	// while ordinary requests finish undisturbed.
	Draining context.Context
	// Stopping is cancelled when shutdown starts: from then on /readyz
	// answers 503, so that load balancers send no more traffic, while
	// requests are still served. Nil: never.
	Stopping context.Context
	// AnswerStopped, if set, is called with an answer's id when its user
	// stopped it and it does not run on this instance: run tells the
	// other instances with it, so that the one running it stops it.
	AnswerStopped func(answerID string)
	// UserRevoked, if set, is called with a user's id after an admin
	// disabled or deleted them, or they deleted themselves, once Chat has
	// ended their model calls on this instance: run tells the other
	// instances with it.
	UserRevoked func(userID string)
	// Keepalive is how long a stream may be silent before it gets a comment
	// line, so proxies and browsers do not give up on a slow model. Zero
	// means 15 s.
	Keepalive time.Duration
	// TrustedProxies are the peers whose X-Forwarded-For names the client
	// that sign-in and registration limits count under (FERRY_TRUSTED_PROXIES).
	TrustedProxies []netip.Prefix
	// CORSOrigins are the browser origins (scheme://host[:port]) allowed to
	// call the API from pages of other sites, or "*" for any; empty turns
	// CORS off (FERRY_CORS_ORIGINS). See cors.go.
	CORSOrigins []string
	// MaxUploadBytes bounds the body of an upload (/analyze/pdf) in place
	// of MaxBodyBytes (FERRY_MAX_UPLOAD_BYTES). Zero means
	// DefaultMaxUploadBytes.
	MaxUploadBytes int64
	// Observe, if set, is told of every request when its answer has ended
	// (a stream's included): the route pattern that served it ("" when
	// none matched), its status and its duration. The hook for metrics; it
	// must not block.
	Observe func(pattern string, status int, d time.Duration)
}

// NewServer returns the whole API as one handler: the routes of routes.go on
// a standard library mux, with request ids, access logs, panic recovery and
// JSON answers for unknown routes and methods.
func NewServer(log *slog.Logger, opts Options, svc Services) http.Handler {
	mux := http.NewServeMux()
	cfg := huma.DefaultConfig("Ferry", opts.Version)
	// Without the schema-link hook huma would add a "$schema" field to every
	// response body, which clients written for the seed do not expect.
	cfg.CreateHooks = nil
	// /docs is our own page (docs.go), whose files come from the binary;
	// huma's loads Swagger UI from a CDN.
	cfg.DocsPath = ""
	// Login reads this form itself (see loginInput); huma only needs to know
	// the content type is acceptable. Any other operation that huma decodes
	// answers a form with 415 (see explainBodyErrors), and so does it any
	// content type it has no format for; a body with no Content-Type is
	// read as JSON.
	// (A new map: cfg.Formats is huma's package-level default.)
	cfg.Formats = map[string]huma.Format{
		"application/json": jsonFormat,
		"json":             jsonFormat,
		"application/x-www-form-urlencoded": {
			Marshal: func(io.Writer, any) error { return errors.New("form responses are not supported") },
			Unmarshal: func([]byte, any) error {
				return fmt.Errorf("%w: only login reads a form", huma.ErrUnknownContentType)
			},
		},
	}
	cfg.Transformers = append(cfg.Transformers, dropErrorValues, explainBodyErrors, reshapeErrors)
	cfg.Info.Description = "Self-hosted AI application backend: accounts, streaming chat, conversations."
	cfg.Components.SecuritySchemes = map[string]*huma.SecurityScheme{
		"bearer": {Type: "http", Scheme: "bearer", Description: "An access token from /auth/login, or an API key (fk_…)."},
		"oauth2": {Type: "oauth2", Flows: &huma.OAuthFlows{Password: &huma.OAuthFlow{TokenURL: "/auth/login", Scopes: map[string]string{}}}},
		apiKeyScheme: {Type: "apiKey", In: "header", Name: "x-api-key",
			Description: "An API key (fk_…) or access token, as Anthropic's SDKs send theirs; only on Anthropic's Messages API."},
	}
	api := humago.New(mux, cfg)
	if opts.Keepalive == 0 {
		opts.Keepalive = 15 * time.Second
	}
	if opts.BodyReadTimeout == 0 {
		opts.BodyReadTimeout = 30 * time.Second
	}
	if opts.MaxUploadBytes == 0 {
		opts.MaxUploadBytes = DefaultMaxUploadBytes
	}
	if opts.Draining == nil {
		opts.Draining = context.Background()
	}
	if opts.Stopping == nil {
		opts.Stopping = context.Background()
	}
	s := &server{log: log, opts: opts, svc: svc, api: api, mux: mux, work: newWorkers(), cors: newCORSPolicy(opts.CORSOrigins), logs: svc.Logs}
	if s.logs == nil {
		s.logs = eventlog.New(eventlog.Options{Log: log})
	}
	api.UseMiddleware(s.refuseLargeBodies, s.authenticate, s.refuseNUL)
	addRoutes(s, mux)
	return s
}

type server struct {
	log  *slog.Logger
	opts Options
	svc  Services
	api  huma.API
	mux  *http.ServeMux
	work *workers // run the handlers (offload.go)
	cors corsPolicy
	logs *eventlog.Logs // the answers' events (resume.go)
}

// ServeHTTP is every request's way in, in one function rather than a
// chain of nested middleware, so that a parked stream's goroutine keeps a
// shallow stack: it sets the request id, bounds the time the body may take
// to arrive (Options.BodyReadTimeout), recovers panics, answers CORS
// (Options.CORSOrigins), answers unknown routes and methods in JSON, and
// writes the access log line. The route's handler runs on a worker, and a
// stream it starts on this goroutine (offload.go).
func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	id := r.Header.Get("X-Request-ID")
	if !validRequestID(id) {
		b := make([]byte, 12)
		rand.Read(b)
		id = hex.EncodeToString(b)
	}
	w.Header().Set("X-Request-ID", id)
	sw := &statusWriter{ResponseWriter: w}
	// A model call's admission notes the caller's rate limits in the
	// report, and sw sets them as the response starts (see statusWriter).
	ri := &requestInfo{id: id, start: start}
	r = r.WithContext(limit.WithReport(context.WithValue(r.Context(), requestIDKey, ri), &sw.limits))
	if r.Body != nil && r.Body != http.NoBody {
		// The body must arrive in time. A slow client is cut off: with 408
		// when a handler is reading, else the connection closes after the
		// answer, when net/http reads what the handler left unread (an
		// unauthenticated request's body, say). net/http clears the
		// deadline itself once the body has been read to its end (it
		// starts its background read then), so a long stream is not cut
		// off. huma.SetReadDeadline, unlike http.ResponseController, costs
		// no allocation; httptest's recorder takes no deadline.
		huma.SetReadDeadline(w, time.Now().Add(s.opts.BodyReadTimeout))
	}
	var pattern string
	defer func() { s.served(r, ri, sw, pattern, recover()) }()
	if s.applyCORS(sw, r) {
		return // a preflight, answered
	}
	h, pattern := s.mux.Handler(r)
	if pattern == "" {
		s.fallback(sw, r, h)
		return
	}
	s.serveOnWorker(sw, r, ri)
}

// served ends ServeHTTP: it answers a panic (p) that the handler left
// unanswered, writes the access log line and tells Observe.
func (s *server) served(r *http.Request, ri *requestInfo, sw *statusWriter, pattern string, p any) {
	if p != nil {
		if p == http.ErrAbortHandler {
			panic(p) // how a handler asks to abort
		}
		s.log.ErrorContext(r.Context(), "panic", "request_id", ri.id, "panic", p)
		if sw.status == 0 {
			writeProblem(sw, http.StatusInternalServerError, "internal error", nil)
		}
	}
	s.logRequest(r, sw, ri.start)
	if s.opts.Observe != nil {
		s.opts.Observe(pattern, sw.status, time.Since(ri.start))
	}
}

// refuseLargeBodies answers 413 for a body whose Content-Length is over
// the operation's limit before anything reads it, so Go never sends
// "100 Continue" and a client like curl hears the 413 instead of having
// its upload cut off.
func (s *server) refuseLargeBodies(ctx huma.Context, next func(huma.Context)) {
	op := ctx.Operation()
	r, _ := humago.Unwrap(ctx)
	if op.MaxBodyBytes > 0 && r.ContentLength > op.MaxBodyBytes {
		fe := ferry.Errorf(ferry.TooLarge, "the body is %d bytes; %s is %d", r.ContentLength, bodyLimitSetting(op), op.MaxBodyBytes)
		huma.WriteErr(s.api, ctx, statusOf[fe.Code], fe.Message)
		return
	}
	next(ctx)
}

type ctxKey int

const (
	requestIDKey ctxKey = iota
	statusKey
)

func validRequestID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for _, c := range []byte(id) {
		if c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}

// requestInfo is what a request's context carries about it, in one value
// so that it costs one allocation.
type requestInfo struct {
	id    string
	start time.Time
	// Whether a worker is running the request's handler (offload.go), and
	// the stream the handler started, to run after it.
	onWorker bool
	rest     func()
}

// RequestID returns the request id that ctx carries, or "".
func RequestID(ctx context.Context) string {
	if ri, ok := ctx.Value(requestIDKey).(*requestInfo); ok {
		return ri.id
	}
	return ""
}

// RequestStart returns when the request that ctx belongs to arrived; false
// when ctx is no request's (a background job's).
func RequestStart(ctx context.Context) (time.Time, bool) {
	if ri, ok := ctx.Value(requestIDKey).(*requestInfo); ok {
		return ri.start, true
	}
	return time.Time{}, false
}

// statusWriter records the status written, for the access log. It keeps
// http.ResponseController working through Unwrap. As the response starts,
// it sets the RateLimit-Policy and RateLimit fields that the admission of a
// model call noted in limits, whatever wrote the response: any wire
// format, a stream or not, an answer or a refusal.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
	limits limit.Report
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
		w.rateLimitFields()
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
		w.rateLimitFields()
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) rateLimitFields() {
	if policy, state := w.limits.Fields(); policy != "" {
		h := w.Header()
		h.Set("RateLimit-Policy", policy)
		h.Set("RateLimit", state)
	}
}

// logRequest writes the request's access log line. It logs the path
// without the query string, so nothing a client put in a URL (a key, an
// email) reaches the log.
func (s *server) logRequest(r *http.Request, sw *statusWriter, start time.Time) {
	level := slog.LevelInfo
	if sw.status >= 500 {
		level = slog.LevelError
	}
	s.log.LogAttrs(r.Context(), level, "request",
		slog.String("request_id", RequestID(r.Context())),
		slog.String("method", r.Method),
		slog.String("path", r.URL.Path),
		slog.Int("status", sw.status),
		slog.Int64("bytes", sw.bytes),
		slog.Duration("duration", time.Since(start)),
	)
}

// fallback answers a request no route matches: 405 with Allow for a known
// path with the wrong method, else 404, in JSON (OpenAI's shape under /v1/,
// whose SDKs show only that) instead of the mux's plain text. h is the
// mux's own handler for it.
func (s *server) fallback(w http.ResponseWriter, r *http.Request, h http.Handler) {
	// The mux's own 404/405 handlers are cheap; run one against a recorder
	// to learn which it is and what Allow it would send.
	rec := &headerRecorder{header: http.Header{}}
	h.ServeHTTP(rec, r)
	if allow := rec.header.Get("Allow"); allow != "" {
		w.Header().Set("Allow", allow)
	}
	fe := ferry.Errorf(ferry.NotFound, "no route for %s", r.URL.Path)
	if rec.status == http.StatusMethodNotAllowed {
		fe = ferry.Errorf(ferry.Invalid, "method %s is not allowed here", r.Method)
	}
	var shape errorShape = problemShape{}
	switch {
	case strings.HasPrefix(r.URL.Path, "/v1/") && r.Header.Get("Anthropic-Version") != "":
		shape = anthropicShape{} // Anthropic's SDKs send it with every request
	case strings.HasPrefix(r.URL.Path, "/v1/"):
		shape = openAIShape{}
	case strings.HasPrefix(r.URL.Path, "/ollama/"):
		shape = ollamaShape{}
	}
	status := statusOf[fe.Code]
	if rec.status == http.StatusMethodNotAllowed {
		status = http.StatusMethodNotAllowed
	}
	w.Header().Set("Content-Type", shape.contentType())
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(shape.body(status, fe))
}

type headerRecorder struct {
	header http.Header
	status int
}

func (h *headerRecorder) Header() http.Header         { return h.header }
func (h *headerRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (h *headerRecorder) WriteHeader(code int)        { h.status = code }

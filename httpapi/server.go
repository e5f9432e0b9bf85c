// Package httpapi is Ferry's HTTP API: every route is in routes.go, one file
// per resource holds its handlers, and errors.go maps domain errors to
// RFC 9457 problem bodies. It is the only package that touches requests and
// responses.
package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"
)

// Options are the HTTP settings NewServer needs.
type Options struct {
	Version      string
	MaxBodyBytes int64
	// Draining is cancelled when shutdown starts: open streams end with an
	// error event then, while ordinary requests finish undisturbed.
	Draining context.Context
	// Keepalive is how long a stream may be silent before it gets a comment
	// line, so proxies and browsers do not give up on a slow model. Zero
	// means 15 s.
	Keepalive time.Duration
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
	cfg.DocsRenderer = huma.DocsRendererSwaggerUI
	// Login reads this form itself (see loginInput); huma only needs to know
	// the content type is acceptable.
	// (A new map: cfg.Formats is huma's package-level default.)
	cfg.Formats = map[string]huma.Format{
		"application/json": huma.DefaultJSONFormat,
		"json":             huma.DefaultJSONFormat,
		"application/x-www-form-urlencoded": {
			Marshal:   func(io.Writer, any) error { return errors.New("form responses are not supported") },
			Unmarshal: func([]byte, any) error { return errors.New("form bodies are read by their handler") },
		},
	}
	cfg.Transformers = append(cfg.Transformers, dropErrorValues, openAIErrors)
	cfg.Info.Description = "Self-hosted AI application backend: accounts, streaming chat, conversations."
	cfg.Components.SecuritySchemes = map[string]*huma.SecurityScheme{
		"bearer": {Type: "http", Scheme: "bearer", Description: "An access token from /auth/login, or an API key (fk_…)."},
		"oauth2": {Type: "oauth2", Flows: &huma.OAuthFlows{Password: &huma.OAuthFlow{TokenURL: "/auth/login", Scopes: map[string]string{}}}},
	}
	api := humago.New(mux, cfg)
	if opts.Keepalive == 0 {
		opts.Keepalive = 15 * time.Second
	}
	if opts.Draining == nil {
		opts.Draining = context.Background()
	}
	s := &server{log: log, opts: opts, svc: svc, api: api}
	api.UseMiddleware(s.authenticate)
	addRoutes(s, mux)

	var h http.Handler = s.jsonFallbacks(mux)
	h = s.recoverPanics(h)
	h = s.accessLog(h)
	return requestID(h)
}

type server struct {
	log  *slog.Logger
	opts Options
	svc  Services
	api  huma.API
}

type ctxKey int

const (
	requestIDKey ctxKey = iota
	statusKey
)

// requestID takes a sane X-Request-ID from the client or makes one, returns
// it on the response and puts it in the request's context for logs.
func requestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-ID")
		if !validRequestID(id) {
			b := make([]byte, 12)
			rand.Read(b)
			id = hex.EncodeToString(b)
		}
		w.Header().Set("X-Request-ID", id)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), requestIDKey, id)))
	})
}

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

// RequestID returns the request id that ctx carries, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

// statusWriter records the status written, for the access log. It keeps
// http.ResponseController working through Unwrap.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// accessLog writes one line per request. It logs the path without the query
// string, so nothing a client put in a URL (a key, an email) reaches the log.
func (s *server) accessLog(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
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
	})
}

// recoverPanics turns a panic into a logged 500 instead of a dropped
// connection. http.ErrAbortHandler is re-raised: it is how a handler asks to
// abort.
func (s *server) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.log.ErrorContext(r.Context(), "panic", "request_id", RequestID(r.Context()), "panic", v)
			writeProblem(w, http.StatusInternalServerError, "internal error", nil)
		}()
		next.ServeHTTP(w, r)
	})
}

// jsonFallbacks answers unknown routes (404) and known routes with the wrong
// method (405, with Allow) as problem JSON instead of the mux's plain text.
func (s *server) jsonFallbacks(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h, pattern := mux.Handler(r); pattern == "" {
			// The mux's own 404/405 handlers are cheap; run one against a
			// recorder to learn which it is and what Allow it would send.
			rec := &headerRecorder{header: http.Header{}}
			h.ServeHTTP(rec, r)
			if allow := rec.header.Get("Allow"); allow != "" {
				w.Header().Set("Allow", allow)
			}
			if rec.status == http.StatusMethodNotAllowed {
				writeProblem(w, rec.status, "method "+r.Method+" is not allowed here", nil)
				return
			}
			writeProblem(w, http.StatusNotFound, "no route for "+r.URL.Path, nil)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

type headerRecorder struct {
	header http.Header
	status int
}

func (h *headerRecorder) Header() http.Header         { return h.header }
func (h *headerRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (h *headerRecorder) WriteHeader(code int)        { h.status = code }

package httpapi_test

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/ferryhq/ferry/metrics"
	"github.com/ferryhq/ferry/store/storetest"
)

// observed records what Options.Observe is told.
type observed struct {
	mu   sync.Mutex
	seen []string
}

func (o *observed) observe(pattern string, status int, d time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.seen = append(o.seen, pattern+" "+http.StatusText(status))
}

// TestObserveGetsRoutePatterns checks that the metrics hook is told each
// request's route pattern, never its raw path (whose values a client
// chooses), with the status it ended with, unmatched and refused requests
// included.
func TestObserveGetsRoutePatterns(t *testing.T) {
	o := &observed{}
	h := newHarness(t, storetest.Engines(t)[0], options{observe: o.observe})
	u := h.signUp(t, "watched@example.com")
	o.mu.Lock()
	o.seen = nil
	o.mu.Unlock()
	h.do(t, request{method: "DELETE", path: "/auth/api-keys/0197a2f0-no-such-key", auth: u.access})
	h.do(t, request{method: "GET", path: "/users/me", auth: u.access})
	h.do(t, request{method: "GET", path: "/users/me"})
	h.do(t, request{method: "GET", path: "/no/such/path/12345"})
	h.do(t, request{method: "DELETE", path: "/healthz"})
	want := []string{
		"DELETE /auth/api-keys/{id} Not Found",
		"GET /users/me OK",
		"GET /users/me Unauthorized",
		" Not Found",
		" Method Not Allowed",
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.seen) != len(want) {
		t.Fatalf("observed %q, want %q", o.seen, want)
	}
	for i := range want {
		if o.seen[i] != want[i] {
			t.Errorf("request %d observed as %q, want %q", i, o.seen[i], want[i])
		}
	}
}

// BenchmarkObserve is what the metrics hook adds to a request through the
// whole server (GET /healthz, the cheapest route): the same request with
// Observe unset and set to metrics' ObserveRequest, as run wires it.
func BenchmarkObserve(b *testing.B) {
	for _, bc := range []struct {
		name    string
		observe func(string, int, time.Duration)
	}{{"off", nil}, {"on", metrics.New().ObserveRequest}} {
		b.Run(bc.name, func(b *testing.B) {
			h := newHarness(b, "sqlite", options{quiet: true, observe: bc.observe})
			req := httptest.NewRequest("GET", "/healthz", nil)
			b.ReportAllocs()
			for b.Loop() {
				rec := httptest.NewRecorder()
				h.handler.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatal(rec.Code)
				}
			}
		})
	}
}

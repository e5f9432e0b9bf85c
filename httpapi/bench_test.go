package httpapi_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/ferryhq/ferry/store/storetest"
)

// BenchmarkAuthenticateAccessToken measures what authenticating a request
// with an access token costs: a whole GET /users/me through the server, and
// auth.Service.Authenticate alone, with the credential cache warm (the
// steady state) and with it off (a database read per request).
func BenchmarkAuthenticateAccessToken(b *testing.B) {
	benchmarkAuthenticate(b, func(b *testing.B, h *harness) string { return h.signUp(b, "bench@example.com").access })
}

// BenchmarkAuthenticateAPIKey is BenchmarkAuthenticateAccessToken with an
// API key as the bearer credential.
func BenchmarkAuthenticateAPIKey(b *testing.B) {
	benchmarkAuthenticate(b, func(b *testing.B, h *harness) string {
		_, key := h.newAPIKey(b, h.signUp(b, "bench@example.com").access, "bench")
		return key
	})
}

func benchmarkAuthenticate(b *testing.B, credential func(*testing.B, *harness) string) {
	for _, engine := range storetest.Engines(b) {
		for _, cache := range []struct {
			name string
			ttl  time.Duration
		}{{"cached", 0}, {"uncached", time.Nanosecond}} {
			b.Run(engine+"/"+cache.name, func(b *testing.B) {
				h := newHarness(b, engine, options{cacheTTL: cache.ttl, quiet: true})
				cred := credential(b, h)
				b.Run("request", func(b *testing.B) {
					b.ReportAllocs()
					for b.Loop() {
						req, _ := http.NewRequest("GET", "/users/me", nil)
						req.Header.Set("Authorization", "Bearer "+cred)
						rec := httptest.NewRecorder()
						h.handler.ServeHTTP(rec, req)
						if rec.Code != http.StatusOK {
							b.Fatalf("status %d: %s", rec.Code, rec.Body)
						}
					}
				})
				b.Run("request-parallel", func(b *testing.B) {
					b.ReportAllocs()
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							req, _ := http.NewRequest("GET", "/users/me", nil)
							req.Header.Set("Authorization", "Bearer "+cred)
							rec := httptest.NewRecorder()
							h.handler.ServeHTTP(rec, req)
							if rec.Code != http.StatusOK {
								b.Errorf("status %d", rec.Code)
								return
							}
						}
					})
				})
				b.Run("service", func(b *testing.B) {
					b.ReportAllocs()
					ctx := context.Background()
					for b.Loop() {
						if _, err := h.auth.Authenticate(ctx, cred); err != nil {
							b.Fatal(err)
						}
					}
				})
			})
		}
	}
}

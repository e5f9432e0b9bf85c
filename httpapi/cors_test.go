package httpapi_test

import (
	"context"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// corsHeaders are the response headers of the CORS protocol.
var corsHeaders = []string{
	"Access-Control-Allow-Origin", "Access-Control-Allow-Credentials", "Access-Control-Allow-Methods",
	"Access-Control-Allow-Headers", "Access-Control-Max-Age", "Access-Control-Expose-Headers",
}

// corsRequest sends method path with an Origin header (none when empty),
// the bearer credential (none when empty) and extra headers.
func (g *gateway) corsRequest(t *testing.T, method, path, origin, cred string, header map[string]string, body string) *http.Response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, g.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	if cred != "" {
		req.Header.Set("Authorization", "Bearer "+cred)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// preflight is a browser's preflight for a POST with JSON and a bearer
// token, plus a header Ferry does not accept.
func (g *gateway) preflight(t *testing.T, path, origin string) *http.Response {
	t.Helper()
	return g.corsRequest(t, "OPTIONS", path, origin, "", map[string]string{
		"Access-Control-Request-Method":  "POST",
		"Access-Control-Request-Headers": "authorization,content-type,x-unknown",
	}, "")
}

// vary returns the header names of every Vary line of resp.
func vary(resp *http.Response) []string {
	var names []string
	for _, v := range resp.Header.Values("Vary") {
		for n := range strings.SplitSeq(v, ",") {
			names = append(names, strings.TrimSpace(n))
		}
	}
	return names
}

// wantHeaders checks resp's headers: a want of "" means absent.
func wantHeaders(t *testing.T, resp *http.Response, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got := resp.Header.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
}

// noCORS checks resp carries no CORS header.
func noCORS(t *testing.T, resp *http.Response) {
	t.Helper()
	for _, k := range corsHeaders {
		if v := resp.Header.Values(k); v != nil {
			t.Errorf("%s = %q, want none", k, v)
		}
	}
}

// Off by default: no CORS header on any answer, and a preflight is
// refused with a problem that names the setting.
func TestCORSOffByDefault(t *testing.T) {
	g := newGateway(t, gatewayOptions{})
	resp := g.corsRequest(t, "GET", "/users/me", "https://app.example.com", g.token, nil, "")
	if resp.StatusCode != 200 {
		t.Fatalf("GET /users/me: %d", resp.StatusCode)
	}
	noCORS(t, resp)
	if slices.Contains(vary(resp), "Origin") {
		t.Errorf("Vary = %q with CORS off", vary(resp))
	}

	resp = g.preflight(t, "/ai/chat", "https://app.example.com")
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 403 || resp.Header.Get("Content-Type") != "application/problem+json" ||
		!strings.Contains(string(body), "FERRY_CORS_ORIGINS") {
		t.Errorf("preflight: %d %s %s, want 403 naming FERRY_CORS_ORIGINS", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	noCORS(t, resp)
}

// An allowed origin's preflight is answered, with the requested headers
// Ferry accepts named one by one; its requests, errors included, carry
// Access-Control-Allow-Origin for exactly that origin, never credentials.
func TestCORSAllowedOrigin(t *testing.T) {
	// As configured, in another spelling than the browser's.
	g := newGateway(t, gatewayOptions{cors: []string{"https://App.Example.com:443", "http://localhost:5173"}})
	const origin = "https://app.example.com"

	resp := g.preflight(t, "/ai/chat/stream", origin)
	if resp.StatusCode != 204 {
		t.Fatalf("preflight: %d, want 204", resp.StatusCode)
	}
	wantHeaders(t, resp, map[string]string{
		"Access-Control-Allow-Origin":      origin,
		"Access-Control-Allow-Headers":     "authorization, content-type",
		"Access-Control-Max-Age":           "7200",
		"Access-Control-Allow-Credentials": "",
	})
	if m := resp.Header.Get("Access-Control-Allow-Methods"); !strings.Contains(m, "POST") || !strings.Contains(m, "DELETE") {
		t.Errorf("Access-Control-Allow-Methods = %q", m)
	}
	for _, v := range []string{"Origin", "Access-Control-Request-Method", "Access-Control-Request-Headers"} {
		if !slices.Contains(vary(resp), v) {
			t.Errorf("preflight Vary = %q, lacks %s", vary(resp), v)
		}
	}
	// The SDKs' own headers pass too.
	resp = g.corsRequest(t, "OPTIONS", "/v1/chat/completions", "http://localhost:5173", "", map[string]string{
		"Access-Control-Request-Method":  "POST",
		"Access-Control-Request-Headers": "authorization,content-type,x-stainless-os,x-stainless-retry-count",
	}, "")
	wantHeaders(t, resp, map[string]string{
		"Access-Control-Allow-Origin":  "http://localhost:5173",
		"Access-Control-Allow-Headers": "authorization, content-type, x-stainless-os, x-stainless-retry-count",
	})

	for _, c := range []struct {
		name, cred string
		status     int
	}{
		{"signed in", g.token, 200},
		{"an error the page must read", "", 401},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp := g.corsRequest(t, "GET", "/users/me", origin, c.cred, nil, "")
			if resp.StatusCode != c.status {
				t.Fatalf("GET /users/me: %d, want %d", resp.StatusCode, c.status)
			}
			wantHeaders(t, resp, map[string]string{
				"Access-Control-Allow-Origin":      origin,
				"Access-Control-Allow-Credentials": "",
				"Access-Control-Allow-Methods":     "",
			})
			exposed := resp.Header.Get("Access-Control-Expose-Headers")
			for _, h := range []string{"X-Request-ID", "Retry-After"} {
				if !strings.Contains(exposed, h) {
					t.Errorf("Access-Control-Expose-Headers = %q, lacks %s", exposed, h)
				}
			}
			if !slices.Contains(vary(resp), "Origin") {
				t.Errorf("Vary = %q, lacks Origin", vary(resp))
			}
		})
	}

	// The same answer without Origin varies by it too, for caches.
	resp = g.corsRequest(t, "GET", "/users/me", "", g.token, nil, "")
	noCORS(t, resp)
	if !slices.Contains(vary(resp), "Origin") {
		t.Errorf("without Origin: Vary = %q, lacks Origin", vary(resp))
	}
}

// Another origin gets no CORS header: its preflight is refused and its
// answers are not marked readable.
func TestCORSDeniedOrigin(t *testing.T) {
	g := newGateway(t, gatewayOptions{cors: []string{"https://app.example.com"}})
	for _, origin := range []string{"https://evil.example.com", "http://app.example.com", "https://app.example.com.evil.example", "null"} {
		t.Run(origin, func(t *testing.T) {
			resp := g.preflight(t, "/ai/chat", origin)
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 403 || !strings.Contains(string(body), "not in FERRY_CORS_ORIGINS") {
				t.Errorf("preflight: %d %s, want 403 naming FERRY_CORS_ORIGINS", resp.StatusCode, body)
			}
			noCORS(t, resp)
			resp = g.corsRequest(t, "GET", "/users/me", origin, g.token, nil, "")
			if resp.StatusCode != 200 {
				t.Errorf("GET /users/me: %d", resp.StatusCode)
			}
			noCORS(t, resp)
		})
	}
}

// "*" allows every origin with the literal *, which the Fetch standard
// forbids with credentials, so none are offered; Authorization is named,
// as a wildcard would not cover it.
func TestCORSWildcard(t *testing.T) {
	g := newGateway(t, gatewayOptions{cors: []string{"*"}})
	resp := g.preflight(t, "/ai/chat", "https://anywhere.example")
	if resp.StatusCode != 204 {
		t.Fatalf("preflight: %d, want 204", resp.StatusCode)
	}
	wantHeaders(t, resp, map[string]string{
		"Access-Control-Allow-Origin":      "*",
		"Access-Control-Allow-Headers":     "authorization, content-type",
		"Access-Control-Allow-Credentials": "",
	})
	resp = g.corsRequest(t, "GET", "/users/me", "https://anywhere.example", g.token, nil, "")
	if resp.StatusCode != 200 {
		t.Fatalf("GET /users/me: %d", resp.StatusCode)
	}
	wantHeaders(t, resp, map[string]string{
		"Access-Control-Allow-Origin":      "*",
		"Access-Control-Allow-Credentials": "",
	})
	if !strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), "X-Request-ID") {
		t.Errorf("Access-Control-Expose-Headers = %q", resp.Header.Get("Access-Control-Expose-Headers"))
	}
}

// A stream to another origin carries the CORS headers from its first byte
// and runs to its end.
func TestCORSStream(t *testing.T) {
	const origin = "http://localhost:5173"
	g := newGateway(t, gatewayOptions{cors: []string{origin}})
	resp := g.corsRequest(t, "POST", "/ai/chat/stream", origin, g.token, nil, `{"message": "hello"}`)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	wantHeaders(t, resp, map[string]string{"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Credentials": ""})
	if !strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), "X-Request-ID") {
		t.Errorf("Access-Control-Expose-Headers = %q", resp.Header.Get("Access-Control-Expose-Headers"))
	}
	s := parseTurn(t, allEvents(t, resp.Body))
	if s.start == nil || s.text == "" || s.done == nil || s.err != nil {
		t.Errorf("stream: %+v", s)
	}
}

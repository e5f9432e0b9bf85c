package httpapi_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/ferryhq/ferry/llm/llmtest"
	"github.com/ferryhq/ferry/store"
	"github.com/ferryhq/ferry/store/storetest"
)

// TestDatabaseDown checks that a database that cannot be reached is a 503
// with Retry-After, not a 500, whatever the request needed it for, and
// that the cause is logged with the request id but not told to the
// client: on both engines with the store closed under the server, and on
// PostgreSQL with the server gone (a proxy in front of it stopped).
func TestDatabaseDown(t *testing.T) {
	t.Parallel()
	type down struct {
		name string
		open func(t *testing.T) (st *store.Store, stop func())
	}
	var cases []down
	for _, engine := range storetest.Engines(t) {
		cases = append(cases, down{engine + "/store closed", func(t *testing.T) (*store.Store, func()) {
			st := storetest.Open(t, engine)
			return st, func() { st.Close() }
		}})
	}
	if storetest.PostgresURL(t) != "" {
		cases = append(cases, down{"postgres/server gone", func(t *testing.T) (*store.Store, func()) {
			db := storetest.Database(t, "postgres")
			u, err := url.Parse(db.DSN)
			if err != nil {
				t.Fatal(err)
			}
			p := startProxy(t, u.Host)
			u.Host = p.addr
			db.DSN = u.String()
			st, err := store.Open(context.Background(), db)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			if err := st.Migrate(context.Background()); err != nil {
				t.Fatal(err)
			}
			return st, p.stop
		}})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st, stop := tc.open(t)
			g := newGateway(t, gatewayOptions{store: st})
			// The key's principal is cached from here, so requests made
			// with it reach their handlers; the token's is not.
			if resp := g.send(t, t.Context(), "GET", "/users/me", g.key, nil); resp.StatusCode != 200 {
				t.Fatalf("GET /users/me: %d", resp.StatusCode)
			}
			stop()
			for _, r := range []struct {
				name, method, path, cred string
				body                     any
			}{
				{"readyz", "GET", "/readyz", "", nil},
				{"register", "POST", "/auth/register", "", map[string]string{"email": "bob@example.com", "password": "password123"}},
				{"login", "POST", "/auth/login", "", map[string]string{"email": "sdk@example.com", "password": "password123"}},
				{"authenticate", "GET", "/users/me", g.token, nil},
				{"conversations", "GET", "/conversations", g.key, nil},
				{"new conversation", "POST", "/conversations", g.key, map[string]any{"title": "t"}},
				{"chat", "POST", "/ai/chat", g.key, map[string]any{"message": "hi", "model": "claude-sonnet-4-6"}},
				{"chat, continued", "POST", "/ai/chat", g.key, map[string]any{"message": "hi", "conversation_id": "c1"}},
			} {
				resp := g.send(t, t.Context(), r.method, r.path, r.cred, r.body)
				b, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
					t.Errorf("%s: status %d, Retry-After %q: %s; want 503 with Retry-After", r.name, resp.StatusCode, resp.Header.Get("Retry-After"), b)
				}
				for _, leak := range []string{"sql", "closed", "refused", "dial", "127.0.0.1"} {
					if strings.Contains(string(b), leak) {
						t.Errorf("%s: the answer tells the cause (%q): %s", r.name, leak, b)
					}
				}
			}
		})
	}
}

// proxy is a TCP proxy to a database server, so that a test can take the
// server away from a store that is already open.
type proxy struct {
	addr string
	ln   net.Listener
	mu   sync.Mutex
	conn []net.Conn
}

func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{addr: ln.Addr().String(), ln: ln}
	t.Cleanup(p.stop)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conn = append(p.conn, c, up)
			p.mu.Unlock()
			go func() { io.Copy(up, c); up.Close() }()
			go func() { io.Copy(c, up); c.Close() }()
		}
	}()
	return p
}

// stop closes the listener, so new connections are refused, and cuts every
// connection made.
func (p *proxy) stop() {
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conn {
		c.Close()
	}
	p.conn = nil
}

// TestUpstreamUnavailable checks that an upstream that stays overloaded
// (Anthropic's 529) or unavailable (503) once retries have run out is a
// 503 that says when to come back: the upstream's Retry-After when it gave
// one, else a default.
func TestUpstreamUnavailable(t *testing.T) {
	t.Parallel()
	g := newGateway(t, gatewayOptions{})
	for _, tc := range []struct {
		name, path string
		body       map[string]any
		status     int
		header     http.Header
		retryAfter string
	}{
		{"529 on /ai/chat", "/ai/chat", map[string]any{"message": "hi", "model": "claude-sonnet-4-6"}, 529, nil, "5"},
		{"503 on /ai/chat", "/ai/chat", map[string]any{"message": "hi", "model": "openai/gpt-4o-mini"}, 503, nil, "5"},
		{"503 with Retry-After", "/ai/chat", map[string]any{"message": "hi", "model": "openai/gpt-4o-mini"}, 503, http.Header{"Retry-After": {"7"}}, "7"},
		{"529 before a stream's first byte", "/ai/chat/stream", map[string]any{"message": "hi", "model": "claude-sonnet-4-6"}, 529, nil, "5"},
		{"503 on /ollama/generate", "/ollama/generate", map[string]any{"prompt": "hi"}, 503, nil, "5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g.fake.SetScript(llmtest.Script{FailFirst: 100, FailStatus: tc.status, FailHeader: tc.header, FailMessage: "Overloaded"})
			resp := g.send(t, t.Context(), "POST", tc.path, g.key, tc.body)
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != tc.retryAfter {
				t.Errorf("status %d, Retry-After %q: %s; want 503 with Retry-After %s", resp.StatusCode, resp.Header.Get("Retry-After"), b, tc.retryAfter)
			}
		})
	}
}

package httpapi_test

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/chat"
	"github.com/ferryhq/ferry/llm/llmtest"
	"github.com/ferryhq/ferry/store"
	"github.com/ferryhq/ferry/store/storetest"
)

// funnelEntries are every endpoint that calls a model, each with a body
// that makes one call.
var funnelEntries = []struct {
	path string
	body map[string]any
}{
	{"/ai/chat/stream", map[string]any{"message": "hi", "model": "claude-sonnet-4-6"}},
	{"/ai/chat", map[string]any{"message": "hi", "model": "openai/gpt-4o-mini"}},
	{"/v1/chat/completions", map[string]any{"model": "ollama/llama3.2", "stream": true, "messages": []any{map[string]any{"role": "user", "content": "hi"}}}},
	{"/v1/chat/completions", map[string]any{"model": "claude-sonnet-4-6", "messages": []any{map[string]any{"role": "user", "content": "hi"}}}},
	{"/ollama/generate", map[string]any{"model": "llama3.2", "prompt": "hi"}},
	{"/ollama/chat", map[string]any{"model": "llama3.2", "stream": false, "messages": []any{map[string]any{"role": "user", "content": "hi"}}}},
}

// funnelLog records what the funnel's hooks saw.
type funnelLog struct {
	mu       sync.Mutex
	admitted []string // endpoints
	released []string // endpoint and status
	observed []string // endpoint and status
}

func (l *funnelLog) admit(_ context.Context, c *chat.Call) (func(*chat.Result), error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.admitted = append(l.admitted, c.Endpoint)
	return func(res *chat.Result) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.released = append(l.released, c.Endpoint+" "+string(res.Status))
	}, nil
}

func (l *funnelLog) observe(_ context.Context, c *chat.Call, res *chat.Result) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.observed = append(l.observed, fmt.Sprintf("%s %s %s/%s", c.Endpoint, res.Status, c.Provider, res.Model))
}

// TestEveryModelCallPassesTheFunnel checks that each endpoint that calls a
// model, whatever its wire format, is admitted once, released once and
// observed once, with the provider it was routed to: the one place a
// limiter, a cache or a metric hooks in.
func TestEveryModelCallPassesTheFunnel(t *testing.T) {
	t.Parallel()
	for _, engine := range storetest.Engines(t) {
		t.Run(engine, func(t *testing.T) {
			log := &funnelLog{}
			g := newGateway(t, gatewayOptions{engine: engine, admit: log.admit, observe: log.observe})
			for _, e := range funnelEntries {
				resp := g.send(t, t.Context(), "POST", e.path, g.key, e.body)
				body, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != 200 {
					t.Fatalf("%s: status %d: %s", e.path, resp.StatusCode, body)
				}
			}
			// The release and the observers run as a call ends, which for a
			// stream is as its last bytes leave.
			deadline := time.Now().Add(5 * time.Second)
			for {
				log.mu.Lock()
				n := len(log.observed)
				log.mu.Unlock()
				if n >= len(funnelEntries) || time.Now().After(deadline) {
					break
				}
				time.Sleep(5 * time.Millisecond)
			}
			log.mu.Lock()
			defer log.mu.Unlock()
			if len(log.admitted) != len(funnelEntries) || len(log.released) != len(funnelEntries) || len(log.observed) != len(funnelEntries) {
				t.Fatalf("admitted %q, released %q, observed %q; want each of the %d calls once",
					log.admitted, log.released, log.observed, len(funnelEntries))
			}
			for i, e := range funnelEntries {
				if !strings.Contains(strings.Join(log.admitted, ","), e.path) {
					t.Errorf("%s was not admitted: %q", e.path, log.admitted)
				}
				if !strings.Contains(log.released[i], "complete") {
					t.Errorf("released %q, want complete", log.released[i])
				}
			}
			for _, want := range []string{"/ai/chat/stream complete anthropic/", "/ai/chat complete openai/", "/ollama/generate complete ollama/llama3.2", "/ollama/chat complete ollama/llama3.2"} {
				if !strings.Contains(strings.Join(log.observed, "\n"), want) {
					t.Errorf("no observation %q in %q", want, log.observed)
				}
			}
			// One usage entry per call, written by the funnel alone.
			if got := g.usage(t, len(funnelEntries)); len(got) != len(funnelEntries) {
				t.Errorf("usage log has %d entries", len(got))
			}
		})
	}
}

// TestAdmitRefusesBeforeAnything checks that a call the admission hook
// refuses gets the hook's error with its status and Retry-After, in the
// endpoint's own error shape, before any upstream request or any write.
func TestAdmitRefusesBeforeAnything(t *testing.T) {
	t.Parallel()
	refuse := func(context.Context, *chat.Call) (func(*chat.Result), error) {
		return nil, &ferry.Error{Code: ferry.RateLimited, Message: "slow down", RetryAfter: 7 * time.Second}
	}
	g := newGateway(t, gatewayOptions{admit: refuse})
	shapes := map[string]string{"/ai/chat/stream": "detail", "/ai/chat": "detail", "/v1/chat/completions": "error", "/ollama/generate": "error", "/ollama/chat": "error"}
	for _, e := range funnelEntries {
		resp := g.send(t, t.Context(), "POST", e.path, g.key, e.body)
		var body map[string]any
		json.NewDecoder(resp.Body).Decode(&body)
		if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "7" || body[shapes[e.path]] == nil {
			t.Errorf("%s: status %d, Retry-After %q, body %v; want 429, 7, with %q", e.path, resp.StatusCode, resp.Header.Get("Retry-After"), body, shapes[e.path])
		}
		if !strings.Contains(fmt.Sprint(body), "slow down") {
			t.Errorf("%s: body %v lacks the hook's message", e.path, body)
		}
	}
	if n := len(g.fake.Requests()); n != 0 {
		t.Errorf("upstream saw %d requests, want none", n)
	}
	list, total, err := g.store.Conversations(t.Context(), g.userID, ferry.Page{Limit: 10})
	if err != nil || total != 0 || len(list) != 0 {
		t.Errorf("conversations after refusals: %d (%v), want none", total, err)
	}
}

// TestEveryOperationNeedsCredentialsUnlessPublic walks every operation of
// the OpenAPI document: outside the public few, each declares the bearer
// requirement and answers 401 to a request without credentials, so a
// route added without thought is closed, not open.
func TestEveryOperationNeedsCredentialsUnlessPublic(t *testing.T) {
	t.Parallel()
	g := newGateway(t, gatewayOptions{})
	resp := g.send(t, t.Context(), "GET", "/openapi.json", "", nil)
	var doc struct {
		Paths map[string]map[string]struct {
			OperationID string                `json:"operationId"`
			Security    []map[string][]string `json:"security"`
		} `json:"paths"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	public := map[string]bool{"healthz": true, "readyz": true, "register": true, "login": true, "refresh": true}
	seen := 0
	for path, ops := range doc.Paths {
		for method, op := range ops {
			seen++
			if public[op.OperationID] {
				continue
			}
			if len(op.Security) == 0 {
				t.Errorf("%s %s (%s) declares no security", method, path, op.OperationID)
			}
			concrete := strings.NewReplacer("{id}", "x").Replace(path)
			r := g.send(t, t.Context(), strings.ToUpper(method), concrete, "", "{}")
			io.Copy(io.Discard, r.Body)
			if r.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s %s without credentials: status %d, want 401", method, concrete, r.StatusCode)
			}
		}
	}
	if seen < 25 {
		t.Errorf("walked %d operations; the document should have more", seen)
	}
}

// TestLargeBodyRefusedBefore100Continue checks that a body announced over
// the limit is refused with 413 instead of "100 Continue", so a client
// waiting to upload hears why rather than having its upload cut off.
func TestLargeBodyRefusedBefore100Continue(t *testing.T) {
	t.Parallel()
	g := newGateway(t, gatewayOptions{maxBody: 4096})
	u, _ := url.Parse(g.url)
	for _, path := range []string{"/ai/chat/stream", "/v1/chat/completions", "/auth/login"} {
		conn, err := net.Dial("tcp", u.Host)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\n"+
			"Content-Length: 3000000\r\nExpect: 100-continue\r\n\r\n", path, u.Host, g.key)
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		status, err := bufio.NewReader(conn).ReadString('\n')
		conn.Close()
		if err != nil || !strings.HasPrefix(status, "HTTP/1.1 413") {
			t.Errorf("%s: first answer %q (%v), want 413 before any 100 Continue", path, status, err)
		}
	}
}

// TestKeepaliveBeforeAFailure checks the race between a keepalive and a
// failure before the first delta: once a keepalive has committed the
// stream, the failure must arrive as an error event and a done event, not
// as a problem body written into the stream.
func TestKeepaliveBeforeAFailure(t *testing.T) {
	t.Parallel()
	g := newGateway(t, gatewayOptions{keepalive: 5 * time.Millisecond, timeout: 200 * time.Millisecond})
	g.fake.SetScript(llmtest.Script{Break: llmtest.Hang, BreakAfter: 0})
	resp := g.send(t, t.Context(), "POST", "/ai/chat/stream", g.key, map[string]any{"message": "hi", "model": "claude-sonnet-4-6"})
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("status %d, Content-Type %q; want the stream a keepalive committed", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var keepalives, errs, dones int
	var last string
	readEvents(t, resp.Body, func(ev sseEvent) bool {
		switch {
		case ev.comment != "":
			keepalives++
		case ev.data["error"] != nil:
			errs++
			last = "error"
		case ev.data["done"] == true:
			dones++
			last = "done"
		}
		return true
	})
	if keepalives == 0 || errs != 1 || dones != 1 || last != "done" {
		t.Errorf("keepalives %d, error events %d, done events %d, last %q; want keepalives, then one error and one done", keepalives, errs, dones, last)
	}
}

// TestFailedSaveReachesTheClient checks that a turn whose rows cannot be
// written is not answered as if they were: the client gets an error (an
// error event before done, or a 5xx), never a message_id that points at
// nothing. A check constraint the test adds on PostgreSQL refuses the
// message "poison", which makes the write fail for certain.
func TestFailedSaveReachesTheClient(t *testing.T) {
	t.Parallel()
	if storetest.PostgresURL(t) == "" {
		t.Skip("FERRY_TEST_DATABASE_URL not set: the failing write needs PostgreSQL")
	}
	db := storetest.Database(t, "postgres")
	st, err := store.Open(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	raw, err := sql.Open("pgx", db.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.Exec(`ALTER TABLE messages ADD CONSTRAINT no_poison CHECK (content <> 'poison')`); err != nil {
		t.Fatal(err)
	}
	g := newGateway(t, gatewayOptions{engine: "postgres", store: st})
	resp := g.send(t, t.Context(), "POST", "/ai/chat", g.key, map[string]any{"message": "poison", "model": "claude-sonnet-4-6"})
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "could not be saved") {
		t.Errorf("/ai/chat: status %d: %s; want 503 saying it was not saved", resp.StatusCode, body)
	}
	resp = g.send(t, t.Context(), "POST", "/ai/chat/stream", g.key, map[string]any{"message": "poison", "model": "claude-sonnet-4-6"})
	var errs, dones int
	readEvents(t, resp.Body, func(ev sseEvent) bool {
		if ev.data["error"] != nil {
			errs++
		}
		if ev.data["done"] == true {
			dones++
			if ev.data["usage"] != nil {
				t.Errorf("done event reports success: %v", ev.data)
			}
		}
		return true
	})
	if resp.StatusCode != 200 || errs != 1 || dones != 1 {
		t.Errorf("/ai/chat/stream: status %d, %d error and %d done events; want the answer, then an error, then done", resp.StatusCode, errs, dones)
	}
}

// TestUpstreamRefusalIsTheClients checks that an upstream's 4xx for a
// request that was wrong reaches the client as that 4xx, in the upstream's
// words and the endpoint's shape, not as a 502.
func TestUpstreamRefusalIsTheClients(t *testing.T) {
	t.Parallel()
	g := newGateway(t, gatewayOptions{})
	for _, tc := range []struct {
		path   string
		body   map[string]any
		status int
	}{
		{"/ai/chat/stream", map[string]any{"message": "hi", "model": "claude-9"}, 404},
		{"/v1/chat/completions", map[string]any{"model": "claude-9", "stream": true, "messages": []any{map[string]any{"role": "user", "content": "hi"}}}, 404},
		{"/ai/chat", map[string]any{"message": "hi", "model": "openai/gpt-4o-mini"}, 400},
	} {
		g.fake.SetScript(llmtest.Script{FailFirst: 1, FailStatus: tc.status, FailMessage: "model: claude-9 not found"})
		resp := g.send(t, t.Context(), "POST", tc.path, g.key, tc.body)
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != tc.status || !strings.Contains(string(body), "model: claude-9 not found") {
			t.Errorf("%s: status %d: %s; want %d with the upstream's message", tc.path, resp.StatusCode, body, tc.status)
		}
	}
}

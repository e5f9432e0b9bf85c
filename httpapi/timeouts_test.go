package httpapi_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/llm/llmtest"
)

// TestUpstreamIdleTimeout checks that an upstream falling silent after its
// first chunk is cut off after the idle timeout, on every provider and on
// /ollama/*: an error event (code timeout) then done on a stream, 504
// before the first byte, and the upstream request cancelled; while an
// upstream that is slow but keeps talking, or slow to start, is not.
func TestUpstreamIdleTimeout(t *testing.T) {
	t.Parallel()
	const idle = 200 * time.Millisecond
	// The whole call's bound ends a stalled call without the idle timeout
	// too, later and in other words.
	e := &chatEnv{gateway: newGateway(t, gatewayOptions{idle: idle, timeout: 4 * time.Second})}
	ctx := t.Context()
	stall := llmtest.Script{Deltas: llmtest.Deltas(10), Break: llmtest.Hang, BreakAfter: 3}
	for _, p := range providers {
		t.Run(p.name+"/stream", func(t *testing.T) {
			e.fake.SetScript(stall)
			start := time.Now()
			resp := e.post(t, ctx, "/ai/chat/stream", e.token, map[string]any{"message": "hi", "model": p.model})
			s := parseTurn(t, allEvents(t, resp.Body))
			if took := time.Since(start); took > 3*time.Second {
				t.Errorf("the stream took %s to end", took)
			}
			if s.text != strings.Join(llmtest.Deltas(3), "") || s.err == nil || s.err["code"] != "timeout" || s.err["status"] != 504.0 {
				t.Fatalf("text %q, error %v; want three deltas, then a timeout error event", s.text, s.err)
			}
			if !e.fake.WaitCancelled(5 * time.Second) {
				t.Error("the upstream request was not cancelled")
			}
			m := e.storedAnswer(t, s.start["conversation_id"].(string))
			if m.Status != ferry.StatusFailed || m.Content != s.text || !strings.Contains(m.Error, "sent nothing") {
				t.Errorf("stored %s %q error %q", m.Status, m.Content, m.Error)
			}
		})
		t.Run(p.name+"/one piece", func(t *testing.T) {
			e.fake.SetScript(stall)
			resp := e.post(t, ctx, "/ai/chat", e.token, map[string]any{"message": "hi", "model": p.model})
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 504 || !strings.Contains(string(b), "sent nothing") {
				t.Errorf("status %d: %s; want 504", resp.StatusCode, b)
			}
		})
	}
	t.Run("ollama generate", func(t *testing.T) {
		e.fake.SetScript(stall)
		resp := e.post(t, ctx, "/ollama/generate", e.token, map[string]any{"prompt": "hi"})
		b, _ := io.ReadAll(resp.Body)
		lines := ndjsonLines(t, b)
		if resp.StatusCode != 200 || len(lines) != 4 || lines[3]["error"] == nil || !strings.Contains(lines[3]["error"].(string), "sent nothing") {
			t.Fatalf("status %d: %s; want three lines, then an error line", resp.StatusCode, b)
		}
		if !e.fake.WaitCancelled(5 * time.Second) {
			t.Error("the upstream request was not cancelled")
		}
	})
	t.Run("slow but talking", func(t *testing.T) {
		e.fake.SetScript(llmtest.Script{Deltas: llmtest.Deltas(6), Delay: idle / 2})
		resp := e.post(t, ctx, "/ai/chat/stream", e.token, map[string]any{"message": "hi", "model": "claude-sonnet-4-6"})
		if s := parseTurn(t, allEvents(t, resp.Body)); s.err != nil || s.text != strings.Join(llmtest.Deltas(6), "") {
			t.Errorf("text %q, error %v; want the whole answer", s.text, s.err)
		}
	})
	t.Run("slow to start", func(t *testing.T) {
		e.fake.SetScript(llmtest.Script{Deltas: []string{"late"}, Delay: 2 * idle})
		resp := e.post(t, ctx, "/ai/chat/stream", e.token, map[string]any{"message": "hi", "model": "claude-sonnet-4-6"})
		if s := parseTurn(t, allEvents(t, resp.Body)); s.err != nil || s.text != "late" {
			t.Errorf("text %q, error %v; the wait for the first token is not the idle timeout's", s.text, s.err)
		}
	})
}

// TestSlowBodyCutOff checks that a client sending its body slowly is cut
// off once the body read timeout has passed, whether a handler reads the
// body (408), answers without reading it (401, 404), or reads it first
// for another check; and that a stream lasting longer than the timeout,
// after its body arrived, still completes.
func TestSlowBodyCutOff(t *testing.T) {
	t.Parallel()
	const bound = 300 * time.Millisecond
	g := newGateway(t, gatewayOptions{bodyRead: bound})
	u, _ := url.Parse(g.url)
	for _, tc := range []struct{ name, path, cred string }{
		{"login, whose handler reads it raw", "/auth/login", ""},
		{"registration, a typed body", "/auth/register", ""},
		{"unauthenticated, never read", "/ai/chat", ""},
		{"a stream's body", "/ai/chat/stream", g.key},
		{"an Ollama body", "/ollama/generate", g.key},
		{"no such route", "/nope", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			conn, err := net.Dial("tcp", u.Host)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			auth := ""
			if tc.cred != "" {
				auth = "Authorization: Bearer " + tc.cred + "\r\n"
			}
			start := time.Now()
			fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n%s\r\n{", tc.path, u.Host, auth)
			closed := make(chan string)
			go func() {
				b, _ := io.ReadAll(conn)
				first, _, _ := strings.Cut(string(b), "\r\n")
				closed <- first
			}()
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case first := <-closed:
					if took := time.Since(start); took > bound+2*time.Second {
						t.Errorf("the connection closed after %s", took)
					}
					if first != "" && !strings.HasPrefix(first, "HTTP/1.1 4") {
						t.Errorf("answer %q, want a 4xx or none", first)
					}
					return
				case <-tick.C:
					if time.Since(start) > 5*time.Second {
						t.Fatalf("still open after %s, sending a byte every 20 ms", time.Since(start))
					}
					conn.Write([]byte(" "))
				}
			}
		})
	}
	t.Run("a stream outlasting the bound", func(t *testing.T) {
		t.Parallel()
		g := newGateway(t, gatewayOptions{bodyRead: bound})
		g.fake.SetScript(llmtest.Script{Deltas: llmtest.Deltas(8), Delay: bound / 3})
		resp := g.send(t, t.Context(), "POST", "/ai/chat/stream", g.key, map[string]any{"message": "hi", "model": "claude-sonnet-4-6"})
		if s := parseTurn(t, allEvents(t, resp.Body)); s.err != nil || s.text != strings.Join(llmtest.Deltas(8), "") {
			t.Errorf("/ai/chat/stream: text %q, error %v; want the whole answer", s.text, s.err)
		}
		resp = g.send(t, t.Context(), "POST", "/ollama/generate", g.key, map[string]any{"prompt": "hi"})
		sc := bufio.NewScanner(resp.Body)
		var last map[string]any
		n := 0
		for sc.Scan() {
			n++
			json.Unmarshal(sc.Bytes(), &last)
		}
		if n != 9 || last["done"] != true {
			t.Errorf("/ollama/generate: %d lines, the last %v; want 8 and the done line", n, last)
		}
	})
}

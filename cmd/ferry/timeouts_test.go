package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/llm/llmtest"
)

// TestTimeoutSettings checks that serve applies FERRY_UPSTREAM_HEADER_TIMEOUT
// (an upstream that never sends its headers), FERRY_UPSTREAM_IDLE_TIMEOUT
// (one silent after its first chunk) and FERRY_BODY_READ_TIMEOUT (a client
// trickling its body).
func TestTimeoutSettings(t *testing.T) {
	t.Parallel()
	fake := llmtest.Start(t)
	quit := make(chan struct{})
	mute := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Never a header. (The request's context is not cancelled when
		// Ferry gives up: its body is unread, so net/http does not watch
		// the connection.)
		select {
		case <-r.Context().Done():
		case <-quit:
		}
	}))
	t.Cleanup(mute.Close)
	t.Cleanup(func() { close(quit) })
	env := sqliteEnv(t)
	for k, v := range map[string]string{
		"ANTHROPIC_API_KEY": "sk-ant-test", "ANTHROPIC_BASE_URL": fake.AnthropicURL(),
		"OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": mute.URL + "/v1",
		"FERRY_UPSTREAM_HEADER_TIMEOUT": "300ms", "FERRY_UPSTREAM_IDLE_TIMEOUT": "300ms", "FERRY_BODY_READ_TIMEOUT": "300ms",
	} {
		env.vars[k] = v
	}
	in := start(t, env)
	access, _ := in.signUp(t, "t@example.com", "correct horse battery")
	in.client.Timeout = 10 * time.Second

	t.Run("header timeout", func(t *testing.T) {
		start := time.Now()
		status, body := in.call(t, "POST", "/ai/chat", access, map[string]any{"message": "hi", "model": "openai/gpt-4o-mini"})
		if status != http.StatusGatewayTimeout || time.Since(start) > 5*time.Second {
			t.Errorf("status %d after %s: %v; want 504 soon after 300 ms", status, time.Since(start), body)
		}
	})
	t.Run("idle timeout", func(t *testing.T) {
		fake.SetScript(llmtest.Script{Deltas: llmtest.Deltas(5), Break: llmtest.Hang, BreakAfter: 2})
		start := time.Now()
		status, body := in.call(t, "POST", "/ai/chat", access, map[string]any{"message": "hi", "model": "claude-sonnet-4-6"})
		if status != http.StatusGatewayTimeout || time.Since(start) > 5*time.Second {
			t.Errorf("status %d after %s: %v; want 504 soon after 300 ms", status, time.Since(start), body)
		}
	})
	t.Run("body read timeout", func(t *testing.T) {
		u, _ := url.Parse(in.url)
		conn, err := net.Dial("tcp", u.Host)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		start := time.Now()
		fmt.Fprintf(conn, "POST /auth/login HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{", u.Host)
		closed := make(chan string)
		go func() {
			b, _ := io.ReadAll(conn)
			closed <- string(b)
		}()
		for {
			select {
			case answer := <-closed:
				if !strings.HasPrefix(answer, "HTTP/1.1 408") || time.Since(start) > 3*time.Second {
					t.Errorf("after %s: %q; want 408 soon after 300 ms", time.Since(start), answer)
				}
				return
			case <-time.After(20 * time.Millisecond):
				if time.Since(start) > 5*time.Second {
					t.Fatal("the connection is still open after 5 s")
				}
				conn.Write([]byte(" "))
			}
		}
	})
}

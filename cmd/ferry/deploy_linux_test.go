package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryhq/ferry/llm/llmtest"
	"github.com/ferryhq/ferry/store/storetest"
)

// roundRobin is a load balancer in front of several instances: each
// request goes to the next one, as compose.yaml's proxy and Fly's do. It
// notes which instance served each request.
type roundRobin struct {
	mu       sync.Mutex
	backends []*httputil.ReverseProxy
	next     int
	served   map[string]int // request "METHOD path" → backend, the last time
}

func newRoundRobin(t *testing.T, urls []string) (*roundRobin, string) {
	rr := &roundRobin{served: map[string]int{}}
	for _, u := range urls {
		target, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		p := httputil.NewSingleHostReverseProxy(target)
		p.FlushInterval = -1 // pass each event on at once
		rr.backends = append(rr.backends, p)
	}
	srv := httptest.NewServer(rr)
	t.Cleanup(srv.Close)
	return rr, srv.URL
}

func (rr *roundRobin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rr.mu.Lock()
	i := rr.next
	rr.next = (rr.next + 1) % len(rr.backends)
	rr.served[r.Method+" "+r.URL.Path] = i
	rr.mu.Unlock()
	rr.backends[i].ServeHTTP(w, r)
}

func (rr *roundRobin) backendOf(req string) int {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	return rr.served[req]
}

// sseEvent is one event of a seed stream.
type sseEvent struct {
	id   string
	data map[string]any
}

// readEvent reads the next event of an SSE stream, skipping comments.
func readEvent(br *bufio.Reader) (sseEvent, error) {
	var ev sseEvent
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return ev, err
		}
		line = strings.TrimRight(line, "\r\n")
		switch {
		case line == "" && ev.data != nil:
			return ev, nil
		case strings.HasPrefix(line, "id: "):
			ev.id = strings.TrimPrefix(line, "id: ")
		case strings.HasPrefix(line, "data: "):
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &ev.data); err != nil {
				return ev, fmt.Errorf("event %q: %w", line, err)
			}
		}
	}
}

// TestThreeInstancesResumeAStream is issue 11's deployment, as processes:
// three ferry instances on one PostgreSQL and Redis behind a round-robin
// proxy. A stream started through the proxy on one instance is dropped
// mid-answer; the reconnect, sent by the proxy to another instance,
// replays what was missed and follows the rest to done: every delta once,
// in order.
func TestThreeInstancesResumeAStream(t *testing.T) {
	t.Parallel()
	redisURL := os.Getenv("FERRY_TEST_REDIS_URL")
	if redisURL == "" {
		t.Skip("FERRY_TEST_REDIS_URL is not set: several instances share streams through Redis")
	}
	db := storetest.Database(t, "postgres")
	fake := llmtest.Start(t)
	const deltas = 60
	fake.SetScript(llmtest.Script{Deltas: llmtest.Deltas(deltas), Delay: 40 * time.Millisecond})
	env := []string{"DATABASE_URL=" + strings.Replace(db.DSN, "postgres://", "postgresql+asyncpg://", 1),
		"REDIS_URL=" + redisURL, "SECRET_KEY=" + testSecretKey, "FERRY_SHUTDOWN_GRACE=0s",
		"ANTHROPIC_API_KEY=sk-ant-test", "ANTHROPIC_BASE_URL=" + fake.AnthropicURL()}
	var urls []string
	for range 3 {
		urls = append(urls, startChild(t, t.TempDir(), env).url)
	}
	rr, proxy := newRoundRobin(t, urls)
	token := (&child{url: proxy}).signUp(t, fmt.Sprintf("deploy-%d@example.com", time.Now().UnixNano()))

	// Start the answer, read its start and a few deltas, and drop it.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	first, stop := context.WithCancel(ctx)
	req, _ := http.NewRequestWithContext(first, "POST", proxy+"/ai/chat/stream",
		strings.NewReader(`{"message":"count for me","model":"claude-sonnet-4-6"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("start: %v %v", resp, err)
	}
	started := rr.backendOf("POST /ai/chat/stream")
	br := bufio.NewReader(resp.Body)
	start, err := readEvent(br)
	if err != nil || start.data["conversation_id"] == nil {
		t.Fatalf("start event %+v: %v", start, err)
	}
	convID := start.data["conversation_id"].(string)
	var text strings.Builder
	last := start.id
	for range 5 {
		ev, err := readEvent(br)
		if err != nil {
			t.Fatal(err)
		}
		text.WriteString(ev.data["text"].(string))
		last = ev.id
	}
	stop()
	resp.Body.Close()

	// Reconnect through the proxy: another instance serves it.
	req, _ = http.NewRequestWithContext(ctx, "GET", proxy+"/conversations/"+convID+"/stream", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Last-Event-ID", last)
	resp, err = http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("resume: %v %v", resp, err)
	}
	defer resp.Body.Close()
	if resumed := rr.backendOf("GET /conversations/" + convID + "/stream"); resumed == started {
		t.Fatalf("the resume went to instance %d, the one that started it; want another", resumed)
	}
	br = bufio.NewReader(resp.Body)
	seen := map[string]bool{}
	for {
		ev, err := readEvent(br)
		if err != nil {
			t.Fatalf("the resumed stream ended without done: %v (text so far %q)", err, text.String())
		}
		if seen[ev.id] {
			t.Fatalf("event %s twice", ev.id)
		}
		seen[ev.id] = true
		if ev.data["done"] == true {
			break
		}
		if s, ok := ev.data["text"].(string); ok {
			text.WriteString(s)
		}
	}
	if want := strings.Join(llmtest.Deltas(deltas), ""); text.String() != want {
		t.Errorf("the answer read across two instances is\n%q\nwant\n%q", text.String(), want)
	}
}

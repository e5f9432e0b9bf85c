package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/eventlog"
	"github.com/ferryhq/ferry/limit/limittest"
	"github.com/ferryhq/ferry/llm/llmtest"
	"github.com/ferryhq/ferry/search"
	"github.com/ferryhq/ferry/store/storetest"
)

// resumeEnv is a chat environment whose answers' logs are in memory or,
// for "redis", mirrored to FERRY_TEST_REDIS_URL.
func resumeEnv(t *testing.T, engine, backend string) *chatEnv {
	t.Helper()
	var logs *eventlog.Logs
	if backend == "redis" {
		rdb := limittest.Redis(t)
		logs = eventlog.New(eventlog.Options{Redis: rdb, Prefix: limittest.Prefix(t, rdb)})
	}
	e := &chatEnv{gateway: newGateway(t, gatewayOptions{engine: engine, logs: logs})}
	e.other, _ = e.signIn(t, "b@example.com")
	return e
}

// resume sends GET /conversations/{id}/stream with header (Last-Event-ID
// and the like) and query, and returns the open response.
func (e *chatEnv) resume(t *testing.T, convID, token, query string, header map[string]string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("GET", e.url+"/conversations/"+convID+"/stream"+query, nil)
	req.Header.Set("Authorization", "Bearer "+token)
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

// eventIDs returns the ids of evs, failing the test on an event without one.
func eventIDs(t *testing.T, evs []sseEvent) []int {
	t.Helper()
	var ids []int
	for _, ev := range evs {
		if ev.data == nil {
			continue // a keepalive
		}
		n, err := strconv.Atoi(ev.id)
		if err != nil {
			t.Fatalf("event %v has id %q", ev.data, ev.id)
		}
		ids = append(ids, n)
	}
	return ids
}

func seq(from, to int) string {
	var b []string
	for n := from; n <= to; n++ {
		b = append(b, strconv.Itoa(n))
	}
	return "[" + strings.Join(b, " ") + "]"
}

// TestResumeStream leaves an answer mid-stream and comes back with
// Last-Event-ID: the events missed, then the live rest, then done, each
// once; and checks the idle, foreign and malformed cases. On each engine,
// with the logs in memory and in Redis.
func TestResumeStream(t *testing.T) {
	for _, engine := range storetest.Engines(t) {
		for _, backend := range []string{"memory", "redis"} {
			t.Run(engine+"/"+backend, func(t *testing.T) {
				t.Parallel()
				e := resumeEnv(t, engine, backend)
				ctx := context.Background()
				const n = 30 // deltas: events 1 (start) to 32 (done)
				e.fake.SetScript(llmtest.Script{Deltas: llmtest.Deltas(n), Delay: 15 * time.Millisecond})
				cctx, leave := context.WithCancel(ctx)
				resp := e.post(t, cctx, "/ai/chat/stream", e.token, map[string]any{"message": "hi", "model": "claude-sonnet-4-6"})
				var first []sseEvent
				readEvents(t, resp.Body, func(ev sseEvent) bool {
					if ev.data != nil {
						first = append(first, ev)
					}
					return ev.id != "5"
				})
				leave()
				convID := first[0].data["conversation_id"].(string)

				t.Run("another user's conversation is not found", func(t *testing.T) {
					if r := e.resume(t, convID, e.other, "", nil); r.StatusCode != 404 {
						t.Errorf("GET stream: %d", r.StatusCode)
					}
					if status, body := e.stop(t, convID, e.other); status != 404 {
						t.Errorf("stop: %d %s", status, body)
					}
					if r := e.resume(t, "no-such-conversation", e.token, "", nil); r.StatusCode != 404 {
						t.Errorf("GET stream of no conversation: %d", r.StatusCode)
					}
				})
				t.Run("a malformed Last-Event-ID is 400", func(t *testing.T) {
					if r := e.resume(t, convID, e.token, "", map[string]string{"Last-Event-ID": "x"}); r.StatusCode != 400 {
						t.Errorf("status %d", r.StatusCode)
					}
				})

				r := e.resume(t, convID, e.token, "", map[string]string{"Last-Event-ID": "5"})
				if r.StatusCode != 200 || r.Header.Get("Content-Type") != "text/event-stream; charset=utf-8" {
					t.Fatalf("resume: %d %s", r.StatusCode, r.Header.Get("Content-Type"))
				}
				rest := allEvents(t, r.Body)
				if got := fmt.Sprint(eventIDs(t, rest)); got != seq(6, n+2) {
					t.Fatalf("resumed after 5: ids %s, want %s", got, seq(6, n+2))
				}
				s := parseTurn(t, append(first, rest...))
				if want := strings.Join(llmtest.Deltas(n), ""); s.text != want || s.err != nil || s.done["usage"] == nil {
					t.Errorf("the answer in two pieces: %q, error %v, done %v", s.text, s.err, s.done)
				}
				if m := e.storedAnswer(t, convID); m.Status != ferry.StatusComplete || m.Content != s.text {
					t.Errorf("stored %+v", m)
				}

				t.Run("the whole answer again from event 0, by query", func(t *testing.T) {
					r := e.resume(t, convID, e.token, "?last_event_id=0", nil)
					again := allEvents(t, r.Body)
					if got := fmt.Sprint(eventIDs(t, again)); got != seq(1, n+2) {
						t.Fatalf("ids %s", got)
					}
					if parseTurn(t, again).text != s.text {
						t.Error("the replayed answer differs")
					}
				})
				t.Run("nothing being generated is 204", func(t *testing.T) {
					for _, h := range []map[string]string{nil, {"Last-Event-ID": strconv.Itoa(n + 2)}} {
						if r := e.resume(t, convID, e.token, "", h); r.StatusCode != 204 {
							t.Errorf("after done, Last-Event-ID %q: %d", h["Last-Event-ID"], r.StatusCode)
						}
					}
					cr := e.post(t, ctx, "/conversations", e.token, map[string]any{"title": "empty"})
					var conv map[string]any
					if err := json.NewDecoder(cr.Body).Decode(&conv); err != nil || cr.StatusCode != 201 {
						t.Fatalf("create conversation: %d %v", cr.StatusCode, err)
					}
					if r := e.resume(t, conv["id"].(string), e.token, "", nil); r.StatusCode != 204 {
						t.Errorf("new conversation: %d", r.StatusCode)
					}
					if status, body := e.stop(t, conv["id"].(string), e.token); status != 204 {
						t.Errorf("stop with nothing to stop: %d %s", status, body)
					}
				})
				t.Run("stop ends a resumed stream and the upstream call", func(t *testing.T) {
					e.fake.Reset()
					e.fake.SetScript(llmtest.Script{Deltas: llmtest.Deltas(50), Break: llmtest.Hang, BreakAfter: 3})
					cctx, leave := context.WithCancel(ctx)
					resp := e.post(t, cctx, "/ai/chat/stream", e.token, map[string]any{"message": "hi", "model": "claude-sonnet-4-6",
						"conversation_id": convID})
					// The client leaves after the last delta the upstream sends
					// before it hangs (id 4; the start event is 1).
					readEvents(t, resp.Body, func(ev sseEvent) bool { return ev.id != "4" })
					leave()
					r := e.resume(t, convID, e.token, "", map[string]string{"Last-Event-ID": "2"})
					if status, body := e.stop(t, convID, e.token); status != 204 {
						t.Fatalf("stop: %d %s", status, body)
					}
					if !e.fake.WaitCancelled(5 * time.Second) {
						t.Fatal("the upstream request was not cancelled")
					}
					evs := allEvents(t, r.Body)
					if got := fmt.Sprint(eventIDs(t, evs)); got != seq(3, 5) {
						t.Errorf("ids %s, want the third delta's on, then done", got)
					}
					if last := evs[len(evs)-1].data; last["done"] != true || last["stop_reason"] != "stopped" {
						t.Errorf("last event %v, want done, stopped", last)
					}
					if m := e.storedAnswer(t, convID); m.Status != ferry.StatusCancelled || m.Content != strings.Join(llmtest.Deltas(3), "") {
						t.Errorf("stored %+v", m)
					}
				})
			})
		}
	}
}

// TestResumeRAGQuery checks that /rag/query's events go through the
// answer's log: a client coming back after the sources event, within the
// minute an ended answer's log is kept, gets the rest byte for byte as
// the first client got it, cited sources included.
func TestResumeRAGQuery(t *testing.T) {
	eachRAGEngine(t, func(t *testing.T, e *ragEnv) {
		e.index(t, e.aID, search.DefaultCollection, prion, nanotech, rareVar)
		e.fake.SetScript(llmtest.Script{Deltas: []string{"About 1 in 2,000 people ", "carried abnormal PrP [1]."}})
		status, evs, raw := e.ragEvents(t, e.a, map[string]any{"question": prionQuery, "top_k": 3})
		if status != http.StatusOK || len(evs) < 3 {
			t.Fatalf("rag/query: %d %s", status, raw)
		}
		convID := evs[0]["conversation_id"].(string)
		i := strings.Index(raw, "id: 2\n")
		if i < 0 {
			t.Fatalf("no event 2 in %s", raw)
		}
		req, _ := http.NewRequest("GET", e.url+"/conversations/"+convID+"/stream?last_event_id=1", nil)
		req.Header.Set("Authorization", "Bearer "+e.a)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		tail, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(tail) != raw[i:] {
			t.Errorf("resumed after the sources: %d\n%s\nwant\n%s", resp.StatusCode, tail, raw[i:])
		}
		if !strings.Contains(string(tail), `"cited":[{"n":1`) {
			t.Errorf("the resumed done event lacks the cited source: %s", tail)
		}
	})
}

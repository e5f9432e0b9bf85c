package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/llm/llmtest"
	"github.com/ferryhq/ferry/store/storetest"
)

// chatEnv is a gateway with a second user, whose objects the first must
// not reach.
type chatEnv struct {
	*gateway
	other string // an access token of user "b"
}

// newChatEnv starts the environment; only, when given, names the providers
// that are configured.
func newChatEnv(t *testing.T, engine string, keepalive time.Duration, only ...string) *chatEnv {
	t.Helper()
	e := &chatEnv{gateway: newGateway(t, gatewayOptions{engine: engine, keepalive: keepalive, only: only})}
	e.other, _ = e.signIn(t, "b@example.com")
	return e
}

func (e *chatEnv) signIn(t *testing.T, email string) (token, userID string) {
	t.Helper()
	ctx := context.Background()
	u, err := e.auth.CreateUser(ctx, email, "password123", "", ferry.RoleUser)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := e.auth.Login(ctx, email, "password123", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	return pair.AccessToken, u.ID
}

// post sends a JSON body with the token and returns the open response.
func (e *chatEnv) post(t *testing.T, ctx context.Context, path, token string, body any) *http.Response {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequestWithContext(ctx, "POST", e.url+path, strings.NewReader(string(b)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func (e *chatEnv) get(t *testing.T, path, token string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest("GET", e.url+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

// stop sends POST /conversations/{id}/stop and returns its status and body.
func (e *chatEnv) stop(t *testing.T, convID, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", e.url+"/conversations/"+convID+"/stop", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// sseEvent is one event as a client parses it.
type sseEvent struct {
	id      string
	data    map[string]any
	comment string
}

// readEvents parses an event stream the way EventSource does, line by line,
// calling fn with each event until fn returns false or the stream ends.
func readEvents(t *testing.T, r io.Reader, fn func(sseEvent) bool) {
	t.Helper()
	sc := bufio.NewScanner(r)
	var ev sseEvent
	var data strings.Builder
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if data.Len() == 0 && ev.comment == "" && ev.id == "" {
				continue
			}
			if data.Len() > 0 {
				if err := json.Unmarshal([]byte(data.String()), &ev.data); err != nil {
					t.Fatalf("event data is not JSON: %v: %q", err, data.String())
				}
			}
			if !fn(ev) {
				return
			}
			ev, data = sseEvent{}, strings.Builder{}
		case strings.HasPrefix(line, ":"):
			ev.comment = strings.TrimSpace(line[1:])
		case strings.HasPrefix(line, "id: "):
			ev.id = line[4:]
		case strings.HasPrefix(line, "data: "):
			if data.Len() > 0 {
				data.WriteByte('\n')
			}
			data.WriteString(line[6:])
		default:
			t.Fatalf("unexpected line in event stream: %q", line)
		}
	}
}

// allEvents reads the whole stream.
func allEvents(t *testing.T, r io.Reader) []sseEvent {
	var evs []sseEvent
	readEvents(t, r, func(e sseEvent) bool { evs = append(evs, e); return true })
	return evs
}

// streamed splits a finished stream into its parts, failing the test when
// it is not start event, text events, [error event], done event.
type streamed struct {
	start map[string]any
	text  string
	err   map[string]any
	done  map[string]any
}

func parseTurn(t *testing.T, evs []sseEvent) streamed {
	t.Helper()
	var s streamed
	for i, ev := range evs {
		if ev.data == nil {
			continue // keepalive comment
		}
		if ev.id == "" {
			t.Errorf("event %d has no id line", i)
		}
		switch {
		case ev.data["conversation_id"] != nil:
			s.start = ev.data
		case ev.data["text"] != nil:
			s.text += ev.data["text"].(string)
		case ev.data["error"] != nil:
			s.err = ev.data["error"].(map[string]any)
		case ev.data["done"] == true:
			s.done = ev.data
			if i != len(evs)-1 {
				t.Errorf("done event is not the last")
			}
		default:
			t.Errorf("unknown event %v", ev.data)
		}
	}
	if s.start == nil || s.done == nil {
		t.Fatalf("stream lacks its start or done event: %+v", evs)
	}
	return s
}

// storedAnswer waits for the turn's assistant message to be saved (it is
// saved after the response ends) and returns it.
func (e *chatEnv) storedAnswer(t *testing.T, convID string) *ferry.Message {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		msgs, err := e.store.Messages(context.Background(), convID)
		if err != nil {
			t.Fatal(err)
		}
		// The answer's row exists from the start; it is finished (saved
		// after the stream ends) once it is no longer streaming.
		if n := len(msgs); n > 0 && msgs[n-1].Role == ferry.RoleAssistant && msgs[n-1].Status != ferry.StatusStreaming {
			return msgs[n-1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no finished assistant message stored in %s; messages: %d", convID, len(msgs))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var providers = []struct {
	name, model, stop string
}{
	{"anthropic", "claude-sonnet-4-6", "end_turn"},
	{"openai", "openai/gpt-4o-mini", "stop"},
	{"ollama", "ollama/llama3.2", "stop"},
}

func TestChatStreamPerProvider(t *testing.T) {
	for _, engine := range storetest.Engines(t) {
		for _, p := range providers {
			t.Run(engine+"/"+p.name, func(t *testing.T) {
				e := newChatEnv(t, engine, 0)
				ctx := context.Background()

				t.Run("full answer", func(t *testing.T) {
					e.fake.SetScript(llmtest.Script{Deltas: llmtest.Deltas(20), InputTokens: 7, OutputTokens: 20})
					resp := e.post(t, ctx, "/ai/chat/stream", e.token, map[string]any{"message": "hello", "model": p.model})
					if resp.StatusCode != 200 {
						t.Fatalf("status %d", resp.StatusCode)
					}
					for h, want := range map[string]string{"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "Content-Type": "text/event-stream; charset=utf-8"} {
						if got := resp.Header.Get(h); got != want {
							t.Errorf("%s = %q, want %q", h, got, want)
						}
					}
					s := parseTurn(t, allEvents(t, resp.Body))
					if want := strings.Join(llmtest.Deltas(20), ""); s.text != want {
						t.Fatalf("text = %q, want %q", s.text, want)
					}
					if s.err != nil {
						t.Fatalf("unexpected error event %v", s.err)
					}
					usage := s.done["usage"].(map[string]any)
					if usage["input_tokens"] != 7.0 || usage["output_tokens"] != 20.0 || s.done["stop_reason"] != p.stop {
						t.Errorf("done event = %v", s.done)
					}
					convID := s.start["conversation_id"].(string)
					m := e.storedAnswer(t, convID)
					if m.Status != ferry.StatusComplete || m.Content != s.text || m.Provider != p.name ||
						m.InputTokens != 7 || m.OutputTokens != 20 || m.StopReason != p.stop || m.ID != s.start["message_id"] {
						t.Errorf("stored %+v", m)
					}
					status, conv := e.get(t, "/conversations/"+convID, e.token)
					if status != 200 || len(conv["messages"].([]any)) != 2 || conv["title"] != "hello" {
						t.Errorf("GET conversation: %d %v", status, conv)
					}
					// The system prompt and the message reached the upstream.
					if body := string(e.fake.Last().Body); !strings.Contains(body, "be brief") || !strings.Contains(body, "hello") {
						t.Errorf("upstream got %s", body)
					}

					t.Run("history on the next turn", func(t *testing.T) {
						e.fake.SetScript(llmtest.Script{Deltas: []string{"ok"}})
						resp := e.post(t, ctx, "/ai/chat/stream", e.token, map[string]any{"message": "second", "model": p.model, "conversation_id": convID})
						parseTurn(t, allEvents(t, resp.Body))
						body := string(e.fake.Last().Body)
						if !strings.Contains(body, "hello") || !strings.Contains(body, "tok19") || !strings.Contains(body, "second") {
							t.Errorf("history not sent upstream: %s", body)
						}
					})
					t.Run("another user's conversation is not found", func(t *testing.T) {
						resp := e.post(t, ctx, "/ai/chat/stream", e.other, map[string]any{"message": "x", "model": p.model, "conversation_id": convID})
						if resp.StatusCode != 404 {
							t.Errorf("status %d, want 404", resp.StatusCode)
						}
						if status, _ := e.get(t, "/conversations/"+convID, e.other); status != 404 {
							t.Errorf("GET status %d, want 404", status)
						}
					})
				})

				t.Run("error mid-stream", func(t *testing.T) {
					e.fake.SetScript(llmtest.Script{Deltas: llmtest.Deltas(10), Break: llmtest.ErrorEvent, BreakAfter: 3, ErrorMessage: "Overloaded"})
					resp := e.post(t, ctx, "/ai/chat/stream", e.token, map[string]any{"message": "hi", "model": p.model})
					if resp.StatusCode != 200 {
						t.Fatalf("status %d", resp.StatusCode)
					}
					s := parseTurn(t, allEvents(t, resp.Body))
					if s.text != strings.Join(llmtest.Deltas(3), "") || s.err == nil {
						t.Fatalf("text %q, error %v", s.text, s.err)
					}
					m := e.storedAnswer(t, s.start["conversation_id"].(string))
					if m.Status != ferry.StatusFailed || m.Content != s.text || m.Error == "" {
						t.Errorf("stored %+v", m)
					}
				})

				t.Run("429 then success", func(t *testing.T) {
					e.fake.Reset()
					e.fake.SetScript(llmtest.Script{Deltas: []string{"after ", "retry"}, FailFirst: 1, FailStatus: 429,
						FailHeader: http.Header{"Retry-After": {"0"}}})
					resp := e.post(t, ctx, "/ai/chat/stream", e.token, map[string]any{"message": "hi", "model": p.model})
					s := parseTurn(t, allEvents(t, resp.Body))
					if s.text != "after retry" || s.err != nil {
						t.Fatalf("text %q, error %v", s.text, s.err)
					}
					if n := len(e.fake.Requests()); n != 2 {
						t.Errorf("upstream saw %d requests, want 2", n)
					}
				})

				t.Run("still rate limited is 429 with Retry-After", func(t *testing.T) {
					e.fake.SetScript(llmtest.Script{FailFirst: 100, FailStatus: 429, FailHeader: http.Header{"Retry-After": {"7"}}})
					resp := e.post(t, ctx, "/ai/chat/stream", e.token, map[string]any{"message": "hi", "model": p.model})
					if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
						t.Fatalf("status %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
					}
				})

				t.Run("client leaving does not stop the answer; stop cancels upstream", func(t *testing.T) {
					// The guarantee that the upstream call is cancelled at
					// once moved from the client leaving to POST
					// /conversations/{id}/stop: this client could come back.
					e.fake.Reset()
					e.fake.SetScript(llmtest.Script{Deltas: llmtest.Deltas(50), Break: llmtest.Hang, BreakAfter: 2})
					cctx, cancel := context.WithCancel(ctx)
					defer cancel()
					resp := e.post(t, cctx, "/ai/chat/stream", e.token, map[string]any{"message": "hi", "model": p.model})
					var convID string
					texts := 0
					readEvents(t, resp.Body, func(ev sseEvent) bool {
						if id, ok := ev.data["conversation_id"].(string); ok {
							convID = id
						}
						if _, ok := ev.data["text"]; ok {
							texts++
						}
						return texts < 2
					})
					cancel()
					if e.fake.WaitCancelled(300 * time.Millisecond) {
						t.Fatal("the upstream request was cancelled when the client left")
					}
					if status, body := e.stop(t, convID, e.other); status != 404 {
						t.Errorf("another user's stop: %d %s, want 404", status, body)
					}
					if status, body := e.stop(t, convID, e.token); status != 204 {
						t.Fatalf("stop: %d %s", status, body)
					}
					if !e.fake.WaitCancelled(5 * time.Second) {
						t.Fatal("upstream request was not cancelled by stop")
					}
					m := e.storedAnswer(t, convID)
					if m.Status != ferry.StatusCancelled || m.Content != strings.Join(llmtest.Deltas(2), "") {
						t.Errorf("stored %+v", m)
					}
				})

				t.Run("client leaving, the answer completes and is stored", func(t *testing.T) {
					e.fake.Reset()
					e.fake.SetScript(llmtest.Script{Deltas: llmtest.Deltas(20), Delay: 10 * time.Millisecond})
					cctx, cancel := context.WithCancel(ctx)
					defer cancel()
					resp := e.post(t, cctx, "/ai/chat/stream", e.token, map[string]any{"message": "hi", "model": p.model})
					var convID string
					readEvents(t, resp.Body, func(ev sseEvent) bool {
						if id, ok := ev.data["conversation_id"].(string); ok {
							convID = id
						}
						return ev.data["text"] == nil
					})
					cancel()
					m := e.storedAnswer(t, convID)
					if m.Status != ferry.StatusComplete || m.Content != strings.Join(llmtest.Deltas(20), "") {
						t.Errorf("stored %+v", m)
					}
					if e.fake.CancelledCount() != 0 {
						t.Error("the upstream request was cancelled")
					}
				})

				t.Run("text framing", func(t *testing.T) {
					deltas := []string{"第一行\n第二行", "\"引号\" \\ ", "data: {\"done\": true}\n\n", "中文。\r\nend"}
					e.fake.SetScript(llmtest.Script{Deltas: deltas, Fragment: true})
					resp := e.post(t, ctx, "/ai/chat/stream", e.token, map[string]any{"message": "你好", "model": p.model})
					s := parseTurn(t, allEvents(t, resp.Body))
					if want := strings.Join(deltas, ""); s.text != want {
						t.Fatalf("text = %q, want %q", s.text, want)
					}
				})
			})
		}
	}
}

func TestChatUpstreamFailuresBeforeFirstByte(t *testing.T) {
	e := newChatEnv(t, "sqlite", 0)
	ctx := context.Background()
	e.fake.SetScript(llmtest.Script{FailFirst: 100, FailStatus: 401})
	resp := e.post(t, ctx, "/ai/chat/stream", e.token, map[string]any{"message": "hi", "model": "claude-sonnet-4-6"})
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 502 || !strings.Contains(string(body), "ANTHROPIC_API_KEY") || strings.Contains(string(body), "sk-ant-test") {
		t.Errorf("bad upstream key: %d %s", resp.StatusCode, body)
	}

	resp = e.post(t, ctx, "/ai/chat/stream", e.token, map[string]any{"message": ""})
	if resp.StatusCode != 422 && resp.StatusCode != 400 {
		t.Errorf("empty message: %d", resp.StatusCode)
	}
	req, _ := http.NewRequest("POST", e.url+"/ai/chat/stream", strings.NewReader(`{"message":"hi"}`))
	req.Header.Set("Content-Type", "application/json")
	resp, _ = http.DefaultClient.Do(req)
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("unauthenticated: %d", resp.StatusCode)
	}
}

func TestChatUnconfiguredProvider(t *testing.T) {
	e := newChatEnv(t, "sqlite", 0, "ollama")
	resp := e.post(t, context.Background(), "/ai/chat/stream", e.token, map[string]any{"message": "hi", "model": "claude-sonnet-4-6"})
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 400 || !strings.Contains(string(body), "ANTHROPIC_API_KEY") {
		t.Errorf("%d %s", resp.StatusCode, body)
	}
	if n := len(e.fake.Requests()); n != 0 {
		t.Errorf("upstream saw %d requests", n)
	}
}

func TestChatOneShotAndModels(t *testing.T) {
	e := newChatEnv(t, "sqlite", 0)
	e.fake.SetScript(llmtest.Script{Deltas: []string{"a", "b"}})
	resp := e.post(t, context.Background(), "/ai/chat", e.token, map[string]any{"message": "hi", "model": "ollama/llama3.2"})
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	if resp.StatusCode != 200 || out["text"] != "ab" || out["conversation_id"] == "" {
		t.Fatalf("%d %v", resp.StatusCode, out)
	}
	status, models := e.get(t, "/ai/models", e.token)
	items, _ := models["items"].([]any)
	if status != 200 || len(items) == 0 || models["default"] != "anthropic/claude-sonnet-4-6" {
		t.Fatalf("%d %v", status, models)
	}
}

func TestChatKeepaliveAndDraining(t *testing.T) {
	e := newChatEnv(t, "sqlite", 20*time.Millisecond)
	e.fake.SetScript(llmtest.Script{Deltas: []string{"slow"}, Delay: 150 * time.Millisecond, Break: llmtest.Hang, BreakAfter: 1})
	resp := e.post(t, context.Background(), "/ai/chat/stream", e.token, map[string]any{"message": "hi", "model": "ollama/llama3.2"})
	var sawKeepalive bool
	var evs []sseEvent
	readEvents(t, resp.Body, func(ev sseEvent) bool {
		evs = append(evs, ev)
		if ev.comment == "keepalive" {
			sawKeepalive = true
		}
		if ev.data["text"] != nil {
			e.drain() // shutdown starts while the model is silent
		}
		return true
	})
	if !sawKeepalive {
		t.Error("no keepalive comment while the model was silent")
	}
	s := parseTurn(t, evs)
	if s.err == nil || s.err["code"] != "unavailable" {
		t.Errorf("draining should end the stream with an error event, got %v", s.err)
	}
	if !e.fake.WaitCancelled(5 * time.Second) {
		t.Error("draining did not cancel the upstream request")
	}
}

func TestConversationsAPI(t *testing.T) {
	for _, engine := range storetest.Engines(t) {
		t.Run(engine, func(t *testing.T) {
			e := newChatEnv(t, engine, 0)
			ctx := context.Background()
			resp := e.post(t, ctx, "/conversations", e.token, map[string]any{"title": "Plans"})
			var c map[string]any
			json.NewDecoder(resp.Body).Decode(&c)
			id, _ := c["id"].(string)
			if resp.StatusCode != 201 || id == "" {
				t.Fatalf("%d %v", resp.StatusCode, c)
			}
			e.post(t, ctx, "/conversations", e.token, map[string]any{"title": "Newer"})
			status, list := e.get(t, "/conversations?limit=1", e.token)
			items := list["items"].([]any)
			if status != 200 || list["total"] != 2.0 || len(items) != 1 || items[0].(map[string]any)["title"] != "Newer" {
				t.Fatalf("list: %d %v", status, list)
			}
			if status, list := e.get(t, "/conversations", e.other); status != 200 || list["total"] != 0.0 {
				t.Errorf("other user's list: %d %v", status, list)
			}
			for _, tc := range []struct {
				method, token string
				body          string
				want          int
			}{
				{"PATCH", e.other, `{"title":"x"}`, 404},
				{"DELETE", e.other, ``, 404},
				{"PATCH", e.token, `{"title":""}`, 422},
				{"PATCH", e.token, `{"title":"Renamed"}`, 200},
				{"DELETE", e.token, ``, 204},
				{"DELETE", e.token, ``, 404},
			} {
				req, _ := http.NewRequest(tc.method, e.url+"/conversations/"+id, strings.NewReader(tc.body))
				req.Header.Set("Authorization", "Bearer "+tc.token)
				if tc.body != "" {
					req.Header.Set("Content-Type", "application/json")
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != tc.want {
					t.Errorf("%s %s: %d, want %d", tc.method, tc.body, resp.StatusCode, tc.want)
				}
			}
		})
	}
}

// TestNoGoroutineOutlivesItsRequest runs cancelled and failed streams and
// checks the goroutine count returns to where it was. Like idle
// connections, the server's idle workers (offload.go), which wait to run
// the next requests' handlers, are not counted: how many there are
// depends on how many handlers ran at once, and the pool bounds them.
func TestNoGoroutineOutlivesItsRequest(t *testing.T) {
	e := newChatEnv(t, "sqlite", 10*time.Millisecond)
	buf := make([]byte, 1<<20)
	goroutines := func() int {
		n := runtime.Stack(buf, true)
		idleWorkers := 0
		for _, g := range strings.Split(string(buf[:n]), "\n\n") {
			if strings.Contains(g, "[coroutine]") && strings.Contains(g, "httpapi.newWorker") {
				idleWorkers++
			}
		}
		return runtime.NumGoroutine() - idleWorkers
	}
	settle := func() int {
		http.DefaultClient.CloseIdleConnections()
		e.upstream.CloseIdleConnections()
		n := goroutines()
		for range 100 {
			time.Sleep(20 * time.Millisecond)
			m := goroutines()
			if m == n {
				break
			}
			n = m
		}
		return n
	}
	streamAndCancel := func(model string) {
		e.fake.SetScript(llmtest.Script{Deltas: llmtest.Deltas(10), Break: llmtest.Hang, BreakAfter: 1})
		cctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		b, _ := json.Marshal(map[string]any{"message": "hi", "model": model})
		req, _ := http.NewRequestWithContext(cctx, "POST", e.url+"/ai/chat/stream", strings.NewReader(string(b)))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+e.token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var convID string
		readEvents(t, resp.Body, func(ev sseEvent) bool {
			if id, ok := ev.data["conversation_id"].(string); ok {
				convID = id
			}
			return ev.data["text"] == nil
		})
		cancel()
		resp.Body.Close()
		// Leaving does not end the answer (it could be resumed); stopping
		// it does.
		if status, body := e.stop(t, convID, e.token); status != 204 {
			t.Fatalf("stop: %d %s", status, body)
		}
		e.storedAnswer(t, convID)
	}
	// Warm up: the first requests start connection-pool goroutines that stay.
	for _, p := range providers {
		streamAndCancel(p.model)
	}
	before := settle()
	for range 5 {
		for _, p := range providers {
			streamAndCancel(p.model)
		}
	}
	if after := settle(); after > before {
		n := runtime.Stack(buf, true)
		t.Fatalf("goroutines: %d before, %d after 15 cancelled streams\n%s", before, after, buf[:n])
	}
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/config"
	"github.com/ferryhq/ferry/llm/llmtest"
	"github.com/ferryhq/ferry/store"
	"github.com/ferryhq/ferry/store/storetest"
)

// withFake points every provider of env at fake.
func withFake(env fakeEnv, fake *llmtest.Server) fakeEnv {
	env.vars["ANTHROPIC_API_KEY"] = "sk-ant-test"
	env.vars["ANTHROPIC_BASE_URL"] = fake.AnthropicURL()
	env.vars["OPENAI_API_KEY"] = "sk-test"
	env.vars["OPENAI_BASE_URL"] = fake.OpenAIURL()
	env.vars["OLLAMA_BASE_URL"] = fake.OllamaURL()
	return env
}

// openStore opens the database env's instance uses, from outside it.
func (f fakeEnv) openStore(t testing.TB) (*store.Store, config.Database) {
	t.Helper()
	cfg, err := config.Load(func(k string) string { return f.vars[k] }, "")
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(context.Background(), cfg.Database)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st, cfg.Database
}

// post sends a JSON body with a bearer credential and returns the open
// response, or the error of a cut connection.
func (in *instance) post(ctx context.Context, path, bearer string, body any) (*http.Response, error) {
	b, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, "POST", in.url+path, bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+bearer)
	return in.client.Do(req)
}

// TestShutdownEndsAndSavesModelCalls checks that a shutdown whose deadline
// comes before the answers end loses none of them: every model call,
// whatever its endpoint and whether it streams, is ended a little before
// the deadline and saved as cancelled with what the model wrote; a client
// that waits for a whole answer hears 503 with Retry-After, and a stream
// ends with its error event, then its end, never a cut connection.
func TestShutdownEndsAndSavesModelCalls(t *testing.T) {
	t.Parallel()
	for _, engine := range storetest.Engines(t) {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			fake := llmtest.Start(t)
			// 40 s answers, far past the 3 s shutdown timeout.
			fake.SetScript(llmtest.Script{Deltas: llmtest.Deltas(400), Delay: 100 * time.Millisecond})
			env := withFake(engineEnv(t, engine), fake)
			env.vars["FERRY_SHUTDOWN_TIMEOUT"] = "3s"
			in := start(t, env)
			access, _ := in.signUp(t, "busy@example.com", "busy password")
			userID := in.must(t, http.StatusOK, "GET", "/users/me", access, nil)["id"].(string)

			// Each call asks something of its own: identical ones would
			// share one upstream call (the answer cache's single flight).
			seed := map[string]any{"message": "hi", "model": "claude-sonnet-4-6"}
			seedStream := map[string]any{"message": "hello", "model": "claude-sonnet-4-6"}
			messages := []any{map[string]any{"role": "user", "content": "hi"}}
			messagesStream := []any{map[string]any{"role": "user", "content": "hello"}}
			calls := []struct {
				name, path string
				body       any
				stream     bool
				// end is how a stream must end: its last bytes.
				errFrame, end string
			}{
				{name: "/ai/chat", path: "/ai/chat", body: seed},
				{name: "/ai/chat/stream", path: "/ai/chat/stream", body: seedStream, stream: true,
					errFrame: `"code":"unavailable"`, end: `"done":true}` + "\n\n"},
				{name: "/v1/chat/completions", path: "/v1/chat/completions",
					body: map[string]any{"model": "openai/gpt-4o-mini", "messages": messages}},
				{name: "/v1/chat/completions streaming", path: "/v1/chat/completions",
					body: map[string]any{"model": "openai/gpt-4o-mini", "messages": messagesStream, "stream": true}, stream: true,
					errFrame: `"code":"unavailable"`, end: "data: [DONE]\n\n"},
				{name: "/ollama/generate", path: "/ollama/generate", body: map[string]any{"model": "llama3.2", "prompt": "hi", "stream": false}},
				{name: "/ollama/generate streaming", path: "/ollama/generate", body: map[string]any{"model": "llama3.2", "prompt": "hi"}, stream: true,
					errFrame: `{"error":"the server is restarting`, end: "}\n"},
			}
			var wg sync.WaitGroup
			for _, c := range calls {
				wg.Add(1)
				go func() {
					defer wg.Done()
					resp, err := in.post(context.Background(), c.path, access, c.body)
					if err != nil {
						t.Errorf("%s: %v", c.name, err)
						return
					}
					defer resp.Body.Close()
					body, err := io.ReadAll(resp.Body)
					if err != nil {
						t.Errorf("%s: the answer was cut off: %v after %q", c.name, err, body)
						return
					}
					if !c.stream {
						if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" ||
							!strings.Contains(string(body), "restarting") {
							t.Errorf("%s: %d, Retry-After %q: %s; want 503 with Retry-After", c.name, resp.StatusCode,
								resp.Header.Get("Retry-After"), body)
						}
						return
					}
					s := string(body)
					if resp.StatusCode != http.StatusOK || !strings.Contains(s, "tok0") || !strings.Contains(s, c.errFrame) ||
						!strings.HasSuffix(s, c.end) || strings.Index(s, c.errFrame) > strings.LastIndex(s, c.end) {
						t.Errorf("%s: %d: %q; want the answer so far, then an error, then the end", c.name, resp.StatusCode, s)
					}
				}()
			}
			// Every call is under way upstream before SIGTERM, the streamed
			// ones with text sent (an answer in one piece sends none before
			// its end).
			deadline := time.Now().Add(10 * time.Second)
			for {
				// The model lists the start-up report asked for are GETs.
				var reqs []*llmtest.Request
				for _, r := range fake.Requests() {
					if r.Method == http.MethodPost {
						reqs = append(reqs, r)
					}
				}
				going := 0
				for _, r := range reqs {
					if r.DeltasSent() > 1 {
						going++
					}
				}
				if len(reqs) == len(calls) && going >= len(calls)-1 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%d of %d calls under way after 10 s", len(reqs), len(calls))
				}
				time.Sleep(10 * time.Millisecond)
			}
			sigterm := time.Now()
			in.cancel()
			answered := make(chan struct{})
			go func() {
				wg.Wait()
				close(answered)
			}()
			select {
			case <-answered:
			case <-time.After(30 * time.Second):
				t.Fatal("calls still unanswered 30 s after SIGTERM")
			}
			if err := in.stop(t); err != nil {
				t.Fatalf("run returned %v, want nil", err)
			}
			if d := time.Since(sigterm); d > 4*time.Second {
				t.Errorf("shutdown took %v with a 3 s timeout", d)
			}

			st, _ := env.openStore(t)
			ctx := context.Background()
			convs, _, err := st.Conversations(ctx, userID, ferry.Page{Limit: 10})
			if err != nil {
				t.Fatal(err)
			}
			if len(convs) != 2 {
				t.Fatalf("%d conversations, want 2 (/ai/chat and /ai/chat/stream)", len(convs))
			}
			for _, conv := range convs {
				msgs, err := st.Messages(ctx, conv.ID)
				if err != nil {
					t.Fatal(err)
				}
				if len(msgs) != 2 {
					t.Fatalf("conversation %s holds %d messages, want the question and the answer", conv.ID, len(msgs))
				}
				if a := msgs[1]; a.Status != ferry.StatusCancelled || !strings.HasPrefix(a.Content, "tok0 tok1 ") || a.OutputTokens == 0 {
					t.Errorf("answer saved as %s with %d output tokens: %q; want cancelled with what was written", a.Status, a.OutputTokens, a.Content)
				}
			}
			usage, err := st.UsageFor(ctx, userID)
			if err != nil {
				t.Fatal(err)
			}
			if len(usage) != len(calls) {
				t.Fatalf("%d usage entries, want %d", len(usage), len(calls))
			}
			counted := 0
			for _, u := range usage {
				if u.Status != string(ferry.StatusCancelled) {
					t.Errorf("usage of %s: %s; want cancelled", u.Endpoint, u.Status)
				}
				if u.OutputTokens > 0 {
					counted++
				}
			}
			// Ollama's answer in one piece had brought no text yet.
			if counted != len(calls)-1 {
				t.Errorf("%d usage entries count the text written, want %d", counted, len(calls)-1)
			}
		})
	}
}

// TestReadyzDuringShutdownGrace checks that after SIGTERM /readyz answers
// 503 for FERRY_SHUTDOWN_GRACE while requests are still served, new ones
// included, so that a load balancer moves away before the listener
// closes; and that the answers in flight then finish undisturbed.
func TestReadyzDuringShutdownGrace(t *testing.T) {
	t.Parallel()
	fake := llmtest.Start(t)
	fake.SetScript(llmtest.Script{Deltas: llmtest.Deltas(20), Delay: 100 * time.Millisecond}) // 2 s
	env := withFake(sqliteEnv(t), fake)
	env.vars["FERRY_SHUTDOWN_GRACE"] = "1s"
	in := start(t, env)
	access, _ := in.signUp(t, "late@example.com", "late password")

	resp, err := in.post(context.Background(), "/ai/chat/stream", access, map[string]any{"message": "hi", "model": "claude-sonnet-4-6"})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	streamed := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(resp.Body)
		streamed <- string(b)
	}()
	for deadline := time.Now().Add(10 * time.Second); fake.Last() == nil || fake.Last().DeltasSent() == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the answer did not start: %d", resp.StatusCode)
		}
	}

	sigterm := time.Now()
	in.cancel()
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	defer fresh.CloseIdleConnections()
	for {
		res, err := fresh.Get(in.url + "/readyz")
		if err != nil {
			t.Fatalf("/readyz during the grace: %v", err)
		}
		res.Body.Close()
		if res.StatusCode == http.StatusServiceUnavailable {
			break
		}
		if time.Since(sigterm) > 500*time.Millisecond {
			t.Fatalf("/readyz still answers %d after SIGTERM", res.StatusCode)
		}
	}
	// New connections are still served while the load balancer notices.
	res, err := fresh.Get(in.url + "/healthz")
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("/healthz during the grace: %v %v", res, err)
	}
	res.Body.Close()
	if time.Since(sigterm) > time.Second {
		t.Fatal("too slow to check the grace")
	}
	waitRefused(t, in.addr)
	if d := time.Since(sigterm); d < 900*time.Millisecond {
		t.Errorf("the listener closed %v after SIGTERM, before the 1 s grace", d)
	}
	s := <-streamed
	if !strings.Contains(s, "tok19") || strings.Contains(s, `"error"`) || !strings.Contains(s, `"done":true,"stop_reason":"end_turn"`) {
		t.Errorf("the answer in flight did not finish undisturbed: %q", s)
	}
	if err := in.stop(t); err != nil {
		t.Fatal(err)
	}
}

// TestInstancesEndRevokedUsersCalls runs two instances on one PostgreSQL
// database and one Redis: a user disabled through one instance has their
// stream on the other ended at once, its upstream request cancelled.
func TestInstancesEndRevokedUsersCalls(t *testing.T) {
	t.Parallel()
	if os.Getenv("FERRY_TEST_DATABASE_URL") == "" || os.Getenv("FERRY_TEST_REDIS_URL") == "" {
		t.Skip("FERRY_TEST_DATABASE_URL and FERRY_TEST_REDIS_URL not both set: skipping the two-instance test")
	}
	fake := llmtest.Start(t)
	fake.SetScript(llmtest.Script{Deltas: llmtest.Deltas(400), Delay: 50 * time.Millisecond}) // 20 s
	env := withFake(engineEnv(t, "postgres"), fake)
	env.vars["FERRY_ADMIN_EMAIL"] = "root@example.com"
	env.vars["FERRY_ADMIN_PASSWORD"] = "root password"
	a := start(t, env)
	b := start(t, env)
	access, _ := a.signUp(t, "streamer@example.com", "password123")
	me := a.must(t, http.StatusOK, "GET", "/users/me", access, nil)
	admin, _ := a.login(t, "root@example.com", "root password")

	// Without the announcement the stream would run 20 s; the test gives
	// up on it after 10.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := b.post(ctx, "/ai/chat/stream", access, map[string]any{"message": "hi", "model": "claude-sonnet-4-6"})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 1)
	if _, err := resp.Body.Read(buf); err != nil {
		t.Fatal(err)
	}
	revoked := time.Now()
	a.must(t, http.StatusOK, "PATCH", "/users/"+me["id"].(string), admin, map[string]any{"disabled": true})
	rest, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(rest), `"code":"unauthorized"`) || !strings.HasSuffix(string(rest), `"done":true}`+"\n\n") {
		t.Errorf("the stream on the other instance ended with %q; want an unauthorized error, then done", rest)
	}
	if d := time.Since(revoked); d > 5*time.Second {
		t.Errorf("the stream ran on %v after its user was disabled", d)
	}
	if !fake.WaitCancelled(5 * time.Second) {
		t.Error("the upstream request was not cancelled")
	}
}

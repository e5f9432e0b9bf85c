package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/llm/llmtest"
)

// limitedResponse is what a test reads of one answer.
type limitedResponse struct {
	status int
	header http.Header
	body   string
}

func (in *instance) do(t testing.TB, ctx context.Context, path, bearer string, body any) limitedResponse {
	t.Helper()
	resp, err := in.post(ctx, path, bearer, body)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return limitedResponse{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// TestRateLimitsAcrossInstances: one user's limit of 4 calls a minute is
// shared by every instance (three on PostgreSQL + Redis, one on SQLite):
// the 5th call is refused wherever it lands, with 429, Retry-After and the
// RateLimit fields, in each wire format's own error shape; every answer
// that is let through says what remains.
func TestRateLimitsAcrossInstances(t *testing.T) {
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) {
			n := sharedInstances(t, engine, 3)
			fake := llmtest.Start(t)
			fake.SetScript(llmtest.Script{Deltas: llmtest.Deltas(3)})
			env := withFake(engineEnv(t, engine), fake)
			env.vars["FERRY_RATE_LIMIT_RPM"] = "4"
			var ins []*instance
			for range n {
				ins = append(ins, start(t, env))
			}
			access, _ := ins[0].signUp(t, "limited@example.com", "password123")
			ctx := context.Background()
			calls := []struct{ path, model string }{
				{"/ai/chat", "claude-sonnet-4-6"},
				{"/ai/chat/stream", "claude-sonnet-4-6"},
				{"/v1/chat/completions", "openai/gpt-4o-mini"},
				{"/ollama/api/chat", "llama3.2:latest"},
			}
			for i, c := range calls {
				r := ins[i%n].do(t, ctx, c.path, access, chatBody(c.path, c.model))
				if r.status != http.StatusOK {
					t.Fatalf("call %d (%s): %d %s", i+1, c.path, r.status, r.body)
				}
				if got := r.header.Get("RateLimit-Policy"); got != `"calls";q=4;w=60` {
					t.Errorf("call %d (%s): RateLimit-Policy %q", i+1, c.path, got)
				}
				if got, want := r.header.Get("RateLimit"), `"calls";r=`+strconv.Itoa(3-i)+";t="; !strings.HasPrefix(got, want) {
					t.Errorf("call %d (%s): RateLimit %q, want %s…", i+1, c.path, got, want)
				}
			}
			// The 5th is refused on every instance, in every wire format.
			refusals := []struct{ path, model, shape string }{
				{"/ai/chat", "claude-sonnet-4-6", `"status":429`},
				{"/ai/chat/stream", "claude-sonnet-4-6", `"status":429`},
				{"/v1/chat/completions", "openai/gpt-4o-mini", `"type":"rate_limit_error"`},
				{"/ollama/api/chat", "llama3.2:latest", `"error":"too many model calls`},
			}
			before := len(fake.Requests())
			for i, c := range refusals {
				r := ins[(i+1)%n].do(t, ctx, c.path, access, chatBody(c.path, c.model))
				if r.status != http.StatusTooManyRequests {
					t.Fatalf("5th call (%s): %d %s, want 429", c.path, r.status, r.body)
				}
				if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || s < 1 || s > 60 {
					t.Errorf("%s: Retry-After %q, want 1..60 seconds", c.path, r.header.Get("Retry-After"))
				}
				if got := r.header.Get("RateLimit"); !strings.HasPrefix(got, `"calls";r=0;t=`) {
					t.Errorf("%s: RateLimit %q, want none remaining", c.path, got)
				}
				if r.header.Get("RateLimit-Policy") == "" {
					t.Errorf("%s: no RateLimit-Policy on the refusal", c.path)
				}
				if !strings.Contains(r.body, c.shape) {
					t.Errorf("%s: body %s, want the wire's error shape (%s)", c.path, r.body, c.shape)
				}
			}
			if got := len(fake.Requests()); got != before {
				t.Errorf("refused calls reached the upstream: %d requests", got-before)
			}
		})
	}
}

// sharedInstances is how many instances a test of limits shared across
// instances runs on engine: one on SQLite, n on PostgreSQL + Redis, which
// it skips t without.
func sharedInstances(t *testing.T, engine string, n int) int {
	t.Helper()
	if engine != "postgres" {
		return 1
	}
	if os.Getenv("FERRY_TEST_DATABASE_URL") == "" || os.Getenv("FERRY_TEST_REDIS_URL") == "" {
		t.Skipf("FERRY_TEST_DATABASE_URL and FERRY_TEST_REDIS_URL not both set: skipping the %d-instance test", n)
	}
	return n
}

// chatBody is a minimal chat request in path's wire format.
func chatBody(path, model string) any {
	msgs := []map[string]string{{"role": "user", "content": "hi"}}
	switch {
	case strings.HasPrefix(path, "/v1/"):
		return map[string]any{"model": model, "messages": msgs}
	case strings.HasPrefix(path, "/ollama/"):
		return map[string]any{"model": model, "messages": msgs, "stream": false}
	}
	return map[string]any{"message": "hi", "model": model}
}

// TestTokenLimitCountsRealUsage: the token limit counts what the upstream
// reports, not the small estimate a short question makes.
func TestTokenLimitCountsRealUsage(t *testing.T) {
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) {
			if engine == "postgres" && (os.Getenv("FERRY_TEST_DATABASE_URL") == "" || os.Getenv("FERRY_TEST_REDIS_URL") == "") {
				t.Skip("FERRY_TEST_DATABASE_URL and FERRY_TEST_REDIS_URL not both set")
			}
			fake := llmtest.Start(t)
			// Each answer reports 1,000 tokens; "hi" is estimated at a few.
			fake.SetScript(llmtest.Script{Deltas: llmtest.Deltas(3), InputTokens: 400, OutputTokens: 600})
			env := withFake(engineEnv(t, engine), fake)
			env.vars["FERRY_RATE_LIMIT_RPM"] = "100"
			env.vars["FERRY_RATE_LIMIT_TPM"] = "1500"
			env.vars["FERRY_CACHE_TTL"] = "0" // the calls repeat; each must reach the upstream
			env.vars["FERRY_SYSTEM_PROMPT"] = "Be brief."
			in := start(t, env)
			access, _ := in.signUp(t, "tokens@example.com", "password123")
			ctx := context.Background()
			body := map[string]any{"message": "hi", "model": "claude-sonnet-4-6"}
			for i := range 2 {
				r := in.do(t, ctx, "/ai/chat", access, body)
				if r.status != http.StatusOK {
					t.Fatalf("call %d: %d %s", i+1, r.status, r.body)
				}
			}
			r := in.do(t, ctx, "/ai/chat", access, body)
			if r.status != http.StatusTooManyRequests || !strings.Contains(r.body, "too many tokens") {
				t.Fatalf("3rd call after 2,000 tokens of 1,500: %d %s, want 429 about tokens", r.status, r.body)
			}
			if got := r.header.Get("RateLimit-Policy"); got != `"calls";q=100;w=60, "tokens";q=1500;qu="tokens";w=60` {
				t.Errorf("RateLimit-Policy %q", got)
			}
		})
	}
}

// TestQueueRefusals: over FERRY_MAX_CONCURRENT, a call waits; one that
// finds the queue full, or waits past FERRY_QUEUE_TIMEOUT, gets 503 with
// Retry-After in its wire's error shape.
func TestQueueRefusals(t *testing.T) {
	fake := llmtest.Start(t)
	fake.SetScript(llmtest.Script{Deltas: llmtest.Deltas(30), Delay: 100 * time.Millisecond}) // 3 s
	env := withFake(sqliteEnv(t), fake)
	env.vars["FERRY_MAX_CONCURRENT"] = "1"
	env.vars["FERRY_QUEUE_SIZE"] = "1"
	env.vars["FERRY_QUEUE_TIMEOUT"] = "700ms"
	env.vars["FERRY_CACHE_TTL"] = "0" // the calls repeat; each must queue for the upstream
	in := start(t, env)
	access, _ := in.signUp(t, "queued@example.com", "password123")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// The one slot: a stream that runs 3 s.
	resp, err := in.post(ctx, "/ai/chat/stream", access, chatBody("/ai/chat/stream", "claude-sonnet-4-6"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := resp.Body.Read(make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	// The one place in the queue.
	waited := make(chan limitedResponse, 1)
	started := time.Now()
	go func() { waited <- in.do(t, ctx, "/ai/chat", access, chatBody("/ai/chat", "claude-sonnet-4-6")) }()
	time.Sleep(200 * time.Millisecond)
	// The queue is full: refused at once, in OpenAI's shape.
	r := in.do(t, ctx, "/v1/chat/completions", access, chatBody("/v1/chat/completions", "openai/gpt-4o-mini"))
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" || !strings.Contains(r.body, `"error":{`) {
		t.Errorf("queue full: %d %q %s, want 503 with Retry-After in OpenAI's shape", r.status, r.header.Get("Retry-After"), r.body)
	}
	r = <-waited
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" || !strings.Contains(r.body, "no model call slot") {
		t.Errorf("queue timeout: %d %q %s, want 503 with Retry-After", r.status, r.header.Get("Retry-After"), r.body)
	}
	if d := time.Since(started); d < 700*time.Millisecond || d > 2500*time.Millisecond {
		t.Errorf("the queued call was refused after %v, want about FERRY_QUEUE_TIMEOUT (700ms)", d)
	}
	var problem map[string]any
	if err := json.Unmarshal([]byte(r.body), &problem); err != nil || problem["status"] != float64(503) {
		t.Errorf("queue timeout body %s, want a problem with status 503", r.body)
	}
}

// TestRateLimitOverrides: an admin's override replaces the default for one
// user (and -1 lifts it), and an API key's own limit narrows its user's for
// the calls made with it.
func TestRateLimitOverrides(t *testing.T) {
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) {
			if engine == "postgres" && (os.Getenv("FERRY_TEST_DATABASE_URL") == "" || os.Getenv("FERRY_TEST_REDIS_URL") == "") {
				t.Skip("FERRY_TEST_DATABASE_URL and FERRY_TEST_REDIS_URL not both set")
			}
			fake := llmtest.Start(t)
			fake.SetScript(llmtest.Script{Deltas: llmtest.Deltas(3)})
			env := withFake(engineEnv(t, engine), fake)
			env.vars["FERRY_RATE_LIMIT_RPM"] = "3"
			env.vars["FERRY_ADMIN_EMAIL"] = "root@example.com"
			env.vars["FERRY_ADMIN_PASSWORD"] = "root password"
			in := start(t, env)
			admin, _ := in.login(t, "root@example.com", "root password")
			ctx := context.Background()
			body := chatBody("/ai/chat", "claude-sonnet-4-6")
			calls := func(bearer string, n int) (last limitedResponse) {
				t.Helper()
				for i := range n {
					last = in.do(t, ctx, "/ai/chat", bearer, body)
					if last.status != http.StatusOK {
						t.Fatalf("call %d of %d: %d %s", i+1, n, last.status, last.body)
					}
				}
				return last
			}

			// One user gets 5 a minute instead of 3.
			more, _ := in.signUp(t, "more@example.com", "password123")
			me := in.must(t, http.StatusOK, "GET", "/users/me", more, nil)
			u := in.must(t, http.StatusOK, "PATCH", "/users/"+me["id"].(string), admin, map[string]any{"rate_limit_rpm": 5})
			if u["rate_limit_rpm"] != float64(5) {
				t.Errorf("PATCH answered %v, want rate_limit_rpm 5", u)
			}
			if r := calls(more, 5); r.header.Get("RateLimit-Policy") != `"calls";q=5;w=60` {
				t.Errorf("overridden user's policy %q", r.header.Get("RateLimit-Policy"))
			}
			if r := in.do(t, ctx, "/ai/chat", more, body); r.status != http.StatusTooManyRequests {
				t.Errorf("6th call of 5: %d", r.status)
			}
			// Others keep the default.
			other, _ := in.signUp(t, "other@example.com", "password123")
			calls(other, 3)
			if r := in.do(t, ctx, "/ai/chat", other, body); r.status != http.StatusTooManyRequests {
				t.Errorf("another user's 4th call of 3: %d", r.status)
			}
			// -1 lifts the limit.
			in.must(t, http.StatusOK, "PATCH", "/users/"+me["id"].(string), admin, map[string]any{"rate_limit_rpm": -1})
			if r := calls(more, 2); r.header.Get("RateLimit") != "" {
				t.Errorf("unlimited user still told of a limit: %q", r.header.Get("RateLimit"))
			}
			// Only an admin sets it; a key cannot widen it.
			if s, _ := in.call(t, "PATCH", "/users/"+me["id"].(string), more, map[string]any{"rate_limit_rpm": 1000}); s != http.StatusForbidden {
				t.Errorf("a user setting their own limit: %d, want 403", s)
			}

			// A key with 1 call a minute, for a user with the default 3.
			scripted, _ := in.signUp(t, "scripted@example.com", "password123")
			if s, m := in.call(t, "POST", "/auth/api-keys", scripted, map[string]any{"name": "wide", "rate_limit_rpm": -5}); s != http.StatusUnprocessableEntity && s != http.StatusBadRequest {
				t.Errorf("a negative key limit: %d %v, want refused", s, m)
			}
			k := in.must(t, http.StatusCreated, "POST", "/auth/api-keys", scripted, map[string]any{"name": "cron", "rate_limit_rpm": 1})
			if k["rate_limit_rpm"] != float64(1) {
				t.Errorf("key answered %v, want rate_limit_rpm 1", k)
			}
			key := k["key"].(string)
			if r := calls(key, 1); r.header.Get("RateLimit-Policy") != `"calls";q=1;w=60` {
				t.Errorf("key's policy %q, want its own, tighter one", r.header.Get("RateLimit-Policy"))
			}
			if r := in.do(t, ctx, "/ai/chat", key, body); r.status != http.StatusTooManyRequests {
				t.Errorf("the key's 2nd call of 1: %d", r.status)
			}
			// The user's own budget has 2 left (the key's call counted).
			calls(scripted, 2)
			if r := in.do(t, ctx, "/ai/chat", scripted, body); r.status != http.StatusTooManyRequests {
				t.Errorf("the user's 4th call of 3 (one by key): %d", r.status)
			}
		})
	}
}

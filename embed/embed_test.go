package embed

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/llm"
	"github.com/ferryhq/ferry/llm/llmtest"
)

// noWait is a retry policy that does not sleep, recording the waits.
func noWait(waits *[]time.Duration) llm.RetryPolicy {
	return llm.RetryPolicy{Sleep: func(_ context.Context, d time.Duration) error {
		*waits = append(*waits, d)
		return nil
	}}
}

// clients returns an OpenAI and an Ollama client of up.
func clients(t *testing.T, up *llmtest.Server, batch int, retry llm.RetryPolicy) map[string]*Client {
	t.Helper()
	out := map[string]*Client{}
	for _, model := range []string{"openai/text-embedding-3-small", "ollama/nomic-embed-text"} {
		c, err := New(Config{Model: model, OpenAIBaseURL: up.OpenAIURL(), OpenAIAPIKey: "sk-test",
			OllamaBaseURL: up.OllamaURL(), Batch: batch, Retry: retry})
		if err != nil {
			t.Fatal(err)
		}
		out[model] = c
	}
	return out
}

// embedRequests returns the embedding requests up received.
func embedRequests(up *llmtest.Server) []*llmtest.Request {
	var out []*llmtest.Request
	for _, r := range up.Requests() {
		if r.Path == "/v1/embeddings" || r.Path == "/api/embed" {
			out = append(out, r)
		}
	}
	return out
}

func TestEmbedBatches(t *testing.T) {
	up := llmtest.Start(t)
	fn := llmtest.HashedWords(16)
	up.SetEmbedding(fn)
	texts := []string{"alpha beta", "gamma", "delta epsilon", "zeta", "eta theta"}
	for model, c := range clients(t, up, 2, llm.RetryPolicy{}) {
		t.Run(model, func(t *testing.T) {
			before := len(embedRequests(up))
			vecs, err := c.Embed(context.Background(), texts)
			if err != nil {
				t.Fatal(err)
			}
			if len(vecs) != len(texts) {
				t.Fatalf("%d vectors for %d texts", len(vecs), len(texts))
			}
			for i, v := range vecs {
				want := fn(texts[i])
				for j := range want {
					if v[j] != want[j] {
						t.Fatalf("vector %d differs from the upstream's at %d: %v, %v", i, j, v[j], want[j])
					}
				}
			}
			reqs := embedRequests(up)[before:]
			if len(reqs) != 3 {
				t.Fatalf("%d requests for 5 texts in batches of 2; want 3", len(reqs))
			}
			var body struct {
				Model string   `json:"model"`
				Input []string `json:"input"`
			}
			if err := reqs[2].JSON(&body); err != nil || len(body.Input) != 1 || body.Input[0] != "eta theta" ||
				body.Model != model[strings.Index(model, "/")+1:] {
				t.Fatalf("last request %s: %+v, %v; want the model's own name and the last text", reqs[2].Body, body, err)
			}
			if strings.HasPrefix(model, "openai/") && reqs[0].Header.Get("Authorization") != "REDACTED" {
				t.Fatalf("no key sent to OpenAI: %v", reqs[0].Header)
			}
		})
	}
}

func TestEmbedRetries(t *testing.T) {
	up := llmtest.Start(t)
	var waits []time.Duration
	for model, c := range clients(t, up, 0, noWait(&waits)) {
		t.Run(model, func(t *testing.T) {
			// Overloaded twice, then served: the third attempt succeeds,
			// after the wait the upstream asked for.
			waits = nil
			up.SetScript(llmtest.Script{FailFirst: 2, FailStatus: http.StatusServiceUnavailable,
				FailHeader: http.Header{"Retry-After": {"2"}}})
			before := len(embedRequests(up))
			vecs, err := c.Embed(context.Background(), []string{"one", "two"})
			if err != nil || len(vecs) != 2 {
				t.Fatalf("%v, %v; want two vectors after retries", vecs, err)
			}
			if n := len(embedRequests(up)) - before; n != 3 || len(waits) != 2 || waits[0] != 2*time.Second {
				t.Fatalf("%d requests, waits %v; want 3 and 2 s each", n, waits)
			}
			// Rate limited past the attempts: RateLimited.
			up.SetScript(llmtest.Script{FailFirst: 5})
			if _, err := c.Embed(context.Background(), []string{"one"}); ferry.ErrorCode(err) != ferry.RateLimited {
				t.Fatalf("after 3 429s: %v; want rate_limited", err)
			}
			// A refusal is not retried.
			up.SetScript(llmtest.Script{FailFirst: 1, FailStatus: http.StatusBadRequest, FailMessage: "model not found"})
			before = len(embedRequests(up))
			_, err = c.Embed(context.Background(), []string{"one"})
			if ferry.ErrorCode(err) != ferry.Invalid || !strings.Contains(err.Error(), "model not found") {
				t.Fatalf("a 400: %v; want invalid with the upstream's message", err)
			}
			if n := len(embedRequests(up)) - before; n != 1 {
				t.Fatalf("a 400 was sent %d times", n)
			}
			up.SetScript(llmtest.Script{})
		})
	}
}

func TestEmbedBadKeyAndModel(t *testing.T) {
	up := llmtest.Start(t)
	up.SetScript(llmtest.Script{APIKey: "sk-right"})
	c, err := New(Config{Model: "openai/text-embedding-3-small", OpenAIBaseURL: up.OpenAIURL(), OpenAIAPIKey: "sk-wrong"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Embed(context.Background(), []string{"x"})
	if ferry.ErrorCode(err) != ferry.Upstream || !strings.Contains(err.Error(), "OPENAI_API_KEY") || strings.Contains(err.Error(), "sk-wrong") {
		t.Fatalf("bad key: %v; want upstream naming OPENAI_API_KEY without the key", err)
	}
	for _, bad := range []string{"nomic-embed-text", "anthropic/x", "openai/", ""} {
		if _, err := New(Config{Model: bad}); err == nil || !strings.Contains(err.Error(), "FERRY_EMBED_MODEL") {
			t.Errorf("model %q: %v; want an error naming FERRY_EMBED_MODEL", bad, err)
		}
	}
}

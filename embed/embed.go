// Package embed turns texts into vectors through an embedding model
// upstream: OpenAI's /v1/embeddings (and the servers that speak it: vLLM,
// llama.cpp, LM Studio, Ollama's /v1) or Ollama's native /api/embed. A
// Client sends texts in batches and retries what llm.WithRetry retries
// (429, 408, 5xx, a refused connection), honouring Retry-After. It is
// search.Embedder.
package embed

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/llm"
	"github.com/ferryhq/ferry/llm/ollama"
	"github.com/ferryhq/ferry/llm/openai"
)

// DefaultBatch is how many texts one request carries unless told
// otherwise: small enough for any server's request limit with ~800-token
// chunks, large enough that a document costs few round trips.
const DefaultBatch = 64

// maxAnswer bounds one answer read whole: 64 vectors of 3,072 numbers as
// JSON take about 4 MB.
const maxAnswer = 64 << 20

// Config configures a Client.
type Config struct {
	// Model is FERRY_EMBED_MODEL: "openai/NAME" or "ollama/NAME".
	Model string
	// OpenAIAPIKey and OpenAIBaseURL (with /v1) reach an OpenAI-compatible
	// server; empty base means OpenAI's own.
	OpenAIAPIKey  string
	OpenAIBaseURL string
	// OllamaBaseURL is Ollama's root; empty means its default.
	OllamaBaseURL string
	// Batch is the most texts one request carries; 0 means DefaultBatch.
	Batch int
	// Retry says how failed requests are retried; its zero value is
	// llm's default policy (3 attempts, backoff from 500 ms).
	Retry llm.RetryPolicy
	// HTTPClient makes the calls; nil means http.DefaultClient.
	HTTPClient *http.Client
}

// Client embeds texts with one model. It is safe for concurrent use.
type Client struct {
	provider string // llm.OpenAI or llm.Ollama
	model    string // the provider's own name
	url      string // the endpoint
	key      string
	batch    int
	retry    llm.RetryPolicy
	hc       *http.Client
	up       llm.Upstream
}

// New returns a Client for cfg, or an error naming FERRY_EMBED_MODEL when
// it is not "openai/NAME" or "ollama/NAME". It makes no call upstream.
func New(cfg Config) (*Client, error) {
	provider, model, ok := strings.Cut(cfg.Model, "/")
	if !ok || model == "" || (provider != llm.OpenAI && provider != llm.Ollama) {
		return nil, fmt.Errorf(`FERRY_EMBED_MODEL: %q is not "openai/MODEL" or "ollama/MODEL"`, cfg.Model)
	}
	c := &Client{provider: provider, model: model, batch: cfg.Batch, retry: cfg.Retry.WithDefaults(), hc: cfg.HTTPClient}
	if c.batch <= 0 {
		c.batch = DefaultBatch
	}
	if c.hc == nil {
		c.hc = http.DefaultClient
	}
	if provider == llm.OpenAI {
		base := strings.TrimRight(cfg.OpenAIBaseURL, "/")
		if base == "" {
			base = openai.DefaultBaseURL
		}
		c.url, c.key = base+"/embeddings", cfg.OpenAIAPIKey
		c.up = llm.Upstream{Name: llm.OpenAI, KeySetting: "OPENAI_API_KEY", URLSetting: "OPENAI_BASE_URL"}
	} else {
		base := strings.TrimRight(cfg.OllamaBaseURL, "/")
		if base == "" {
			base = ollama.DefaultBaseURL
		}
		c.url = base + ollama.PathEmbed
		c.up = llm.Upstream{Name: llm.Ollama, URLSetting: "OLLAMA_BASE_URL"}
	}
	return c, nil
}

// Model returns the model as FERRY_EMBED_MODEL names it.
func (c *Client) Model() string { return c.provider + "/" + c.model }

// Embed returns one vector per text, in order, sending at most the batch
// size per request. Errors are *ferry.Error as llm's adapters return them:
// Upstream (a bad key, an answer that is not what was asked), RateLimited
// and Unavailable once retries ran out, Timeout, Invalid and NotFound for
// what the upstream refused (an unknown model); or ctx's error.
func (c *Client) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	out := make([][]float32, 0, len(texts))
	for start := 0; start < len(texts); start += c.batch {
		part := texts[start:min(start+c.batch, len(texts))]
		var vecs [][]float32
		err := c.withRetry(ctx, func() error {
			var err error
			vecs, err = c.call(ctx, part)
			return err
		})
		if err != nil {
			return nil, err
		}
		out = append(out, vecs...)
	}
	return out, nil
}

// call sends one batch and returns its vectors.
func (c *Client) call(ctx context.Context, texts []string) ([][]float32, error) {
	body, err := json.Marshal(map[string]any{"model": c.model, "input": texts})
	if c.provider == llm.OpenAI {
		body, err = json.Marshal(map[string]any{"model": c.model, "input": texts, "encoding_format": "float"})
	}
	if err != nil {
		return nil, fmt.Errorf("embed: encode request: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return nil, &ferry.Error{Code: ferry.Internal, Message: "bad " + c.up.URLSetting, Err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	resp, err := c.up.Do(ctx, c.hc, req, errorMessage)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var vecs [][]float32
	if c.provider == llm.OpenAI {
		var a struct {
			Data []struct {
				Index     int       `json:"index"`
				Embedding []float32 `json:"embedding"`
			} `json:"data"`
		}
		if err := c.up.DecodeJSON(ctx, resp.Body, maxAnswer, "embeddings", &a); err != nil {
			return nil, err
		}
		vecs = make([][]float32, len(texts))
		for _, d := range a.Data {
			if d.Index < 0 || d.Index >= len(vecs) {
				return nil, c.up.EventError("sent an embedding for an input it was not given", nil)
			}
			vecs[d.Index] = d.Embedding
		}
	} else {
		var a struct {
			Embeddings [][]float32 `json:"embeddings"`
		}
		if err := c.up.DecodeJSON(ctx, resp.Body, maxAnswer, "embeddings", &a); err != nil {
			return nil, err
		}
		vecs = a.Embeddings
	}
	if len(vecs) != len(texts) {
		return nil, c.up.EventError(fmt.Sprintf("sent %d embeddings for %d inputs", len(vecs), len(texts)), nil)
	}
	for _, v := range vecs {
		if len(v) == 0 || len(v) != len(vecs[0]) {
			return nil, c.up.EventError("sent embeddings of different lengths", nil)
		}
	}
	return vecs, nil
}

// errorMessage reads the message of an error body, OpenAI's
// {"error": {"message"}} or Ollama's {"error": "..."}.
func errorMessage(body []byte) string {
	var o struct {
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal(body, &o) != nil || len(o.Error) == 0 {
		return ""
	}
	var s string
	if json.Unmarshal(o.Error, &s) == nil {
		return s
	}
	var m struct {
		Message string `json:"message"`
	}
	json.Unmarshal(o.Error, &m)
	return m.Message
}

// withRetry runs attempt until it succeeds or fails for good: it retries
// RateLimited and Unavailable as llm.WithRetry does (an embedding request
// has no side effect, so repeating it is always safe).
func (c *Client) withRetry(ctx context.Context, attempt func() error) error {
	start := time.Now()
	for n := 1; ; n++ {
		err := attempt()
		var fe *ferry.Error
		if err == nil || !errors.As(err, &fe) || (fe.Code != ferry.RateLimited && fe.Code != ferry.Unavailable) {
			return err
		}
		wait := fe.RetryAfter
		if wait == 0 {
			d := min(c.retry.BaseDelay<<(n-1), c.retry.MaxDelay)
			wait = d/2 + rand.N(d/2+1)
		}
		deadline, ok := ctx.Deadline()
		next := time.Now().Add(wait)
		if n >= c.retry.MaxAttempts || next.Sub(start) > c.retry.MaxElapsed || (ok && next.After(deadline)) {
			return err
		}
		if err := c.retry.Sleep(ctx, wait); err != nil {
			if ctx.Err() != nil {
				return llm.ContextError(ctx, c.up.Name)
			}
			return err
		}
	}
}

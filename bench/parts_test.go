package main

import (
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/auth"
	"github.com/ferryhq/ferry/chat"
	"github.com/ferryhq/ferry/config"
	"github.com/ferryhq/ferry/httpapi"
	"github.com/ferryhq/ferry/limit"
	"github.com/ferryhq/ferry/llm"
	"github.com/ferryhq/ferry/llm/anthropic"
	"github.com/ferryhq/ferry/llm/llmtest"
	"github.com/ferryhq/ferry/llm/ollama"
	"github.com/ferryhq/ferry/llm/openai"
	"github.com/ferryhq/ferry/store"
)

// The benchmarks in this file time, one at a time in this process, the
// pieces of work on the path of one streamed request, to say where the
// latency that `go run ./bench` measures goes:
//
//	go test ./bench -run '^$' -bench . -benchtime 2000x
//
// They use the production constructors and settings (SQLite as store.Open
// configures it, the provider clients, the auth cache) against the same fake
// upstream.

// parts are Ferry's services, built as cmd/ferry builds them, on a fresh
// SQLite database and the fake upstream.
type parts struct {
	fake      *llmtest.Server
	store     *store.Store
	auth      *auth.Service
	chat      *chat.Service
	hc        *http.Client
	key       string
	principal *ferry.Principal
	// handler is the whole API, as cmd/ferry serves it.
	handler http.Handler
}

func newParts(b testing.TB) *parts { return newPartsWith(b, chat.Options{}) }

// newPartsWith is newParts with chat's options as opts sets them, the
// seed's system prompt added.
func newPartsWith(b testing.TB, opts chat.Options) *parts {
	b.Helper()
	ctx := context.Background()
	fake := llmtest.Start(b)
	st, err := store.Open(ctx, config.Database{Driver: "sqlite", DSN: filepath.Join(b.TempDir(), "ferry.db")})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	if err := st.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	secret := make([]byte, auth.MinSecretKeyLen)
	rand.Read(secret)
	tokens, err := auth.NewTokens(secret)
	if err != nil {
		b.Fatal(err)
	}
	authSvc := auth.NewService(st, tokens, limit.NewMemoryFailures(limit.DefaultPolicy, time.Now),
		auth.ServiceOptions{Hasher: auth.Hasher{Params: auth.TestPasswordParams}})
	u, err := authSvc.CreateUser(ctx, "bench@example.com", "a long password", "", ferry.RoleAdmin)
	if err != nil {
		b.Fatal(err)
	}
	_, key, err := authSvc.CreateAPIKey(ctx, u.ID, "bench", nil)
	if err != nil {
		b.Fatal(err)
	}
	p, err := authSvc.Authenticate(ctx, key)
	if err != nil {
		b.Fatal(err)
	}
	// As cmd/ferry's newRouter.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns, tr.MaxIdleConnsPerHost = 1024, 512
	tr.ReadBufferSize, tr.WriteBufferSize = 4<<10, 4<<10
	hc := &http.Client{Transport: tr}
	b.Cleanup(hc.CloseIdleConnections)
	o := ollama.New(ollama.Config{BaseURL: fake.OllamaURL(), HTTPClient: hc})
	router, err := llm.NewRouter("",
		llm.WithRetry(anthropic.New(anthropic.Config{APIKey: "sk-ant-bench", BaseURL: fake.AnthropicURL(), HTTPClient: hc}), llm.RetryPolicy{}),
		llm.WithRetry(openai.New(openai.Config{APIKey: "sk-bench", BaseURL: fake.OpenAIURL(), HTTPClient: hc}), llm.RetryPolicy{}),
		llm.WithRetry(o, llm.RetryPolicy{}))
	if err != nil {
		b.Fatal(err)
	}
	opts.SystemPrompt = config.SeedSystemPrompt
	chatSvc := chat.NewService(st, router, opts)
	handler := httpapi.NewServer(slog.New(slog.DiscardHandler), httpapi.Options{Version: "bench", MaxBodyBytes: 1 << 20},
		httpapi.Services{Store: st, Auth: authSvc, Chat: chatSvc, LLM: router, Ollama: o})
	return &parts{fake: fake, store: st, auth: authSvc, chat: chatSvc, hc: hc, key: key, principal: p, handler: handler}
}

// BenchmarkAuthenticateAPIKey is the bearer check every request makes, once
// the key is in the auth cache.
func BenchmarkAuthenticateAPIKey(b *testing.B) {
	ps := newParts(b)
	ctx := context.Background()
	for b.Loop() {
		if _, err := ps.auth.Authenticate(ctx, ps.key); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPrepare is what /ai/chat/stream does before it calls the
// upstream: route the model, create the conversation, store the user's
// message (two write transactions).
func BenchmarkPrepare(b *testing.B) {
	ps := newParts(b)
	ctx := context.Background()
	req := chat.Request{Message: prompt, Model: "claude-sonnet-4-6", Endpoint: "/ai/chat/stream"}
	for b.Loop() {
		if _, err := ps.chat.Prepare(ctx, ps.principal, req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSave is the two writes a chat turn makes after the upstream's
// last delta and before the client's done event (chat's Turn.save): the
// assistant's message, and the usage log entry. /v1/chat/completions and
// /ollama/generate make the second only.
func BenchmarkSave(b *testing.B) {
	ps := newParts(b)
	ctx := context.Background()
	turn, err := ps.chat.Prepare(ctx, ps.principal, chat.Request{Message: prompt, Model: "claude-sonnet-4-6"})
	if err != nil {
		b.Fatal(err)
	}
	answer := strings.Join(llmtest.Deltas(100), "")
	for b.Loop() {
		m := &ferry.Message{ID: auth.NewID(), ConversationID: turn.ConversationID, Role: ferry.RoleAssistant, Content: answer,
			Model: turn.Model, Provider: turn.Provider, InputTokens: 10, OutputTokens: 100, StopReason: "end_turn",
			Status: ferry.StatusComplete, LatencyMS: 2, FirstTokenMS: 1}
		if err := ps.store.AddMessage(ctx, m, nil); err != nil {
			b.Fatal(err)
		}
		u := &ferry.Usage{ID: auth.NewID(), UserID: ps.principal.User.ID, APIKeyID: ps.principal.APIKeyID, Endpoint: "/ai/chat/stream",
			Model: turn.Model, Provider: turn.Provider, InputTokens: 10, OutputTokens: 100, LatencyMS: 2, Status: "complete"}
		if err := ps.store.LogUsage(ctx, u); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUpstream reads the fake's 100-delta answer with a plain HTTP
// client (raw) and through the provider client Ferry uses (client), reporting the
// mean time to the first delta and to the end. The difference is what the
// client adds before Ferry writes a byte.
func BenchmarkUpstream(b *testing.B) {
	for _, tc := range []struct {
		name, path, body string
		header           http.Header
		provider         func(*parts) llm.Provider
		model            string
	}{
		{"anthropic", "/v1/messages", endpointOf(b, "/ai/chat/stream").upstreamBody, endpointOf(b, "/ai/chat/stream").upstreamHeader,
			func(ps *parts) llm.Provider {
				return anthropic.New(anthropic.Config{APIKey: "sk-ant-bench", BaseURL: ps.fake.AnthropicURL(), HTTPClient: ps.hc})
			}, "claude-sonnet-4-6"},
		{"openai", "/v1/chat/completions", endpointOf(b, "/v1/chat/completions").upstreamBody, endpointOf(b, "/v1/chat/completions").upstreamHeader,
			func(ps *parts) llm.Provider {
				return openai.New(openai.Config{APIKey: "sk-bench", BaseURL: ps.fake.OpenAIURL(), HTTPClient: ps.hc})
			}, "gpt-4o-mini"},
	} {
		b.Run(tc.name+"/raw", func(b *testing.B) {
			ps := newParts(b)
			var first, last time.Duration
			chunk := make([]byte, 32<<10)
			for b.Loop() {
				req, _ := http.NewRequest(http.MethodPost, ps.fake.URL+tc.path, strings.NewReader(tc.body))
				req.Header = tc.header.Clone()
				start := time.Now()
				resp, err := ps.hc.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				got := false
				for {
					n, err := resp.Body.Read(chunk)
					if n > 0 && !got {
						first, got = first+time.Since(start), true
					}
					if err == io.EOF {
						break
					}
					if err != nil {
						b.Fatal(err)
					}
				}
				resp.Body.Close()
				last += time.Since(start)
				ps.fake.Reset()
			}
			reportLatency(b, first, last)
		})
		b.Run(tc.name+"/client", func(b *testing.B) {
			ps := newParts(b)
			p := tc.provider(ps)
			req := llm.Request{Model: tc.model, System: config.SeedSystemPrompt, Messages: []llm.Message{llm.TextMessage("user", prompt)}}
			var first, last time.Duration
			ctx := context.Background()
			for b.Loop() {
				start := time.Now()
				got := false
				err := p.Stream(ctx, req, func(d llm.Delta) error {
					if !got && d.Text != "" {
						first, got = first+time.Since(start), true
					}
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
				last += time.Since(start)
				ps.fake.Reset()
			}
			reportLatency(b, first, last)
		})
	}
}

// BenchmarkTurn is a whole /ai/chat/stream turn without HTTP in front:
// Prepare, the provider stream of 100 deltas, and the saves.
func BenchmarkTurn(b *testing.B) {
	ps := newParts(b)
	ctx := context.Background()
	req := chat.Request{Message: prompt, Model: "claude-sonnet-4-6", Endpoint: "/ai/chat/stream"}
	var first, last time.Duration
	for b.Loop() {
		start := time.Now()
		turn, err := ps.chat.Prepare(ctx, ps.principal, req)
		if err != nil {
			b.Fatal(err)
		}
		got := false
		if _, err := turn.Stream(ctx, func(llm.Delta) error {
			if !got {
				first, got = first+time.Since(start), true
			}
			return nil
		}); err != nil {
			b.Fatal(err)
		}
		last += time.Since(start)
		ps.fake.Reset()
	}
	reportLatency(b, first, last)
}

// BenchmarkStream is one whole streamed request of 100 deltas per
// endpoint, through Ferry's handler (httpapi.NewServer, as cmd/ferry builds
// it, on a loopback listener in this process) and, for comparison, straight
// from the fake. The fake and the client run in this process too, so the
// allocations Ferry makes per stream are ferry's B/op and allocs/op minus
// upstream's: a figure the bench command, with Ferry in a child process,
// cannot give. Writes to SQLite happen on the store's writer goroutine,
// and are counted when they fall inside the timed loop.
func BenchmarkStream(b *testing.B) {
	for _, ep := range endpoints {
		for _, side := range []string{"upstream", "ferry"} {
			b.Run(strings.TrimPrefix(ep.route, "/")+"/"+side, func(b *testing.B) {
				ps := newParts(b)
				deltas := llmtest.Deltas(100)
				ps.fake.SetScript(llmtest.Script{Deltas: deltas})
				t := ep.upstream(ps.fake.URL)
				if side == "ferry" {
					srv := httptest.NewServer(ps.handler)
					defer srv.Close()
					t = ep.ferry(&ferryProc{URL: srv.URL, Key: ps.key})
				}
				cl := newClient(strings.Join(deltas, ""), 1)
				defer cl.close()
				ctx := context.Background()
				var w worker
				// Verified once, so the loop times only what a client does.
				if _, err := cl.stream(ctx, t, &w, true); err != nil {
					b.Fatal(err)
				}
				var first, last time.Duration
				b.ReportAllocs()
				for b.Loop() {
					s, err := cl.stream(ctx, t, &w, false)
					if err != nil {
						b.Fatal(err)
					}
					first, last = first+s.first, last+s.last
					ps.fake.Reset()
				}
				reportLatency(b, first, last)
			})
		}
	}
}

// reportLatency adds the mean times to the first delta and to the end.
func reportLatency(b *testing.B, first, last time.Duration) {
	b.ReportMetric(float64(first.Microseconds())/float64(b.N), "µs-first")
	b.ReportMetric(float64(last.Microseconds())/float64(b.N), "µs-last")
}

// endpointOf returns the row of the endpoint table for route.
func endpointOf(tb testing.TB, route string) endpoint {
	e, ok := endpointFor(route)
	if !ok {
		tb.Fatalf("no endpoint %s", route)
	}
	return e
}

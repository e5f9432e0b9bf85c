package httpapi_test

import (
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/auth"
	"github.com/ferryhq/ferry/cache"
	"github.com/ferryhq/ferry/chat"
	"github.com/ferryhq/ferry/eventlog"
	"github.com/ferryhq/ferry/httpapi"
	"github.com/ferryhq/ferry/limit"
	"github.com/ferryhq/ferry/llm"
	"github.com/ferryhq/ferry/llm/anthropic"
	"github.com/ferryhq/ferry/llm/llmtest"
	"github.com/ferryhq/ferry/llm/ollama"
	"github.com/ferryhq/ferry/llm/openai"
	"github.com/ferryhq/ferry/store"
	"github.com/ferryhq/ferry/store/storetest"
)

// gateway is a real Ferry over real TCP, with every provider pointed at one
// protocol-faithful fake upstream, and a user who holds an API key and an
// access token. The chat, OpenAI-compatible and Ollama tests all use it.
type gateway struct {
	url    string
	fake   *llmtest.Server
	store  *store.Store
	userID string
	key    string // a Ferry API key, fk_…
	keyID  string
	token  string             // an access token of the same user
	drain  context.CancelFunc // starts the server's shutdown drain
	auth   *auth.Service
	// upstream is the client Ferry reaches the fake with.
	upstream *http.Client
}

// gatewayOptions tunes a gateway; the zero value is SQLite, every provider
// configured, Ollama proxied to the fake.
type gatewayOptions struct {
	engine    string
	only      []string      // the providers configured; nil: all
	timeout   time.Duration // bounds one model call: chat.Options and Services.UpstreamTimeout
	ollamaURL string        // where /ollama/* goes; empty: the fake
	maxBody   int64
	keepalive time.Duration     // httpapi.Options.Keepalive; zero: the default
	admit     chat.Admit        // chat.Options.Admit
	observe   chat.Observer     // one of chat.Options.Observers
	idle      time.Duration     // chat.Options.UpstreamIdleTimeout; zero: the default
	bodyRead  time.Duration     // httpapi.Options.BodyReadTimeout; zero: the default
	store     *store.Store      // the database; nil: a fresh one of engine
	cors      []string          // httpapi.Options.CORSOrigins
	pdf       httpapi.PDFReader // httpapi.Services.PDF
	maxUpload int64             // httpapi.Options.MaxUploadBytes; zero: the default
	logs      *eventlog.Logs    // httpapi.Services.Logs; nil: in memory
	cache     cache.Store       // chat.Options.Cache; nil: no answer cache
}

func newGateway(t testing.TB, opt gatewayOptions) *gateway {
	t.Helper()
	if opt.engine == "" {
		opt.engine = "sqlite"
	}
	if opt.maxBody == 0 {
		opt.maxBody = 1 << 20
	}
	fake := llmtest.Start(t)
	if opt.ollamaURL == "" {
		opt.ollamaURL = fake.OllamaURL()
	}
	st := opt.store
	if st == nil {
		st = storetest.Open(t, opt.engine)
	}
	secret := make([]byte, auth.MinSecretKeyLen)
	rand.Read(secret)
	tokens, err := auth.NewTokens(secret)
	if err != nil {
		t.Fatal(err)
	}
	authSvc := auth.NewService(st, tokens, limit.NewMemoryFailures(limit.Policy{}, nil),
		auth.ServiceOptions{Hasher: auth.Hasher{Params: auth.TestPasswordParams}})

	hc := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(hc.CloseIdleConnections)
	policy := llm.RetryPolicy{Sleep: func(ctx context.Context, d time.Duration) error { return ctx.Err() }}
	var configured []llm.Provider
	for _, p := range []llm.Provider{
		anthropic.New(anthropic.Config{APIKey: "sk-ant-test", BaseURL: fake.AnthropicURL(), HTTPClient: hc}),
		openai.New(openai.Config{APIKey: "sk-test", BaseURL: fake.OpenAIURL(), HTTPClient: hc}),
		ollama.New(ollama.Config{BaseURL: opt.ollamaURL, HTTPClient: hc}),
	} {
		if opt.only == nil || slices.Contains(opt.only, p.Name()) {
			configured = append(configured, llm.WithRetry(p, policy))
		}
	}
	router, err := llm.NewRouter("", configured...)
	if err != nil {
		t.Fatal(err)
	}
	draining, drain := context.WithCancel(context.Background())
	t.Cleanup(drain)
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	h := httpapi.NewServer(log, httpapi.Options{Version: "test", MaxBodyBytes: opt.maxBody, Draining: draining, Keepalive: opt.keepalive,
		BodyReadTimeout: opt.bodyRead, CORSOrigins: opt.cors, MaxUploadBytes: opt.maxUpload},
		httpapi.Services{Store: st, Auth: authSvc, Chat: newChat(st, router, opt), LLM: router,
			Ollama: ollama.New(ollama.Config{BaseURL: opt.ollamaURL, HTTPClient: hc}), PDF: opt.pdf,
			Logs: opt.logs})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	// Cleanups run last first: the fake closes before Ferry does, ending
	// any stream it holds open, so that a Ferry handler stuck on one fails
	// its test instead of hanging Ferry's Close.
	t.Cleanup(fake.Close)

	ctx := context.Background()
	u, err := authSvc.CreateUser(ctx, "sdk@example.com", "password123", "", ferry.RoleUser)
	if err != nil {
		t.Fatal(err)
	}
	k, key, err := authSvc.CreateAPIKey(ctx, u.ID, "sdk", nil)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := authSvc.Login(ctx, "sdk@example.com", "password123", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	return &gateway{url: srv.URL, fake: fake, store: st, userID: u.ID, key: key, keyID: k.ID, token: pair.AccessToken, drain: drain,
		auth: authSvc, upstream: hc}
}

func newChat(st *store.Store, router *llm.Router, opt gatewayOptions) *chat.Service {
	o := chat.Options{SystemPrompt: "be brief", ContextTokens: 1000, UpstreamTimeout: opt.timeout, UpstreamIdleTimeout: opt.idle,
		Admit: opt.admit, Cache: opt.cache}
	if opt.observe != nil {
		o.Observers = []chat.Observer{opt.observe}
	}
	return chat.NewService(st, router, o)
}

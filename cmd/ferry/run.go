package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"runtime/debug"
	"sync"
	"time"

	"github.com/joho/godotenv"
	"github.com/redis/go-redis/v9"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/auth"
	"github.com/ferryhq/ferry/chat"
	"github.com/ferryhq/ferry/config"
	"github.com/ferryhq/ferry/embed"
	"github.com/ferryhq/ferry/eventlog"
	"github.com/ferryhq/ferry/extract"
	"github.com/ferryhq/ferry/httpapi"
	"github.com/ferryhq/ferry/ingest"
	"github.com/ferryhq/ferry/jobs"
	"github.com/ferryhq/ferry/limit"
	"github.com/ferryhq/ferry/llm"
	"github.com/ferryhq/ferry/llm/anthropic"
	"github.com/ferryhq/ferry/llm/ollama"
	"github.com/ferryhq/ferry/llm/openai"
	"github.com/ferryhq/ferry/search"
	"github.com/ferryhq/ferry/store"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = ""

// environment is the process's outside world, passed in so tests can run
// the binary in-process with their own settings.
type environment struct {
	getenv   func(string) string
	readFile func(string) ([]byte, error)
	// readPassword shows prompt on the terminal and reads a line typed
	// there without echoing it; nil when standard input is no terminal.
	readPassword func(ctx context.Context, prompt string) (string, error)
}

// lookup returns a setting from the environment, else from ./.env, the way
// pydantic-settings reads them for the seed.
func (e environment) lookup() (func(string) string, error) {
	dotenv := map[string]string{}
	b, err := e.readFile(".env")
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read .env: %w", err)
	}
	if err == nil {
		if dotenv, err = godotenv.UnmarshalBytes(b); err != nil {
			return nil, fmt.Errorf(".env: %w", err)
		}
	}
	return func(k string) string {
		if v := e.getenv(k); v != "" {
			return v
		}
		return dotenv[k]
	}, nil
}

// loadConfig loads the settings. A command that signs no tokens (needsKey
// false: migrate, the user commands) runs without SECRET_KEY on
// PostgreSQL too, where serve requires it; a SECRET_KEY that is set is
// checked all the same.
func (c *cli) loadConfig(addr string, needsKey bool) (*config.Config, error) {
	lookup, err := c.env.lookup()
	if err != nil {
		return nil, err
	}
	if needsKey || lookup("SECRET_KEY") != "" {
		return config.Load(lookup, addr)
	}
	// Load insists on a key with PostgreSQL: give it one that signs
	// nothing, and forget it.
	cfg, err := config.Load(func(k string) string {
		if k == "SECRET_KEY" {
			return unusedSecretKey
		}
		return lookup(k)
	}, addr)
	if err != nil {
		return nil, err
	}
	cfg.SecretKey = ""
	return cfg, nil
}

// unusedSecretKey stands in for SECRET_KEY while a command that signs no
// tokens loads its settings; see loadConfig.
const unusedSecretKey = "unused: this command signs no tokens"

// openStore opens and migrates the configured database.
func openStore(ctx context.Context, cfg *config.Config) (*store.Store, error) {
	st, err := store.Open(ctx, cfg.Database)
	if err != nil {
		return nil, err
	}
	if err := st.Migrate(ctx); err != nil {
		st.Close()
		return nil, err
	}
	return st, nil
}

var serveCommand = &cliCommand{
	name:    "serve",
	args:    "[--addr host:port]",
	summary: "run the server (the default command)",
	about: `Serve runs the HTTP API. At start it logs the address it listens on, the URL
of the API docs, and whether each model provider answered.`,
	settings: true,
	run:      serve,
}

func serve(ctx context.Context, c *cli, f *flagSet, args []string) error {
	addr := f.String("addr", "", "address to listen on; overrides HOST and PORT")
	if err := f.parse(args); err != nil {
		return err
	}
	cfg, err := c.loadConfig(*addr, true)
	if err != nil {
		return err
	}
	log := newLogger(c.stdout, cfg.LogLevel)
	defer startGCHeadroom(c.env.getenv)()

	st, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()

	secret, err := secretKey(cfg)
	if err != nil {
		return err
	}
	tokens, err := auth.NewTokens(secret, auth.WithTokenTTL(cfg.AccessTokenTTL))
	if err != nil {
		return err
	}
	rdb, err := openRedis(ctx, cfg)
	if err != nil {
		return err
	}
	authOpts := auth.ServiceOptions{RefreshTTL: cfg.RefreshTokenTTL}
	var failures limit.Failures
	failures, authOpts.Registrations = limits(rdb)
	if rdb != nil {
		defer rdb.Close()
		authOpts.Changed = func() {
			if err := rdb.Publish(context.Background(), authChannel, "changed").Err(); err != nil {
				log.Warn("telling other instances of a credential change", "error", err)
			}
		}
	}
	authSvc := auth.NewService(st, tokens, failures, authOpts)
	if rdb != nil {
		// Another instance disabled a user or revoked a key: forget cached
		// credentials here too, so the change holds everywhere at once.
		sub := rdb.Subscribe(ctx, authChannel)
		defer sub.Close()
		go func() {
			for range sub.Channel() {
				authSvc.Invalidate()
			}
		}()
	}
	if cfg.AdminEmail != "" {
		created, err := authSvc.EnsureAdmin(ctx, cfg.AdminEmail, cfg.AdminPassword)
		if err != nil {
			return fmt.Errorf("FERRY_ADMIN_EMAIL: %w", err)
		}
		if created {
			log.Info("created admin from FERRY_ADMIN_EMAIL")
		}
	}

	tr := upstreamTransport(cfg)
	endpoints := upstreams(cfg)
	mx := newMetrics(cfg) // nil: FERRY_METRICS_ADDR is not set
	router, ollamaProvider, err := newRouter(cfg, endpoints, tr, retryPolicy(mx))
	if err != nil {
		return err
	}
	adm := admission(cfg, rdb, log)
	chatSvc := chat.NewService(st, router, chat.Options{SystemPrompt: cfg.SystemPrompt, ContextTokens: cfg.ContextTokens,
		UpstreamTimeout: cfg.UpstreamTimeout, UpstreamIdleTimeout: cfg.UpstreamIdleTimeout, Log: log,
		Observers: callObservers(mx), Admit: admitHook(adm, mx), Cache: answerCache(cfg, rdb)})

	// Answers that a process which died (kill -9, a crash) left streaming
	// are marked interrupted, now and while this one runs; those of other
	// instances alive on the same database are written often, and stay.
	if n, err := chatSvc.MarkInterrupted(ctx); err != nil {
		log.Warn("marking interrupted answers", "error", err)
	} else if n > 0 {
		log.Info("marked answers interrupted", "count", n)
	}
	maintained, stopMaintaining := context.WithCancel(context.Background())
	maintainDone := make(chan struct{})
	go func() {
		defer close(maintainDone)
		chatSvc.Maintain(maintained)
	}()
	defer func() { // before the store closes
		stopMaintaining()
		<-maintainDone
	}()
	// Background chat jobs run on the ingestion workers' River client;
	// those whose process died are marked failed, now and while this runs.
	jobSvc := jobs.New(st, chatSvc, router, jobs.Options{Log: log.With("component", "jobs")})
	if mx != nil {
		mx.Jobs(jobCounts(jobSvc))
	}
	jobsMaintained := make(chan struct{})
	go func() {
		defer close(jobsMaintained)
		jobSvc.Maintain(maintained)
	}()
	defer func() {
		stopMaintaining()
		<-jobsMaintained
	}()
	var userRevoked func(string)
	if rdb != nil {
		var stop func()
		userRevoked, stop = shareUserRevocations(ctx, rdb, chatSvc, log)
		defer stop()
	}
	// The answers' events, for clients that come back: mirrored to Redis
	// when there is one, so that they can come back to any instance.
	logs := eventlog.New(eventlog.Options{Redis: rdb, Log: log})
	var answerStopped func(string)
	if rdb != nil {
		var stop func()
		answerStopped, stop = shareAnswerStops(ctx, rdb, chatSvc, log)
		defer stop()
	}

	// stopping is cancelled when shutdown starts (/readyz answers 503);
	// draining when the streams still open must end (see shutdown).
	stopping, markStopping := context.WithCancel(context.Background())
	defer markStopping()
	draining, drain := context.WithCancel(context.Background())
	defer drain()
	// PDFium starts on the first PDF, not here, so start-up stays fast;
	// its compiled code is kept in the data directory across restarts.
	pdf := &lazyPDF{opts: extract.PDFOptions{CacheDir: filepath.Join(cfg.DataDir, "wazero-cache")}, log: log}
	defer pdf.Close() // after shutdown has drained the requests
	ing, retriever, stopIngest, err := startIngest(ctx, cfg, st, pdf, tr, log, jobSvc)
	if err != nil {
		return err
	}
	// After shutdown (deferred calls run last first): the requests have
	// ended, running jobs get ingestWait to finish, then PDFium and the
	// store close.
	defer stopIngest()
	handler := httpapi.NewServer(log, httpapi.Options{Version: buildVersion(), MaxBodyBytes: cfg.MaxBodyBytes,
		BodyReadTimeout: cfg.BodyReadTimeout, Draining: draining,
		Stopping: stopping, UserRevoked: userRevoked, AnswerStopped: answerStopped,
		TrustedProxies: cfg.TrustedProxies, CORSOrigins: cfg.CORSOrigins, MaxUploadBytes: cfg.MaxUploadBytes,
		Observe: requestObserver(mx)},
		httpapi.Services{Store: st, Auth: authSvc, Chat: chatSvc, LLM: router, Ollama: ollamaProvider, PDF: pdf, Ingest: ing,
			Retriever: retriever, Logs: logs,
			Jobs: jobSvc})

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	// Stopped after the shutdown below, which it lets one watch.
	stopMetrics, err := serveMetrics(cfg, mx, log)
	if err != nil {
		ln.Close()
		return err
	}
	defer stopMetrics()
	handlers := &inflight{}
	srv := &http.Server{
		Handler:           handlers.track(handler),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	log.Info("listening", "addr", ln.Addr().String(), "database", cfg.Database.Driver, "version", buildVersion())

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	// The report waits on upstreams for up to probeTimeout, while the
	// server already answers; it is over before run returns.
	reported := make(chan struct{})
	reportCtx, stopReport := context.WithCancel(ctx)
	go func() {
		defer close(reported)
		report(reportCtx, log, ln.Addr(), endpoints, tr)
	}()
	defer func() {
		stopReport()
		<-reported
	}()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	shutdown(log, cfg, srv, served, handlers, chatSvc, markStopping, drain)
	// The last calls' corrections of the rate counts reach Redis before
	// its client closes.
	flush, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	adm.Flush(flush)
	return nil
}

// upstreamTransport returns the one transport every upstream is reached
// through: no overall timeout (answers stream for minutes; chat bounds each
// call with FERRY_UPSTREAM_TIMEOUT and the silence between its chunks with
// FERRY_UPSTREAM_IDLE_TIMEOUT), the wait for response headers bounded by
// FERRY_UPSTREAM_HEADER_TIMEOUT, and enough idle connections per host that
// many concurrent streams reuse them instead of opening new ones. Small
// buffers: a stream's events are small, and each open stream holds its
// connection's buffers.
func upstreamTransport(cfg *config.Config) *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = 1024
	tr.MaxIdleConnsPerHost = 512
	tr.ResponseHeaderTimeout = cfg.UpstreamHeaderTimeout
	tr.ReadBufferSize = 2 << 10
	tr.WriteBufferSize = 1 << 10
	return tr
}

// upstreams returns the model providers the settings enable, in the order
// Anthropic, OpenAI, Ollama; Ollama always, at its default address when
// OLLAMA_BASE_URL is not set.
func upstreams(cfg *config.Config) []llm.Endpoint {
	var es []llm.Endpoint
	if cfg.AnthropicAPIKey != "" {
		es = append(es, llm.Endpoint{Name: llm.Anthropic, URLSetting: "ANTHROPIC_BASE_URL", BaseURL: cfg.AnthropicBaseURL,
			New: func(hc *http.Client) llm.Provider {
				return anthropic.New(anthropic.Config{APIKey: cfg.AnthropicAPIKey, BaseURL: cfg.AnthropicBaseURL, HTTPClient: hc})
			}})
	}
	if cfg.OpenAIConfigured() {
		es = append(es, llm.Endpoint{Name: llm.OpenAI, URLSetting: "OPENAI_BASE_URL", BaseURL: cfg.OpenAIBaseURL,
			New: func(hc *http.Client) llm.Provider {
				return openai.New(openai.Config{APIKey: cfg.OpenAIAPIKey, BaseURL: cfg.OpenAIBaseURL, HTTPClient: hc})
			}})
	}
	return append(es, llm.Endpoint{Name: llm.Ollama, URLSetting: "OLLAMA_BASE_URL", BaseURL: cfg.OllamaBaseURL,
		New: func(hc *http.Client) llm.Provider { return newOllama(cfg, hc) }})
}

func newOllama(cfg *config.Config, hc *http.Client) *ollama.Provider {
	return ollama.New(ollama.Config{BaseURL: cfg.OllamaBaseURL, HTTPClient: hc})
}

// newRouter builds the providers of endpoints on tr, each retrying failures
// that happen before its first token and explaining a 404 that comes from
// a wrong base URL (llm.WithBaseCheck), and routes between them. It returns
// the Ollama provider too, for Ollama's own API at /ollama/*.
func newRouter(cfg *config.Config, endpoints []llm.Endpoint, tr http.RoundTripper, retry llm.RetryPolicy) (*llm.Router, *ollama.Provider, error) {
	hc := &http.Client{Transport: tr}
	var providers []llm.Provider
	var o *ollama.Provider
	for _, e := range endpoints {
		var p llm.Provider
		if e.Name == llm.Ollama {
			o = newOllama(cfg, hc)
			p = o
		} else {
			p = e.New(hc)
		}
		providers = append(providers, llm.WithRetry(llm.WithBaseCheck(p, e, tr), retry))
	}
	router, err := llm.NewRouter(cfg.DefaultModel, providers...)
	return router, o, err
}

// authChannel is the Redis channel on which instances announce credential
// changes.
const authChannel = "ferry:auth:changed"

// openRedis connects to REDIS_URL, or returns nil when it is not set.
func openRedis(ctx context.Context, cfg *config.Config) (*redis.Client, error) {
	if cfg.RedisURL == "" {
		return nil, nil
	}
	opts, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	rdb := redis.NewClient(opts)
	if err := rdb.Ping(ctx).Err(); err != nil {
		rdb.Close()
		return nil, fmt.Errorf("REDIS_URL: cannot reach Redis: %w", err)
	}
	return rdb, nil
}

// limits returns the counts of failed sign-ins and of registrations: in
// Redis, shared by every instance, when there is one, else in this
// process's memory.
func limits(rdb *redis.Client) (failures, registrations limit.Failures) {
	if rdb == nil {
		return limit.NewMemoryFailures(limit.DefaultPolicy, time.Now), limit.NewMemoryFailures(auth.RegisterPolicy, time.Now)
	}
	return limit.NewRedisFailures(rdb, "ferry:", limit.DefaultPolicy), limit.NewRedisFailures(rdb, "ferry:register:", auth.RegisterPolicy)
}

// secretKey returns SECRET_KEY, or on SQLite a key generated once and kept in
// the data directory so tokens survive restarts.
func secretKey(cfg *config.Config) ([]byte, error) {
	if cfg.SecretKey != "" {
		return []byte(cfg.SecretKey), nil
	}
	return auth.LoadOrCreateSecretKey(filepath.Join(cfg.DataDir, "secret.key"))
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	l.UnmarshalText([]byte(level))
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}

func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// lazyPDF is the server's PDF reader (httpapi.PDFReader): PDFium starts on
// the first PDF, which then waits for it (a fraction of a second with its
// compiled code in opts.CacheDir, a few seconds of CPU without). A start
// that fails is logged, answered 503, and tried again by the next PDF.
type lazyPDF struct {
	opts extract.PDFOptions
	log  *slog.Logger

	mu     sync.Mutex
	pdf    *extract.PDF
	closed bool
}

// errPDFUnavailable is what a PDF hears when PDFium could not start.
var errPDFUnavailable = ferry.Errorf(ferry.Unavailable, "PDF reading could not start on this server; try again later")

// Extract starts PDFium if it is not running, then reads data with it.
func (l *lazyPDF) Extract(ctx context.Context, data []byte, o extract.Options) (*extract.Document, error) {
	p, err := l.get()
	if err != nil {
		return nil, err
	}
	return p.Extract(ctx, data, o)
}

// Unlock starts PDFium if it is not running, then unlocks data with it.
func (l *lazyPDF) Unlock(ctx context.Context, data []byte, password string) ([]byte, error) {
	p, err := l.get()
	if err != nil {
		return nil, err
	}
	return p.Unlock(ctx, data, password)
}

// get returns the running reader, starting it when there is none.
func (l *lazyPDF) get() (*extract.PDF, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, errPDFUnavailable
	}
	if l.pdf == nil {
		start := time.Now()
		p, err := extract.NewPDF(l.opts)
		if err != nil {
			l.log.Error("starting PDFium", "error", err)
			return nil, errPDFUnavailable
		}
		l.log.Info("PDFium started", "duration", time.Since(start), "cache", l.opts.CacheDir)
		l.pdf = p
	}
	return l.pdf, nil
}

// Close stops PDFium if it started; later PDFs hear 503.
func (l *lazyPDF) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	if l.pdf == nil {
		return nil
	}
	return l.pdf.Close()
}

// ingestWait is how long, at shutdown, the ingestion jobs still running
// may take to finish; those cut off then run again at the next start, on
// this instance or another.
const ingestWait = 5 * time.Second

// startIngest runs the job queue's migrations and starts this instance's
// ingestion workers, which also take up the jobs left from before a
// restart or a crash. stop stops them, waiting up to ingestWait. The
// Retriever searches what they index, through FERRY_EMBED_MODEL's
// embedder when there is one (which then embeds the chunks as they are
// ingested), lexically otherwise.
func startIngest(ctx context.Context, cfg *config.Config, st *store.Store, pdf ingest.PDFReader, tr http.RoundTripper,
	log *slog.Logger, js *jobs.Service) (ing *ingest.Service, r *search.Retriever, stop func(), err error) {
	ix := search.New(st)
	opts := ingest.Options{Workers: cfg.IngestWorkers, MaxAttempts: cfg.IngestMaxAttempts, Register: js.Register, Queues: js.Queues()}
	var emb search.Embedder // a nil interface, not a nil *embed.Client, when there is none
	if cfg.EmbedModel != "" {
		c, err := embed.New(embed.Config{Model: cfg.EmbedModel, OpenAIAPIKey: cfg.OpenAIAPIKey, OpenAIBaseURL: cfg.OpenAIBaseURL,
			OllamaBaseURL: cfg.OllamaBaseURL, Batch: cfg.EmbedBatch, HTTPClient: &http.Client{Transport: tr, Timeout: cfg.UpstreamTimeout}})
		if err != nil {
			return nil, nil, nil, err
		}
		emb = c
	}
	r = search.NewRetriever(ix, emb, search.Fusion{Vector: cfg.HybridVectorWeight}, log.With("component", "search"))
	if emb != nil {
		opts.Embed = r.EmbedChunks
	}
	ing, err = ingest.New(ctx, st, cfg.Database, ix, pdf, opts, log.With("component", "ingest"))
	if err != nil {
		return nil, nil, nil, err
	}
	js.SetQueue(ing)
	// Not ctx: SIGTERM cancels it, and the workers stop in their turn.
	if err := ing.Start(context.WithoutCancel(ctx)); err != nil {
		ing.Stop(context.Background())
		return nil, nil, nil, err
	}
	return ing, r, func() {
		sctx, cancel := context.WithTimeout(context.Background(), ingestWait)
		defer cancel()
		if err := ing.Stop(sctx); err != nil {
			log.Warn("stopping the ingestion workers", "error", err)
		}
	}, nil
}

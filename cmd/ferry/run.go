package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"runtime/debug"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/joho/godotenv"
	"github.com/redis/go-redis/v9"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/auth"
	"github.com/ferryhq/ferry/chat"
	"github.com/ferryhq/ferry/config"
	"github.com/ferryhq/ferry/httpapi"
	"github.com/ferryhq/ferry/limit"
	"github.com/ferryhq/ferry/llm"
	"github.com/ferryhq/ferry/llm/anthropic"
	"github.com/ferryhq/ferry/llm/ollama"
	"github.com/ferryhq/ferry/llm/openai"
	"github.com/ferryhq/ferry/store"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = ""

// errUsage means the usage text was already printed; main only exits 1.
var errUsage = errors.New("usage")

// environment is the process's outside world, passed in so tests can run
// the binary in-process with their own settings.
type environment struct {
	getenv   func(string) string
	readFile func(string) ([]byte, error)
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

const usage = `Ferry: a self-hosted AI application backend.

Usage:
  ferry [serve] [--addr host:port]   run the server (the default)
  ferry migrate [--status]           apply database migrations and show them
  ferry user create --email E --password-stdin [--name N] [--admin]
  ferry user unblock (--email E | --address A)
  ferry version

Run "ferry COMMAND --help" for a command's flags; "ferry serve --help" lists every setting.
`

func run(ctx context.Context, args []string, env environment, stdin io.Reader, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serve(ctx, args, env, stdout, stderr)
	case "migrate":
		return migrate(ctx, args, env, stdout, stderr)
	case "user":
		return user(ctx, args, env, stdin, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "ferry", buildVersion())
		return nil
	case "help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprintf(stderr, "unknown command %q\n\n%s", cmd, usage)
	return errUsage
}

// newFlags returns a flag set that prints its usage, and the settings table
// when withSettings, to stderr.
func newFlags(name, synopsis string, stderr io.Writer, withSettings bool) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: %s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
		if withSettings {
			fmt.Fprintln(stderr, "\nSettings (environment, or a .env file in the working directory):")
			tw := tabwriter.NewWriter(stderr, 2, 4, 2, ' ', 0)
			for _, s := range config.Settings {
				def := s.Default
				if def == "" {
					def = "(empty)"
				}
				fmt.Fprintf(tw, "  %s\t%s\t%s\n", s.Env, def, s.Doc)
			}
			tw.Flush()
		}
	}
	return fs
}

// parse parses args, turning -h into errUsage after the usage was printed.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return errUsage
	}
	return nil
}

func loadConfig(env environment, addr string) (*config.Config, error) {
	lookup, err := env.lookup()
	if err != nil {
		return nil, err
	}
	return config.Load(lookup, addr)
}

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

func serve(ctx context.Context, args []string, env environment, stdout, stderr io.Writer) error {
	fs := newFlags("serve", "ferry serve [--addr host:port]", stderr, true)
	addr := fs.String("addr", "", "address to listen on (default from HOST and PORT: 127.0.0.1:8000)")
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(env, *addr)
	if err != nil {
		return err
	}
	log := newLogger(stdout, cfg.LogLevel)

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

	router, ollamaProvider, err := newRouter(cfg)
	if err != nil {
		return err
	}
	chatSvc := chat.NewService(st, router, chat.Options{SystemPrompt: cfg.SystemPrompt, ContextTokens: cfg.ContextTokens,
		UpstreamTimeout: cfg.UpstreamTimeout, UpstreamIdleTimeout: cfg.UpstreamIdleTimeout, Log: log})

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
	var userRevoked func(string)
	if rdb != nil {
		var stop func()
		userRevoked, stop = shareUserRevocations(ctx, rdb, chatSvc, log)
		defer stop()
	}

	// stopping is cancelled when shutdown starts (/readyz answers 503);
	// draining when the streams still open must end (see shutdown).
	stopping, markStopping := context.WithCancel(context.Background())
	defer markStopping()
	draining, drain := context.WithCancel(context.Background())
	defer drain()
	handler := httpapi.NewServer(log, httpapi.Options{Version: buildVersion(), MaxBodyBytes: cfg.MaxBodyBytes,
		BodyReadTimeout: cfg.BodyReadTimeout, Draining: draining,
		Stopping: stopping, UserRevoked: userRevoked,
		TrustedProxies: cfg.TrustedProxies},
		httpapi.Services{Store: st, Auth: authSvc, Chat: chatSvc, LLM: router, Ollama: ollamaProvider})

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
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
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	shutdown(log, cfg, srv, served, handlers, chatSvc, markStopping, drain)
	return nil
}

// newRouter builds the providers the settings enable, each retrying
// failures that happen before its first token, and routes between them. It
// returns the Ollama provider too, for Ollama's own API at /ollama/*.
func newRouter(cfg *config.Config) (*llm.Router, *ollama.Provider, error) {
	// One client for every upstream: no overall timeout (answers stream for
	// minutes; chat bounds each call with FERRY_UPSTREAM_TIMEOUT and the
	// silence between its chunks with FERRY_UPSTREAM_IDLE_TIMEOUT), the
	// wait for response headers bounded by FERRY_UPSTREAM_HEADER_TIMEOUT,
	// and enough idle connections per host that many concurrent streams
	// reuse them instead of opening new ones. Small buffers: a stream's
	// events are small, and each open stream holds its connection's buffers.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = 1024
	tr.MaxIdleConnsPerHost = 512
	tr.ResponseHeaderTimeout = cfg.UpstreamHeaderTimeout
	tr.ReadBufferSize = 4 << 10
	tr.WriteBufferSize = 1 << 10
	hc := &http.Client{Transport: tr}

	var providers []llm.Provider
	if cfg.AnthropicAPIKey != "" {
		providers = append(providers, anthropic.New(anthropic.Config{APIKey: cfg.AnthropicAPIKey, BaseURL: cfg.AnthropicBaseURL, HTTPClient: hc}))
	}
	if cfg.OpenAIConfigured() {
		providers = append(providers, openai.New(openai.Config{APIKey: cfg.OpenAIAPIKey, BaseURL: cfg.OpenAIBaseURL, HTTPClient: hc}))
	}
	o := ollama.New(ollama.Config{BaseURL: cfg.OllamaBaseURL, HTTPClient: hc})
	providers = append(providers, o)
	for i, p := range providers {
		providers[i] = llm.WithRetry(p, llm.RetryPolicy{})
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

func migrate(ctx context.Context, args []string, env environment, stdout, stderr io.Writer) error {
	fs := newFlags("migrate", "ferry migrate [--status]", stderr, false)
	statusOnly := fs.Bool("status", false, "show which migrations are applied without applying any")
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(env, "")
	if err != nil {
		return err
	}
	st, err := store.Open(ctx, cfg.Database)
	if err != nil {
		return err
	}
	defer st.Close()
	if !*statusOnly {
		if err := st.Migrate(ctx); err != nil {
			return err
		}
	}
	ms, err := st.Migrations(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tNAME\tAPPLIED")
	for _, m := range ms {
		applied := "pending"
		if m.AppliedAt != nil {
			applied = m.AppliedAt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%04d\t%s\t%s\n", m.Version, m.Name, applied)
	}
	return tw.Flush()
}

const userUsage = `Usage:
  ferry user create --email E --password-stdin [--name N] [--admin]
  ferry user unblock (--email E | --address A)
`

func user(ctx context.Context, args []string, env environment, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "create":
			return userCreate(ctx, args[1:], env, stdin, stdout, stderr)
		case "unblock":
			return userUnblock(ctx, args[1:], env, stdout, stderr)
		}
	}
	fmt.Fprint(stderr, userUsage)
	return errUsage
}

func userCreate(ctx context.Context, args []string, env environment, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("user create", "ferry user create --email E --password-stdin [--name N] [--admin]", stderr, false)
	email := fs.String("email", "", "the user's email (required)")
	name := fs.String("name", "", "the user's display name")
	isAdmin := fs.Bool("admin", false, "make the user an admin")
	fromStdin := fs.Bool("password-stdin", false, "read the password from the first line of standard input (required, so it never sits in shell history)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *email == "" || !*fromStdin {
		fs.Usage()
		return errUsage
	}
	line, err := bufio.NewReader(io.LimitReader(stdin, 4096)).ReadString('\n')
	if err != nil && err != io.EOF {
		return err
	}
	password := strings.TrimRight(line, "\r\n")
	cfg, err := loadConfig(env, "")
	if err != nil {
		return err
	}
	st, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	role := ferry.RoleUser
	if *isAdmin {
		role = ferry.RoleAdmin
	}
	secret, err := secretKey(cfg)
	if err != nil {
		return err
	}
	tokens, err := auth.NewTokens(secret)
	if err != nil {
		return err
	}
	svc := auth.NewService(st, tokens, limit.NewMemoryFailures(limit.DefaultPolicy, time.Now), auth.ServiceOptions{})
	u, err := svc.CreateUser(ctx, *email, password, *name, role)
	if err != nil {
		var fe *ferry.Error
		if errors.As(err, &fe) {
			return errors.New(fe.Message)
		}
		return err
	}
	fmt.Fprintf(stdout, "created %s %s (%s)\n", u.Role, u.Email, u.ID)
	return nil
}

func userUnblock(ctx context.Context, args []string, env environment, stdout, stderr io.Writer) error {
	fs := newFlags("user unblock", "ferry user unblock (--email E | --address A)", stderr, false)
	email := fs.String("email", "", "lift the sign-in blocks on this user's account, from every address")
	address := fs.String("address", "", "lift the sign-in and registration blocks on this client IP address")
	if err := parse(fs, args); err != nil {
		return err
	}
	if (*email == "") == (*address == "") {
		fs.Usage()
		return errUsage
	}
	cfg, err := loadConfig(env, "")
	if err != nil {
		return err
	}
	if cfg.RedisURL == "" {
		// Without Redis the counts live in the server's memory, out of this
		// process's reach.
		return errors.New("without REDIS_URL, blocks are kept in the server's memory: lift them with POST /users/{id}/unblock as an admin, or restart the server")
	}
	st, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	rdb, err := openRedis(ctx, cfg)
	if err != nil {
		return err
	}
	defer rdb.Close()
	failures, registrations := limits(rdb)
	svc := auth.NewService(st, nil, failures, auth.ServiceOptions{Registrations: registrations})
	if *address != "" {
		if err := svc.UnblockAddress(ctx, *address); err != nil {
			return publicError(err)
		}
		fmt.Fprintf(stdout, "unblocked address %s\n", *address)
		return nil
	}
	e, err := auth.NormalizeEmail(*email)
	if err != nil {
		return publicError(err)
	}
	u, err := st.UserByEmail(ctx, e)
	if err != nil {
		return publicError(err)
	}
	if err := svc.UnblockUser(ctx, u.ID); err != nil {
		return publicError(err)
	}
	fmt.Fprintf(stdout, "unblocked %s (%s)\n", u.Email, u.ID)
	return nil
}

// publicError is err as a command prints it: a *ferry.Error's message
// alone, without the wrapping meant for logs.
func publicError(err error) error {
	var fe *ferry.Error
	if errors.As(err, &fe) {
		return errors.New(fe.Message)
	}
	return err
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

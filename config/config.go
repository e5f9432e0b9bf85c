// Package config loads Ferry's settings once, from the environment and an
// optional .env file, and validates them. Every setting is declared in one
// table, which also produces `ferry serve --help` and the README's table.
package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Config is every setting Ferry reads. Load fills it; nothing else reads the
// environment.
type Config struct {
	Addr     string
	DataDir  string
	Database Database
	// SecretKey signs access tokens. Empty means "generate one in DataDir",
	// which Load allows only on SQLite.
	SecretKey string
	RedisURL  string

	AdminEmail    string
	AdminPassword string

	AccessTokenTTL  time.Duration
	RefreshTokenTTL time.Duration
	MaxBodyBytes    int64
	MaxUploadBytes  int64
	BodyReadTimeout time.Duration
	// RateLimitRPM and RateLimitTPM are every user's model calls and
	// tokens per minute unless an admin overrides them; zero: no limit.
	// MaxConcurrent caps the model calls in flight on this instance (zero:
	// no cap), MaxConcurrentPer per provider; over it calls wait in a
	// queue of QueueSize for at most QueueTimeout.
	RateLimitRPM     int64
	RateLimitTPM     int64
	MaxConcurrent    int
	MaxConcurrentPer map[string]int
	QueueSize        int
	QueueTimeout     time.Duration
	// IngestWorkers is how many documents an instance ingests at once;
	// IngestMaxAttempts how many times a document's job runs before the
	// document is marked failed.
	IngestWorkers     int
	IngestMaxAttempts int
	ShutdownTimeout   time.Duration
	ShutdownGrace     time.Duration
	TrustedProxies    []netip.Prefix
	// CORSOrigins are the browser origins allowed to call the API from
	// another site; empty turns CORS off, "*" allows any origin.
	CORSOrigins []string
	LogLevel    string
	// MetricsAddr is where Prometheus metrics are served (/metrics), on a
	// listener of their own; empty turns them off.
	MetricsAddr string

	AnthropicAPIKey  string
	AnthropicBaseURL string
	OpenAIAPIKey     string
	OpenAIBaseURL    string
	OllamaBaseURL    string
	DefaultModel     string
	SystemPrompt     string
	ContextTokens    int
	UpstreamTimeout  time.Duration
	// UpstreamHeaderTimeout bounds the wait for an upstream's response
	// headers; UpstreamIdleTimeout the silence between two chunks of an
	// answer that has begun.
	UpstreamHeaderTimeout time.Duration
	UpstreamIdleTimeout   time.Duration

	// CacheTTL is how long a complete answer is kept for identical
	// requests of the same user; zero turns the answer cache off.
	// CacheMaxBytes bounds the in-memory cache, CacheMaxEntryBytes one
	// answer in either store.
	CacheTTL           time.Duration
	CacheMaxBytes      int
	CacheMaxEntryBytes int

	// EmbedModel is the embedding model, "openai/NAME" or "ollama/NAME";
	// empty means none (retrieval is lexical). EmbedBatch is how many
	// texts one embedding request carries; HybridVectorWeight the vector
	// ranking's share of a hybrid search's score, 0..1.
	EmbedModel         string
	EmbedBatch         int
	HybridVectorWeight float64
}

// Database says which engine to open and how.
type Database struct {
	Driver string // "sqlite" or "postgres"
	// DSN is the driver's connection string: a file path for SQLite, a
	// postgres:// URL for PostgreSQL.
	DSN string
}

// SeedSystemPrompt is the seed tutorial's default system prompt, kept so its
// clients get the same behaviour.
const SeedSystemPrompt = "你是一个专业、友善的 AI 助手。"

// Setting is one entry of the settings table.
type Setting struct {
	Env     string
	Default string
	Doc     string
	Secret  bool
	set     func(c *Config, v string) error
}

// Settings lists every setting Ferry reads, in the order the docs show them.
var Settings = []Setting{
	{Env: "HOST", Default: "127.0.0.1", Doc: "Interface to listen on (flag --addr overrides HOST and PORT).",
		set: func(c *Config, v string) error { c.Addr = net.JoinHostPort(v, port(c.Addr)); return nil }},
	{Env: "PORT", Default: "8000", Doc: "Port to listen on.",
		set: func(c *Config, v string) error {
			if _, err := strconv.ParseUint(v, 10, 16); err != nil {
				return fmt.Errorf("not a port number")
			}
			c.Addr = net.JoinHostPort(host(c.Addr), v)
			return nil
		}},
	{Env: "FERRY_DATA_DIR", Default: "./data", Doc: "Directory for the SQLite database and the generated secret key.",
		set: func(c *Config, v string) error { c.DataDir = v; return nil }},
	{Env: "DATABASE_URL", Default: "", Doc: "postgres://, postgresql://, postgresql+asyncpg:// or sqlite:///path. Empty: SQLite in FERRY_DATA_DIR.",
		Secret: true, set: func(c *Config, v string) error { return c.Database.parse(v) }},
	{Env: "SECRET_KEY", Default: "", Doc: "Key that signs access tokens, at least 32 bytes. Required on PostgreSQL; on SQLite one is generated in FERRY_DATA_DIR.",
		Secret: true, set: func(c *Config, v string) error { c.SecretKey = v; return nil }},
	{Env: "REDIS_URL", Default: "", Doc: "redis:// URL; shares sign-in and registration limits, credential revocation and the cancelling of a disabled user's calls between instances.",
		Secret: true, set: func(c *Config, v string) error { c.RedisURL = v; return nil }},
	{Env: "FERRY_ADMIN_EMAIL", Default: "", Doc: "With FERRY_ADMIN_PASSWORD: create this admin at start if no user has that email.",
		set: func(c *Config, v string) error { c.AdminEmail = v; return nil }},
	{Env: "FERRY_ADMIN_PASSWORD", Default: "", Doc: "Password for FERRY_ADMIN_EMAIL.",
		Secret: true, set: func(c *Config, v string) error { c.AdminPassword = v; return nil }},
	{Env: "FERRY_ACCESS_TOKEN_TTL", Default: "15m", Doc: "Lifetime of an access token.",
		set: func(c *Config, v string) error { return duration(&c.AccessTokenTTL, v) }},
	{Env: "FERRY_REFRESH_TOKEN_TTL", Default: "720h", Doc: "Lifetime of a sign-in session (its refresh tokens).",
		set: func(c *Config, v string) error { return duration(&c.RefreshTokenTTL, v) }},
	{Env: "FERRY_MAX_BODY_BYTES", Default: "1048576", Doc: "Largest JSON request body accepted.",
		set: func(c *Config, v string) error { return positive(&c.MaxBodyBytes, v) }},
	{Env: "FERRY_MAX_UPLOAD_BYTES", Default: "33554432", Doc: "Largest upload accepted (POST /analyze/pdf: the whole form), refused with 413 from its Content-Length before it is read. Default 32 MiB, Anthropic's request limit.",
		set: func(c *Config, v string) error { return positive(&c.MaxUploadBytes, v) }},
	{Env: "FERRY_RATE_LIMIT_RPM", Default: "10", Doc: "Model calls per minute per user, on every endpoint that calls a model (sliding window; 429 with Retry-After and RateLimit headers over it); 0: no limit. An admin overrides it per user (PATCH /users/{id}: rate_limit_rpm); an API key can carry a smaller limit of its own. With REDIS_URL the count is shared exactly by every instance; should Redis stop answering, limits fail open to a count per instance (logged once) until it answers again.",
		set: func(c *Config, v string) error { return nonNegativeInt64(&c.RateLimitRPM, v) }},
	{Env: "FERRY_RATE_LIMIT_TPM", Default: "0", Doc: "Tokens per minute per user, counted from an estimate of the request when a call starts and corrected by the upstream's usage when it ends; 0: no limit. Overrides as for FERRY_RATE_LIMIT_RPM (rate_limit_tpm).",
		set: func(c *Config, v string) error { return nonNegativeInt64(&c.RateLimitTPM, v) }},
	{Env: "FERRY_MAX_CONCURRENT", Default: "64", Doc: "Most model calls in flight on this instance; more wait in a queue that serves users in turn. 0: no cap.",
		set: func(c *Config, v string) error { return nonNegativeInt(&c.MaxConcurrent, v) }},
	{Env: "FERRY_MAX_CONCURRENT_PER_PROVIDER", Default: "", Doc: "Caps per provider within FERRY_MAX_CONCURRENT, as ollama=2,anthropic=16. Empty: only the overall cap.",
		set: func(c *Config, v string) error { return providerCaps(&c.MaxConcurrentPer, v) }},
	{Env: "FERRY_QUEUE_SIZE", Default: "256", Doc: "Most model calls waiting for a slot on this instance; a call finding the queue full gets 503 with Retry-After. 0: none waits.",
		set: func(c *Config, v string) error { return nonNegativeInt(&c.QueueSize, v) }},
	{Env: "FERRY_QUEUE_TIMEOUT", Default: "30s", Doc: "Longest a model call waits in the queue before it gets 503 with Retry-After.",
		set: func(c *Config, v string) error { return duration(&c.QueueTimeout, v) }},
	{Env: "FERRY_INGEST_WORKERS", Default: "2", Doc: "How many documents this instance extracts, chunks and indexes at once (POST /collections/{name}/documents).",
		set: func(c *Config, v string) error { return positiveInt(&c.IngestWorkers, v) }},
	{Env: "FERRY_INGEST_MAX_ATTEMPTS", Default: "5", Doc: "How many times a document's ingestion job runs, with growing delays, before the document is marked failed with the reason.",
		set: func(c *Config, v string) error { return positiveInt(&c.IngestMaxAttempts, v) }},
	{Env: "FERRY_EMBED_MODEL", Default: "", Doc: "Embedding model for vector and hybrid search, as openai/NAME (OPENAI_BASE_URL's /embeddings) or ollama/NAME (OLLAMA_BASE_URL's /api/embed), e.g. ollama/nomic-embed-text. Empty: search is lexical (BM25) only.",
		set: func(c *Config, v string) error { return embedModel(&c.EmbedModel, v) }},
	{Env: "FERRY_EMBED_BATCH", Default: "64", Doc: "How many chunks one embedding request carries.",
		set: func(c *Config, v string) error { return positiveInt(&c.EmbedBatch, v) }},
	{Env: "FERRY_HYBRID_VECTOR_WEIGHT", Default: "0.1", Doc: "Share of the vector ranking in a hybrid search's score, 0 to 1 (BM25 has the rest), each ranking's scores scaled to 0..1 first. The default was measured on SciFact with a weak embedder (BENCHMARKS.md); raise it for a strong one.",
		set: func(c *Config, v string) error { return fraction(&c.HybridVectorWeight, v) }},
	{Env: "FERRY_BODY_READ_TIMEOUT", Default: "30s", Doc: "Longest a client may take to send a request body.",
		set: func(c *Config, v string) error { return duration(&c.BodyReadTimeout, v) }},
	{Env: "FERRY_SHUTDOWN_TIMEOUT", Default: "30s", Doc: "How long SIGTERM waits for in-flight requests.",
		set: func(c *Config, v string) error { return duration(&c.ShutdownTimeout, v) }},
	{Env: "FERRY_SHUTDOWN_GRACE", Default: "5s", Doc: "After SIGTERM, how long /readyz answers 503 while requests are still served, so load balancers move away first.",
		set: func(c *Config, v string) error { return nonNegative(&c.ShutdownGrace, v) }},
	{Env: "FERRY_TRUSTED_PROXIES", Default: "", Doc: "Comma-separated addresses or CIDRs of proxies whose X-Forwarded-For names the client. Empty: the TCP peer is the client.",
		set: func(c *Config, v string) error { return prefixes(&c.TrustedProxies, v) }},
	{Env: "FERRY_CORS_ORIGINS", Default: "", Doc: "Comma-separated browser origins (https://app.example.com) allowed to call the API from another site, or * for any. Empty: CORS is off.",
		set: func(c *Config, v string) error { return origins(&c.CORSOrigins, v) }},
	{Env: "FERRY_LOG_LEVEL", Default: "info", Doc: "debug, info, warn or error.",
		set: func(c *Config, v string) error {
			switch v {
			case "debug", "info", "warn", "error":
				c.LogLevel = v
				return nil
			}
			return fmt.Errorf("want debug, info, warn or error")
		}},
	{Env: "FERRY_METRICS_ADDR", Default: "", Doc: "host:port of a separate listener serving Prometheus metrics at /metrics (e.g. 127.0.0.1:9090); keep it off the public network. Empty: no metrics.",
		set: func(c *Config, v string) error {
			if _, _, err := net.SplitHostPort(v); err != nil {
				return fmt.Errorf("want host:port, such as 127.0.0.1:9090")
			}
			c.MetricsAddr = v
			return nil
		}},
	{Env: "ANTHROPIC_API_KEY", Default: "", Doc: "Enables Anthropic models.",
		Secret: true, set: func(c *Config, v string) error { c.AnthropicAPIKey = v; return nil }},
	{Env: "ANTHROPIC_BASE_URL", Default: "https://api.anthropic.com", Doc: "Anthropic API endpoint.",
		set: func(c *Config, v string) error { return baseURL(&c.AnthropicBaseURL, v) }},
	{Env: "OPENAI_API_KEY", Default: "", Doc: "Enables OpenAI-compatible models.",
		Secret: true, set: func(c *Config, v string) error { c.OpenAIAPIKey = v; return nil }},
	{Env: "OPENAI_BASE_URL", Default: "https://api.openai.com/v1", Doc: "OpenAI-compatible endpoint (vLLM, llama.cpp, LM Studio…); setting it also enables the provider without a key.",
		set: func(c *Config, v string) error { return baseURL(&c.OpenAIBaseURL, v) }},
	{Env: "OLLAMA_BASE_URL", Default: "http://localhost:11434", Doc: "Ollama endpoint.",
		set: func(c *Config, v string) error { return baseURL(&c.OllamaBaseURL, v) }},
	{Env: "FERRY_DEFAULT_MODEL", Default: "", Doc: "Model used when a request names none. Empty: claude-sonnet-4-6 with Anthropic configured, else the first OpenAI or Ollama model.",
		set: func(c *Config, v string) error { c.DefaultModel = v; return nil }},
	{Env: "FERRY_SYSTEM_PROMPT", Default: SeedSystemPrompt, Doc: "System prompt used when a request gives none.",
		set: func(c *Config, v string) error { c.SystemPrompt = v; return nil }},
	{Env: "FERRY_CONTEXT_TOKENS", Default: "100000", Doc: "History budget (estimated tokens) sent with a conversation turn; the oldest messages are dropped to fit.",
		set: func(c *Config, v string) error { return positiveInt(&c.ContextTokens, v) }},
	{Env: "FERRY_UPSTREAM_TIMEOUT", Default: "10m", Doc: "Longest a single upstream model call may take.",
		set: func(c *Config, v string) error { return duration(&c.UpstreamTimeout, v) }},
	{Env: "FERRY_UPSTREAM_HEADER_TIMEOUT", Default: "2m", Doc: "Longest wait for an upstream to start answering.",
		set: func(c *Config, v string) error { return duration(&c.UpstreamHeaderTimeout, v) }},
	{Env: "FERRY_UPSTREAM_IDLE_TIMEOUT", Default: "60s", Doc: "Longest silence between two chunks of an answer once it has begun.",
		set: func(c *Config, v string) error { return duration(&c.UpstreamIdleTimeout, v) }},
	{Env: "FERRY_CACHE_TTL", Default: "1h", Doc: "How long a complete answer is kept and given again, marked X-Cache: hit, to an identical request of the same user (same model, system prompt, history, message and parameters); identical requests running at once make one upstream call. In Redis with REDIS_URL, else in memory. 0 turns the cache off; a request can skip it with \"cache\": false.",
		set: func(c *Config, v string) error { return nonNegative(&c.CacheTTL, v) }},
	{Env: "FERRY_CACHE_MAX_BYTES", Default: "67108864", Doc: "Most the in-memory answer cache holds; the least recently used answers go first. (In Redis, entries expire with FERRY_CACHE_TTL and Redis's maxmemory policy bounds the rest.)",
		set: func(c *Config, v string) error { return positiveInt(&c.CacheMaxBytes, v) }},
	{Env: "FERRY_CACHE_MAX_ENTRY_BYTES", Default: "1048576", Doc: "Longest answer the cache keeps, in bytes, in memory or Redis; longer ones are not cached.",
		set: func(c *Config, v string) error { return positiveInt(&c.CacheMaxEntryBytes, v) }},
}

// Load builds a Config from lookup (the environment with .env values behind
// it) and applies addr, the --addr flag, when it is not empty. It returns an
// error naming the setting that is wrong.
func Load(lookup func(string) string, addr string) (*Config, error) {
	c := &Config{Addr: "127.0.0.1:8000", Database: Database{Driver: "sqlite"}}
	for _, s := range Settings {
		v := lookup(s.Env)
		if v == "" {
			v = s.Default
		}
		if v == "" {
			continue
		}
		if err := s.set(c, v); err != nil {
			return nil, fmt.Errorf("%s: %w", s.Env, err)
		}
	}
	if addr != "" {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("--addr: %w", err)
		}
		c.Addr = addr
	}
	if c.Database.Driver == "sqlite" && c.Database.DSN == "" {
		c.Database.DSN = filepath.Join(c.DataDir, "ferry.db")
	}
	if c.Database.Driver == "postgres" && c.SecretKey == "" {
		return nil, fmt.Errorf("SECRET_KEY: required with PostgreSQL, so every instance signs tokens alike; make one with: openssl rand -hex 32")
	}
	if c.SecretKey != "" && len(c.SecretKey) < 32 {
		return nil, fmt.Errorf("SECRET_KEY: %d bytes is too short, it must be at least 32; make one with: openssl rand -hex 32", len(c.SecretKey))
	}
	if (c.AdminEmail == "") != (c.AdminPassword == "") {
		return nil, fmt.Errorf("FERRY_ADMIN_EMAIL and FERRY_ADMIN_PASSWORD: set both or neither")
	}
	return c, nil
}

// OpenAIConfigured reports whether an OpenAI-compatible upstream is
// configured: by a key, or by a base URL other than OpenAI's own (local
// servers often need no key).
func (c *Config) OpenAIConfigured() bool {
	return c.OpenAIAPIKey != "" || c.OpenAIBaseURL != "https://api.openai.com/v1"
}

func (d *Database) parse(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("not a URL")
	}
	switch u.Scheme {
	case "postgres", "postgresql", "postgresql+asyncpg", "postgresql+psycopg", "postgresql+psycopg2":
		u.Scheme = "postgres"
		*d = Database{Driver: "postgres", DSN: u.String()}
	case "sqlite", "sqlite3", "sqlite+aiosqlite", "sqlite+pysqlite":
		// sqlite:///rel/path.db and sqlite:////abs/path.db, as SQLAlchemy
		// writes them: the path is everything after "sqlite:///".
		p := strings.TrimPrefix(raw, u.Scheme+"://")
		p = strings.TrimPrefix(p, "/")
		if p == "" {
			return fmt.Errorf("sqlite URL needs a path, as in sqlite:///data/ferry.db")
		}
		*d = Database{Driver: "sqlite", DSN: p}
	default:
		return fmt.Errorf("scheme %q is not supported: use postgres://, postgresql:// or sqlite:///path", u.Scheme)
	}
	return nil
}

func duration(dst *time.Duration, v string) error {
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return fmt.Errorf("want a positive duration such as 15m or 30s")
	}
	*dst = d
	return nil
}

func nonNegative(dst *time.Duration, v string) error {
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return fmt.Errorf("want a duration such as 5s, or 0")
	}
	*dst = d
	return nil
}

// prefixes reads a comma-separated list of addresses (each its own /32 or
// /128) and CIDR prefixes.
func prefixes(dst *[]netip.Prefix, v string) error {
	var out []netip.Prefix
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if p, err := netip.ParsePrefix(f); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return fmt.Errorf("%q is neither an address nor a CIDR prefix", f)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	*dst = out
	return nil
}

func positive(dst *int64, v string) error {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		return fmt.Errorf("want a positive whole number")
	}
	*dst = n
	return nil
}

// embedModel reads a model named "openai/NAME" or "ollama/NAME".
func embedModel(dst *string, v string) error {
	provider, name, ok := strings.Cut(v, "/")
	if !ok || name == "" || (provider != "openai" && provider != "ollama") {
		return fmt.Errorf("want openai/MODEL or ollama/MODEL, as in ollama/nomic-embed-text")
	}
	*dst = v
	return nil
}

// fraction reads a number from 0 to 1.
func fraction(dst *float64, v string) error {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f < 0 || f > 1 {
		return fmt.Errorf("want a number from 0 to 1")
	}
	*dst = f
	return nil
}

func nonNegativeInt64(dst *int64, v string) error {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return fmt.Errorf("want a whole number, 0 or more")
	}
	*dst = n
	return nil
}

func nonNegativeInt(dst *int, v string) error {
	var n int64
	if err := nonNegativeInt64(&n, v); err != nil {
		return err
	}
	*dst = int(n)
	return nil
}

// providerCaps reads "provider=N" pairs separated by commas.
func providerCaps(dst *map[string]int, v string) error {
	out := map[string]int{}
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		name, n, ok := strings.Cut(f, "=")
		var cap int
		if !ok || strings.TrimSpace(name) == "" || positiveInt(&cap, strings.TrimSpace(n)) != nil {
			return fmt.Errorf("%q: want provider=N with N at least 1, as in ollama=2,anthropic=16", f)
		}
		out[strings.TrimSpace(name)] = cap
	}
	*dst = out
	return nil
}

func positiveInt(dst *int, v string) error {
	var n int64
	if err := positive(&n, v); err != nil {
		return err
	}
	*dst = int(n)
	return nil
}

func baseURL(dst *string, v string) error {
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("want an http:// or https:// URL")
	}
	*dst = strings.TrimRight(v, "/")
	return nil
}

func host(addr string) string {
	h, _, _ := net.SplitHostPort(addr)
	return h
}

func port(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// origins parses a comma-separated list of origins: "*" alone, or
// scheme://host[:port] each, without a path.
func origins(dst *[]string, v string) error {
	*dst = nil
	for _, o := range strings.Split(v, ",") {
		o = strings.TrimSpace(o)
		if o == "" {
			continue
		}
		if o != "*" {
			u, err := url.Parse(o)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
				return fmt.Errorf("%q is not an origin such as https://app.example.com", o)
			}
			o = u.Scheme + "://" + u.Host
		}
		*dst = append(*dst, o)
	}
	return nil
}

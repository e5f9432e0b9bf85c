package config

import (
	"net/netip"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// load runs Load over a map of settings.
func load(vars map[string]string, addr string) (*Config, error) {
	return Load(func(k string) string { return vars[k] }, addr)
}

func TestDefaults(t *testing.T) {
	c, err := load(nil, "")
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		Addr:              "127.0.0.1:8000",
		DataDir:           "./data",
		Database:          Database{Driver: "sqlite", DSN: filepath.Join("data", "ferry.db")},
		AccessTokenTTL:    15 * time.Minute,
		RefreshTokenTTL:   30 * 24 * time.Hour,
		MaxBodyBytes:      1 << 20,
		MaxUploadBytes:    32 << 20,
		IngestWorkers:     2,
		IngestMaxAttempts: 5,
		BodyReadTimeout:   30 * time.Second,
		ShutdownTimeout:   30 * time.Second,
		ShutdownGrace:     5 * time.Second,
		LogLevel:          "info",
		AnthropicBaseURL:  "https://api.anthropic.com",
		OpenAIBaseURL:     "https://api.openai.com/v1",
		OllamaBaseURL:     "http://localhost:11434",
		SystemPrompt:      SeedSystemPrompt,
		ContextTokens:     100000,
		UpstreamTimeout:   10 * time.Minute,

		UpstreamHeaderTimeout: 2 * time.Minute,
		UpstreamIdleTimeout:   time.Minute,

		CacheTTL:           time.Hour,
		CacheMaxBytes:      64 << 20,
		CacheMaxEntryBytes: 1 << 20,

		EmbedBatch:         64,
		HybridVectorWeight: 0.1,

		RateLimitRPM: 10, MaxConcurrent: 64, QueueSize: 256, QueueTimeout: 30 * time.Second,
	}
	if !reflect.DeepEqual(*c, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", *c, want)
	}
	if c.OpenAIConfigured() {
		t.Error("OpenAI configured with neither key nor base URL")
	}
}

func TestDatabaseURL(t *testing.T) {
	for _, tc := range []struct {
		url    string
		driver string
		dsn    string
	}{
		{"", "sqlite", filepath.Join("data", "ferry.db")},
		{"postgres://ferry:pw@db:5432/ferry?sslmode=disable", "postgres", "postgres://ferry:pw@db:5432/ferry?sslmode=disable"},
		{"postgresql://ferry:pw@db/ferry", "postgres", "postgres://ferry:pw@db/ferry"},
		{"postgresql+asyncpg://ferry:pw@db/ferry", "postgres", "postgres://ferry:pw@db/ferry"},
		{"postgresql+psycopg2://ferry@db/ferry", "postgres", "postgres://ferry@db/ferry"},
		{"sqlite:///rel.db", "sqlite", "rel.db"},
		{"sqlite:///./data/app.db", "sqlite", "./data/app.db"},
		{"sqlite:////abs/path/app.db", "sqlite", "/abs/path/app.db"},
	} {
		t.Run(tc.url, func(t *testing.T) {
			vars := map[string]string{"DATABASE_URL": tc.url, "SECRET_KEY": strings.Repeat("k", 32)}
			c, err := load(vars, "")
			if err != nil {
				t.Fatal(err)
			}
			if c.Database.Driver != tc.driver || c.Database.DSN != tc.dsn {
				t.Errorf("got %+v, want %s %s", c.Database, tc.driver, tc.dsn)
			}
		})
	}
}

func TestDatabaseURLRefused(t *testing.T) {
	for _, tc := range []struct {
		url  string
		want string
	}{
		{"mysql://ferry:hunter2@db/ferry", `scheme "mysql" is not supported`},
		{"ferry.db", `scheme "" is not supported`},
		{"sqlite://", "needs a path"},
		{"sqlite:///", "needs a path"},
		{"postgres://ferry:hunter2@db:bad-port/ferry", "not a URL"},
	} {
		t.Run(tc.url, func(t *testing.T) {
			_, err := load(map[string]string{"DATABASE_URL": tc.url, "SECRET_KEY": strings.Repeat("k", 32)}, "")
			if err == nil {
				t.Fatal("accepted")
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "DATABASE_URL: ") || !strings.Contains(msg, tc.want) {
				t.Errorf("error %q, want DATABASE_URL: …%s…", msg, tc.want)
			}
			// The URL may carry a password: errors must not repeat it.
			if strings.Contains(msg, "hunter2") {
				t.Errorf("error %q shows the password", msg)
			}
		})
	}
}

func TestAddr(t *testing.T) {
	for _, tc := range []struct {
		name string
		vars map[string]string
		flag string
		want string
	}{
		{"default", nil, "", "127.0.0.1:8000"},
		{"HOST", map[string]string{"HOST": "0.0.0.0"}, "", "0.0.0.0:8000"},
		{"PORT", map[string]string{"PORT": "9000"}, "", "127.0.0.1:9000"},
		{"HOST and PORT", map[string]string{"HOST": "0.0.0.0", "PORT": "80"}, "", "0.0.0.0:80"},
		{"IPv6 HOST", map[string]string{"HOST": "::1", "PORT": "9000"}, "", "[::1]:9000"},
		{"--addr wins", map[string]string{"HOST": "0.0.0.0", "PORT": "80"}, "127.0.0.1:0", "127.0.0.1:0"},
		{"--addr with no host", nil, ":7000", ":7000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := load(tc.vars, tc.flag)
			if err != nil {
				t.Fatal(err)
			}
			if c.Addr != tc.want {
				t.Errorf("Addr %q, want %q", c.Addr, tc.want)
			}
		})
	}
}

// TestInvalidValuesNameTheSetting: every refusal starts with the name of
// the setting (or flag) that is wrong.
func TestInvalidValuesNameTheSetting(t *testing.T) {
	for _, tc := range []struct {
		name string
		vars map[string]string
		flag string
	}{
		{"PORT", map[string]string{"PORT": "http"}, ""},
		{"PORT", map[string]string{"PORT": "65536"}, ""},
		{"PORT", map[string]string{"PORT": "-1"}, ""},
		{"--addr", nil, "localhost"},
		{"--addr", nil, "1.2.3.4:5:6"},
		{"FERRY_ACCESS_TOKEN_TTL", map[string]string{"FERRY_ACCESS_TOKEN_TTL": "15"}, ""},
		{"FERRY_ACCESS_TOKEN_TTL", map[string]string{"FERRY_ACCESS_TOKEN_TTL": "-1m"}, ""},
		{"FERRY_REFRESH_TOKEN_TTL", map[string]string{"FERRY_REFRESH_TOKEN_TTL": "0s"}, ""},
		{"FERRY_SHUTDOWN_TIMEOUT", map[string]string{"FERRY_SHUTDOWN_TIMEOUT": "soon"}, ""},
		{"FERRY_UPSTREAM_TIMEOUT", map[string]string{"FERRY_UPSTREAM_TIMEOUT": "0"}, ""},
		{"FERRY_MAX_BODY_BYTES", map[string]string{"FERRY_MAX_BODY_BYTES": "0"}, ""},
		{"FERRY_MAX_BODY_BYTES", map[string]string{"FERRY_MAX_BODY_BYTES": "1MB"}, ""},
		{"FERRY_CONTEXT_TOKENS", map[string]string{"FERRY_CONTEXT_TOKENS": "-5"}, ""},
		{"FERRY_LOG_LEVEL", map[string]string{"FERRY_LOG_LEVEL": "verbose"}, ""},
		{"FERRY_EMBED_MODEL", map[string]string{"FERRY_EMBED_MODEL": "nomic-embed-text"}, ""},
		{"FERRY_EMBED_MODEL", map[string]string{"FERRY_EMBED_MODEL": "anthropic/claude"}, ""},
		{"FERRY_EMBED_BATCH", map[string]string{"FERRY_EMBED_BATCH": "0"}, ""},
		{"FERRY_HYBRID_VECTOR_WEIGHT", map[string]string{"FERRY_HYBRID_VECTOR_WEIGHT": "1.5"}, ""},
		{"FERRY_HYBRID_VECTOR_WEIGHT", map[string]string{"FERRY_HYBRID_VECTOR_WEIGHT": "half"}, ""},
		{"ANTHROPIC_BASE_URL", map[string]string{"ANTHROPIC_BASE_URL": "api.anthropic.com"}, ""},
		{"OPENAI_BASE_URL", map[string]string{"OPENAI_BASE_URL": "ftp://models.local"}, ""},
		{"OLLAMA_BASE_URL", map[string]string{"OLLAMA_BASE_URL": "http://"}, ""},
		{"SECRET_KEY", map[string]string{"SECRET_KEY": "tiny-key"}, ""},
		{"SECRET_KEY", map[string]string{"DATABASE_URL": "postgres://db/ferry"}, ""},
		{"FERRY_ADMIN_EMAIL", map[string]string{"FERRY_ADMIN_EMAIL": "a@example.com"}, ""},
		{"FERRY_ADMIN_EMAIL", map[string]string{"FERRY_ADMIN_PASSWORD": "secret password"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := load(tc.vars, tc.flag)
			if err == nil {
				t.Fatalf("%v %q accepted", tc.vars, tc.flag)
			}
			if !strings.HasPrefix(err.Error(), tc.name) {
				t.Errorf("error %q does not start with %s", err, tc.name)
			}
			for k, v := range tc.vars {
				if isSecret(k) && strings.Contains(err.Error(), v) {
					t.Errorf("error %q shows the value of %s", err, k)
				}
			}
		})
	}
}

func TestSecretKey(t *testing.T) {
	_, err := load(map[string]string{"SECRET_KEY": strings.Repeat("k", 31)}, "")
	if err == nil || !strings.Contains(err.Error(), "openssl rand -hex 32") {
		t.Errorf("31 bytes: %v, want a refusal saying how to make a key", err)
	}
	_, err = load(map[string]string{"DATABASE_URL": "postgres://db/ferry"}, "")
	if err == nil || !strings.Contains(err.Error(), "openssl rand -hex 32") {
		t.Errorf("PostgreSQL without a key: %v, want a refusal saying how to make a key", err)
	}
	c, err := load(map[string]string{"SECRET_KEY": strings.Repeat("k", 32), "DATABASE_URL": "postgres://db/ferry"}, "")
	if err != nil || c.SecretKey != strings.Repeat("k", 32) {
		t.Errorf("32 bytes on PostgreSQL: %v", err)
	}
	// On SQLite an empty key means "generate one in the data directory".
	c, err = load(map[string]string{"FERRY_DATA_DIR": "/var/lib/ferry"}, "")
	if err != nil || c.SecretKey != "" || c.Database.DSN != filepath.Join("/var/lib/ferry", "ferry.db") {
		t.Errorf("SQLite without a key: %+v, %v", c, err)
	}
}

func TestValues(t *testing.T) {
	c, err := load(map[string]string{
		"FERRY_ACCESS_TOKEN_TTL": "5m",
		"FERRY_MAX_BODY_BYTES":   "2048",
		"FERRY_LOG_LEVEL":        "debug",
		"OPENAI_BASE_URL":        "http://localhost:8080/v1/",
		"FERRY_ADMIN_EMAIL":      "a@example.com",
		"FERRY_ADMIN_PASSWORD":   "admin password",
		"FERRY_SYSTEM_PROMPT":    "Be brief.",
	}, "")
	if err != nil {
		t.Fatal(err)
	}
	if c.AccessTokenTTL != 5*time.Minute || c.MaxBodyBytes != 2048 || c.LogLevel != "debug" ||
		c.OpenAIBaseURL != "http://localhost:8080/v1" || c.AdminEmail != "a@example.com" || c.SystemPrompt != "Be brief." {
		t.Errorf("got %+v", c)
	}
	if !c.OpenAIConfigured() {
		t.Error("a local OpenAI-compatible base URL should configure the provider")
	}
}

func TestSettingsTable(t *testing.T) {
	seen := map[string]bool{}
	for _, s := range Settings {
		if s.Env == "" || s.Doc == "" || s.set == nil {
			t.Errorf("incomplete setting %+v", s)
		}
		if seen[s.Env] {
			t.Errorf("%s listed twice", s.Env)
		}
		seen[s.Env] = true
	}
	for _, k := range []string{"DATABASE_URL", "SECRET_KEY", "REDIS_URL", "FERRY_ADMIN_PASSWORD", "ANTHROPIC_API_KEY", "OPENAI_API_KEY"} {
		if !isSecret(k) {
			t.Errorf("%s is not marked secret", k)
		}
	}
}

// isSecret reports whether the setting named env is marked secret.
func isSecret(env string) bool {
	for _, s := range Settings {
		if s.Env == env {
			return s.Secret
		}
	}
	return false
}

func TestTrustedProxies(t *testing.T) {
	c, err := load(map[string]string{"FERRY_TRUSTED_PROXIES": "10.0.0.0/8, 192.168.1.7,::1"}, "")
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.7/32"), netip.MustParsePrefix("::1/128")}
	if !reflect.DeepEqual(c.TrustedProxies, want) {
		t.Errorf("TrustedProxies = %v, want %v", c.TrustedProxies, want)
	}
	if _, err := load(map[string]string{"FERRY_TRUSTED_PROXIES": "a.proxy"}, ""); err == nil || !strings.Contains(err.Error(), "FERRY_TRUSTED_PROXIES") {
		t.Errorf("a host name: %v, want an error naming the setting", err)
	}
}

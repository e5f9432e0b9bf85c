package compat_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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

// bin is the ferry binary TestMain builds from the enclosing repository.
var bin string

func TestMain(m *testing.M) {
	os.Exit(buildAndRun(m))
}

func buildAndRun(m *testing.M) int {
	dir, err := os.MkdirTemp("", "ferry-compat-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	bin = filepath.Join(dir, "ferry")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		// The tests drive the real binary hard; let it report its races.
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "./cmd/ferry")...)
	// The enclosing module, so that this builds what users build.
	build.Dir = ".."
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build ferry:", err)
		return 1
	}
	return m.Run()
}

// gateway is the ferry binary running on its own port and data directory,
// with its providers pointed at one protocol-faithful fake upstream, and a
// user, registered over HTTP, who holds an API key and an access token.
type gateway struct {
	url    string
	fake   *llmtest.Server
	store  *store.Store // the database ferry uses, for the usage log
	userID string
	key    string // a Ferry API key, fk_…
	keyID  string
	token  string // an access token of the same user
}

// gatewayOptions tunes a gateway; the zero value is SQLite, every provider
// configured.
type gatewayOptions struct {
	engine string   // "sqlite" (default) or "postgres"
	only   []string // the providers configured; nil: all
}

func newGateway(t *testing.T, opt gatewayOptions) *gateway {
	t.Helper()
	if opt.engine == "" {
		opt.engine = "sqlite"
	}
	provider := func(name string) bool { return opt.only == nil || slices.Contains(opt.only, name) }
	fake := llmtest.Start(t)
	dir := t.TempDir()
	env := []string{
		"FERRY_DATA_DIR=" + filepath.Join(dir, "data"),
		"FERRY_LOG_LEVEL=warn",
		"FERRY_SHUTDOWN_TIMEOUT=5s",
		// Ollama is always configured; the others only when asked for.
		"OLLAMA_BASE_URL=" + fake.OllamaURL(),
	}
	if provider("anthropic") {
		env = append(env, "ANTHROPIC_API_KEY=sk-ant-test", "ANTHROPIC_BASE_URL="+fake.AnthropicURL())
	}
	if provider("openai") {
		env = append(env, "OPENAI_API_KEY=sk-test", "OPENAI_BASE_URL="+fake.OpenAIURL())
	}
	db := config.Database{Driver: "sqlite", DSN: filepath.Join(dir, "data", "ferry.db")}
	if opt.engine == "postgres" {
		db = storetest.Database(t, "postgres")
		env = append(env, "DATABASE_URL="+db.DSN, "SECRET_KEY="+rand.Text()+rand.Text())
	}
	g := &gateway{url: "http://" + start(t, dir, env), fake: fake}
	// Cleanups run last first: the fake closes before ferry stops, ending
	// any stream it holds open.
	t.Cleanup(fake.Close)

	st, err := store.Open(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	g.store = st
	g.signUp(t)
	return g
}

// start runs the binary in dir with exactly env, waits until /readyz
// answers, and returns its address. The process is stopped, and its output
// shown if the test failed, when the test ends.
func start(t testing.TB, dir string, env []string) string {
	t.Helper()
	addr := freeAddr(t)
	cmd := exec.Command(bin, "serve", "--addr", addr)
	// No .env in the working directory, and nothing of the environment
	// but env: neither a developer's settings nor DATABASE_URL leak in.
	cmd.Dir, cmd.Env = dir, env
	setParentDeath(cmd)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
			t.Errorf("ferry did not stop within 10s of SIGINT")
		}
		if t.Failed() {
			t.Logf("ferry's output:\n%s", out)
		} else if s := out.String(); strings.Contains(s, "WARNING: DATA RACE") {
			t.Errorf("ferry reported a data race:\n%s", s)
		}
	})

	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return addr
			}
		}
		select {
		case <-exited:
			t.Fatalf("ferry exited at start:\n%s", out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("ferry not ready after 30s (%v):\n%s", err, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// freeAddr returns a loopback address with a port free right now.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// signUp registers a user, signs in and creates an API key, all over HTTP.
func (g *gateway) signUp(t *testing.T) {
	t.Helper()
	b := make([]byte, 8)
	rand.Read(b)
	email, password := "sdk-"+hex.EncodeToString(b)+"@example.com", "password-"+hex.EncodeToString(b)
	var user struct {
		ID string `json:"id"`
	}
	g.call(t, "/auth/register", "", map[string]string{"email": email, "password": password}, http.StatusCreated, &user)
	var tokens struct {
		AccessToken string `json:"access_token"`
	}
	g.call(t, "/auth/login", "", map[string]string{"email": email, "password": password}, http.StatusOK, &tokens)
	var key struct {
		ID  string `json:"id"`
		Key string `json:"key"`
	}
	g.call(t, "/auth/api-keys", tokens.AccessToken, map[string]string{"name": "sdk"}, http.StatusCreated, &key)
	if user.ID == "" || tokens.AccessToken == "" || key.ID == "" || key.Key == "" {
		t.Fatalf("sign-up answered user %q, token %q, key %q %q", user.ID, tokens.AccessToken, key.ID, key.Key)
	}
	g.userID, g.token, g.keyID, g.key = user.ID, tokens.AccessToken, key.ID, key.Key
}

// call posts in as JSON with the bearer credential (none when empty) and
// decodes the answer, which must have status want, into out.
func (g *gateway) call(t *testing.T, path, bearer string, in any, want int, out any) {
	t.Helper()
	body, _ := json.Marshal(in)
	req, _ := http.NewRequest(http.MethodPost, g.url+path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("POST %s: %d %s, want %d", path, resp.StatusCode, raw, want)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		t.Fatalf("POST %s: %v in %s", path, err, raw)
	}
}

// send makes a raw request with the bearer credential (none when empty).
func (g *gateway) send(t *testing.T, method, path, cred string) *http.Response {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), method, g.url+path, nil)
	if cred != "" {
		req.Header.Set("Authorization", "Bearer "+cred)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// usage waits until the usage log holds n entries for the user (they are
// written as a call ends, which for a client that left is after it left)
// and returns them.
func (g *gateway) usage(t *testing.T, n int) []*ferry.Usage {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		list, err := g.store.UsageFor(context.Background(), g.userID)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) >= n {
			if len(list) > n {
				t.Fatalf("usage log has %d entries, want %d", len(list), n)
			}
			return list
		}
		if time.Now().After(deadline) {
			t.Fatalf("usage log has %d entries after 5s, want %d", len(list), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// syncBuffer collects a process's output, written from two pipes at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

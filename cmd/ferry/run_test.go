package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryhq/ferry/store/storetest"
)

// fakeEnv is the outside world run sees: environment variables, the
// contents of ./.env ("" for no such file), and a terminal where someone
// types typed, one line a prompt (nil: standard input is no terminal).
type fakeEnv struct {
	vars   map[string]string
	dotenv string
	typed  []string
}

func (f fakeEnv) environment() environment {
	env := environment{
		getenv: func(k string) string { return f.vars[k] },
		readFile: func(name string) ([]byte, error) {
			if name == ".env" && f.dotenv != "" {
				return []byte(f.dotenv), nil
			}
			return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
		},
	}
	if f.typed != nil {
		var mu sync.Mutex
		typed := f.typed
		env.readPassword = func(ctx context.Context, prompt string) (string, error) {
			mu.Lock()
			defer mu.Unlock()
			if len(typed) == 0 {
				return "", io.EOF
			}
			line := typed[0]
			typed = typed[1:]
			return line, nil
		}
	}
	return env
}

// testSecretKey is SECRET_KEY where a test sets one.
const testSecretKey = "e2e-secret-key-canary-0123456789abcdef"

// sqliteEnv is a fresh data directory, no shutdown grace (no load
// balancer watches these instances' /readyz, and most tests stop theirs)
// and no rate limit.
func sqliteEnv(t testing.TB) fakeEnv {
	// Tests make more model calls a minute than the default limit allows;
	// those about the limits set their own.
	return fakeEnv{vars: map[string]string{"FERRY_DATA_DIR": t.TempDir(), "FERRY_SHUTDOWN_GRACE": "0s", "FERRY_RATE_LIMIT_RPM": "0"}}
}

// engineEnv returns the settings for a fresh database of the engine. On
// PostgreSQL it spells the URL as SQLAlchemy's async driver does, as seed
// deployments do, and uses Redis too when FERRY_TEST_REDIS_URL is set.
func engineEnv(t testing.TB, engine string) fakeEnv {
	env := sqliteEnv(t)
	if engine == "postgres" {
		db := storetest.Database(t, engine)
		env.vars["DATABASE_URL"] = strings.Replace(db.DSN, "postgres://", "postgresql+asyncpg://", 1)
		env.vars["SECRET_KEY"] = testSecretKey
		if r := os.Getenv("FERRY_TEST_REDIS_URL"); r != "" {
			env.vars["REDIS_URL"] = r
			// Counts in Redis outlive the test, and every test registers and
			// signs in from the loopback address: forget them, so that runs
			// within the hour do not add up to the registration limit.
			t.Cleanup(func() {
				for _, a := range []string{"127.0.0.1", "::1"} {
					command(t, env, "", "user", "unblock", "--address", a)
				}
			})
		}
	}
	return env
}

// command runs a one-shot command to completion.
func command(t testing.TB, env fakeEnv, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err = run(context.Background(), args, env.environment(), strings.NewReader(stdin), &out, &errOut)
	return out.String(), errOut.String(), err
}

// instance is `ferry serve` running in-process on 127.0.0.1:0.
type instance struct {
	url    string
	addr   string
	stdout *logSink
	stderr *syncBuffer
	cancel context.CancelFunc
	done   chan error
	client *http.Client

	stopOnce sync.Once
	err      error
}

// start runs serve and returns once it answers /readyz; the test's end
// stops it.
func start(t testing.TB, env fakeEnv, args ...string) *instance {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	in := &instance{stdout: newLogSink(), stderr: &syncBuffer{}, cancel: cancel, done: make(chan error, 1),
		client: &http.Client{Transport: &http.Transport{}}}
	args = append([]string{"serve", "--addr", "127.0.0.1:0"}, args...)
	go func() { in.done <- run(ctx, args, env.environment(), strings.NewReader(""), in.stdout, in.stderr) }()
	select {
	case in.addr = <-in.stdout.listening:
		in.url = "http://" + in.addr
	case err := <-in.done:
		cancel()
		t.Fatalf("run returned before listening: %v\nstderr: %s\nstdout: %s", err, in.stderr, in.stdout)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatalf("no listening line\nstdout: %s", in.stdout)
	}
	t.Cleanup(func() { in.stop(t) })
	in.waitReady(t)
	return in
}

// waitReady polls /readyz until it answers 200.
func (in *instance) waitReady(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := in.client.Get(in.url + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz never answered 200: %v", err)
		}
		time.Sleep(time.Millisecond)
	}
}

// stop cancels run's context, as SIGTERM does, and returns what run
// returned.
func (in *instance) stop(t testing.TB) error {
	t.Helper()
	in.stopOnce.Do(func() {
		in.cancel()
		select {
		case in.err = <-in.done:
		case <-time.After(60 * time.Second):
			t.Fatal("run did not return after its context was cancelled")
		}
		in.client.CloseIdleConnections()
	})
	return in.err
}

// call makes a request with an optional bearer credential and JSON body, and
// decodes a JSON answer.
func (in *instance) call(t testing.TB, method, path, bearer string, body any) (int, map[string]any) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, in.url+path, r)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	res, err := in.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	json.Unmarshal(raw, &m)
	return res.StatusCode, m
}

// must is call that insists on a status.
func (in *instance) must(t testing.TB, want int, method, path, bearer string, body any) map[string]any {
	t.Helper()
	status, m := in.call(t, method, path, bearer, body)
	if status != want {
		t.Fatalf("%s %s: %d, want %d: %v", method, path, status, want, m)
	}
	return m
}

// signUp registers and signs in, returning the token pair.
func (in *instance) signUp(t testing.TB, email, password string) (access, refresh string) {
	t.Helper()
	in.must(t, http.StatusCreated, "POST", "/auth/register", "", map[string]string{"email": email, "password": password})
	return in.login(t, email, password)
}

func (in *instance) login(t testing.TB, email, password string) (access, refresh string) {
	t.Helper()
	m := in.must(t, http.StatusOK, "POST", "/auth/login", "", map[string]string{"email": email, "password": password})
	return m["access_token"].(string), m["refresh_token"].(string)
}

func TestServe(t *testing.T) {
	for _, engine := range storetest.Engines(t) {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			in := start(t, engineEnv(t, engine))
			const password = "e2e-Password-Canary"
			access, refresh := in.signUp(t, "Alice@Example.com", password)
			me := in.must(t, http.StatusOK, "GET", "/users/me", access, nil)
			if me["email"] != "alice@example.com" {
				t.Fatalf("me = %v", me)
			}
			m := in.must(t, http.StatusOK, "POST", "/auth/refresh", "", map[string]string{"refresh_token": refresh})
			access2, refresh2 := m["access_token"].(string), m["refresh_token"].(string)
			key := in.must(t, http.StatusCreated, "POST", "/auth/api-keys", access2, map[string]string{"name": "ci"})["key"].(string)
			in.must(t, http.StatusOK, "GET", "/users/me", key, nil)
			// A wrong password, then the right one, which forgives it: on
			// Redis the failure count outlives the test.
			in.must(t, http.StatusUnauthorized, "POST", "/auth/login", "", map[string]string{"email": "alice@example.com", "password": "nope-nope"})
			in.login(t, "alice@example.com", password)
			in.must(t, http.StatusOK, "GET", "/healthz", "", nil)
			in.must(t, http.StatusNotFound, "GET", "/nope", "", nil)

			t.Run("default body limit is 1 MiB", func(t *testing.T) {
				in.must(t, http.StatusRequestEntityTooLarge, "POST", "/auth/register", "",
					map[string]string{"email": "big@example.com", "password": strings.Repeat("p", 1<<20)})
			})

			t.Run("shutdown drains an in-flight request", func(t *testing.T) {
				conn, err := net.Dial("tcp", in.addr)
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				body := `{"email":"late@example.com","password":"late password"}`
				fmt.Fprintf(conn, "POST /auth/register HTTP/1.1\r\nHost: ferry\r\nContent-Type: application/json\r\n"+
					"Content-Length: %d\r\nExpect: 100-continue\r\n\r\n", len(body))
				br := bufio.NewReader(conn)
				// 100 Continue means the handler is running and reading the body.
				if line, err := br.ReadString('\n'); err != nil || !strings.Contains(line, "100") {
					t.Fatalf("want 100 Continue, got %q, %v", line, err)
				}
				br.ReadString('\n')

				in.cancel() // SIGTERM
				// Shutdown closes the listener first: once new connections
				// are refused, it is waiting on ours.
				waitRefused(t, in.addr)
				io.WriteString(conn, body)
				res, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatal(err)
				}
				res.Body.Close()
				if res.StatusCode != http.StatusCreated {
					t.Fatalf("in-flight request answered %d, want 201", res.StatusCode)
				}
				if err := in.stop(t); err != nil {
					t.Fatalf("run returned %v after SIGTERM, want nil (exit 0)", err)
				}
				logs := in.stdout.String()
				for _, msg := range []string{`"msg":"shutting down"`, `"msg":"stopped"`} {
					if !strings.Contains(logs, msg) {
						t.Errorf("log lacks %s", msg)
					}
				}
			})

			t.Run("no secret in the log", func(t *testing.T) {
				logs := in.stdout.String() + in.stderr.String()
				for _, s := range []string{password, access, refresh, access2, refresh2, key, "late password", testSecretKey} {
					if strings.Contains(logs, s) {
						t.Errorf("the log contains %.20q…", s)
					}
				}
				if strings.Count(logs, `"msg":"request"`) < 8 {
					t.Errorf("too few request lines; is the log captured?\n%s", logs)
				}
			})
		})
	}
}

// waitRefused waits until addr refuses connections.
func waitRefused(t testing.TB, addr string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("the listener never closed")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestShutdownDeadline: a request that never completes holds shutdown no
// longer than FERRY_SHUTDOWN_TIMEOUT.
func TestShutdownDeadline(t *testing.T) {
	t.Parallel()
	env := sqliteEnv(t)
	env.vars["FERRY_SHUTDOWN_TIMEOUT"] = "100ms"
	in := start(t, env)
	conn, err := net.Dial("tcp", in.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "POST /auth/register HTTP/1.1\r\nHost: ferry\r\nContent-Type: application/json\r\nContent-Length: 100\r\nExpect: 100-continue\r\n\r\n")
	if line, err := bufio.NewReader(conn).ReadString('\n'); err != nil || !strings.Contains(line, "100") {
		t.Fatalf("want 100 Continue, got %q, %v", line, err)
	}
	// stop fails the test if run does not return: the deadline must end
	// the wait for the body that never comes, and the stop is still a clean
	// one (exit 0).
	if err := in.stop(t); err != nil {
		t.Fatalf("run returned %v, want nil", err)
	}
}

func TestSecretKeyFile(t *testing.T) {
	t.Parallel()
	env := sqliteEnv(t)
	dir := env.vars["FERRY_DATA_DIR"]
	in := start(t, env)
	access, _ := in.signUp(t, "alice@example.com", "alice password")
	if err := in.stop(t); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "secret.key")
	info, err := os.Stat(path)
	if err != nil {
		t.Fatalf("no generated key: %v", err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("secret.key mode %v, want 0600", info.Mode().Perm())
	}
	first, _ := os.ReadFile(path)

	again := start(t, env)
	again.must(t, http.StatusOK, "GET", "/users/me", access, nil)
	if second, _ := os.ReadFile(path); !bytes.Equal(first, second) {
		t.Error("the key changed between runs")
	}
	again.stop(t)

	t.Run("another key does not accept the token", func(t *testing.T) {
		other := fakeEnv{vars: map[string]string{
			"FERRY_DATA_DIR": t.TempDir(),
			"DATABASE_URL":   "sqlite:///" + filepath.Join(dir, "ferry.db"),
		}}
		in := start(t, other)
		in.must(t, http.StatusUnauthorized, "GET", "/users/me", access, nil)
	})
	t.Run("SECRET_KEY is used instead of the file", func(t *testing.T) {
		withKey := fakeEnv{vars: map[string]string{"FERRY_DATA_DIR": dir, "SECRET_KEY": strings.Repeat("k", 32)}}
		in := start(t, withKey)
		in.must(t, http.StatusUnauthorized, "GET", "/users/me", access, nil)
	})
}

func TestDotEnv(t *testing.T) {
	t.Parallel()
	fromFile, fromEnv := t.TempDir(), t.TempDir()
	dotenv := "# settings\nFERRY_DATA_DIR=" + fromFile + "\nFERRY_LOG_LEVEL=warn\n"

	if _, stderr, err := command(t, fakeEnv{dotenv: dotenv}, "", "migrate"); err != nil {
		t.Fatalf("migrate: %v %s", err, stderr)
	}
	if _, err := os.Stat(filepath.Join(fromFile, "ferry.db")); err != nil {
		t.Errorf(".env's FERRY_DATA_DIR was not used: %v", err)
	}

	env := fakeEnv{dotenv: dotenv, vars: map[string]string{"FERRY_DATA_DIR": fromEnv}}
	if _, stderr, err := command(t, env, "", "migrate"); err != nil {
		t.Fatalf("migrate: %v %s", err, stderr)
	}
	if _, err := os.Stat(filepath.Join(fromEnv, "ferry.db")); err != nil {
		t.Errorf("the environment did not override .env: %v", err)
	}

	_, _, err := command(t, fakeEnv{dotenv: "A=1\nB='unterminated\n"}, "", "migrate")
	if err == nil || !strings.Contains(err.Error(), ".env") {
		t.Errorf("a malformed .env: %v, want an error naming .env", err)
	}
	_, _, err = command(t, fakeEnv{dotenv: "PORT=eighty\n"}, "", "migrate")
	if err == nil || !strings.Contains(err.Error(), "PORT") {
		t.Errorf("a bad value in .env: %v, want an error naming PORT", err)
	}
}

func TestConfigRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		vars map[string]string
		args []string
		want []string // fragments of the error
		hide string   // must not appear in the error
	}{
		{"short SECRET_KEY", map[string]string{"SECRET_KEY": "too-short"}, nil,
			[]string{"SECRET_KEY", "at least 32", "openssl rand -hex 32"}, "too-short"},
		{"PostgreSQL without SECRET_KEY", map[string]string{"DATABASE_URL": "postgres://ferry:hunter2-password@127.0.0.1:1/ferry"}, nil,
			[]string{"SECRET_KEY", "PostgreSQL", "openssl rand -hex 32"}, "hunter2-password"},
		{"unsupported database", map[string]string{"DATABASE_URL": "mysql://ferry:hunter2-password@db/ferry"}, nil,
			[]string{"DATABASE_URL", "mysql"}, "hunter2-password"},
		{"bad port", map[string]string{"PORT": "80000"}, nil, []string{"PORT"}, ""},
		{"bad --addr", nil, []string{"--addr", "no-port"}, []string{"--addr"}, ""},
		{"admin email without password", map[string]string{"FERRY_ADMIN_EMAIL": "a@example.com"}, nil, []string{"FERRY_ADMIN_PASSWORD"}, ""},
		{"bad log level", map[string]string{"FERRY_LOG_LEVEL": "loud"}, nil, []string{"FERRY_LOG_LEVEL"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vars := map[string]string{"FERRY_DATA_DIR": dir}
			for k, v := range tc.vars {
				vars[k] = v
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var stdout, stderr bytes.Buffer
			err := run(ctx, append([]string{"serve"}, tc.args...), fakeEnv{vars: vars}.environment(), strings.NewReader(""), &stdout, &stderr)
			if err == nil {
				t.Fatal("run started")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if tc.hide != "" && strings.Contains(err.Error()+stdout.String()+stderr.String(), tc.hide) {
				t.Errorf("the output shows %q: %v", tc.hide, err)
			}
		})
	}
}

func TestMigrateCommand(t *testing.T) {
	t.Parallel()
	env := sqliteEnv(t)
	files, err := os.ReadDir("../../store/migrations/sqlite")
	if err != nil || len(files) == 0 {
		t.Fatalf("migrations: %v", err)
	}
	out, _, err := command(t, env, "", "migrate", "--status")
	if err != nil || !strings.HasPrefix(out, "no database yet at ") {
		t.Errorf("fresh data directory: %q, %v; want no database yet", out, err)
	}
	out, _, err = command(t, env, "", "migrate")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != len(files)+2 || strings.Join(strings.Fields(lines[0]), " ") != "VERSION NAME APPLIED" {
		t.Fatalf("migrate printed:\n%s", out)
	}
	// The job queue's tables are made too, so a release command leaves
	// the instances nothing to create.
	var applied, all int
	if _, err := fmt.Sscanf(lines[len(lines)-1], "job queue (River): %d of %d migrations applied", &applied, &all); err != nil ||
		applied == 0 || applied != all {
		t.Errorf("last line %q: %v; want every job queue migration applied", lines[len(lines)-1], err)
	}
	for i, f := range files {
		num, name, _ := strings.Cut(strings.TrimSuffix(f.Name(), ".sql"), "_")
		fields := strings.Fields(lines[i+1])
		if len(fields) != 3 || fields[0] != num || fields[1] != name {
			t.Errorf("line %q, want migration %s %s", lines[i+1], num, name)
			continue
		}
		if _, err := time.Parse(time.RFC3339, fields[2]); err != nil {
			t.Errorf("migration %s applied at %q", num, fields[2])
		}
	}
	// Running it again changes nothing, and --status shows the same.
	again, _, err := command(t, env, "", "migrate")
	if err != nil || again != out {
		t.Errorf("second migrate: %v\n%s\nwant\n%s", err, again, out)
	}
	status, _, err := command(t, env, "", "migrate", "--status")
	if err != nil || status != out {
		t.Errorf("migrate --status: %v\n%s\nwant\n%s", err, status, out)
	}
}

func TestUserCreateCommand(t *testing.T) {
	t.Parallel()
	env := sqliteEnv(t)
	out, stderr, err := command(t, env, "root password 1\n", "user", "create", "--email", "Root@Example.com", "--password-stdin", "--admin", "--name", "Root")
	if err != nil {
		t.Fatalf("user create: %v %s", err, stderr)
	}
	if !strings.HasPrefix(out, "created admin root@example.com (") || strings.Contains(out, "root password 1") {
		t.Errorf("user create printed %q", out)
	}
	if _, _, err := command(t, env, "another password\n", "user", "create", "--email", "plain@example.com", "--password-stdin"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		stdin string
		args  []string
		want  string
	}{
		{"taken email", "root password 1\n", []string{"--email", "root@example.com", "--password-stdin"}, "already exists"},
		{"short password", "short\n", []string{"--email", "x@example.com", "--password-stdin"}, "password"},
		{"bad email", "long enough password\n", []string{"--email", "nope", "--password-stdin"}, "email"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := command(t, env, tc.stdin, append([]string{"user", "create"}, tc.args...)...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one mentioning %q", err, tc.want)
			}
		})
	}
	for _, args := range [][]string{
		{"user", "create", "--email", "x@example.com"}, // the password must come from stdin
		{"user", "create", "--password-stdin"},
		{"user", "delete"},
		{"user"},
	} {
		if _, _, err := command(t, env, "some password\n", args...); !errors.Is(err, errUsage) {
			t.Errorf("%v: %v, want usage", args, err)
		}
	}

	in := start(t, env)
	admin, _ := in.login(t, "root@example.com", "root password 1")
	list := in.must(t, http.StatusOK, "GET", "/users", admin, nil)
	if list["total"] != float64(2) {
		t.Errorf("users: %v", list)
	}
	plain, _ := in.login(t, "plain@example.com", "another password")
	in.must(t, http.StatusForbidden, "GET", "/users", plain, nil)
}

func TestAdminFromEnvironment(t *testing.T) {
	t.Parallel()
	env := sqliteEnv(t)
	env.vars["FERRY_ADMIN_EMAIL"] = "boss@example.com"
	env.vars["FERRY_ADMIN_PASSWORD"] = "boss password"
	in := start(t, env)
	admin, _ := in.login(t, "boss@example.com", "boss password")
	in.must(t, http.StatusOK, "GET", "/users", admin, nil)
	if !strings.Contains(in.stdout.String(), "created admin") {
		t.Error("no log line for the created admin")
	}
	if strings.Contains(in.stdout.String(), "boss password") {
		t.Error("the log shows the admin password")
	}
	in.stop(t)
	// A second start finds the admin and leaves it be.
	again := start(t, env)
	again.login(t, "boss@example.com", "boss password")
	if strings.Contains(again.stdout.String(), "created admin") {
		t.Error("the admin was created again")
	}
}

// logSink collects a logger's output and reports the address of the
// "listening" line. slog handlers write one whole record per Write.
type logSink struct {
	syncBuffer
	listening chan string
	once      sync.Once
}

func newLogSink() *logSink { return &logSink{listening: make(chan string, 1)} }

func (s *logSink) Write(p []byte) (int, error) {
	var rec struct {
		Msg  string `json:"msg"`
		Addr string `json:"addr"`
	}
	if json.Unmarshal(p, &rec) == nil && rec.Msg == "listening" {
		s.once.Do(func() { s.listening <- rec.Addr })
	}
	return s.syncBuffer.Write(p)
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
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

// TestInstancesShareRevocation runs two instances on one PostgreSQL database
// and one Redis, as behind a load balancer: a user disabled through one
// instance is refused at once by the other, which had their credentials
// cached.
func TestInstancesShareRevocation(t *testing.T) {
	t.Parallel()
	if os.Getenv("FERRY_TEST_DATABASE_URL") == "" || os.Getenv("FERRY_TEST_REDIS_URL") == "" {
		t.Skip("FERRY_TEST_DATABASE_URL and FERRY_TEST_REDIS_URL not both set: skipping the two-instance test")
	}
	env := engineEnv(t, "postgres")
	env.vars["FERRY_ADMIN_EMAIL"] = "root@example.com"
	env.vars["FERRY_ADMIN_PASSWORD"] = "root password"
	a := start(t, env, "--addr", "127.0.0.1:0")
	a.waitReady(t)
	b := start(t, env, "--addr", "127.0.0.1:0")
	b.waitReady(t)

	access, _ := a.signUp(t, "shared@example.com", "password123")
	key := a.must(t, http.StatusCreated, "POST", "/auth/api-keys", access, map[string]string{"name": "k"})["key"].(string)
	me := b.must(t, http.StatusOK, "GET", "/users/me", access, nil)
	b.must(t, http.StatusOK, "GET", "/users/me", key, nil) // both now cached on b

	admin, _ := a.login(t, "root@example.com", "root password")
	a.must(t, http.StatusOK, "PATCH", "/users/"+me["id"].(string), admin, map[string]any{"disabled": true})

	// Well inside the 5 s cache lifetime: only the announcement can explain
	// a refusal this soon.
	deadline := time.Now().Add(2 * time.Second)
	for _, cred := range []string{access, key} {
		for {
			status, _ := b.call(t, "GET", "/users/me", cred, nil)
			if status == http.StatusUnauthorized {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("instance b still accepts a disabled user's credential (status %d)", status)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

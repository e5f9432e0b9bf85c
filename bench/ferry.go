package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ferryhq/ferry/llm/llmtest"
)

// moduleRoot is the directory of the go.mod above the working directory,
// where ./cmd/ferry is built from.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && bytes.Contains(b, []byte("module github.com/ferryhq/ferry\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run from inside the Ferry module (no go.mod of github.com/ferryhq/ferry above the working directory)")
		}
		dir = parent
	}
}

// buildFerry builds ./cmd/ferry into dir and returns the binary's path.
func buildFerry(ctx context.Context, root, dir string) (string, error) {
	bin := filepath.Join(dir, "ferry")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/ferry")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/ferry: %v\n%s", err, out)
	}
	return bin, nil
}

// ferryProc is a Ferry server running as a child process, with every
// provider pointed at the fake upstream, a fresh SQLite data directory, and
// an API key to call it with.
type ferryProc struct {
	URL string // http://127.0.0.1:port
	Key string // an API key, sent as the Bearer credential
	// pprofURL is where the profiling overlay serves, with -profile.
	pprofURL string

	cmd    *exec.Cmd
	dir    string
	out    *tail
	exited chan struct{}
	err    error // how it exited, once exited is closed
}

// startFerry starts bin and waits until it is ready and has given an API
// key. extraEnv is added to its environment.
func startFerry(ctx context.Context, cores *cores, bin string, fake *llmtest.Server, logLevel string, extraEnv ...string) (*ferryProc, error) {
	dir, err := os.MkdirTemp("", "ferry-bench-")
	if err != nil {
		return nil, err
	}
	// Ferry logs its address only at level info; picking a free port here
	// lets the benchmark run it at warn, so access logs do not weigh on it.
	addr, err := freeAddr()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}

	secret := make([]byte, 16)
	rand.Read(secret)
	email, password := "bench@example.com", hex.EncodeToString(secret)
	cmd := exec.Command(bin, "serve", "--addr", addr)
	// The working directory holds no .env, and the environment is only what
	// is listed, so neither a developer's settings nor DATABASE_URL leak in.
	cmd.Dir = dir
	cmd.Env = []string{
		"FERRY_DATA_DIR=" + filepath.Join(dir, "data"),
		"FERRY_ADMIN_EMAIL=" + email,
		"FERRY_ADMIN_PASSWORD=" + password,
		"FERRY_LOG_LEVEL=" + logLevel,
		"FERRY_SHUTDOWN_TIMEOUT=5s",
		"ANTHROPIC_API_KEY=sk-ant-bench",
		"ANTHROPIC_BASE_URL=" + fake.AnthropicURL(),
		"OPENAI_API_KEY=sk-bench",
		"OPENAI_BASE_URL=" + fake.OpenAIURL(),
		"OLLAMA_BASE_URL=" + fake.OllamaURL(),
		// The load runs measure the server, not the limits; those that
		// measure the admission set them in extraEnv.
		"FERRY_RATE_LIMIT_RPM=0",
		"FERRY_MAX_CONCURRENT=0",
		// Every request is the same: the answer cache would serve them all.
		"FERRY_CACHE_TTL=0",
	}
	cmd.Env = append(cmd.Env, extraEnv...)
	// Ferry ends with this process, however it ends.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	f := &ferryProc{URL: "http://" + addr, cmd: cmd, dir: dir, out: &tail{max: 64 << 10}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = f.out, f.out
	exited, err := cores.start(cmd)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	go func() {
		f.err = <-exited
		close(f.exited)
	}()
	if err := f.ready(ctx, 60*time.Second); err != nil {
		f.stop()
		return nil, err
	}
	if err := f.login(ctx, email, password); err != nil {
		f.stop()
		return nil, err
	}
	return f, nil
}

// Pid is the Ferry process's id.
func (f *ferryProc) Pid() int { return f.cmd.Process.Pid }

// ready polls /readyz until it answers 200.
func (f *ferryProc) ready(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-f.exited:
			return fmt.Errorf("ferry exited at start (%v):\n%s", f.err, f.out)
		default:
		}
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		req, _ := http.NewRequestWithContext(rctx, http.MethodGet, f.URL+"/readyz", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		cancel()
		if err == nil && resp.StatusCode == http.StatusOK {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("ferry not ready after %v (last: %v):\n%s", timeout, statusOrErr(resp, err), f.out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func statusOrErr(resp *http.Response, err error) string {
	if err != nil {
		return err.Error()
	}
	return resp.Status
}

// login signs in as the admin and creates the API key the requests use.
func (f *ferryProc) login(ctx context.Context, email, password string) error {
	var tokens struct {
		AccessToken string `json:"access_token"`
	}
	if err := f.postJSON(ctx, "/auth/login", "", map[string]string{"email": email, "password": password}, &tokens); err != nil {
		return err
	}
	var key struct {
		Key string `json:"key"`
	}
	if err := f.postJSON(ctx, "/auth/api-keys", tokens.AccessToken, map[string]string{"name": "bench"}, &key); err != nil {
		return err
	}
	if key.Key == "" {
		return errors.New("POST /auth/api-keys answered no key")
	}
	f.Key = key.Key
	return nil
}

func (f *ferryProc) postJSON(ctx context.Context, path, bearer string, in, out any) error {
	body, _ := json.Marshal(in)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, f.URL+path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("POST %s: %w", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("POST %s: %s: %s", path, resp.Status, b)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("POST %s: %w", path, err)
	}
	return nil
}

// memory is a process's resident set, now and at its peak, in bytes.
type memory struct{ rss, hwm int64 }

// memory reads Ferry's VmRSS and VmHWM.
func (f *ferryProc) memory() (memory, error) { return procMemory(f.Pid()) }

// procMemory reads a process's VmRSS and VmHWM from /proc.
func procMemory(pid int) (memory, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memory{}, err
	}
	var m memory
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		var dst *int64
		switch k {
		case "VmRSS":
			dst = &m.rss
		case "VmHWM":
			dst = &m.hwm
		default:
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return memory{}, fmt.Errorf("/proc/%d/status: %s: %w", pid, k, err)
		}
		*dst = kb << 10
	}
	if m.rss == 0 {
		return memory{}, fmt.Errorf("/proc/%d/status has no VmRSS", pid)
	}
	return m, nil
}

// cpu reads the CPU time Ferry has used so far, user and system, all
// threads.
func (f *ferryProc) cpu() (time.Duration, error) { return procCPU(f.Pid()) }

// gcTrace matches a line of GODEBUG=gctrace=1: the heap at the start of a
// collection, at its end and live, the next goal, and the goroutine stacks.
var gcTrace = regexp.MustCompile(`(\d+)->(\d+)->(\d+) MB, (\d+) MB goal, (\d+) MB stacks`)

// heap is what Ferry's latest garbage collection reported, in MB, when it
// runs with GODEBUG=gctrace=1.
type heap struct {
	live, goal, stacks int
	ok                 bool
}

// lastGC returns the heap figures of the latest gctrace line in Ferry's
// output.
func (f *ferryProc) lastGC() heap {
	m := gcTrace.FindAllStringSubmatch(f.out.String(), -1)
	if len(m) == 0 {
		return heap{}
	}
	last := m[len(m)-1]
	live, _ := strconv.Atoi(last[3])
	goal, _ := strconv.Atoi(last[4])
	stacks, _ := strconv.Atoi(last[5])
	return heap{live: live, goal: goal, stacks: stacks, ok: true}
}

// alive reports an error when Ferry has exited.
func (f *ferryProc) alive() error {
	select {
	case <-f.exited:
		return fmt.Errorf("ferry exited (%v):\n%s", f.err, f.out)
	default:
		return nil
	}
}

// stop sends SIGTERM, kills Ferry if it has not ended within 10 s, and
// removes its data directory.
func (f *ferryProc) stop() {
	if f.alive() == nil {
		f.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-f.exited:
		case <-time.After(10 * time.Second):
			f.cmd.Process.Kill()
			<-f.exited
		}
	}
	os.RemoveAll(f.dir)
}

// tail keeps the last max bytes written to it: Ferry's output, shown when
// something goes wrong.
type tail struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

package main

import (
	"bufio"
	"encoding/json"
	"net/http"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// BenchmarkStartToReady measures run from its call to the first 200 from
// /readyz, on a fresh data directory each time: creating the SQLite
// database, migrating it and generating the secret key included.
func BenchmarkStartToReady(b *testing.B) {
	var total time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		env := sqliteEnv(b)
		b.StartTimer()
		t0 := time.Now()
		in := start(b, env)
		total += time.Since(t0)
		b.StopTimer()
		if err := in.stop(b); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/ready")
}

// BenchmarkProcessStartToReady measures the built binary from exec to the
// first 200 from /readyz on a fresh data directory, so process start-up
// (loading, runtime and package initialisation) is included; each run ends
// with SIGTERM, which must exit 0. (It is also the one check of main's
// signal wiring: building the binary takes too long for the test suite.)
func BenchmarkProcessStartToReady(b *testing.B) {
	bin := buildFerry(b)
	b.ResetTimer()
	var total time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		dir := b.TempDir()
		b.StartTimer()
		t0 := time.Now()
		p := startProcess(b, bin, dir)
		total += time.Since(t0)
		b.StopTimer()
		p.terminate(b)
		b.StartTimer()
	}
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/ready")
}

// buildFerry builds this command into a temporary directory.
func buildFerry(tb testing.TB) string {
	tb.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		tb.Skip("no go command to build the binary with")
	}
	bin := filepath.Join(tb.TempDir(), "ferry")
	if out, err := exec.Command(gobin, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		tb.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

type process struct {
	cmd  *exec.Cmd
	url  string
	done chan error
}

// startProcess starts `ferry serve` in dir (so no stray .env is read) with
// its data there, and returns once /readyz answers 200.
func startProcess(tb testing.TB, bin, dir string) *process {
	tb.Helper()
	cmd := exec.Command(bin, "serve", "--addr", "127.0.0.1:0")
	cmd.Dir = dir
	cmd.Env = []string{"FERRY_DATA_DIR=" + dir}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	p := &process{cmd: cmd, done: make(chan error, 1)}
	tb.Cleanup(func() { cmd.Process.Kill() })
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var rec struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "listening" {
				addr <- rec.Addr
			}
		}
		p.done <- cmd.Wait()
	}()
	select {
	case a := <-addr:
		p.url = "http://" + a
	case err := <-p.done:
		tb.Fatalf("ferry exited before listening: %v", err)
	case <-time.After(30 * time.Second):
		tb.Fatal("no listening line")
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := client.Get(p.url + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("/readyz never answered 200: %v", err)
		}
		time.Sleep(time.Millisecond)
	}
}

// terminate sends SIGTERM and insists on exit status 0.
func (p *process) terminate(tb testing.TB) {
	tb.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		tb.Fatal(err)
	}
	select {
	case err := <-p.done:
		if err != nil {
			tb.Fatalf("ferry after SIGTERM: %v, want exit 0", err)
		}
	case <-time.After(60 * time.Second):
		tb.Fatal("ferry did not exit after SIGTERM")
	}
}

package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/http/pprof"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// The bare proxy is the floor under Ferry's numbers: a standard library
// reverse proxy, in its own process like Ferry, that forwards each request
// to the fake upstream and flushes every read straight back. It is what
// one more HTTP hop costs on this machine, before Ferry does any work.

// proxyEnv names the upstream when this binary (the bench command, or its
// test binary) runs as the bare proxy; proxyPprofEnv, when set, the address
// where it serves its profiles and memory classes, as the profiling
// overlay makes Ferry do.
const (
	proxyEnv      = "FERRY_BENCH_PROXY_UPSTREAM"
	proxyPprofEnv = "FERRY_BENCH_PROXY_PPROF"
)

// serveProxy is the child process: it listens on a free loopback port,
// prints "listening ADDR", and forwards to upstream until stdin closes.
// With pprofAddr it also serves profiles there.
func serveProxy(upstream, pprofAddr string, stdin io.Reader, stdout io.Writer) error {
	up, err := url.Parse(upstream)
	if err != nil {
		return err
	}
	if pprofAddr != "" {
		pl, err := net.Listen("tcp", pprofAddr)
		if err != nil {
			return err
		}
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/memory", writeMemoryClasses)
		go http.Serve(pl, mux)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	// As Ferry's upstream client (cmd/ferry newRouter).
	tr.MaxIdleConns, tr.MaxIdleConnsPerHost = 1024, 512
	rp := &httputil.ReverseProxy{
		Rewrite:       func(r *httputil.ProxyRequest) { r.SetURL(up) },
		Transport:     tr,
		FlushInterval: -1, // flush after every read, as a streaming proxy must
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	// The body is read whole before forwarding, as Ferry reads it: with
	// the client's body streamed through instead, the server closes it when
	// the first flushed bytes of the answer go out, which can cut the
	// upstream request short.
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		rp.ServeHTTP(w, r)
	})
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	fmt.Fprintf(stdout, "listening %s\n", ln.Addr())
	io.Copy(io.Discard, stdin) // the parent closes stdin, or dies
	return srv.Close()
}

// proxyProc is the bare proxy running as a child process.
type proxyProc struct {
	URL      string
	pprofURL string // with profiling
	cmd      *exec.Cmd
	stdin    io.WriteCloser
	exited   <-chan error // yields once, when it has exited
}

// startProxy starts this binary again as the bare proxy, in front of
// upstream; with profiling, it serves its profiles on a port of its own.
func startProxy(ctx context.Context, cores *cores, upstream string, profiling bool) (*proxyProc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), proxyEnv+"="+upstream)
	pprofURL := ""
	if profiling {
		addr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		cmd.Env = append(cmd.Env, proxyPprofEnv+"="+addr)
		pprofURL = "http://" + addr
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	exited, err := cores.start(cmd)
	if err != nil {
		return nil, err
	}
	p := &proxyProc{cmd: cmd, stdin: stdin, pprofURL: pprofURL, exited: exited}
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- s
		io.Copy(io.Discard, stdout)
	}()
	select {
	case s := <-line:
		addr, ok := strings.CutPrefix(strings.TrimSpace(s), "listening ")
		if !ok {
			p.stop()
			return nil, fmt.Errorf("bare proxy: unexpected first line %q", s)
		}
		p.URL = "http://" + addr
		return p, nil
	case <-time.After(30 * time.Second):
		p.stop()
		return nil, fmt.Errorf("bare proxy: no address after 30 s")
	case <-ctx.Done():
		p.stop()
		return nil, ctx.Err()
	}
}

// Pid is the bare proxy's process id.
func (p *proxyProc) Pid() int { return p.cmd.Process.Pid }

// cpu reads the CPU time the bare proxy has used so far.
func (p *proxyProc) cpu() (time.Duration, error) { return procCPU(p.Pid()) }

func (p *proxyProc) stop() {
	p.stdin.Close()
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
		p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.exited
	}
}

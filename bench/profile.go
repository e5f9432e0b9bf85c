package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/metrics"
	"strconv"
	"strings"
	"time"
)

// With -profile, Ferry is built with one more file in its main package,
// added through `go build -overlay` so the source tree stays untouched: when
// FERRY_BENCH_PPROF names an address, it serves net/http/pprof and the
// runtime's memory classes there, on a listener of its own. The benchmark
// then saves a CPU profile of each endpoint at concurrency 1 (taken in an
// extra run after the measured rounds, so the measured numbers are not
// perturbed by it) and, with the streams held open, heap and goroutine
// profiles and the runtime's own account of its memory.

// pprofSource is the file the overlay adds to cmd/ferry.
const pprofSource = `package main

import (
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime/metrics"
)

func init() {
	addr := os.Getenv("FERRY_BENCH_PPROF")
	if addr == "" {
		return
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "FERRY_BENCH_PPROF:", err)
		os.Exit(1)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/memory", func(w http.ResponseWriter, r *http.Request) {
		var samples []metrics.Sample
		for _, d := range metrics.All() {
			if d.Kind == metrics.KindUint64 {
				samples = append(samples, metrics.Sample{Name: d.Name})
			}
		}
		metrics.Read(samples)
		for _, s := range samples {
			fmt.Fprintf(w, "%s %d\n", s.Name, s.Value.Uint64())
		}
	})
	go http.Serve(ln, mux)
}
`

// writeMemoryClasses is the bare proxy's /debug/memory, as the overlay's
// is Ferry's: every uint64 of runtime/metrics, one "name value" a line.
func writeMemoryClasses(w http.ResponseWriter, _ *http.Request) {
	var samples []metrics.Sample
	for _, d := range metrics.All() {
		if d.Kind == metrics.KindUint64 {
			samples = append(samples, metrics.Sample{Name: d.Name})
		}
	}
	metrics.Read(samples)
	for _, s := range samples {
		fmt.Fprintf(w, "%s %d\n", s.Name, s.Value.Uint64())
	}
}

// buildProfilingFerry builds ./cmd/ferry with the pprof file overlaid.
func buildProfilingFerry(ctx context.Context, root, dir string) (string, error) {
	src := filepath.Join(dir, "zz_bench_pprof.go")
	if err := os.WriteFile(src, []byte(pprofSource), 0o644); err != nil {
		return "", err
	}
	overlay, _ := json.Marshal(map[string]map[string]string{
		"Replace": {filepath.Join(root, "cmd", "ferry", "zz_bench_pprof.go"): src},
	})
	ov := filepath.Join(dir, "overlay.json")
	if err := os.WriteFile(ov, overlay, 0o644); err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "ferry-pprof")
	cmd := exec.CommandContext(ctx, "go", "build", "-overlay", ov, "-o", bin, "./cmd/ferry")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build -overlay ./cmd/ferry: %v\n%s", err, out)
	}
	return bin, nil
}

// freeAddr returns a loopback address nobody listens on now.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// fetchTo saves what GET url answers into path.
func fetchTo(ctx context.Context, url, path string) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, b)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// runtimeMemory is the Go runtime's account of Ferry's memory
// (runtime/metrics), in bytes, and its goroutines.
type runtimeMemory struct {
	heapObjects, heapUnused, heapFree, heapReleased int64
	stacks, osStacks, metadata, total               int64
	goroutines                                      int64
	ok                                              bool
}

// readRuntimeMemory reads the overlay's /debug/memory.
func readRuntimeMemory(ctx context.Context, pprofURL string) (runtimeMemory, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, pprofURL+"/debug/memory", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return runtimeMemory{}, err
	}
	defer resp.Body.Close()
	v := map[string]int64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, n, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		x, err := strconv.ParseInt(n, 10, 64)
		if err == nil {
			v[name] = x
		}
	}
	if err := sc.Err(); err != nil {
		return runtimeMemory{}, err
	}
	m := runtimeMemory{
		heapObjects:  v["/memory/classes/heap/objects:bytes"],
		heapUnused:   v["/memory/classes/heap/unused:bytes"],
		heapFree:     v["/memory/classes/heap/free:bytes"],
		heapReleased: v["/memory/classes/heap/released:bytes"],
		stacks:       v["/memory/classes/heap/stacks:bytes"],
		osStacks:     v["/memory/classes/os-stacks:bytes"],
		metadata: v["/memory/classes/metadata/mcache/free:bytes"] + v["/memory/classes/metadata/mcache/inuse:bytes"] +
			v["/memory/classes/metadata/mspan/free:bytes"] + v["/memory/classes/metadata/mspan/inuse:bytes"] +
			v["/memory/classes/metadata/other:bytes"],
		total:      v["/memory/classes/total:bytes"],
		goroutines: v["/sched/goroutines:goroutines"],
		ok:         true,
	}
	return m, nil
}

// profileCPU saves a CPU profile of Ferry serving t at concurrency 1 for
// d, into dir.
func (b *bench) profileCPU(ctx context.Context, f *ferryProc, t *target, route string) error {
	d := 8 * time.Second
	path := filepath.Join(b.cfg.profile, "cpu"+strings.ReplaceAll(route, "/", "_")+".pprof")
	done := make(chan error, 1)
	go func() {
		done <- fetchTo(ctx, fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", f.pprofURL, int(d.Seconds())), path)
	}()
	cl := newClient(b.want, 1)
	defer cl.close()
	// Longer than the profile, so it covers requests only.
	for end := time.Now().Add(d + time.Second); time.Now().Before(end); {
		if _, err := cl.run(ctx, t, 1, 500, b.cfg.verifyEvery, end); err != nil {
			return err
		}
		b.fake.Reset()
	}
	if err := <-done; err != nil {
		return err
	}
	b.logf("  wrote %s", path)
	return nil
}

// profileMemory saves goroutine and heap profiles of the server at
// pprofURL (Ferry, or with prefix "_proxy" the bare proxy) into the -profile
// directory; the heap profile after a forced collection.
func (b *bench) profileMemory(ctx context.Context, pprofURL, prefix, route string) error {
	for _, name := range []string{"goroutine", "heap"} {
		path := filepath.Join(b.cfg.profile, name+prefix+strings.ReplaceAll(route, "/", "_")+".pprof")
		if err := fetchTo(ctx, pprofURL+"/debug/pprof/"+name+"?gc=1", path); err != nil {
			return err
		}
		b.logf("  wrote %s", path)
	}
	// The heap profile as text ends with the runtime's MemStats: how the
	// resident memory divides between live objects, free spans not yet
	// returned, stacks and the runtime's own.
	path := filepath.Join(b.cfg.profile, "memstats"+prefix+strings.ReplaceAll(route, "/", "_")+".txt")
	if err := fetchTo(ctx, pprofURL+"/debug/pprof/heap?debug=1", path); err != nil {
		return err
	}
	b.logf("  wrote %s", path)
	return nil
}

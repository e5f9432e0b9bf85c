package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/ferryhq/ferry/llm/llmtest"
)

// bench is one run: the fake upstream, the Ferry binary, and the settings.
type bench struct {
	cfg  *config
	logf func(format string, a ...any)
	fake *llmtest.Server
	bin  string
	tmp  string
	want string // the scripted answer, which every stream must carry whole
}

func newBench(ctx context.Context, cfg *config, root string, logf func(string, ...any)) (*bench, error) {
	tmp, err := os.MkdirTemp("", "ferry-bench-bin-")
	if err != nil {
		return nil, err
	}
	b := &bench{cfg: cfg, logf: logf, tmp: tmp, bin: cfg.ferryBin}
	if b.bin == "" {
		logf("building ./cmd/ferry")
		if b.bin, err = buildFerry(ctx, root, tmp); err != nil {
			os.RemoveAll(tmp)
			return nil, err
		}
	}
	deltas := llmtest.Deltas(cfg.deltas)
	b.want = strings.Join(deltas, "")
	b.fake = llmtest.NewServer()
	b.fake.SetScript(llmtest.Script{Deltas: deltas})
	return b, nil
}

func (b *bench) close() {
	b.fake.Close()
	os.RemoveAll(b.tmp)
}

// selected returns the endpoints the flags ask for, in table order.
func (b *bench) selected() ([]endpoint, error) {
	if len(b.cfg.endpoints) == 0 {
		return endpoints, nil
	}
	var out []endpoint
	for _, route := range b.cfg.endpoints {
		i := slices.IndexFunc(endpoints, func(e endpoint) bool { return e.route == strings.TrimSpace(route) })
		if i < 0 {
			return nil, fmt.Errorf("-endpoints: no endpoint %q", route)
		}
		out = append(out, endpoints[i])
	}
	return out, nil
}

// measureAll runs every phase into rep: latency on one Ferry, then memory
// on a fresh Ferry per endpoint, so that one endpoint's peak does not count
// against the next.
func (b *bench) measureAll(ctx context.Context, rep *report) error {
	start := time.Now()
	rep.deltas, rep.streams, rep.every = b.cfg.deltas, b.cfg.streams, b.cfg.verifyEvery
	eps, err := b.selected()
	if err != nil {
		return err
	}
	f, err := startFerry(ctx, b.bin, b.fake, b.cfg.logLevel)
	if err != nil {
		return err
	}
	defer f.stop()
	b.logf("ferry pid %d at %s", f.Pid(), f.URL)

	var served []endpoint
	for _, ep := range eps {
		status, err := probe(ctx, f, ep)
		if err != nil {
			return err
		}
		if status == http.StatusNotFound {
			b.logf("%s: not served by this build of Ferry (404); skipped", ep.route)
			rep.skipped = append(rep.skipped, ep.route)
			continue
		}
		served = append(served, ep)
	}
	for _, ep := range served {
		for _, conc := range b.cfg.conc {
			res, err := b.compare(ctx, f, ep, conc)
			if err != nil {
				return fmt.Errorf("%s at concurrency %d: %w", ep.route, conc, err)
			}
			rep.latency = append(rep.latency, res)
		}
	}
	f.stop()

	if !b.cfg.skipMemory {
		for _, ep := range served {
			if !ep.memory && !b.cfg.memAll && len(b.cfg.endpoints) == 0 {
				continue
			}
			res, err := b.measureMemory(ctx, ep)
			if err != nil {
				return fmt.Errorf("%s with %d streams open: %w", ep.route, b.cfg.streams, err)
			}
			rep.memory = append(rep.memory, res)
		}
	}
	rep.duration = time.Since(start)
	return nil
}

// probe reports the status Ferry answers ep's request with, to tell a route
// this build does not have (404) from one it has.
func probe(ctx context.Context, f *ferryProc, ep endpoint) (int, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, f.URL+ep.route, strings.NewReader(ep.ferryBody))
	req.Header.Set("Authorization", "Bearer "+f.Key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("POST %s: %w", ep.route, err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// latencyResult is one endpoint at one concurrency, both sides.
type latencyResult struct {
	route           string
	upstreamPath    string
	conc            int
	upstream, ferry stats
}

// compare measures ep at conc: a warm-up of each side, then rounds that
// alternate which side goes first, so that drift (CPU frequency, GC of the
// fake, SQLite growth) falls on both alike.
func (b *bench) compare(ctx context.Context, f *ferryProc, ep endpoint, conc int) (latencyResult, error) {
	ferryT, upT := ep.targets(f, b.fake)
	cl := newClient(b.want, conc)
	defer cl.close()
	deadline := time.Now().Add(b.cfg.phaseTime)
	n := b.cfg.requests(conc)
	b.logf("%s at concurrency %d: warm-up, then %d requests each side in %d rounds", ep.route, conc, n, b.cfg.rounds)

	for _, t := range []*target{upT, ferryT} {
		if _, err := cl.run(ctx, t, conc, b.cfg.warmup, 1, deadline); err != nil {
			return latencyResult{}, fmt.Errorf("warm-up: %w", err)
		}
	}
	b.fake.Reset()

	type side struct {
		t       *target
		samples []sample
		wall    time.Duration
		checked int
	}
	up, fe := &side{t: upT}, &side{t: ferryT}
	for r := 0; r < b.cfg.rounds && time.Now().Before(deadline); r++ {
		count := n*(r+1)/b.cfg.rounds - n*r/b.cfg.rounds
		order := []*side{up, fe}
		if r%2 == 1 {
			order = []*side{fe, up}
		}
		for _, s := range order {
			l, err := cl.run(ctx, s.t, conc, count, b.cfg.verifyEvery, deadline)
			if err != nil {
				return latencyResult{}, err
			}
			s.samples = append(s.samples, l.samples...)
			s.wall += l.wall
			s.checked += l.checked
		}
		// The fake records every request; a long run need not keep them.
		b.fake.Reset()
		if err := f.alive(); err != nil {
			return latencyResult{}, err
		}
	}
	if len(up.samples) == 0 || len(fe.samples) == 0 {
		return latencyResult{}, fmt.Errorf("no request finished within -phase-time %v", b.cfg.phaseTime)
	}
	res := latencyResult{route: ep.route, upstreamPath: ep.upstreamPath, conc: conc,
		upstream: summarise(up.samples, up.wall, up.checked), ferry: summarise(fe.samples, fe.wall, fe.checked)}
	b.logf("  upstream: first %v/%v last %v/%v, %.0f req/s", res.upstream.first.p50, res.upstream.first.p99,
		res.upstream.last.p50, res.upstream.last.p99, res.upstream.rps)
	b.logf("  ferry:    first %v/%v last %v/%v, %.0f req/s", res.ferry.first.p50, res.ferry.first.p99,
		res.ferry.last.p50, res.ferry.last.p99, res.ferry.rps)
	return res, nil
}

// verifyOne streams one answer through t and checks it whole.
func (b *bench) verifyOne(ctx context.Context, t *target) error {
	cl := newClient(b.want, 1)
	defer cl.close()
	_, err := cl.stream(ctx, t, &worker{}, true)
	return err
}

// firstEvent reads r until it holds one whole event (ending in sep).
func firstEvent(r io.Reader, sep []byte) error {
	var buf []byte
	chunk := make([]byte, 4096)
	for {
		n, err := r.Read(chunk)
		buf = append(buf, chunk[:n]...)
		if bytes.Contains(buf, sep) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("stream ended before its first event (%q): %w", buf, err)
		}
	}
}

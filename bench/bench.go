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
	cfg   *options
	logf  func(format string, a ...any)
	fake  *llmtest.Server
	proxy *proxyProc // nil without -floor
	cores *cores     // where the servers run; nil: anywhere (-pin=false, or one core)
	bin   string
	tmp   string
	// deltas and want are the scripted answer, which every stream must
	// carry whole, and its number of deltas; pause is the fake's pause
	// before each of them.
	deltas int
	pause  time.Duration
	want   string
	// herd makes a paced level's workers start together, each sending
	// one request a round (see compare).
	herd bool
}

func newBench(ctx context.Context, cfg *options, root string, logf func(string, ...any)) (*bench, error) {
	tmp, err := os.MkdirTemp("", "ferry-bench-bin-")
	if err != nil {
		return nil, err
	}
	b := &bench{cfg: cfg, logf: logf, tmp: tmp, bin: cfg.ferryBin}
	if cfg.pin {
		// Before any child starts, so that none inherits the whole machine.
		if b.cores, err = splitCores(); err == nil && b.cores != nil {
			err = b.cores.pinSelf()
		}
		if err != nil {
			os.RemoveAll(tmp)
			return nil, fmt.Errorf("-pin: %w", err)
		}
	}
	switch {
	case cfg.profile != "":
		if err := os.MkdirAll(cfg.profile, 0o755); err != nil {
			os.RemoveAll(tmp)
			return nil, err
		}
		logf("building ./cmd/ferry with the profiling overlay")
		if b.bin, err = buildProfilingFerry(ctx, root, tmp); err != nil {
			os.RemoveAll(tmp)
			return nil, err
		}
	case b.bin == "":
		logf("building ./cmd/ferry")
		if b.bin, err = buildFerry(ctx, root, tmp); err != nil {
			os.RemoveAll(tmp)
			return nil, err
		}
	}
	b.fake = llmtest.NewServer()
	b.answer(cfg.deltas, 0)
	if cfg.floor {
		if b.proxy, err = startProxy(ctx, b.cores, b.fake.URL, false); err != nil {
			b.close()
			return nil, err
		}
	}
	return b, nil
}

func (b *bench) close() {
	if b.proxy != nil {
		b.proxy.stop()
	}
	b.fake.Close()
	os.RemoveAll(b.tmp)
}

// answer makes the fake answer every request with n deltas, which every
// stream must then carry whole, pausing before each one (none: back to
// back). A paced answer's opening events come with its first delta, so
// that the bare proxy, which passes the upstream's wire on, gets its first
// byte when Ferry does, whose wire may open only with the first text.
func (b *bench) answer(n int, pause time.Duration) {
	deltas := llmtest.Deltas(n)
	b.deltas, b.pause, b.want = n, pause, strings.Join(deltas, "")
	b.fake.SetScript(llmtest.Script{Deltas: deltas, Delay: pause, OpenWithFirst: pause > 0})
}

// startFerry starts the Ferry binary on the fake, with the profiling
// listener when -profile asks for it.
func (b *bench) startFerry(ctx context.Context, extraEnv ...string) (*ferryProc, error) {
	extraEnv = append(slices.Clone(b.cfg.ferryEnv), extraEnv...)
	pprofURL := ""
	if b.cfg.profile != "" {
		addr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		extraEnv = append(extraEnv, "FERRY_BENCH_PPROF="+addr)
		pprofURL = "http://" + addr
	}
	f, err := startFerry(ctx, b.cores, b.bin, b.fake, b.cfg.logLevel, extraEnv...)
	if err != nil {
		return nil, err
	}
	f.pprofURL = pprofURL
	return f, nil
}

// selected returns the endpoints the flags ask for, in table order.
func (b *bench) selected() ([]endpoint, error) {
	if len(b.cfg.endpoints) == 0 {
		return endpoints, nil
	}
	var out []endpoint
	for _, route := range b.cfg.endpoints {
		e, ok := endpointFor(strings.TrimSpace(route))
		if !ok {
			return nil, fmt.Errorf("-endpoints: no endpoint %q", route)
		}
		out = append(out, e)
	}
	return out, nil
}

// measureAll runs every phase into rep: latency on one Ferry, then memory
// on a fresh Ferry per endpoint, so that one endpoint's peak does not count
// against the next.
func (b *bench) measureAll(ctx context.Context, rep *report) error {
	start := time.Now()
	rep.deltas, rep.streams, rep.every, rep.warmup, rep.floor, rep.memDelay = b.cfg.deltas, b.cfg.streams, b.cfg.verifyEvery, b.cfg.warmup, b.cfg.floor, b.cfg.memDelay
	eps, err := b.selected()
	if err != nil {
		return err
	}
	f, err := b.startFerry(ctx)
	if err != nil {
		return err
	}
	defer f.stop()
	b.logf("ferry pid %d at %s", f.Pid(), f.URL)
	var prior *ferryProc // the -before-ferry build, beside this one
	if b.cfg.priorBin != "" {
		if prior, err = startFerry(ctx, b.cores, b.cfg.priorBin, b.fake, b.cfg.logLevel, b.cfg.ferryEnv...); err != nil {
			return fmt.Errorf("-before-ferry: %w", err)
		}
		defer prior.stop()
		b.logf("%s's ferry pid %d at %s", b.cfg.beforeLabel, prior.Pid(), prior.URL)
	}

	var served []endpoint
	priorServes := map[string]bool{}
	for _, ep := range eps {
		status, _, err := probe(ctx, f, ep)
		if err != nil {
			return err
		}
		if status == http.StatusNotFound {
			b.logf("%s: not served by this build of Ferry (404); skipped", ep.route)
			rep.skipped = append(rep.skipped, ep.route)
			continue
		}
		served = append(served, ep)
		if prior != nil {
			status, body, err := probe(ctx, prior, ep)
			if err != nil {
				return err
			}
			// An older build may not have the route, or may not speak to
			// this tree's fake as the fake now insists (a header it never
			// sent): then it is measured beside this one elsewhere only.
			priorServes[ep.route] = status == http.StatusOK
			if status != http.StatusOK {
				why := fmt.Sprintf("answers %d: %.200s", status, bytes.TrimSpace(body))
				b.logf("%s: %s %s; not measured beside this build", ep.route, b.cfg.beforeLabel, why)
				rep.priorSkipped = append(rep.priorSkipped, ep.route+" ("+why+")")
			}
		}
	}
	for _, ep := range served {
		pf := prior
		if !priorServes[ep.route] {
			pf = nil
		}
		for _, conc := range b.cfg.conc {
			res, err := b.compare(ctx, f, pf, ep, conc)
			if err != nil {
				return fmt.Errorf("%s at concurrency %d: %w", ep.route, conc, err)
			}
			rep.latency = append(rep.latency, res)
			if conc == slices.Max(b.cfg.conc) && conc > 1 && b.cfg.pace > 0 {
				b.answer(b.cfg.deltas, b.cfg.pace)
				for _, herd := range []bool{false, true} {
					b.herd = herd
					res, err = b.compare(ctx, f, pf, ep, conc)
					if err != nil {
						return fmt.Errorf("%s at concurrency %d, %s: %w", ep.route, conc, answerName(b.deltas, b.pause, conc, herd), err)
					}
					rep.latency = append(rep.latency, res)
				}
				b.herd = false
				b.answer(b.cfg.deltas, 0)
			}
			if conc != 1 || !b.cfg.fixed || b.cfg.deltas == 1 {
				continue
			}
			b.answer(1, 0)
			res, err = b.compare(ctx, f, pf, ep, conc)
			b.answer(b.cfg.deltas, 0)
			if err != nil {
				return fmt.Errorf("%s at concurrency %d, one delta: %w", ep.route, conc, err)
			}
			rep.latency = append(rep.latency, res)
		}
	}
	f.stop() // now, so it does not idle beside the memory runs
	if prior != nil {
		prior.stop()
	}

	if !b.cfg.skipMemory {
		// Each endpoint's bare proxy forwards to the same upstream stream,
		// so the two hold the same sockets and read the same bytes.
		for _, ep := range served {
			res, err := b.measureMemory(ctx, ep, "")
			if err != nil {
				return fmt.Errorf("%s with %d streams open: %w", ep.route, b.cfg.streams, err)
			}
			rep.memory = append(rep.memory, res)
			if priorServes[ep.route] {
				if res, err = b.measureMemory(ctx, ep, b.cfg.priorBin); err != nil {
					return fmt.Errorf("%s of %s with %d streams open: %w", ep.route, b.cfg.beforeLabel, b.cfg.streams, err)
				}
				res.prior = true
				rep.memory = append(rep.memory, res)
			}
			if !b.cfg.floor {
				continue
			}
			if res, err = b.measureProxyMemory(ctx, ep); err != nil {
				return fmt.Errorf("bare proxy to %s with %d streams open: %w", ep.upstreamPath, b.cfg.streams, err)
			}
			rep.memory = append(rep.memory, res)
		}
	}
	rep.duration = time.Since(start)
	return nil
}

// probe reports the status Ferry answers ep's request with, to tell a route
// this build does not have (404) from one it has, and the start of the
// body.
func probe(ctx context.Context, f *ferryProc, ep endpoint) (int, []byte, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, f.URL+ep.route, strings.NewReader(ep.ferryBody))
	req.Header.Set("Authorization", "Bearer "+f.Key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("POST %s: %w", ep.route, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, body, nil
}

// latencyResult is one endpoint at one concurrency, both sides.
type latencyResult struct {
	route           string
	upstreamPath    string
	conc            int
	deltas          int           // in the answer
	pause           time.Duration // the fake's before each delta; 0: back to back
	herd            bool          // a paced level's streams started together
	upstream, ferry stats
	proxy           *stats // the bare proxy's, with -floor
	prior           *stats // the -before-ferry build's
	// ferryCPU is the CPU time (user and system, all threads) Ferry used
	// per request while its side ran; proxyCPU and priorCPU the bare
	// proxy's and the -before-ferry build's while theirs ran.
	ferryCPU, proxyCPU, priorCPU time.Duration
	// otherLoad is the share of the machine's CPU that processes outside
	// the benchmark used while this level ran (0 to 1); -1 when unknown.
	// steal is the share the host took as steal over the same span,
	// counted apart (see loadMeter.other).
	otherLoad, steal float64
}

// levelKey is what tells one measured level from another.
type levelKey struct {
	route        string
	conc, deltas int
	pause        time.Duration
	herd         bool
}

func (l latencyResult) key() levelKey {
	return levelKey{route: l.route, conc: l.conc, deltas: l.deltas, pause: l.pause, herd: l.herd}
}

// findLevel returns the level k of levels.
func findLevel(levels []latencyResult, k levelKey) (latencyResult, bool) {
	for _, l := range levels {
		if l.key() == k {
			return l, true
		}
	}
	return latencyResult{}, false
}

// answer names a level's answer and, when paced, how its streams
// started: "100 deltas"; "100 deltas 2ms apart, starts spread", or
// "…, 64 at once" for a herd.
func (l latencyResult) answer() string { return answerName(l.deltas, l.pause, l.conc, l.herd) }

func answerName(deltas int, pause time.Duration, conc int, herd bool) string {
	if pause == 0 {
		return plural(deltas, "delta")
	}
	start := "starts spread"
	if herd {
		start = fmt.Sprintf("%d at once", conc)
	}
	return fmt.Sprintf("%s %v apart, %s", plural(deltas, "delta"), pause, start)
}

// compare measures ep at conc: a warm-up of each side, then rounds that
// alternate which side goes first, so that drift (CPU frequency, GC of the
// fake, SQLite growth) falls on both alike.
//
// A round starts its conc workers together. With the deltas back to back
// that start is soon forgotten; with a paced answer it is not, since each
// stream keeps the phase its request arrived with, and the closed loop
// sends the next request when one ends: the round would measure conc
// requests arriving in the same millisecond, over and over, whose p99 is
// the time to admit conc-1 others first. So a paced level spreads the
// workers' starts across one answer's duration and leaves their first
// requests unmeasured: conc streams open at once, started as independent
// users' are. The herd is measured apart (b.herd): each worker sends one
// request a round, all together.
// prior, when not nil, is the -before-ferry build, measured as one more
// side.
func (b *bench) compare(ctx context.Context, f, prior *ferryProc, ep endpoint, conc int) (latencyResult, error) {
	ferryT, upT := ep.ferry(f), ep.upstream(b.fake.URL)
	cl := newClient(b.want, conc)
	defer cl.close()
	deadline := time.Now().Add(b.cfg.phaseTime)
	n := b.cfg.requests(conc)
	switch {
	case b.pause > 0 && b.herd:
		n = conc * b.cfg.rounds
	case b.pause > 0:
		n = b.cfg.paceN
	}
	b.logf("%s at concurrency %d, %s: warm-up, then %d requests each side in %d rounds", ep.route, conc, answerName(b.deltas, b.pause, conc, b.herd), n, b.cfg.rounds)

	for _, t := range []*target{upT, ferryT} {
		if _, err := cl.run(ctx, t, conc, b.cfg.warmup, 1, deadline); err != nil {
			return latencyResult{}, fmt.Errorf("warm-up: %w", err)
		}
	}

	type side struct {
		t       *target
		samples []sample
		wall    time.Duration
		checked int
		sent    int
		// cpu is the CPU time the side's own server (Ferry, or the bare
		// proxy) used during the side's runs; nil for the upstream.
		cpu   func() (time.Duration, error)
		spent time.Duration
	}
	up, fe := &side{t: upT}, &side{t: ferryT, cpu: f.cpu}
	sides := []*side{up, fe}
	pids := []int{f.Pid()}
	var px *side
	if b.proxy != nil {
		px = &side{t: ep.upstream(b.proxy.URL), cpu: b.proxy.cpu}
		sides = []*side{up, px, fe}
		pids = append(pids, b.proxy.Pid())
	}
	var pr *side
	if prior != nil {
		pr = &side{t: ep.ferry(prior), cpu: prior.cpu}
		sides = append(sides, pr)
		pids = append(pids, prior.Pid())
	}
	load := startLoadMeter(pids...)
	for _, s := range []*side{px, pr} {
		if s == nil {
			continue
		}
		if _, err := cl.run(ctx, s.t, conc, b.cfg.warmup, 1, deadline); err != nil {
			return latencyResult{}, fmt.Errorf("warm-up of %s: %w", s.t.url, err)
		}
	}
	b.fake.Reset()
	if b.pause > 0 && !b.herd {
		cl.spread = time.Duration(b.deltas) * b.pause
	}
	for r := 0; r < b.cfg.rounds && time.Now().Before(deadline); r++ {
		count := n*(r+1)/b.cfg.rounds - n*r/b.cfg.rounds
		// Each round starts with a different side.
		order := append(slices.Clone(sides[r%len(sides):]), sides[:r%len(sides)]...)
		for _, s := range order {
			var cpu0, cpu1 time.Duration
			var err error
			if s.cpu != nil {
				if cpu0, err = s.cpu(); err != nil {
					return latencyResult{}, err
				}
			}
			l, err := cl.run(ctx, s.t, conc, count, b.cfg.verifyEvery, deadline)
			if err != nil {
				return latencyResult{}, err
			}
			if s.cpu != nil {
				if cpu1, err = s.cpu(); err != nil {
					return latencyResult{}, err
				}
			}
			s.spent += cpu1 - cpu0
			s.samples = append(s.samples, l.samples...)
			s.wall += l.wall
			s.checked += l.checked
			s.sent += l.sent
		}
		// The fake records every request; a long run need not keep them.
		b.fake.Reset()
		if err := f.alive(); err != nil {
			return latencyResult{}, err
		}
	}
	for _, s := range sides {
		if len(s.samples) == 0 {
			return latencyResult{}, fmt.Errorf("no request finished within -phase-time %v", b.cfg.phaseTime)
		}
	}
	res := latencyResult{route: ep.route, upstreamPath: ep.upstreamPath, conc: conc, deltas: b.deltas, pause: b.pause, herd: b.herd,
		upstream: summarise(up.samples, up.wall, up.checked), ferry: summarise(fe.samples, fe.wall, fe.checked),
		ferryCPU: fe.spent / time.Duration(fe.sent)}
	res.otherLoad, res.steal = load.other()
	if b.cfg.profile != "" && conc == 1 {
		if err := b.profileCPU(ctx, f, ferryT, ep.route); err != nil {
			return latencyResult{}, fmt.Errorf("profile: %w", err)
		}
	}
	if px != nil {
		st := summarise(px.samples, px.wall, px.checked)
		res.proxy = &st
		res.proxyCPU = px.spent / time.Duration(px.sent)
		b.logf("  proxy:    first %v/%v last %v/%v, %.0f req/s, %v CPU per request", st.first.p50, st.first.p99, st.last.p50, st.last.p99, st.rps, res.proxyCPU)
	}
	if pr != nil {
		st := summarise(pr.samples, pr.wall, pr.checked)
		res.prior = &st
		res.priorCPU = pr.spent / time.Duration(pr.sent)
		b.logf("  %s: first %v/%v last %v/%v, %.0f req/s, %v CPU per request", b.cfg.beforeLabel, st.first.p50, st.first.p99, st.last.p50, st.last.p99, st.rps, res.priorCPU)
	}
	b.logf("  upstream: first %v/%v last %v/%v, %.0f req/s", res.upstream.first.p50, res.upstream.first.p99,
		res.upstream.last.p50, res.upstream.last.p99, res.upstream.rps)
	b.logf("  ferry:    first %v/%v last %v/%v, %.0f req/s, %v CPU per request; other processes used %.0f%% of the machine",
		res.ferry.first.p50, res.ferry.first.p99, res.ferry.last.p50, res.ferry.last.p99, res.ferry.rps, res.ferryCPU, res.otherLoad*100)
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

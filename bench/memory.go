package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferryhq/ferry/llm/llmtest"
)

// openAtOnce bounds the streams being opened at the same time (sent, first
// event not yet read), so the ramp is a crowd, not a SYN flood.
const openAtOnce = 1000

// memResult is a server's memory with many streams held open.
type memResult struct {
	route   string // the Ferry endpoint, or the one whose upstream the bare proxy forwarded to
	floor   bool   // the bare proxy, not Ferry
	prior   bool   // the -before-ferry build of Ferry
	streams int    // asked for
	opened  int    // that received their first event
	// upstreamOpen counts the fake's requests still streaming when the
	// memory was read: each open client stream must hold one.
	upstreamOpen int
	ramp         time.Duration
	idle, open   memory // before opening, and the largest seen while open
	after        memory // after cancelling them all and a pause
	gc           heap   // the last collection before the memory was read
	// runtime is the Go runtime's own account with -profile, before and
	// after a forced collection.
	runtime, collected runtimeMemory
	// cancelled counts the upstream requests the server ended because
	// their client left; unended counts those still open 30 s after the
	// clients left.
	cancelled, unended int
	healthy            error // nil when the server answered and streamed a whole answer after
}

// crowd is many streams held open at once against one target.
type crowd struct {
	cancel         context.CancelFunc
	tr             *http.Transport
	wg             sync.WaitGroup
	opened, failed atomic.Int64
	errOnce        sync.Once
	firstErr       error
	ramp           time.Duration
}

// hold opens n streams to t and returns when every one has received its
// first event or failed to, or after 3 minutes. alive is polled meanwhile
// and ends the wait with its error. The streams keep reading until release.
func hold(ctx context.Context, t *target, n int, alive func() error) (*crowd, error) {
	sctx, cancel := context.WithCancel(ctx)
	// Its own transport: these connections are not reused, and closing it
	// afterwards leaves nothing behind.
	c := &crowd{cancel: cancel, tr: &http.Transport{DisableKeepAlives: true, DisableCompression: true}}
	hc := &http.Client{Transport: c.tr}
	fail := func(err error) {
		c.failed.Add(1)
		c.errOnce.Do(func() { c.firstErr = err })
	}
	sem := make(chan struct{}, openAtOnce)
	start := time.Now()
	deadline := time.NewTimer(3 * time.Minute)
	defer deadline.Stop()
launch:
	for range n {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			c.release()
			return nil, ctx.Err()
		case <-deadline.C:
			break launch
		}
		c.wg.Go(func() {
			release := sync.OnceFunc(func() { <-sem })
			defer release()
			req, _ := http.NewRequestWithContext(sctx, http.MethodPost, t.url, bytes.NewReader(t.body))
			req.Header = t.header.Clone()
			resp, err := hc.Do(req)
			if err != nil {
				fail(err)
				return
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				body, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
				fail(fmt.Errorf("%s: %s", resp.Status, body))
				return
			}
			if err := firstEvent(resp.Body, t.sep); err != nil {
				fail(err)
				return
			}
			c.opened.Add(1)
			release()
			// Keep reading, as a client would, until released.
			io.Copy(io.Discard, resp.Body)
		})
	}
	for c.opened.Load()+c.failed.Load() < int64(n) && time.Since(start) < 3*time.Minute {
		if err := alive(); err != nil {
			c.release()
			return nil, err
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.ramp = time.Since(start)
	return c, nil
}

// release makes every client leave and waits for their goroutines.
func (c *crowd) release() {
	c.cancel()
	c.wg.Wait()
	c.tr.CloseIdleConnections()
}

// peakRSS is the largest of five readings spread over span, while the
// open streams keep receiving deltas.
func peakRSS(pid int, span time.Duration) (memory, error) {
	var peak memory
	for i := range 5 {
		if i > 0 {
			time.Sleep(span / 4)
		}
		m, err := procMemory(pid)
		if err != nil {
			return memory{}, err
		}
		peak.rss = max(peak.rss, m.rss)
		peak.hwm = m.hwm
	}
	return peak, nil
}

// settleUpstream waits up to 30 s for the fake to have no open request,
// and reports how many its clients cancelled and how many are still open.
func settleUpstream(fake *llmtest.Server) (cancelled, unended int) {
	for wait := time.Now().Add(30 * time.Second); openUpstream(fake) > 0 && time.Now().Before(wait); {
		time.Sleep(50 * time.Millisecond)
	}
	return fake.CancelledCount(), openUpstream(fake)
}

// measureMemory starts a fresh Ferry, warms it up, then holds cfg.streams
// streams of ep open at once (the fake pausing mem-delay before each
// delta), reads Ferry's resident memory, cancels them all, and checks that
// Ferry still serves.
// bin, when not empty, is another build of Ferry to measure instead.
func (b *bench) measureMemory(ctx context.Context, ep endpoint, bin string) (memResult, error) {
	res := memResult{route: ep.route, streams: b.cfg.streams}
	b.answer(b.cfg.deltas, 0)
	// gctrace splits the resident memory into live heap and stacks.
	var f *ferryProc
	var err error
	if bin == "" {
		f, err = b.startFerry(ctx, "GODEBUG=gctrace=1")
	} else {
		f, err = startFerry(ctx, b.cores, bin, b.fake, b.cfg.logLevel, append(slices.Clone(b.cfg.ferryEnv), "GODEBUG=gctrace=1")...)
	}
	if err != nil {
		return res, err
	}
	defer f.stop()
	b.logf("%s: %d streams open at once (ferry pid %d)", ep.route, b.cfg.streams, f.Pid())
	ferryT := ep.ferry(f)

	warm := newClient(b.want, 8)
	if _, err := warm.run(ctx, ferryT, 8, b.cfg.warmup, 1, time.Now().Add(time.Minute)); err != nil {
		return res, fmt.Errorf("warm-up: %w", err)
	}
	warm.close()
	time.Sleep(b.cfg.settle / 2)
	if res.idle, err = f.memory(); err != nil {
		return res, err
	}

	b.fake.Reset()
	b.fake.SetScript(llmtest.Script{Deltas: llmtest.Deltas(b.cfg.deltas), Delay: b.cfg.memDelay})
	c, err := hold(ctx, ferryT, b.cfg.streams, f.alive)
	if err != nil {
		return res, err
	}
	defer c.release()
	res.ramp, res.opened = c.ramp, int(c.opened.Load())
	if n := c.failed.Load(); n > 0 {
		b.logf("  %d streams failed to open; the first: %v", n, c.firstErr)
	}
	if res.open, err = peakRSS(f.Pid(), b.cfg.settle); err != nil {
		return res, err
	}
	res.upstreamOpen = openUpstream(b.fake)
	res.gc = f.lastGC()
	b.logf("  %d of %d open after %v (%d upstream); RSS %.1f MB (idle %.1f MB), peak %.1f MB; last GC: live heap %d MB, goal %d MB, stacks %d MB",
		res.opened, res.streams, res.ramp.Round(time.Millisecond), res.upstreamOpen, mb(res.open.rss), mb(res.idle.rss), mb(res.open.hwm),
		res.gc.live, res.gc.goal, res.gc.stacks)
	if f.pprofURL != "" {
		if res.runtime, err = readRuntimeMemory(ctx, f.pprofURL); err != nil {
			return res, err
		}
		// The heap profile is taken after a forced collection, so it shows
		// what the open streams hold, not garbage.
		if err := b.profileMemory(ctx, f.pprofURL, "", ep.route); err != nil {
			return res, err
		}
		if res.collected, err = readRuntimeMemory(ctx, f.pprofURL); err != nil {
			return res, err
		}
		for _, x := range []struct {
			when string
			m    runtimeMemory
		}{{"before", res.runtime}, {"after", res.collected}} {
			b.logf("  runtime/metrics %s a forced GC: %d goroutines; heap objects %.1f MB, unused %.1f MB, free %.1f MB, released %.1f MB; stacks %.1f MB; metadata %.1f MB; total %.1f MB",
				x.when, x.m.goroutines, mb(x.m.heapObjects), mb(x.m.heapUnused), mb(x.m.heapFree), mb(x.m.heapReleased),
				mb(x.m.stacks+x.m.osStacks), mb(x.m.metadata), mb(x.m.total))
		}
	}

	c.release()
	// Ferry must pass each client's leaving on to its upstream request.
	res.cancelled, res.unended = settleUpstream(b.fake)

	b.answer(b.cfg.deltas, 0)
	res.healthy = f.alive()
	if res.healthy == nil {
		res.healthy = f.ready(ctx, 30*time.Second)
	}
	if res.healthy == nil {
		res.healthy = b.verifyOne(ctx, ferryT)
	}
	time.Sleep(b.cfg.settle)
	if m, err := f.memory(); err == nil {
		res.after = m
	}
	b.fake.Reset()
	healthy := "yes"
	if res.healthy != nil {
		healthy = res.healthy.Error()
	}
	b.logf("  cancelled: %d upstream requests ended by Ferry, %d left open; healthy after: %s; RSS after %.1f MB",
		res.cancelled, res.unended, healthy, mb(res.after.rss))
	return res, nil
}

// measureProxyMemory is measureMemory for a fresh bare proxy in front of
// the fake's stream that ep calls: the floor under Ferry's memory per
// stream.
func (b *bench) measureProxyMemory(ctx context.Context, ep endpoint) (memResult, error) {
	res := memResult{route: ep.route, floor: true, streams: b.cfg.streams}
	b.answer(b.cfg.deltas, 0)
	px, err := startProxy(ctx, b.cores, b.fake.URL, b.cfg.profile != "")
	if err != nil {
		return res, err
	}
	defer px.stop()
	pid := px.cmd.Process.Pid
	b.logf("bare proxy to %s: %d streams open at once (pid %d)", ep.upstreamPath, b.cfg.streams, pid)
	t := ep.upstream(px.URL)

	warm := newClient(b.want, 8)
	if _, err := warm.run(ctx, t, 8, b.cfg.warmup, 1, time.Now().Add(time.Minute)); err != nil {
		return res, fmt.Errorf("warm-up: %w", err)
	}
	warm.close()
	time.Sleep(b.cfg.settle / 2)
	if res.idle, err = procMemory(pid); err != nil {
		return res, err
	}
	b.fake.Reset()
	b.fake.SetScript(llmtest.Script{Deltas: llmtest.Deltas(b.cfg.deltas), Delay: b.cfg.memDelay})
	c, err := hold(ctx, t, b.cfg.streams, func() error { return nil })
	if err != nil {
		return res, err
	}
	defer c.release()
	res.ramp, res.opened = c.ramp, int(c.opened.Load())
	if res.open, err = peakRSS(pid, b.cfg.settle); err != nil {
		return res, err
	}
	res.upstreamOpen = openUpstream(b.fake)
	if px.pprofURL != "" {
		if res.runtime, err = readRuntimeMemory(ctx, px.pprofURL); err != nil {
			return res, err
		}
		if err := b.profileMemory(ctx, px.pprofURL, "_proxy", ep.route); err != nil {
			return res, err
		}
		if res.collected, err = readRuntimeMemory(ctx, px.pprofURL); err != nil {
			return res, err
		}
	}
	c.release()
	res.cancelled, res.unended = settleUpstream(b.fake)
	b.answer(b.cfg.deltas, 0)
	res.healthy = b.verifyOne(ctx, t)
	time.Sleep(b.cfg.settle)
	if m, err := procMemory(pid); err == nil {
		res.after = m
	}
	b.fake.Reset()
	b.logf("  %d of %d open after %v (%d upstream); RSS %.1f MB (idle %.1f MB)", res.opened, res.streams,
		res.ramp.Round(time.Millisecond), res.upstreamOpen, mb(res.open.rss), mb(res.idle.rss))
	return res, nil
}

// openUpstream counts the fake's requests that are still being answered.
func openUpstream(fake *llmtest.Server) int {
	n := 0
	for _, r := range fake.Requests() {
		select {
		case <-r.Done():
		default:
			n++
		}
	}
	return n
}

func mb(n int64) float64 { return float64(n) / (1 << 20) }

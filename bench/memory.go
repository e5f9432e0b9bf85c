package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferryhq/ferry/llm/llmtest"
)

// openAtOnce bounds the streams being opened at the same time (sent, first
// event not yet read), so the ramp is a crowd, not a SYN flood.
const openAtOnce = 1000

// memResult is Ferry's memory with many streams held open.
type memResult struct {
	route   string
	streams int // asked for
	opened  int // that received their first event
	// upstreamOpen counts the fake's requests still streaming when the
	// memory was read: each open client stream must hold one.
	upstreamOpen int
	ramp         time.Duration
	idle, open   memory // before opening, and the largest seen while open
	after        memory // after cancelling them all and a pause
	// cancelled counts the upstream requests Ferry ended because their
	// client left; unended counts those still open 30 s after the clients
	// left.
	cancelled, unended int
	healthy            error // nil when Ferry answered /readyz and streamed a whole answer after
}

// measureMemory starts a fresh Ferry, warms it up, then holds cfg.streams
// streams of ep open at once (the fake pausing mem-delay before each
// delta), reads Ferry's resident memory, cancels them all, and checks that
// Ferry still serves.
func (b *bench) measureMemory(ctx context.Context, ep endpoint) (memResult, error) {
	res := memResult{route: ep.route, streams: b.cfg.streams}
	b.fake.SetScript(llmtest.Script{Deltas: llmtest.Deltas(b.cfg.deltas)})
	f, err := startFerry(ctx, b.bin, b.fake, b.cfg.logLevel)
	if err != nil {
		return res, err
	}
	defer f.stop()
	b.logf("%s: %d streams open at once (ferry pid %d)", ep.route, b.cfg.streams, f.Pid())
	ferryT, _ := ep.targets(f, b.fake)

	warm := newClient(b.want, 8)
	if _, err := warm.run(ctx, ferryT, 8, 200, 1, time.Now().Add(time.Minute)); err != nil {
		return res, fmt.Errorf("warm-up: %w", err)
	}
	warm.close()
	time.Sleep(500 * time.Millisecond)
	if res.idle, err = f.memory(); err != nil {
		return res, err
	}

	b.fake.Reset()
	b.fake.SetScript(llmtest.Script{Deltas: llmtest.Deltas(b.cfg.deltas), Delay: b.cfg.memDelay})
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Its own transport: these connections are not reused, and closing it
	// afterwards leaves nothing behind.
	tr := &http.Transport{DisableKeepAlives: true, DisableCompression: true}
	hc := &http.Client{Transport: tr}
	defer tr.CloseIdleConnections()

	var opened, failed atomic.Int64
	var errOnce sync.Once
	var firstErr error
	sem := make(chan struct{}, openAtOnce)
	var wg sync.WaitGroup
	start := time.Now()
	openDeadline := start.Add(3 * time.Minute)
launch:
	for range b.cfg.streams {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(time.Until(openDeadline)):
			break launch
		}
		wg.Go(func() {
			release := sync.OnceFunc(func() { <-sem })
			defer release()
			fail := func(err error) {
				failed.Add(1)
				errOnce.Do(func() { firstErr = err })
			}
			req, _ := http.NewRequestWithContext(sctx, http.MethodPost, ferryT.url, bytes.NewReader(ferryT.body))
			req.Header = ferryT.header.Clone()
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
			if err := firstEvent(resp.Body, ferryT.sep); err != nil {
				fail(err)
				return
			}
			opened.Add(1)
			release()
			// Keep reading, as a client would, until cancelled.
			io.Copy(io.Discard, resp.Body)
		})
	}
	for opened.Load()+failed.Load() < int64(b.cfg.streams) && time.Now().Before(openDeadline) {
		if err := f.alive(); err != nil {
			return res, err
		}
		time.Sleep(20 * time.Millisecond)
	}
	res.ramp = time.Since(start)
	res.opened = int(opened.Load())
	if failed.Load() > 0 {
		b.logf("  %d streams failed to open; the first: %v", failed.Load(), firstErr)
	}

	// The largest of a few readings, a second apart from the first to the
	// last, while the open streams keep receiving deltas.
	for i := range 5 {
		if i > 0 {
			time.Sleep(250 * time.Millisecond)
		}
		m, err := f.memory()
		if err != nil {
			return res, err
		}
		res.open.rss = max(res.open.rss, m.rss)
		res.open.hwm = m.hwm
	}
	res.upstreamOpen = openUpstream(b.fake)
	b.logf("  %d of %d open after %v (%d upstream); RSS %.1f MB (idle %.1f MB), peak %.1f MB",
		res.opened, res.streams, res.ramp.Round(time.Millisecond), res.upstreamOpen, mb(res.open.rss), mb(res.idle.rss), mb(res.open.hwm))

	cancel()
	wg.Wait()
	tr.CloseIdleConnections()
	// Ferry must pass each client's leaving on to its upstream request.
	for wait := time.Now().Add(30 * time.Second); openUpstream(b.fake) > 0 && time.Now().Before(wait); {
		time.Sleep(50 * time.Millisecond)
	}
	res.unended = openUpstream(b.fake)
	res.cancelled = b.fake.CancelledCount()

	b.fake.SetScript(llmtest.Script{Deltas: llmtest.Deltas(b.cfg.deltas)})
	res.healthy = f.alive()
	if res.healthy == nil {
		res.healthy = f.ready(ctx, 30*time.Second)
	}
	if res.healthy == nil {
		res.healthy = b.verifyOne(ctx, ferryT)
	}
	time.Sleep(time.Second)
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

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
)

// target is one streaming call: where it goes and how its answer is
// checked.
type target struct {
	url    string
	header http.Header
	body   []byte
	// text returns the answer a complete response body carries.
	text func(body []byte) (string, error)
	end  []byte // the last event of a complete body contains this
	sep  []byte // what ends one event
}

// sample is one request's latencies, from just before the request was sent:
// to the first byte of the response body, and to its end.
type sample struct{ first, last time.Duration }

// client sends the requests of every side with the same code and the same
// transport.
type client struct {
	hc   *http.Client
	want string // the answer every stream must carry
	// spread, when set, starts a run's workers one after another across
	// it, and a worker's first request is not measured: the run then
	// holds conc streams open in a steady state, their starts as spread
	// out as independent users' would be, instead of conc requests
	// arriving at the same instant (see bench.compare).
	spread time.Duration
}

func newClient(want string, conns int) *client {
	tr := &http.Transport{
		// Every worker keeps its connection to each side between requests:
		// no limit overall, conns per host.
		MaxIdleConns:        0,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     5 * time.Minute,
		// Neither side compresses; this keeps the transport from asking.
		DisableCompression: true,
	}
	return &client{hc: &http.Client{Transport: tr}, want: want}
}

func (c *client) close() { c.hc.CloseIdleConnections() }

// worker holds one sender's reusable buffers.
type worker struct {
	body  bytes.Buffer
	chunk []byte
}

// stream sends one request to t and reads the whole answer. Every answer
// must end with t's final event; with verify its full text is checked too.
func (c *client) stream(ctx context.Context, t *target, w *worker, verify bool) (sample, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, bytes.NewReader(t.body))
	if err != nil {
		return sample{}, err
	}
	req.Header = t.header.Clone()
	if w.chunk == nil {
		w.chunk = make([]byte, 32<<10)
	}
	w.body.Reset()

	start := time.Now()
	resp, err := c.hc.Do(req)
	if err != nil {
		return sample{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
		return sample{}, fmt.Errorf("POST %s: %s: %s", t.url, resp.Status, b)
	}
	var s sample
	got := false
	for {
		n, err := resp.Body.Read(w.chunk)
		if n > 0 {
			if !got {
				s.first, got = time.Since(start), true
			}
			w.body.Write(w.chunk[:n])
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return sample{}, fmt.Errorf("POST %s: reading the stream: %w", t.url, err)
		}
	}
	s.last = time.Since(start)

	body := w.body.Bytes()
	if !bytes.Contains(body[max(0, len(body)-512):], t.end) {
		return sample{}, fmt.Errorf("POST %s: the stream ended without its final event: …%s", t.url, body[max(0, len(body)-512):])
	}
	if verify {
		text, err := t.text(body)
		if err != nil {
			return sample{}, fmt.Errorf("POST %s: %w", t.url, err)
		}
		if text != c.want {
			return sample{}, fmt.Errorf("POST %s: the streamed text is %d bytes, want the %d of the scripted answer: %.200q", t.url, len(text), len(c.want), text)
		}
	}
	return s, nil
}

// load is the outcome of one run of requests.
type load struct {
	samples []sample
	wall    time.Duration // from the first measured request's start
	checked int           // requests whose full text was checked
	sent    int           // requests sent: the samples, and those of a spread start
}

// run sends n requests to t from conc workers, stopping early at deadline,
// and verifies every verifyEvery-th answer in full. The first error ends the
// run. With c.spread, worker k starts k/conc of it in, and sends one request
// more, first, that is verified but not measured.
func (c *client) run(ctx context.Context, t *target, conc, n, verifyEvery int, deadline time.Time) (load, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	samples := make([]sample, n)
	var next, checked, ramp atomic.Int64
	var wg sync.WaitGroup
	var begin sync.Once
	var start time.Time
	workers := min(conc, n)
	for k := range workers {
		wg.Go(func() {
			var w worker
			if c.spread > 0 {
				select {
				case <-time.After(c.spread * time.Duration(k) / time.Duration(workers)):
				case <-ctx.Done():
					return
				}
				if _, err := c.stream(ctx, t, &w, true); err != nil {
					cancel(err)
					return
				}
				ramp.Add(1)
			}
			begin.Do(func() { start = time.Now() })
			for ctx.Err() == nil && time.Now().Before(deadline) {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				verify := i%verifyEvery == 0
				s, err := c.stream(ctx, t, &w, verify)
				if err != nil {
					cancel(err)
					return
				}
				if verify {
					checked.Add(1)
				}
				samples[i] = s
			}
		})
	}
	wg.Wait()
	wall := time.Since(start)
	if err := context.Cause(ctx); err != nil {
		return load{}, err
	}
	// Requests a deadline kept from starting left their slots empty.
	samples = slices.DeleteFunc(samples, func(s sample) bool { return s.last == 0 })
	return load{samples: samples, wall: wall, checked: int(checked.Load() + ramp.Load()), sent: len(samples) + int(ramp.Load())}, nil
}

// stats summarises the samples of one side at one concurrency.
type stats struct {
	n, checked  int
	first, last quantiles
	rps         float64
}

type quantiles struct{ p50, p99 time.Duration }

func summarise(samples []sample, wall time.Duration, checked int) stats {
	firsts := make([]time.Duration, len(samples))
	lasts := make([]time.Duration, len(samples))
	for i, s := range samples {
		firsts[i], lasts[i] = s.first, s.last
	}
	return stats{n: len(samples), checked: checked, first: quantilesOf(firsts), last: quantilesOf(lasts),
		rps: float64(len(samples)) / wall.Seconds()}
}

func quantilesOf(d []time.Duration) quantiles {
	slices.Sort(d)
	return quantiles{p50: percentile(d, 50), p99: percentile(d, 99)}
}

// percentile is the nearest-rank percentile of sorted d.
func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := (p*len(sorted) + 99) / 100 // ceil(p/100 * n)
	return sorted[max(rank, 1)-1]
}

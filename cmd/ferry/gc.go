package main

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// The garbage collector's default (GOGC=100) starts a cycle when the heap
// has grown by as much as was live after the last one. A server between
// bursts holds a few megabytes, so at that pace it collects every few
// hundred requests, and each cycle's fixed cost (waking the mark workers,
// scanning stacks and globals) lands on requests in flight: on two cores,
// GOGC=400 took 0.075 ms of CPU off each streamed Ollama request in the
// bench. gcHeadroom lets the heap grow by at least minHeapHeadroom between
// cycles and keeps the default's proportion above it: a large heap
// (thousands of open streams) is collected exactly as before, so the
// memory it needs is not raised there, and a small one is collected up to
// eight times less often, for at most minHeapHeadroom more memory.
const minHeapHeadroom = 32 << 20

// baseGCPercent is GOGC's default, which the headroom never goes below.
const baseGCPercent = 100

// minLiveHeap is the least live heap gcPercentFor assumes: the runtime's
// own smallest heap goal at GOGC=100, and what it reads before the first
// collection has measured anything. It bounds GOGC at 800.
const minLiveHeap = 4 << 20

// gcPercentFor is the GOGC that gives a heap of live bytes at least
// minHeapHeadroom of growth before the next cycle.
func gcPercentFor(live uint64) int {
	return max(baseGCPercent, int(minHeapHeadroom*100/max(live, minLiveHeap)))
}

// gcHeadroom sets GOGC after every collection from the heap live after it
// (see minHeapHeadroom), until stop is called. An operator's own GOGC or
// GOMEMLIMIT is left alone: then it does nothing.
type gcHeadroom struct {
	mu      sync.Mutex // adjust and stop, so none sets GOGC after stop
	stopped bool
	sample  []metrics.Sample
}

// startGCHeadroom starts the tuning unless getenv sets GOGC or GOMEMLIMIT;
// the returned function stops it.
func startGCHeadroom(getenv func(string) string) (stop func()) {
	if getenv("GOGC") != "" || getenv("GOMEMLIMIT") != "" {
		return func() {}
	}
	g := &gcHeadroom{sample: []metrics.Sample{{Name: "/gc/heap/live:bytes"}}}
	g.adjust()
	g.watch()
	return func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		g.stopped = true
		debug.SetGCPercent(baseGCPercent)
	}
}

// gcCycle is allocated only to become garbage: its cleanup runs after the
// collection that found it unreachable. It holds a pointer so that it is
// not batched with other small objects, whose cleanups may never run.
type gcCycle struct{ _ *byte }

func (g *gcHeadroom) watch() {
	runtime.AddCleanup(new(gcCycle), func(g *gcHeadroom) {
		if g.adjust() {
			g.watch()
		}
	}, g)
}

// adjust sets GOGC from the live heap, unless stopped; it reports whether
// it was still running.
func (g *gcHeadroom) adjust() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stopped {
		return false
	}
	metrics.Read(g.sample)
	if g.sample[0].Value.Kind() == metrics.KindUint64 {
		debug.SetGCPercent(gcPercentFor(g.sample[0].Value.Uint64()))
	}
	return true
}

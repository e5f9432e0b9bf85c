package main

import (
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

func TestGCPercentFor(t *testing.T) {
	for _, c := range []struct {
		live uint64
		want int
	}{
		{0, 800},                   // nothing measured yet: the runtime's smallest heap
		{4 << 20, 800},             // 4 MB live: 32 MB of headroom
		{8 << 20, 400},             // 8 MB: still 32 MB
		{32 << 20, 100},            // from here on, the default's proportion
		{200 << 20, baseGCPercent}, // thousands of streams: unchanged
		{1 << 40, baseGCPercent},   // never below the default
	} {
		if got := gcPercentFor(c.live); got != c.want {
			t.Errorf("gcPercentFor(%d MB) = %d, want %d", c.live>>20, got, c.want)
		}
	}
}

// currentGCPercent reads GOGC by setting it back to what it was.
func currentGCPercent() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
}

func TestGCHeadroom(t *testing.T) {
	defer debug.SetGCPercent(currentGCPercent())

	stop := startGCHeadroom(func(string) string { return "" })
	debug.SetGCPercent(100)
	// After a collection the cleanup sets GOGC from this test binary's
	// small heap.
	deadline := time.Now().Add(10 * time.Second)
	for currentGCPercent() == 100 && time.Now().Before(deadline) {
		runtime.GC()
		time.Sleep(time.Millisecond)
	}
	if p := currentGCPercent(); p <= 100 {
		t.Fatalf("GOGC is %d after collections with a small heap, want more than 100", p)
	}
	stop()
	if p := currentGCPercent(); p != baseGCPercent {
		t.Fatalf("GOGC is %d after stop, want %d", p, baseGCPercent)
	}
	// Stopped, it sets nothing more.
	runtime.GC()
	runtime.GC()
	time.Sleep(10 * time.Millisecond)
	if p := currentGCPercent(); p != baseGCPercent {
		t.Fatalf("GOGC is %d after collections once stopped, want %d", p, baseGCPercent)
	}

	// An operator's GOGC is theirs.
	stop = startGCHeadroom(func(k string) string {
		if k == "GOGC" {
			return "50"
		}
		return ""
	})
	defer stop()
	debug.SetGCPercent(50)
	runtime.GC()
	runtime.GC()
	time.Sleep(10 * time.Millisecond)
	if p := currentGCPercent(); p != 50 {
		t.Fatalf("GOGC is %d with GOGC=50 set, want 50", p)
	}
}

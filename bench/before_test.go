package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// issue3Section is part of a section as the issue 3 tool wrote it (before
// the CPU column was shared with the bare proxy and Other load was added).
const issue3Section = `## Streaming overhead (issue 3)

Machine: 2 cores (` + "`nproc`" + ` 2, GOMAXPROCS 2), AMD EPYC, 23.5 GiB, Linux 6.18.44-fc-v657, go1.26.8. Run 2026-11-27 23:33 UTC, took 1m57s.

### Targets

| Target | Endpoint | Measured | Bare proxy (floor) | Result |
|---|---|---:|---:|---|
| Median added latency at concurrency 1 < 0.2 ms: first byte, 100 deltas | /ai/chat/stream | +0.926 ms | +0.312 ms | **FAIL** |

### Latency

| Endpoint | Conc. | Side | n | Req/s | First byte p50 | First byte p99 | Last byte p50 | Last byte p99 | Ferry CPU per request |
|---|---:|---|---:|---:|---:|---:|---:|---:|---:|
| /ai/chat/stream (vs /v1/messages), 100 deltas | 1 | upstream | 2000 | 1285 | 0.397 ms | 0.897 ms | 0.624 ms | 2.525 ms | |
| | | bare proxy | 2000 | 785 | 0.709 ms | 1.585 ms | 1.131 ms | 3.214 ms | |
| | | Ferry | 2000 | 288 | 1.323 ms | 4.824 ms | 3.065 ms | 9.172 ms | 2.990 ms |
| | | **added by Ferry** | | -78% | **+0.926 ms** | +3.926 ms | **+2.441 ms** | +6.647 ms | |
| | | added by a bare proxy | | -39% | +0.312 ms | +0.688 ms | +0.508 ms | +0.689 ms | |
| /ollama/generate (vs /api/generate), 1 delta | 1 | upstream | 2000 | 6335 | 0.120 ms | 0.382 ms | 0.120 ms | 0.396 ms | |
| | | bare proxy | 2000 | 1441 | 0.606 ms | 1.734 ms | 0.632 ms | 2.010 ms | |
| | | Ferry | 2000 | 1043 | 0.639 ms | 2.137 ms | 0.868 ms | 2.879 ms | 0.770 ms |

### Memory with 5000 streams open at once

| Server | Opened | Ramp | RSS idle | RSS open | Per stream | Live heap | Heap goal | Stacks in use | Peak (HWM) | RSS after | Upstream requests ended | Healthy after |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|
| /ai/chat/stream | 5000 of 5000 | 6.2 s | 69.6 MB | 457.6 MB | 79.5 KB | 192 MB | 267 MB | 56 MB | 457.6 MB | 471.2 MB | 5000 of 5000 | yes |
| bare proxy (/v1/messages) | 5000 of 5000 | 1.8 s | 13.5 MB | 291.8 MB | 57.0 KB | – | – | – | 291.8 MB | 292.0 MB | 5000 of 5000 | yes |

## Later section
`

func TestReadEarlierIssue3(t *testing.T) {
	path := filepath.Join(t.TempDir(), "BENCHMARKS.md")
	if err := os.WriteFile(path, []byte("# Benchmarks\n\n"+issue3Section), 0o644); err != nil {
		t.Fatal(err)
	}
	e, err := readEarlier(path, "e6bc85c", headings[6])
	if err != nil {
		t.Fatal(err)
	}
	if e.run != "2026-11-27 23:33 UTC, took 1m57s" {
		t.Errorf("run %q", e.run)
	}
	l, ok := e.level(levelKey{route: "/ai/chat/stream", conc: 1, deltas: 100})
	if !ok || l.proxy == nil {
		t.Fatalf("no /ai/chat/stream level with its bare proxy: %+v", e.latency)
	}
	if l.upstream.n != 2000 || l.ferry.rps != 288 || l.ferry.last.p50 != 3065*time.Microsecond || l.proxy.first.p99 != 1585*time.Microsecond ||
		l.ferryCPU != 2990*time.Microsecond || l.upstreamPath != "/v1/messages" {
		t.Errorf("/ai/chat/stream: %+v, proxy %+v", l, *l.proxy)
	}
	if o, ok := e.level(levelKey{route: "/ollama/generate", conc: 1, deltas: 1}); !ok || o.ferry.last.p50 != 868*time.Microsecond {
		t.Errorf("/ollama/generate, 1 delta: %+v (%v)", o, ok)
	}
	f, ok := e.mem("/ai/chat/stream", false)
	if !ok || f.opened != 5000 || fmt.Sprintf("%.1f", mb(f.open.rss)) != "457.6" || f.gc.live != 192 {
		t.Errorf("Ferry's memory: %+v", f)
	}
	// One bare proxy measured for all: every endpoint is set against it.
	px, ok := e.mem("/ollama/generate", true)
	if !ok || !px.floor || fmt.Sprintf("%.1f", mb(px.open.rss)) != "291.8" || px.server() != "bare proxy (/v1/messages)" {
		t.Errorf("bare proxy's memory: %+v", px)
	}
	if _, ok := e.mem("/ollama/generate", false); ok {
		t.Error("a Ferry reading of /ollama/generate that the section does not have")
	}
}

// TestReadEarlierRoundTrip reads back what this command writes, in both
// sections' formats.
func TestReadEarlierRoundTrip(t *testing.T) {
	proxy := stats{n: 10, rps: 900, first: quantiles{700 * time.Microsecond, 1500 * time.Microsecond}, last: quantiles{time.Millisecond, 3 * time.Millisecond}}
	rep := &report{deltas: 100, every: 16, warmup: 5, floor: true, streams: 50, memDelay: time.Second, started: time.Now(), machine: describeMachine(),
		latency: []latencyResult{{route: "/ollama/generate", upstreamPath: "/api/generate", conc: 1, deltas: 100,
			upstream: stats{n: 10, rps: 1000, first: quantiles{400 * time.Microsecond, 900 * time.Microsecond}, last: quantiles{600 * time.Microsecond, 2 * time.Millisecond}},
			ferry:    stats{n: 10, rps: 800, first: quantiles{800 * time.Microsecond, 2 * time.Millisecond}, last: quantiles{1200 * time.Microsecond, 4 * time.Millisecond}},
			proxy:    &proxy, ferryCPU: 1250 * time.Microsecond, proxyCPU: 400 * time.Microsecond, otherLoad: 0.25},
			// Concurrency 64 back to back, and paced, with the starts
			// spread and as a herd: the first-byte target is judged on
			// the paced level with spread starts.
			{route: "/ollama/generate", upstreamPath: "/api/generate", conc: 64, deltas: 100,
				upstream: proxy, ferry: stats{n: 10, rps: 800, first: quantiles{time.Millisecond, 40 * time.Millisecond}, last: quantiles{2 * time.Millisecond, 50 * time.Millisecond}},
				proxy: &proxy, otherLoad: -1},
			{route: "/ollama/generate", upstreamPath: "/api/generate", conc: 64, deltas: 100, pause: 2 * time.Millisecond,
				upstream: proxy, ferry: stats{n: 10, rps: 300, first: quantiles{2 * time.Millisecond, 3 * time.Millisecond}, last: quantiles{200 * time.Millisecond, 210 * time.Millisecond}},
				proxy: &proxy, otherLoad: -1},
			{route: "/ollama/generate", upstreamPath: "/api/generate", conc: 64, deltas: 100, pause: 2 * time.Millisecond, herd: true,
				upstream: proxy, ferry: stats{n: 10, rps: 300, first: quantiles{4 * time.Millisecond, 9 * time.Millisecond}, last: quantiles{200 * time.Millisecond, 210 * time.Millisecond}},
				proxy: &proxy, otherLoad: -1}},
		memory: []memResult{
			{route: "/ollama/generate", streams: 50, opened: 50, idle: memory{rss: 60 << 20}, open: memory{rss: 100 << 20, hwm: 110 << 20}, gc: heap{live: 30, ok: true}},
			{route: "/ollama/generate", floor: true, streams: 50, opened: 50, idle: memory{rss: 10 << 20}, open: memory{rss: 90 << 20, hwm: 90 << 20}},
		}}
	for _, issue := range []int{3, 6} {
		rep.issue = issue
		path := filepath.Join(t.TempDir(), "BENCHMARKS.md")
		if err := writeSection(path, headings[issue], rep.markdown()); err != nil {
			t.Fatal(err)
		}
		e, err := readEarlier(path, "x", headings[6])
		if err != nil {
			t.Fatalf("issue %d: %v", issue, err)
		}
		l, ok := e.level(levelKey{route: "/ollama/generate", conc: 1, deltas: 100})
		if !ok || l.proxy == nil || l.ferry.last.p50 != 1200*time.Microsecond || l.proxy.first.p99 != 1500*time.Microsecond ||
			l.ferryCPU != 1250*time.Microsecond || l.proxyCPU != 400*time.Microsecond {
			t.Errorf("issue %d: %+v", issue, l)
		}
		if l, ok := e.level(levelKey{route: "/ollama/generate", conc: 64, deltas: 100, pause: 2 * time.Millisecond}); !ok || l.ferry.first.p99 != 3*time.Millisecond {
			t.Errorf("issue %d: the paced level read back as %+v", issue, l)
		}
		if l, ok := e.level(levelKey{route: "/ollama/generate", conc: 64, deltas: 100, pause: 2 * time.Millisecond, herd: true}); !ok || l.ferry.first.p99 != 9*time.Millisecond {
			t.Errorf("issue %d: the paced herd read back as %+v", issue, l)
		}
		if l, ok := e.level(levelKey{route: "/ollama/generate", conc: 64, deltas: 100}); !ok || l.ferry.first.p99 != 40*time.Millisecond {
			t.Errorf("issue %d: the back-to-back level read back as %+v", issue, l)
		}
		px, ok := e.mem("/ollama/generate", true)
		if !ok || px.open.rss != 90<<20 {
			t.Errorf("issue %d: bare proxy %+v", issue, px)
		}
		rep.before = e // the next round's section compares with this one
	}
	// A build measured beside this one, in the same run.
	prior := rep.latency[0].ferry
	prior.last.p50 = 1500 * time.Microsecond
	rep.latency[0].prior, rep.latency[0].priorCPU, rep.priorLabel = &prior, 2*time.Millisecond, "old"
	rep.memory = append(rep.memory, memResult{route: "/ollama/generate", prior: true, streams: 50, opened: 50, open: memory{rss: 120 << 20}})
	md := rep.markdown()
	for _, want := range []string{"### Before (x) and after", "| /ollama/generate | 1 | 100 deltas | 1.250 ms | 1.250 ms |", "1.11×", "Other load", "25%",
		"### old and this tree in the same run", "| /ollama/generate | 1 | 100 deltas | 2.000 ms | 1.250 ms | +0.500 ms | +0.200 ms |",
		"| | | Ferry old | 10 |",
		"| First byte p99, concurrency 64, 100 deltas 2ms apart, starts spread: Ferry's minus the bare proxy's | /ollama/generate | 3.000 ms | 1.500 ms | +1.500 ms | ≤ +2.000 ms | PASS |",
		"| First byte p99, concurrency 64, 100 deltas 2ms apart, 64 at once: Ferry's minus the bare proxy's | /ollama/generate | 9.000 ms | 1.500 ms | +7.500 ms | reported | – |",
		"| First byte p99, concurrency 64, 100 deltas back to back: Ferry's minus the bare proxy's | /ollama/generate | 40.000 ms | 1.500 ms | +38.500 ms | reported | – |",
		"| /ollama/generate (vs /api/generate), 100 deltas 2ms apart, starts spread | 64 | upstream |", "pausing 2ms before each delta (`-pace`)", "| /ollama/generate, old | 50 of 50 |", "| /ollama/generate, 50 | 120.0 MB | 100.0 MB |"} {
		if !strings.Contains(md, want) {
			t.Errorf("the report has no %q:\n%s", want, md)
		}
	}
}

// TestLevelNames reads the names answerName gives a level back, and a
// paced level's name from before the starts were spread as a herd's.
func TestLevelNames(t *testing.T) {
	for name, want := range map[string]levelKey{
		"/ollama/generate (vs /api/generate), 100 deltas":                          {conc: 64, deltas: 100},
		"/ollama/generate (vs /api/generate), 1 delta":                             {conc: 64, deltas: 1},
		"/ollama/generate (vs /api/generate), 100 deltas 2ms apart, starts spread": {conc: 64, deltas: 100, pause: 2 * time.Millisecond},
		"/ollama/generate (vs /api/generate), 100 deltas 2ms apart, 64 at once":    {conc: 64, deltas: 100, pause: 2 * time.Millisecond, herd: true},
		"/ollama/generate (vs /api/generate), 100 deltas 2ms apart":                {conc: 64, deltas: 100, pause: 2 * time.Millisecond, herd: true},
	} {
		want.route = "/ollama/generate"
		e := &earlier{}
		cells := map[string]string{"Endpoint": name, "Conc.": "64"}
		if _, err := e.latencyRow(func(k string) string { return cells[k] }, nil); err != nil {
			t.Errorf("%q: %v", name, err)
			continue
		}
		if got := e.latency[0].key(); got != want {
			t.Errorf("%q read as %+v, want %+v", name, got, want)
		}
		if !strings.HasSuffix(name, " apart") { // an old name is not given any more
			if got := e.latency[0].answer(); got != strings.TrimPrefix(name, "/ollama/generate (vs /api/generate), ") {
				t.Errorf("%q named back as %q", name, got)
			}
		}
	}
}

func TestThousands(t *testing.T) {
	for n, want := range map[int]string{0: "0", 999: "999", 5000: "5,000", 1234567: "1,234,567", -5000: "-5,000"} {
		if got := thousands(n); got != want {
			t.Errorf("thousands(%d) = %q, want %q", n, got, want)
		}
	}
}

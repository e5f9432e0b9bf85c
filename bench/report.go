package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// heading is this report's section of BENCHMARKS.md; writeSection replaces
// only it.
const heading = "## Streaming overhead (issue 3)"

// Targets set by the issue.
const (
	targetAdded   = 200 * time.Microsecond // median added latency at concurrency 1
	targetStreams = 5000                   // streams open at once…
	targetRSS     = 200 << 20              // …in under this much resident memory
)

// report is everything one run measured.
type report struct {
	command  string
	machine  machine
	started  time.Time
	duration time.Duration
	deltas   int
	streams  int
	every    int // every k-th measured answer was decoded and compared
	latency  []latencyResult
	memory   []memResult
	skipped  []string // routes this build of Ferry does not serve
}

type machine struct {
	cpus, procs   int
	model, kernel string
	memTotal      int64
	goVersion     string
}

func describeMachine() machine {
	m := machine{cpus: runtime.NumCPU(), procs: runtime.GOMAXPROCS(0), goVersion: runtime.Version()}
	m.model = procField("/proc/cpuinfo", "model name")
	if kb, err := strconv.ParseInt(strings.TrimSuffix(procField("/proc/meminfo", "MemTotal"), " kB"), 10, 64); err == nil {
		m.memTotal = kb << 10
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.kernel = strings.TrimSpace(string(b))
	}
	return m
}

// procField returns the value of the first "key: value" line of a /proc
// file, or "unknown".
func procField(path, key string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "unknown"
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// ordinal is "answer" for 1, else "16th answer" and the like.
func ordinal(k int) string {
	if k == 1 {
		return "answer"
	}
	suffix := "th"
	switch {
	case k%100 >= 11 && k%100 <= 13:
	case k%10 == 1:
		suffix = "st"
	case k%10 == 2:
		suffix = "nd"
	case k%10 == 3:
		suffix = "rd"
	}
	return strconv.Itoa(k) + suffix + " answer"
}

func ms(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond)) }

func added(ferry, upstream time.Duration) string {
	return fmt.Sprintf("%+.3f ms", float64(ferry-upstream)/float64(time.Millisecond))
}

func verdict(ok bool) string {
	if ok {
		return "pass"
	}
	return "**FAIL**"
}

// markdown is the report as a section of BENCHMARKS.md.
func (r *report) markdown() string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	p("%s\n\n", heading)
	p("What Ferry adds on top of its upstream. The same streamed answer (%d text deltas) is read straight from the fake upstream "+
		"(`llm/llmtest`, protocol-faithful, in the benchmark process) and through Ferry (a child process built from `./cmd/ferry`: "+
		"SQLite in a fresh data directory, an API key as the Bearer credential, `FERRY_LOG_LEVEL=warn`), by the same client, in the same run; "+
		"rounds alternate which side goes first. *First byte* is the first byte of the response body, *last byte* the end of it, "+
		"both timed from just before the request is sent. *Added* is Ferry's percentile minus the upstream's. "+
		"Every answer is checked to end with its final event, and every %s (and every warm-up one) is decoded and compared with the scripted text. "+
		"The client, the fake and Ferry share the machine's cores.\n\n", r.deltas, ordinal(r.every))
	p("Command, from the module root:\n\n    %s\n\n", r.command)
	m := r.machine
	p("Machine: %d cores (`nproc` %d, GOMAXPROCS %d), %s, %.1f GiB, Linux %s, %s. Run %s, took %s.\n\n",
		m.cpus, m.cpus, m.procs, m.model, float64(m.memTotal)/(1<<30), m.kernel, m.goVersion,
		r.started.Format("2006-01-02 15:04 MST"), r.duration.Round(time.Second))
	if len(r.skipped) > 0 {
		p("Not measured: %s (this build of Ferry answers 404: the route does not exist yet).\n\n", strings.Join(r.skipped, ", "))
	}

	p("### Targets\n\n| Target | Endpoint | Measured | Result |\n|---|---|---:|---|\n")
	for _, l := range r.latency {
		if l.conc != 1 {
			continue
		}
		a := l.ferry.first.p50 - l.upstream.first.p50
		p("| Median added latency at concurrency 1 < 0.2 ms: first byte | %s | %s | %s |\n", l.route, added(l.ferry.first.p50, l.upstream.first.p50), verdict(a < targetAdded))
		a = l.ferry.last.p50 - l.upstream.last.p50
		p("| Median added latency at concurrency 1 < 0.2 ms: last byte | %s | %s | %s |\n", l.route, added(l.ferry.last.p50, l.upstream.last.p50), verdict(a < targetAdded))
	}
	for _, mr := range r.memory {
		if mr.streams < targetStreams {
			p("| 5,000 open streams < 200 MB | %s | %d streams only: %.1f MB | not measured at 5,000 |\n", mr.route, mr.streams, mb(mr.open.rss))
			continue
		}
		ok := mr.opened >= targetStreams && mr.open.rss < targetRSS
		p("| 5,000 open streams < 200 MB | %s | %.1f MB with %d open | %s |\n", mr.route, mb(mr.open.rss), mr.opened, verdict(ok))
	}

	p("\n### Latency\n\nUpstream is the fake's own endpoint named in brackets; n counts the measured requests per side (after %s).\n\n", "a warm-up")
	p("| Endpoint | Conc. | Side | n | Req/s | First byte p50 | First byte p99 | Last byte p50 | Last byte p99 |\n")
	p("|---|---:|---|---:|---:|---:|---:|---:|---:|\n")
	for _, l := range r.latency {
		u, f := l.upstream, l.ferry
		p("| %s (vs %s) | %d | upstream | %d | %.0f | %s | %s | %s | %s |\n", l.route, l.upstreamPath, l.conc, u.n, u.rps,
			ms(u.first.p50), ms(u.first.p99), ms(u.last.p50), ms(u.last.p99))
		p("| | | Ferry | %d | %.0f | %s | %s | %s | %s |\n", f.n, f.rps, ms(f.first.p50), ms(f.first.p99), ms(f.last.p50), ms(f.last.p99))
		p("| | | **added** | | %+.0f%% | **%s** | %s | **%s** | %s |\n", (f.rps/u.rps-1)*100,
			added(f.first.p50, u.first.p50), added(f.first.p99, u.first.p99), added(f.last.p50, u.last.p50), added(f.last.p99, u.last.p99))
	}

	if len(r.memory) > 0 {
		p("\n### Memory with %d streams open at once\n\n", r.streams)
		p("Ferry's resident memory (VmRSS, VmHWM from /proc) in a fresh process per endpoint, warmed up with 200 requests; the fake " +
			"pauses before each delta, so the streams stay open and keep receiving deltas while the memory is read. " +
			"Then every client leaves: Ferry must end each upstream request and keep serving.\n\n")
		p("| Endpoint | Opened | Ramp | RSS idle | RSS open | Per stream | Peak (HWM) | RSS after | Upstream ended by Ferry | Healthy after |\n")
		p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
		for _, mr := range r.memory {
			per := 0.0
			if mr.opened > 0 {
				per = float64(mr.open.rss-mr.idle.rss) / float64(mr.opened) / 1024
			}
			healthy := "yes"
			if mr.healthy != nil {
				healthy = "no: " + mr.healthy.Error()
			}
			ended := fmt.Sprintf("%d of %d", mr.cancelled, mr.cancelled+mr.unended)
			p("| %s | %d of %d | %.1f s | %.1f MB | %.1f MB | %.1f KB | %.1f MB | %.1f MB | %s | %s |\n", mr.route, mr.opened, mr.streams,
				mr.ramp.Seconds(), mb(mr.idle.rss), mb(mr.open.rss), per, mb(mr.open.hwm), mb(mr.after.rss), ended, healthy)
		}
	}
	p("\n")
	return b.String()
}

// writeSection puts md, which starts with heading, into the file at path:
// in place of an earlier version of the section, else at the end. Other
// sections are kept as they are.
func writeSection(path, md string) error {
	old, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return os.WriteFile(path, []byte("# Benchmarks\n\n"+md), 0o644)
	}
	if err != nil {
		return err
	}
	lines := strings.SplitAfter(string(old), "\n")
	start := -1
	for i, l := range lines {
		if strings.TrimRight(l, "\r\n") == heading {
			start = i
			break
		}
	}
	if start < 0 {
		s := strings.TrimRight(string(old), "\n") + "\n\n" + md
		return os.WriteFile(path, []byte(s), 0o644)
	}
	end := len(lines)
	for i := start + 1; i < len(lines); i++ {
		if strings.HasPrefix(lines[i], "## ") {
			end = i
			break
		}
	}
	s := strings.Join(lines[:start], "") + md + strings.Join(lines[end:], "")
	return os.WriteFile(path, []byte(s), 0o644)
}

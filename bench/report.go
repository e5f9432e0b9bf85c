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

// headings are the sections of BENCHMARKS.md this command writes, by the
// issue whose targets they report; writeSection replaces only the one a
// run writes. Issue 3's is kept as the record of that work.
var headings = map[int]string{
	3: "## Streaming overhead (issue 3)",
	6: "## One funnel, lean stream (issue 6)",
}

// report is everything one run measured.
type report struct {
	issue    int // whose targets, and which section: a key of headings
	command  string
	machine  machine
	started  time.Time
	duration time.Duration
	deltas   int
	streams  int
	every    int // every k-th measured answer was decoded and compared
	warmup   int
	floor    bool // a bare proxy was measured too
	// cores is where the servers and the client ran (nil: sharing every
	// core; see cores.describe).
	cores    *cores
	memDelay time.Duration
	latency  []latencyResult
	memory   []memResult
	skipped  []string // routes this build of Ferry does not serve
	// loadStart and loadEnd are /proc/loadavg's 1, 5 and 15 minute figures
	// when the run started and ended.
	loadStart, loadEnd string
	// before is an earlier run's figures (-before), to compare with.
	before *earlier
	// priorLabel names the -before-ferry build measured in this run, if
	// one was.
	priorLabel string
	// priorSkipped are the routes the -before-ferry build was not
	// measured on, and why.
	priorSkipped []string
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

// plural is "1 delta", "100 deltas" and the like.
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
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

// markdown is the report as a section of BENCHMARKS.md: the issue's
// introduction and targets, then the tables every issue shares.
func (r *report) markdown() string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	p("%s\n\n", headings[r.issue])
	switch r.issue {
	case 3:
		r.intro3(p)
		r.targets3(p)
	default:
		r.intro6(p)
		r.targets6(p)
		r.beforeAfter(p)
	}
	r.latencyTable(p)
	r.memoryTable(p)
	p("\nTo see where the time and memory go: `go run ./bench -profile DIR` also saves Ferry's CPU profile per endpoint " +
		"(concurrency 1, an extra run after the measured ones) and heap and goroutine profiles with the streams open, " +
		"from a Ferry built with a pprof listener overlaid (`go build -overlay`; the tree is untouched); " +
		"`go test ./bench -run '^$' -bench . -benchtime 2000x` times the pieces of a chat request one by one " +
		"(API-key check, the chat funnel's turn, the provider clients against plain HTTP), and `-bench BenchmarkStream` whole streamed requests " +
		"through Ferry's handler in process, with the allocations each one makes.\n\n")
	return b.String()
}

// printf is how the section's parts write.
type printf func(format string, a ...any)

// method describes how the figures are taken, for every issue's section.
func (r *report) method(p printf) {
	p("The same streamed answer (%s) is read straight from the fake upstream "+
		"(`llm/llmtest`, protocol-faithful, in the benchmark process) and through Ferry (a child process built from `./cmd/ferry`: "+
		"SQLite in a fresh data directory, an API key as the Bearer credential, `FERRY_LOG_LEVEL=warn`), by the same client, in the same run; "+
		"rounds alternate which side goes first. *First byte* is the first byte of the response body, *last byte* the end of it, "+
		"both timed from just before the request is sent. *Added* is Ferry's percentile minus the upstream's. "+
		"Every answer is checked to end with its final event, and every %s (and every warm-up one) is decoded and compared with the scripted text.\n\n",
		plural(r.deltas, "text delta"), ordinal(r.every))
	if r.floor {
		p("*Bare proxy* is the same figure for a standard-library reverse proxy (`httputil.ReverseProxy`, flushing every read) " +
			"in its own process between the same client and fake: what one more HTTP hop costs on this machine, before any work.\n\n")
	}
	if r.cores != nil {
		p("Placement: %s. So the servers do not contend with the client and the fake for a core, as they would not where Ferry is deployed: "+
			"its clients and its model run elsewhere. The fake sends its deltas back to back, as fast as it can write them, so at concurrency 64 "+
			"both halves of the machine are busy, and a first byte waits behind the deltas of the other streams on both. "+
			"The rows with a one-delta answer have no such burst: they show Ferry's fixed cost per request.\n\n", r.cores.describe())
	} else {
		p("Placement: %s (`-pin=false`), and the fake sends its deltas back to back, as fast as it can write them. "+
			"So at concurrency 64 every side is bounded by the machine, not by the server alone; and Ferry's first byte also waits for the CPU that Ferry "+
			"and the fake spend on the deltas behind it. The rows with a one-delta answer have no such burst: they show Ferry's fixed cost per request.\n\n", r.cores.describe())
	}
}

// machineLine says where and when the run was.
func (r *report) machineLine(p printf) {
	m := r.machine
	p("Machine: %d cores (`nproc` %d, GOMAXPROCS %d), %s, %.1f GiB, Linux %s, %s. Run %s, took %s.",
		m.cpus, m.cpus, m.procs, m.model, float64(m.memTotal)/(1<<30), m.kernel, m.goVersion,
		r.started.Format("2006-01-02 15:04 MST"), r.duration.Round(time.Second))
	if r.loadStart != "" {
		p(" Load average (1, 5, 15 min) %s at the start, %s at the end.", r.loadStart, r.loadEnd)
	}
	p("\n\n")
	if len(r.skipped) > 0 {
		p("Not measured: %s (this build of Ferry answers 404: the route does not exist yet).\n\n", strings.Join(r.skipped, ", "))
	}
}

// intro3 is issue 3's introduction.
func (r *report) intro3(p printf) {
	p("What Ferry adds on top of its upstream. ")
	r.method(p)
	p("Command, from the module root:\n\n    %s\n\n", r.command)
	r.machineLine(p)
}

// targets3 is issue 3's targets: under 0.2 ms added at concurrency 1, and
// 5,000 streams in under 200 MB.
func (r *report) targets3(p printf) {
	p("### Targets\n\n")
	p("| Target | Endpoint | Measured | Bare proxy (floor) | Result |\n|---|---|---:|---:|---|\n")
	floor := func(pick func(stats) time.Duration, l latencyResult) string {
		if l.proxy == nil {
			return "–"
		}
		return added(pick(*l.proxy), pick(l.upstream))
	}
	for _, l := range r.latency {
		if l.conc != 1 {
			continue
		}
		first := func(s stats) time.Duration { return s.first.p50 }
		last := func(s stats) time.Duration { return s.last.p50 }
		for _, c := range []struct {
			what string
			pick func(stats) time.Duration
		}{{"first byte", first}, {"last byte", last}} {
			a := c.pick(l.ferry) - c.pick(l.upstream)
			p("| Median added latency at concurrency 1 < 0.2 ms: %s, %s | %s | %s | %s | %s |\n", c.what, l.answer(), l.route,
				added(c.pick(l.ferry), c.pick(l.upstream)), floor(c.pick, l), verdict(a < 200*time.Microsecond))
		}
	}
	for _, mr := range r.memory {
		if mr.floor || mr.prior {
			continue
		}
		floorRSS := "–"
		if px, ok := r.proxyMemory(mr.route); ok {
			floorRSS = fmt.Sprintf("%.1f MB", mb(px.open.rss))
		}
		if mr.streams < targetStreams {
			p("| 5,000 open streams < 200 MB | %s | %d streams only: %.1f MB | %s | not measured at 5,000 |\n", mr.route, mr.streams, mb(mr.open.rss), floorRSS)
			continue
		}
		ok := mr.opened >= targetStreams && mr.open.rss < targetRSS
		p("| 5,000 open streams < 200 MB | %s | %.1f MB with %d open | %s | %s |\n", mr.route, mb(mr.open.rss), mr.opened, floorRSS, verdict(ok))
	}
	p("\n")
}

// proxyMemory is the bare proxy's memory reading for route's upstream.
func (r *report) proxyMemory(route string) (memResult, bool) {
	for _, mr := range r.memory {
		if mr.floor && mr.route == route {
			return mr, true
		}
	}
	return memResult{}, false
}

// latencyTable is every level measured, every side.
func (r *report) latencyTable(p printf) {
	p("### Latency\n\nUpstream is the fake's own endpoint named in brackets; n counts the measured requests per side, after a warm-up of %d each. "+
		"*CPU per request* is the server's user and system time (all threads, from /proc/<pid>/stat, 10 ms ticks) while its side ran, divided by its requests. "+
		"*Other load* is the share of the machine's CPU (all cores, from /proc/stat) that processes outside the benchmark used while the level ran: "+
		"what disturbed it.\n\n", r.warmup)
	p("| Endpoint | Conc. | Side | n | Req/s | First byte p50 | First byte p99 | Last byte p50 | Last byte p99 | CPU per request | Other load |\n")
	p("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, l := range r.latency {
		u, f := l.upstream, l.ferry
		other := "–"
		if l.otherLoad >= 0 {
			other = fmt.Sprintf("%.0f%%", l.otherLoad*100)
		}
		p("| %s (vs %s), %s | %d | upstream | %d | %.0f | %s | %s | %s | %s | | %s |\n", l.route, l.upstreamPath, l.answer(), l.conc, u.n, u.rps,
			ms(u.first.p50), ms(u.first.p99), ms(u.last.p50), ms(u.last.p99), other)
		if x := l.proxy; x != nil {
			p("| | | bare proxy | %d | %.0f | %s | %s | %s | %s | %s | |\n", x.n, x.rps, ms(x.first.p50), ms(x.first.p99), ms(x.last.p50), ms(x.last.p99), ms(l.proxyCPU))
		}
		if x := l.prior; x != nil {
			p("| | | Ferry %s | %d | %.0f | %s | %s | %s | %s | %s | |\n", r.priorLabel, x.n, x.rps, ms(x.first.p50), ms(x.first.p99), ms(x.last.p50), ms(x.last.p99), ms(l.priorCPU))
		}
		p("| | | Ferry | %d | %.0f | %s | %s | %s | %s | %s | |\n", f.n, f.rps, ms(f.first.p50), ms(f.first.p99), ms(f.last.p50), ms(f.last.p99), ms(l.ferryCPU))
		p("| | | **added by Ferry** | | %+.0f%% | **%s** | %s | **%s** | %s | | |\n", (f.rps/u.rps-1)*100,
			added(f.first.p50, u.first.p50), added(f.first.p99, u.first.p99), added(f.last.p50, u.last.p50), added(f.last.p99, u.last.p99))
		if x := l.proxy; x != nil {
			p("| | | added by a bare proxy | | %+.0f%% | %s | %s | %s | %s | | |\n", (x.rps/u.rps-1)*100,
				added(x.first.p50, u.first.p50), added(x.first.p99, u.first.p99), added(x.last.p50, u.last.p50), added(x.last.p99, u.last.p99))
		}
	}
}

// memoryTable is every memory reading, and with -profile the runtime's
// account of it.
func (r *report) memoryTable(p printf) {
	if len(r.memory) > 0 {
		p("\n### Memory with %d streams open at once\n\n", r.streams)
		p("Resident memory (VmRSS, VmHWM from /proc) of a fresh Ferry per endpoint (and of a fresh bare proxy in front of that endpoint's upstream stream), "+
			"warmed up with %d requests; the fake pauses %v before each delta, so the streams stay open and keep receiving deltas while the memory is read. "+
			"Live heap, heap goal and stacks in use are from Ferry's last garbage collection before the reading (`GODEBUG=gctrace=1`, set for these runs only); "+
			"the stacks allocated are larger (see `-profile`). "+
			"Then every client leaves: the server must end each upstream request and keep serving. "+
			"Ferry's idle figure still holds pages of the Argon2id hashing done at start (the admin at start and the login, 19 MiB each) that Go has not yet returned to the kernel, "+
			"so *per stream* ((open − idle) / opened) is a slight underestimate; the peak (HWM) includes that hashing too. "+
			"Resident memory counts only pages a process has written: the bare proxy's largest object per stream, the 32 KB copy buffer of an "+
			"`httputil.ReverseProxy` without a `BufferPool`, is mostly never touched, while Ferry's heap is small objects in pages it has written, "+
			"and grows towards its goal (twice the live heap at the default GOGC) with the garbage of the requests that opened the streams.\n\n", r.warmup, r.memDelay)
		p("| Server | Opened | Ramp | RSS idle | RSS open | Per stream | Live heap | Heap goal | Stacks in use | Peak (HWM) | RSS after | Upstream requests ended | Healthy after |\n")
		p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
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
			gc := func(v int) string {
				if !mr.gc.ok {
					return "–"
				}
				return fmt.Sprintf("%d MB", v)
			}
			p("| %s | %d of %d | %.1f s | %.1f MB | %.1f MB | %.1f KB | %s | %s | %s | %.1f MB | %.1f MB | %s | %s |\n", r.serverName(mr), mr.opened, mr.streams,
				mr.ramp.Seconds(), mb(mr.idle.rss), mb(mr.open.rss), per, gc(mr.gc.live), gc(mr.gc.goal), gc(mr.gc.stacks),
				mb(mr.open.hwm), mb(mr.after.rss), ended, healthy)
		}
	}
	var profiled []memResult
	for _, mr := range r.memory {
		if mr.runtime.ok {
			profiled = append(profiled, mr)
		}
	}
	if len(profiled) > 0 {
		p("\n### Where the memory goes (`-profile`)\n\n")
		p("The Go runtime's own account (runtime/metrics) with the streams open, per open stream: before a forced collection, " +
			"and (heap objects) after it, which is what the streams hold live. Heap profiles are in the -profile directory.\n\n")
		p("| Server | Goroutines per stream | Heap objects | Live heap objects | Heap unused and free | Stacks | Runtime metadata |\n")
		p("|---|---:|---:|---:|---:|---:|---:|\n")
		for _, mr := range profiled {
			rm, n := mr.runtime, float64(max(mr.opened, 1))
			kb := func(v int64) string { return fmt.Sprintf("%.1f KB", float64(v)/n/1024) }
			p("| %s | %.2f | %s | %s | %s | %s | %s |\n", r.serverName(mr), float64(rm.goroutines)/n, kb(rm.heapObjects),
				kb(mr.collected.heapObjects), kb(rm.heapUnused+rm.heapFree), kb(rm.stacks+rm.osStacks), kb(rm.metadata))
		}
	}
}

// server names the process a memory reading is of, as its table row does.
func (mr memResult) server() string {
	if !mr.floor {
		return mr.route
	}
	path := mr.route
	if ep, ok := endpointFor(mr.route); ok {
		path = ep.upstreamPath
	}
	return "bare proxy (" + path + ")"
}

// serverName names the server of a memory reading in the tables: the
// -before-ferry build's readings carry its label.
func (r *report) serverName(mr memResult) string {
	if mr.prior {
		return mr.server() + ", " + r.priorLabel
	}
	return mr.server()
}

// loadAverage is /proc/loadavg's first three fields.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], ", ")
}

// writeSection puts md, which starts with heading, into the file at path:
// in place of an earlier version of the section, else at the end. Other
// sections are kept as they are.
func writeSection(path, heading, md string) error {
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
	rest := strings.Join(lines[end:], "")
	if rest != "" {
		md = strings.TrimRight(md, "\n") + "\n\n"
	}
	s := strings.Join(lines[:start], "") + md + rest
	return os.WriteFile(path, []byte(s), 0o644)
}

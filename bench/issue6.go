package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Targets set by the issues. Issue 3: 5,000 streams open in under 200 MB
// (kept by issue 6 as its stretch goal). Issue 6 compares Ferry with the
// bare proxy instead of with nothing, since one more HTTP hop has a cost of
// its own that no server can avoid.
const (
	targetStreams = 5000      // streams open at once…
	targetRSS     = 200 << 20 // …in under this much resident memory
	// targetRSSRatio bounds Ferry's resident memory with targetStreams
	// open, as a multiple of the bare proxy's.
	targetRSSRatio = 1.25
	// targetFirstP99 bounds Ferry's first-byte p99 at concurrency 64 over
	// the bare proxy's.
	targetFirstP99 = 2 * time.Millisecond
	targetFirstAt  = 64
)

// lastByteTargets bound, per endpoint, how much later Ferry's median last
// byte comes at concurrency 1 than the bare proxy's; an endpoint without a
// bound is reported only.
var lastByteTargets = []struct {
	route string
	over  time.Duration // 0: no target
}{
	{"/ollama/generate", 100 * time.Microsecond},
	{"/ai/chat/stream", 500 * time.Microsecond},
	{"/v1/chat/completions", 0},
	{"/v1/messages", 0},
}

// firstByteTargeted are the endpoints the concurrency-64 first-byte target
// applies to; the others are reported.
var firstByteTargeted = map[string]bool{"/ollama/generate": true, "/ai/chat/stream": true}

// pace is the pause of the run's paced level, or 0 when it has none.
func (r *report) pace() time.Duration {
	for _, l := range r.latency {
		if l.pause > 0 {
			return l.pause
		}
	}
	return 0
}

// level returns this run's figures for route at conc with the run's
// answer length: its deltas back to back when pause is 0, else pause apart,
// the streams' starts spread or (herd) together.
func (r *report) level(route string, conc int, pause time.Duration, herd bool) (latencyResult, bool) {
	return findLevel(r.latency, levelKey{route: route, conc: conc, deltas: r.deltas, pause: pause, herd: herd})
}

// ferryMemory is Ferry's memory reading on route.
func (r *report) ferryMemory(route string) (memResult, bool) {
	for _, mr := range r.memory {
		if !mr.floor && !mr.prior && mr.route == route {
			return mr, true
		}
	}
	return memResult{}, false
}

// sameRun is the -before-ferry build's figures from this run, in the shape
// of an earlier run's, against this run's upstream and bare proxy; nil
// when no such build was measured.
func (r *report) sameRun() *earlier {
	if r.priorLabel == "" {
		return nil
	}
	e := &earlier{label: r.priorLabel, run: "this run, in the same rounds"}
	for _, l := range r.latency {
		if l.prior == nil {
			continue
		}
		x := l
		x.ferry, x.ferryCPU, x.prior = *l.prior, l.priorCPU, nil
		e.latency = append(e.latency, x)
	}
	for _, mr := range r.memory {
		switch {
		case mr.prior:
			mr.prior = false
			e.memory = append(e.memory, mr)
		case mr.floor:
			e.memory = append(e.memory, mr)
		}
	}
	return e
}

// compared is what the targets' Before column shows: an earlier run read
// with -before, else the -before-ferry build of this run.
func (r *report) compared() *earlier {
	if r.before != nil {
		return r.before
	}
	return r.sameRun()
}

// over is a signed difference in milliseconds: "+0.336 ms".
func over(a, b time.Duration) string { return added(a, b) }

// intro6 is issue 6's introduction.
func (r *report) intro6(p printf) {
	p("What Ferry costs per stream since every model call goes through one funnel (`chat.Service.Start`, then `Call.Stream` or `Call.Relay`), " +
		"every stream through one writer with a dialect per wire format, writes leave the latency path (the store's group-commit writer) " +
		"and `/ollama/*` passes through the funnel too. Each figure is set against a bare proxy measured in the same run: one more HTTP hop " +
		"costs something no server can avoid, so the targets bound what Ferry adds beyond it.\n\n")
	p("Targets: at concurrency 1 with %s, the median time to the last byte through `/ollama/generate` is at most 0.1 ms more than through the bare proxy, "+
		"and through `/ai/chat/stream` at most 0.5 ms more (what Ferry adds minus what a bare proxy adds; the upstream's own time cancels out). "+
		"With %s streams open, Ferry's resident memory is at most %.2f× the bare proxy's (stretch: under 200 MB). "+
		"At concurrency %d, the first byte's p99 is within %s of the bare proxy's. `/v1/chat/completions` and `/v1/messages` are reported beside them, without targets of their own; "+
		"CPU per streamed request is reported before and after.\n\n",
		plural(r.deltas, "delta"), thousands(targetStreams), targetRSSRatio, targetFirstAt, strings.TrimSuffix(ms(targetFirstP99), ".000 ms")+" ms")
	r.method(p)
	if pause := r.pace(); pause > 0 {
		p("The first-byte target is judged on a level of its own: concurrency %d with the fake pausing %v before each delta (`-pace`), "+
			"as a model streams its tokens (faster than any hosted model does), so a first byte waits behind %d other live streams. "+
			"The fake's opening events (Anthropic's `message_start`, OpenAI's role chunk) go out with its first delta, after the first pause: "+
			"otherwise the bare proxy, passing them on, would get a first byte a pause before Ferry's `/ai/chat/stream`, whose stream opens with the first text. "+
			"The %[1]d workers' starts are spread across one answer's duration and each one's first request is not measured, "+
			"so the level holds %[1]d streams open in a steady state, started as independent users' are. "+
			"A round that started them together would keep them together, since each stream keeps the phase its request arrived with and the next request follows its end: "+
			"it would measure %[1]d requests arriving in the same millisecond, over and over, whose p99 is the time to admit the others first. "+
			"That herd is measured apart and reported (\"%[1]d at once\": each worker sends one request a round, all together). "+
			"With the deltas back to back, both halves of the machine run flat out and the p99 is mostly the client's own queueing, "+
			"which moves by more than the target between runs of one build. That level is still reported, and its CPU per request and req/s are the throughput figures.\n\n",
			targetFirstAt, pause, targetFirstAt-1)
	}
	p("Command, from the module root:\n\n    %s\n\n", r.command)
	if e := r.before; e != nil {
		p("*Before (%s)* is this command's own run at that commit (its bench is the same code), in a worktree: "+
			"`git worktree add /tmp/ferry-before %s && cd /tmp/ferry-before && go run ./bench`, run %s; its figures are read back from the section it wrote "+
			"(`-before %s -before-label %s`). It ran at another time, under whatever else the machine was doing then, "+
			"so its figures are set against its own bare proxy, as this run's are against this run's.\n\n",
			e.label, e.label, e.run, e.source, e.label)
	}
	if r.priorLabel != "" {
		p("*%s* beside this tree is that commit's Ferry, built in its worktree (`cd /tmp/ferry-before && go build -o BIN ./cmd/ferry`) and measured by this run "+
			"(`-before-ferry BIN -before-label %s`) as one more side of every level and with a memory run of its own.", r.priorLabel, r.priorLabel)
		if len(r.priorSkipped) > 0 {
			p(" Not on %s: its first request failed against this tree's fake upstream.", strings.Join(r.priorSkipped, "; "))
		}
		p("\n\n")
	}
	r.machineLine(p)
	var sum, steal float64
	n := 0
	for _, l := range r.latency {
		if l.otherLoad >= 0 {
			sum += l.otherLoad
			steal += l.steal
			n++
		}
	}
	if n > 0 {
		p("Noise: the machine's %d cores are shared with other work (builds and tests), which took %.0f%% of them on average while the latency levels ran "+
			"(*Other load* in the latency table, per level), and the host took %.0f%% of them as steal (time the machine's cores were ready to run but the host ran other machines on them; /proc/stat). "+
			"The bare proxy and Ferry take turns within each level, so that load falls on both; "+
			"single figures still move by about ±30%% between runs, p99s more.\n\n", r.machine.cpus, sum/float64(n)*100, steal/float64(n)*100)
	}
}

// targets6 is issue 6's target table.
func (r *report) targets6(p printf) {
	type row struct{ target, route, measured, floor, versus, goal, result, before string }
	var rows []row
	before := r.compared()
	beforeLevel := func(route string, conc int) (latencyResult, bool) {
		return before.level(levelKey{route: route, conc: conc, deltas: r.deltas})
	}

	for _, t := range lastByteTargets {
		x := row{target: fmt.Sprintf("Median last byte, concurrency 1, %s: added by Ferry minus added by a bare proxy", plural(r.deltas, "delta")),
			route: t.route, goal: "reported", result: "–", before: "–"}
		l, ok := r.level(t.route, 1, 0, false)
		if !ok || l.proxy == nil {
			x.measured, x.floor, x.versus, x.result = "not measured", "–", "–", "–"
			rows = append(rows, x)
			continue
		}
		x.measured, x.floor = added(l.ferry.last.p50, l.upstream.last.p50), added(l.proxy.last.p50, l.upstream.last.p50)
		x.versus = over(l.ferry.last.p50, l.proxy.last.p50)
		if t.over > 0 {
			x.goal = "≤ " + over(t.over, 0)
			x.result = verdict6(l.ferry.last.p50-l.proxy.last.p50 <= t.over)
		}
		if b, ok := beforeLevel(t.route, 1); ok && b.proxy != nil {
			x.before = fmt.Sprintf("%s (%s vs %s)", over(b.ferry.last.p50, b.proxy.last.p50),
				added(b.ferry.last.p50, b.upstream.last.p50), added(b.proxy.last.p50, b.upstream.last.p50))
		}
		rows = append(rows, x)
	}

	// The target is judged on the paced level with spread starts where
	// there is one: with the deltas back to back, both halves of the
	// machine are saturated and the p99 is mostly the client's own
	// queueing; a herd's p99 is the time to admit the rest of the herd
	// first (see intro6 and compare). Both are reported.
	for _, t := range lastByteTargets {
		var levels []latencyResult // the judged one first
		if pace := r.pace(); pace > 0 {
			for _, herd := range []bool{false, true} {
				if l, ok := r.level(t.route, targetFirstAt, pace, herd); ok && l.proxy != nil {
					levels = append(levels, l)
				}
			}
		}
		hasPaced := len(levels) > 0
		if l, ok := r.level(t.route, targetFirstAt, 0, false); ok && l.proxy != nil {
			levels = append(levels, l)
		}
		for i, l := range levels {
			what := l.answer()
			if l.pause == 0 && hasPaced {
				what += " back to back"
			}
			x := row{target: fmt.Sprintf("First byte p99, concurrency %d, %s: Ferry's minus the bare proxy's", targetFirstAt, what),
				route: t.route, measured: ms(l.ferry.first.p99), floor: ms(l.proxy.first.p99), versus: over(l.ferry.first.p99, l.proxy.first.p99),
				goal: "reported", result: "–", before: "–"}
			if firstByteTargeted[t.route] && i == 0 && !l.herd {
				x.goal = "≤ " + over(targetFirstP99, 0)
				x.result = verdict6(l.ferry.first.p99-l.proxy.first.p99 <= targetFirstP99)
			}
			if b, ok := before.level(l.key()); ok && b.proxy != nil {
				x.before = fmt.Sprintf("%s (%s vs %s)", over(b.ferry.first.p99, b.proxy.first.p99), ms(b.ferry.first.p99), ms(b.proxy.first.p99))
			}
			rows = append(rows, x)
		}
	}

	for _, t := range lastByteTargets {
		f, ok := r.ferryMemory(t.route)
		if !ok {
			continue
		}
		px, hasFloor := r.proxyMemory(t.route)
		full := f.streams >= targetStreams && f.opened >= targetStreams
		what := thousands(targetStreams) + " streams open: resident memory"
		if f.streams < targetStreams {
			what = fmt.Sprintf("%s streams open (not the %s of the target): resident memory", thousands(f.streams), thousands(targetStreams))
		}
		ratio := row{target: what + ", Ferry's over the bare proxy's", route: t.route, measured: fmt.Sprintf("%.1f MB", mb(f.open.rss)),
			floor: "–", versus: "–", goal: fmt.Sprintf("≤ %.2f×", targetRSSRatio), result: "–", before: "–"}
		if hasFloor {
			q := float64(f.open.rss) / float64(px.open.rss)
			ratio.floor, ratio.versus = fmt.Sprintf("%.1f MB", mb(px.open.rss)), fmt.Sprintf("%.2f×", q)
			if full {
				ratio.result = verdict6(q <= targetRSSRatio)
			}
		}
		if bf, ok := before.mem(t.route, false); ok {
			if bp, ok := before.mem(t.route, true); ok {
				ratio.before = fmt.Sprintf("%.2f× (%.1f MB vs %.1f MB)", float64(bf.open.rss)/float64(bp.open.rss), mb(bf.open.rss), mb(bp.open.rss))
			}
		}
		stretch := row{target: what + " (stretch)", route: t.route, measured: ratio.measured, floor: ratio.floor, versus: "–",
			goal: "< 200 MB", result: "–", before: "–"}
		if full {
			stretch.result = verdict6(f.open.rss < targetRSS)
		}
		if bf, ok := before.mem(t.route, false); ok {
			stretch.before = fmt.Sprintf("%.1f MB", mb(bf.open.rss))
		}
		rows = append(rows, ratio, stretch)
	}

	for _, t := range lastByteTargets {
		for _, conc := range []int{1, targetFirstAt} {
			l, ok := r.level(t.route, conc, 0, false)
			if !ok {
				continue
			}
			x := row{target: fmt.Sprintf("CPU per streamed request, concurrency %d, %s", conc, plural(r.deltas, "delta")), route: t.route,
				measured: ms(l.ferryCPU), floor: "–", versus: "–", goal: "reported", result: "–", before: "–"}
			if l.proxy != nil && l.proxyCPU > 0 {
				x.floor, x.versus = ms(l.proxyCPU), fmt.Sprintf("%.1f×", float64(l.ferryCPU)/float64(l.proxyCPU))
			}
			if b, ok := beforeLevel(t.route, conc); ok {
				x.before = ms(b.ferryCPU)
			}
			rows = append(rows, x)
		}
	}

	p("### Targets\n\n")
	p("*Measured* is Ferry's figure and *Bare proxy* the bare proxy's, in this run; for the concurrency-1 rows both are what the hop adds to the upstream's own time. " +
		"*Ferry vs bare proxy* is what the target bounds.")
	if before != nil {
		p(" *Before* is the same comparison for %s (%s), with its two figures in brackets; CPU rows give Ferry's own.", before.label, before.run)
	}
	p("\n\n")
	header := "| Target | Endpoint | Measured | Bare proxy | Ferry vs bare proxy | Target | Result |"
	rule := "|---|---|---:|---:|---:|---|---|"
	if before != nil {
		header += fmt.Sprintf(" Before (%s) |", before.label)
		rule += "---:|"
	}
	p("%s\n%s\n", header, rule)
	for _, x := range rows {
		p("| %s | %s | %s | %s | %s | %s | %s |", x.target, x.route, x.measured, x.floor, x.versus, x.goal, x.result)
		if before != nil {
			p(" %s |", x.before)
		}
		p("\n")
	}
	p("\n")
}

// thousands writes n with a comma between thousands: "5,000".
func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0 && s[i-1] != '-'; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// verdict6 is PASS or FAIL, as issue 6's table says it.
func verdict6(ok bool) string {
	if ok {
		return "PASS"
	}
	return "**FAIL**"
}

// beforeAfter sets every level and memory reading of this run beside the
// earlier run's that -before gave, and beside the -before-ferry build's of
// this run.
func (r *report) beforeAfter(p printf) {
	if e := r.before; e != nil {
		p("### Before (%s) and after\n\n", e.label)
		p("Each run's Ferry against its own bare proxy (*Ferry − proxy*), and Ferry's CPU per streamed request. Before: %s; after: this run.\n\n", e.run)
		r.beside(p, e, true)
	}
	if e := r.sameRun(); e != nil {
		p("### %s and this tree in the same run\n\n", e.label)
		p("Both builds took turns in every round of every level, and had a memory run each, against the same bare proxy, so the machine's load fell on both alike: "+
			"the fairest before-and-after this machine allows. *Before* is the %s build (`-before-ferry`), *after* this tree.\n\n", e.label)
		r.beside(p, e, false)
	}
}

// beside is the tables of beforeAfter for one earlier set of figures;
// floors adds the bare proxies' memory, when e measured its own.
func (r *report) beside(p printf, e *earlier, floors bool) {
	p("| Endpoint | Conc. | Answer | CPU per request, before | CPU per request, after | Last byte p50, Ferry − proxy, before | after | First byte p99, Ferry − proxy, before | after | Req/s, Ferry, before | after |\n")
	p("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	diff := func(l latencyResult, pick func(stats) time.Duration) string {
		if l.proxy == nil {
			return "–"
		}
		return over(pick(l.ferry), pick(*l.proxy))
	}
	last := func(s stats) time.Duration { return s.last.p50 }
	first := func(s stats) time.Duration { return s.first.p99 }
	for _, l := range r.latency {
		b, ok := e.level(l.key())
		if !ok {
			continue
		}
		p("| %s | %d | %s | %s | %s | %s | %s | %s | %s | %.0f | %.0f |\n", l.route, l.conc, l.answer(),
			ms(b.ferryCPU), ms(l.ferryCPU), diff(b, last), diff(l, last), diff(b, first), diff(l, first), b.ferry.rps, l.ferry.rps)
	}
	if len(r.memory) == 0 {
		p("\n")
		return
	}
	p("\n| Server, streams open | RSS open, before | after | Per stream, before | after | Live heap, before | after |\n")
	p("|---|---:|---:|---:|---:|---:|---:|\n")
	heapOf := func(mr memResult) string {
		if !mr.gc.ok {
			return "–"
		}
		return fmt.Sprintf("%d MB", mr.gc.live)
	}
	perStream := func(mr memResult) string {
		if mr.opened == 0 {
			return "–"
		}
		return fmt.Sprintf("%.1f KB", float64(mr.open.rss-mr.idle.rss)/float64(mr.opened)/1024)
	}
	for _, mr := range r.memory {
		if mr.prior || (mr.floor && !floors) {
			continue
		}
		b, ok := e.mem(mr.route, mr.floor)
		if !ok {
			continue
		}
		name := mr.server()
		if b.server() != name {
			name += " (before: " + b.server() + ")"
		}
		p("| %s, %d | %.1f MB | %.1f MB | %s | %s | %s | %s |\n", name, mr.opened, mb(b.open.rss), mb(mr.open.rss),
			perStream(b), perStream(mr), heapOf(b), heapOf(mr))
	}
	p("\n")
}

package main

import (
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// earlier is the figures of an earlier run of this command (-before), read
// back from the section it wrote: the same tables, so the same code's
// figures for another commit.
type earlier struct {
	label  string // what it was a run of, e.g. a commit
	source string // the file it was read from
	run    string // when it ran and how long it took, as its section says
	// latency and memory hold what its tables hold: stats with n, req/s
	// and the p50 and p99 quantiles, Ferry's CPU per request, and the
	// resident memory of each server.
	latency []latencyResult
	memory  []memResult
}

// level returns the earlier run's figures for the level k.
func (e *earlier) level(k levelKey) (latencyResult, bool) {
	if e == nil {
		return latencyResult{}, false
	}
	return findLevel(e.latency, k)
}

// mem returns the earlier run's memory reading of Ferry on route (floor
// false), or of the bare proxy in front of route's upstream (floor true).
// Runs that measured one bare proxy for every endpoint give that one.
func (e *earlier) mem(route string, floor bool) (memResult, bool) {
	if e == nil {
		return memResult{}, false
	}
	var other memResult
	found := false
	for _, mr := range e.memory {
		if mr.floor != floor {
			continue
		}
		if mr.route == route {
			return mr, true
		}
		if !found {
			other, found = mr, true
		}
	}
	return other, floor && found
}

// readEarlier reads the figures of the section that an earlier run wrote
// into the BENCHMARKS.md at path (or printed, with its output saved
// there): the section under heading if there is one, else any section of
// headings.
func readEarlier(path, label, heading string) (*earlier, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var lines []string
	for _, h := range append([]string{heading}, headings[3], headings[6]) {
		if lines = sectionLines(string(b), h); lines != nil {
			break
		}
	}
	if lines == nil {
		return nil, fmt.Errorf("%s: no section written by this command", path)
	}
	e := &earlier{label: label, source: path}
	if err := e.parse(lines); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(e.latency) == 0 {
		return nil, fmt.Errorf("%s: its section has no latency figures", path)
	}
	return e, nil
}

// sectionLines returns the lines of the section under heading, without it.
func sectionLines(doc, heading string) []string {
	var out []string
	in := false
	for l := range strings.Lines(doc) {
		l = strings.TrimRight(l, "\r\n")
		switch {
		case l == heading:
			in, out = true, []string{}
		case in && strings.HasPrefix(l, "## "):
			return out
		case in:
			out = append(out, l)
		}
	}
	return out
}

// runLine matches the sentence that says when a run was.
var runLine = regexp.MustCompile(`Run (\d{4}-\d\d-\d\d \d\d:\d\d [A-Z]+), took ([^.]+)\.`)

// parse reads the latency and memory tables of a section's lines.
func (e *earlier) parse(lines []string) error {
	table := ""
	var cols map[string]int
	var cur *latencyResult
	for _, l := range lines {
		if m := runLine.FindStringSubmatch(l); m != nil && e.run == "" {
			e.run = m[1] + ", took " + m[2]
		}
		if t, ok := strings.CutPrefix(l, "### "); ok {
			table, cols, cur = t, nil, nil
			continue
		}
		if !strings.HasPrefix(l, "|") {
			cols = nil
			continue
		}
		cells := strings.Split(strings.Trim(l, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		if cols == nil { // the header row
			cols = map[string]int{}
			for i, c := range cells {
				cols[c] = i
			}
			continue
		}
		if strings.HasPrefix(cells[0], "---") {
			continue
		}
		cell := func(name string) string {
			if i, ok := cols[name]; ok && i < len(cells) {
				return cells[i]
			}
			return ""
		}
		var err error
		switch {
		case table == "Latency":
			cur, err = e.latencyRow(cell, cur)
		case strings.HasPrefix(table, "Memory"):
			err = e.memoryRow(cell)
		}
		if err != nil {
			return fmt.Errorf("%q: %w", l, err)
		}
	}
	return nil
}

// levelName matches a latency row's endpoint: "/ai/chat/stream (vs
// /v1/messages), 100 deltas", or "…, 100 deltas 2ms apart, starts spread"
// or "…, 64 at once" (answerName). A paced level of a run before the
// starts were spread, "…, 100 deltas 2ms apart", read as a herd: its
// rounds started their workers together.
var levelName = regexp.MustCompile(`^(\S+) \(vs (\S+)\), (\d+) deltas?(?: (\S+) apart(, starts spread|, \d+ at once)?)?$`)

// latencyRow reads one row of a latency table into cur, the level it
// belongs to, or into a new level when the row starts one.
func (e *earlier) latencyRow(cell func(string) string, cur *latencyResult) (*latencyResult, error) {
	if name := cell("Endpoint"); name != "" {
		m := levelName.FindStringSubmatch(name)
		if m == nil {
			return nil, fmt.Errorf("endpoint %q", name)
		}
		conc, err := strconv.Atoi(cell("Conc."))
		if err != nil {
			return nil, fmt.Errorf("concurrency: %w", err)
		}
		deltas, _ := strconv.Atoi(m[3])
		var pause time.Duration
		if m[4] != "" {
			if pause, err = time.ParseDuration(m[4]); err != nil {
				return nil, fmt.Errorf("endpoint %q: %w", name, err)
			}
		}
		herd := pause > 0 && m[5] != ", starts spread"
		e.latency = append(e.latency, latencyResult{route: m[1], upstreamPath: m[2], conc: conc, deltas: deltas, pause: pause, herd: herd, otherLoad: -1})
		cur = &e.latency[len(e.latency)-1]
	}
	if cur == nil {
		return nil, fmt.Errorf("a row before any endpoint")
	}
	var dst *stats
	switch cell("Side") {
	case "upstream":
		dst = &cur.upstream
	case "bare proxy":
		cur.proxy = &stats{}
		dst = cur.proxy
		cur.proxyCPU, _ = parseMillis(cell("CPU per request"))
	case "Ferry":
		dst = &cur.ferry
		cpu := cell("CPU per request")
		if cpu == "" {
			cpu = cell("Ferry CPU per request") // as issue 3's table named it
		}
		cur.ferryCPU, _ = parseMillis(cpu)
	default:
		return cur, nil // the rows of what each side added
	}
	var err error
	dst.n, _ = strconv.Atoi(cell("n"))
	dst.rps, _ = strconv.ParseFloat(cell("Req/s"), 64)
	for _, q := range []struct {
		col string
		d   *time.Duration
	}{{"First byte p50", &dst.first.p50}, {"First byte p99", &dst.first.p99}, {"Last byte p50", &dst.last.p50}, {"Last byte p99", &dst.last.p99}} {
		if *q.d, err = parseMillis(cell(q.col)); err != nil {
			return nil, fmt.Errorf("%s: %w", q.col, err)
		}
	}
	return cur, nil
}

// memoryRow reads one row of a memory table.
func (e *earlier) memoryRow(cell func(string) string) error {
	server := cell("Server")
	if server == "" {
		return nil
	}
	mr := memResult{route: server}
	if path, ok := strings.CutPrefix(server, "bare proxy ("); ok {
		path = strings.TrimSuffix(path, ")")
		mr.floor, mr.route = true, path
		for _, ep := range endpoints {
			if ep.upstreamPath == path {
				mr.route = ep.route
			}
		}
	}
	if _, err := fmt.Sscanf(cell("Opened"), "%d of %d", &mr.opened, &mr.streams); err != nil {
		return fmt.Errorf("opened: %w", err)
	}
	for _, f := range []struct {
		col string
		dst *int64
	}{{"RSS idle", &mr.idle.rss}, {"RSS open", &mr.open.rss}, {"Peak (HWM)", &mr.open.hwm}, {"RSS after", &mr.after.rss}} {
		v, err := parseMB(cell(f.col))
		if err != nil {
			return fmt.Errorf("%s: %w", f.col, err)
		}
		*f.dst = v
	}
	if live, err := strconv.Atoi(strings.TrimSuffix(cell("Live heap"), " MB")); err == nil {
		mr.gc.live, mr.gc.ok = live, true
		mr.gc.goal, _ = strconv.Atoi(strings.TrimSuffix(cell("Heap goal"), " MB"))
		mr.gc.stacks, _ = strconv.Atoi(strings.TrimSuffix(cell("Stacks in use"), " MB"))
	}
	e.memory = append(e.memory, mr)
	return nil
}

// parseMillis reads "0.397 ms".
func parseMillis(s string) (time.Duration, error) {
	v, err := strconv.ParseFloat(strings.TrimSuffix(s, " ms"), 64)
	if err != nil {
		return 0, err
	}
	return time.Duration(v * float64(time.Millisecond)), nil
}

// parseMB reads "457.6 MB" (MiB, as the tables write them).
func parseMB(s string) (int64, error) {
	v, err := strconv.ParseFloat(strings.TrimSuffix(s, " MB"), 64)
	if err != nil {
		return 0, err
	}
	return int64(v * (1 << 20)), nil
}

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferryhq/ferry/llm/llmtest"
)

// TestMain lets the test binary serve as the bare proxy, as the bench
// command does, when startProxy runs it.
func TestMain(m *testing.M) {
	if up := os.Getenv(proxyEnv); up != "" {
		if err := serveProxy(up, os.Getenv(proxyPprofEnv), os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "bench proxy:", err)
			os.Exit(1)
		}
		return
	}
	os.Exit(m.Run())
}

// TestUpstreamTargets runs the client on every endpoint's upstream side: the
// fake's answer must be read whole and decode to the scripted text.
func TestUpstreamTargets(t *testing.T) {
	fake := llmtest.Start(t)
	deltas := llmtest.Deltas(20)
	fake.SetScript(llmtest.Script{Deltas: deltas, Fragment: true})
	cl := newClient(strings.Join(deltas, ""), 2)
	defer cl.close()
	for _, ep := range endpoints {
		t.Run(ep.route, func(t *testing.T) {
			l, err := cl.run(context.Background(), ep.upstream(fake.URL), 2, 6, 1, time.Now().Add(time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			if len(l.samples) != 6 || l.checked != 6 {
				t.Fatalf("%d samples, %d checked; want 6 of each", len(l.samples), l.checked)
			}
			for _, s := range l.samples {
				if s.first <= 0 || s.last < s.first {
					t.Errorf("sample %+v: want 0 < first <= last", s)
				}
			}
		})
	}
}

// TestSpreadStarts checks a spread run: worker k starts k/conc of the
// spread in, and its first request is sent and verified but not measured.
func TestSpreadStarts(t *testing.T) {
	fake := llmtest.Start(t)
	deltas := llmtest.Deltas(5)
	fake.SetScript(llmtest.Script{Deltas: deltas, Delay: time.Millisecond})
	cl := newClient(strings.Join(deltas, ""), 4)
	defer cl.close()
	cl.spread = 200 * time.Millisecond
	ep := endpoints[0]
	start := time.Now()
	l, err := cl.run(context.Background(), ep.upstream(fake.URL), 4, 8, 1, time.Now().Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < cl.spread*3/4 {
		t.Errorf("the run took %v: its last worker should have started %v in", took, cl.spread*3/4)
	}
	if len(l.samples) != 8 || l.sent != 12 || l.checked != 12 {
		t.Errorf("%d samples, %d sent, %d checked; want 8 measured of 12 sent, all checked", len(l.samples), l.sent, l.checked)
	}
	if got := len(fake.Requests()); got != 12 {
		t.Errorf("the fake got %d requests, want 12", got)
	}
}

// TestParsersRejectCutStreams checks that a stream without its final event
// does not pass as complete.
func TestParsersRejectCutStreams(t *testing.T) {
	for name, tc := range map[string]struct {
		text func([]byte) (string, error)
		body string
	}{
		"ferry chat":        {ferryChatText, "data: {\"text\":\"a\"}\n\n"},
		"anthropic":         {anthropicText, "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":\"a\"}}\n\n"},
		"openai":            {openAIText, "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n"},
		"ollama":            {ollamaText, "{\"response\":\"a\",\"done\":false}\n"},
		"ferry error event": {ferryChatText, "data: {\"text\":\"a\"}\n\ndata: {\"error\":{\"code\":\"upstream\"}}\n\ndata: {\"done\":true}\n\n"},
	} {
		if text, err := tc.text([]byte(tc.body)); err == nil {
			t.Errorf("%s: %q passed as complete (%q)", name, tc.body, text)
		}
	}
}

func TestWriteSectionKeepsOtherSections(t *testing.T) {
	path := filepath.Join(t.TempDir(), "BENCHMARKS.md")
	heading := headings[6]
	// Issue 3's section stays as history when issue 6's is written.
	other := "# Benchmarks\n\n## Auth and startup\n\nkept\n\n" + headings[3] + "\n\nhistory\n"
	if err := os.WriteFile(path, []byte(other), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, run := range []string{"first", "second"} {
		if err := writeSection(path, heading, heading+"\n\n"+run+"\n"); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(path, append(must(os.ReadFile(path)), "\n## Later section\n\nalso kept\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeSection(path, heading, heading+"\n\nthird\n"); err != nil {
		t.Fatal(err)
	}
	got := string(must(os.ReadFile(path)))
	want := other + "\n" + heading + "\n\nthird\n\n## Later section\n\nalso kept\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

// TestHarnessSmoke runs the whole harness on a real Ferry for a handful of
// requests and streams. It checks that the outputs are sane, not how fast
// anything is. It builds ./cmd/ferry, so -short skips it.
func TestHarnessSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds ./cmd/ferry")
	}
	ctx := context.Background()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := parseFlags([]string{"-c", "1,2", "-n", "1:4,2:4", "-rounds", "2", "-warmup", "2", "-deltas", "20",
		"-pace", "1ms", "-pace-n", "4", "-streams", "20", "-mem-delay", "200ms", "-out", ""}, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	cfg.settle = 100 * time.Millisecond
	// -pin moves this process onto half the cores; the tests after this
	// one get the whole machine back.
	var all unix.CPUSet
	if err := unix.SchedGetaffinity(0, &all); err != nil {
		t.Fatal(err)
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	defer setThreadsAffinity(all)
	b, err := newBench(ctx, cfg, root, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer b.close()
	// The same build again, as the -before-ferry side.
	cfg.priorBin = b.bin
	rep := &report{command: command(nil), machine: describeMachine(), started: time.Now(), priorLabel: "again"}
	if all.Count() >= 2 && (b.cores == nil || runtime.GOMAXPROCS(0) != b.cores.load.Count()) {
		t.Errorf("-pin on %d CPUs: cores %+v, GOMAXPROCS %d", all.Count(), b.cores, runtime.GOMAXPROCS(0))
	}
	if err := b.measureAll(ctx, rep); err != nil {
		t.Fatal(err)
	}

	// Concurrency 1 and 2, concurrency 1 with one-delta answers, and
	// concurrency 2 paced, with the starts spread and as a herd.
	if len(rep.latency) != 5*(len(endpoints)-len(rep.skipped)) || len(rep.latency) == 0 {
		t.Fatalf("%d latency results for %d endpoints (%v skipped)", len(rep.latency), len(endpoints), rep.skipped)
	}
	paced, herds := 0, 0
	for _, l := range rep.latency {
		if l.herd {
			herds++
		}
		if l.pause > 0 {
			paced++
			// Each stream takes at least its deltas' pauses.
			if l.conc != 2 || l.pause != time.Millisecond || l.ferry.last.p50 < 20*time.Millisecond {
				t.Errorf("%s paced: concurrency %d, %v apart, last byte p50 %v", l.route, l.conc, l.pause, l.ferry.last.p50)
			}
		}
	}
	if paced != 2*(len(endpoints)-len(rep.skipped)) || herds != paced/2 {
		t.Errorf("%d paced levels, %d of them herds; want two per endpoint, one a herd", paced, herds)
	}
	for _, l := range rep.latency {
		for side, s := range map[string]*stats{"upstream": &l.upstream, "ferry": &l.ferry, "bare proxy": l.proxy, "again": l.prior} {
			if s == nil || s.n != 4 || s.checked == 0 || s.rps <= 0 || s.first.p50 <= 0 || s.last.p50 < s.first.p50 || s.last.p99 < s.last.p50 {
				t.Errorf("%s at %d, %s: %+v", l.route, l.conc, side, s)
			}
		}
	}
	if len(rep.memory) != 3*(len(endpoints)-len(rep.skipped)) {
		t.Fatalf("%d memory results", len(rep.memory))
	}
	for _, m := range rep.memory {
		// A client that leaves Ferry's /ai/chat/stream may resume: its answer runs
		// on to its end (issue 11). The others' clients cannot resume, and
		// their upstream calls end with them.
		cancelled := 20
		if m.route == "/ai/chat/stream" && !m.floor {
			cancelled = 0
		}
		if m.opened != 20 || m.upstreamOpen != 20 || m.open.rss <= 0 || m.unended != 0 || m.cancelled != cancelled || m.healthy != nil {
			t.Errorf("%s: %+v", m.route, m)
		}
	}
	rep.issue = 6
	md := rep.markdown()
	for _, want := range append([]string{headings[6], "### Targets", "### Latency", "### Memory", "Ferry vs bare proxy", "### again and this tree in the same run"}, rep.latency[0].route) {
		if !strings.Contains(md, want) {
			t.Errorf("the report has no %q", want)
		}
	}
}

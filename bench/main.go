// Command bench measures what Ferry adds on top of its upstream: the same
// streamed answer (100 deltas by default) is read straight from a
// protocol-faithful fake upstream (llm/llmtest) and through each of Ferry's
// streaming endpoints, in the same run, with the same client code.
//
// It reports, per endpoint, the latency to the first body byte and to the
// end of the body (p50, p99) at concurrency 1 and 64, and requests per
// second, each for the upstream alone and through Ferry; then Ferry's
// resident memory with 5,000 streams open at once. Ferry runs as a child
// process built from ./cmd/ferry, so its memory is its own; the fake
// upstream and the client run in this process. All traffic is on loopback.
//
// Run it from the module root:
//
//	go run ./bench
//
// It prints a Markdown report and writes it into BENCHMARKS.md, under the
// heading "## Streaming overhead (issue 3)" (other sections are kept).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "bench:", err)
		}
		os.Exit(1)
	}
}

// config is what the flags set.
type config struct {
	endpoints   []string // routes to measure; empty means all
	deltas      int
	conc        []int
	n           map[int]int // requests per concurrency, for each of upstream and Ferry
	rounds      int
	warmup      int
	phaseTime   time.Duration
	streams     int
	memDelay    time.Duration
	memAll      bool
	skipMemory  bool
	ferryBin    string
	logLevel    string
	out         string
	timeout     time.Duration
	verifyEvery int
}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := &config{}
	endpoints := fs.String("endpoints", "", "comma-separated routes to measure, as in /ai/chat/stream (default: all that this Ferry build serves)")
	fs.IntVar(&c.deltas, "deltas", 100, "text deltas per streamed answer")
	conc := fs.String("c", "1,64", "concurrency levels")
	n := fs.String("n", "1:2000,64:5000", "requests per concurrency level, for each of upstream and Ferry (level:count,…; a level not listed gets 2000)")
	fs.IntVar(&c.rounds, "rounds", 10, "the requests of a level are split into this many rounds, alternating upstream and Ferry to cancel drift")
	fs.IntVar(&c.warmup, "warmup", 200, "requests to each side before measuring a level (every one verified)")
	fs.DurationVar(&c.phaseTime, "phase-time", 90*time.Second, "longest one endpoint at one concurrency level may run; rounds stop early past it")
	fs.IntVar(&c.streams, "streams", 5000, "streams held open at once for the memory measurement")
	fs.DurationVar(&c.memDelay, "mem-delay", time.Second, "the fake upstream's pause before each delta while streams are held open")
	fs.BoolVar(&c.memAll, "mem-all", false, "measure memory on every endpoint, not only /ai/chat/stream and /v1/chat/completions")
	fs.BoolVar(&c.skipMemory, "skip-memory", false, "skip the memory measurement")
	fs.StringVar(&c.ferryBin, "ferry", "", "a Ferry binary to run (default: go build ./cmd/ferry into a temporary directory)")
	fs.StringVar(&c.logLevel, "log-level", "warn", "Ferry's FERRY_LOG_LEVEL (info adds an access log line per request)")
	fs.StringVar(&c.out, "out", "BENCHMARKS.md", "file (relative to the module root) to write the results into; empty writes none")
	fs.DurationVar(&c.timeout, "timeout", 20*time.Minute, "stop everything after this long")
	fs.IntVar(&c.verifyEvery, "verify-every", 16, "decode and check the full answer of every k-th measured request (every request ends checked for its final event)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *endpoints != "" {
		c.endpoints = strings.Split(*endpoints, ",")
	}
	for _, s := range strings.Split(*conc, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || v < 1 {
			return nil, fmt.Errorf("-c: %q is not a positive number", s)
		}
		c.conc = append(c.conc, v)
	}
	c.n = map[int]int{}
	for _, s := range strings.Split(*n, ",") {
		level, count, ok := strings.Cut(strings.TrimSpace(s), ":")
		l, err1 := strconv.Atoi(level)
		v, err2 := strconv.Atoi(count)
		if !ok || err1 != nil || err2 != nil || l < 1 || v < 1 {
			return nil, fmt.Errorf("-n: %q is not level:count", s)
		}
		c.n[l] = v
	}
	switch {
	case c.deltas < 1:
		return nil, fmt.Errorf("-deltas must be at least 1")
	case c.rounds < 1:
		return nil, fmt.Errorf("-rounds must be at least 1")
	case c.verifyEvery < 1:
		return nil, fmt.Errorf("-verify-every must be at least 1")
	case c.streams < 1:
		return nil, fmt.Errorf("-streams must be at least 1")
	}
	return c, nil
}

func (c *config) requests(conc int) int {
	if v, ok := c.n[conc]; ok {
		return v
	}
	return 2000
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	logf := func(format string, a ...any) { fmt.Fprintf(stderr, format+"\n", a...) }

	root, err := moduleRoot()
	if err != nil {
		return err
	}
	if err := raiseFileLimit(4*cfg.streams + 1024); err != nil {
		logf("warning: %v", err)
	}

	b, err := newBench(ctx, cfg, root, logf)
	if err != nil {
		return err
	}
	defer b.close()

	rep := &report{command: command(args), machine: describeMachine(), started: time.Now().UTC()}
	if err := b.measureAll(ctx, rep); err != nil {
		return err
	}
	md := rep.markdown()
	fmt.Fprint(stdout, md)
	if cfg.out != "" {
		path := cfg.out
		if !strings.HasPrefix(path, "/") {
			path = root + "/" + path
		}
		if err := writeSection(path, md); err != nil {
			return err
		}
		logf("wrote %s", path)
	}
	return nil
}

// command is how this run was started, for the report.
func command(args []string) string {
	parts := []string{"go run ./bench"}
	for _, a := range args {
		if strings.ContainsAny(a, " '\"$") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

// raiseFileLimit lifts RLIMIT_NOFILE to at least want, for this process and
// the Ferry it starts: every held-open stream is a socket at each end.
func raiseFileLimit(want int) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	if lim.Cur >= uint64(want) {
		return nil
	}
	next := lim
	next.Cur = uint64(want)
	if next.Max < next.Cur {
		next.Max = next.Cur
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &next); err == nil {
		return nil
	}
	// Without privilege only the soft limit can move, up to the hard one.
	next = lim
	next.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &next); err != nil {
		return fmt.Errorf("RLIMIT_NOFILE stays %d: %w", lim.Cur, err)
	}
	if next.Cur < uint64(want) {
		return fmt.Errorf("RLIMIT_NOFILE is %d, below the %d wanted; lower -streams if sockets run out", next.Cur, want)
	}
	return nil
}

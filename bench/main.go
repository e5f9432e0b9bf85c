// Command bench measures what Ferry adds on top of its upstream: the same
// streamed answer (100 deltas by default) is read straight from a
// protocol-faithful fake upstream (llm/llmtest) and through each of Ferry's
// streaming endpoints, in the same run, with the same client code.
//
// It reports, per endpoint, the latency to the first body byte and to the
// end of the body (p50, p99) at concurrency 1 and 64, and requests per
// second, for the upstream alone, through a bare standard-library reverse
// proxy (the floor: one more HTTP hop) and through Ferry; at concurrency 1
// also with a one-delta answer, which isolates Ferry's fixed cost per
// request. Then it holds 5,000 streams open at once through a fresh Ferry
// per endpoint, and through the bare proxy, and reads their resident
// memory.
//
// Ferry runs as a child process built from ./cmd/ferry, so its memory and
// CPU time are its own; the bare proxy is this binary run again as a child;
// the fake upstream and the client run in this process. All traffic is on
// loopback, every loop is bounded in requests and time, and the command
// stops by itself.
//
// Run it from the module root:
//
//	go run ./bench
//
// It prints a Markdown report and writes it into BENCHMARKS.md, under the
// heading "## One funnel, lean stream (issue 6)" with issue 6's targets
// (other sections are kept; -issue 3 writes issue 3's section instead).
// -before FILE sets the figures of an earlier run (another commit's, say)
// beside this run's. -profile DIR also saves Ferry's CPU, heap and
// goroutine profiles.
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
	if up := os.Getenv(proxyEnv); up != "" {
		if err := serveProxy(up, os.Getenv(proxyPprofEnv), os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "bench proxy:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "bench:", err)
		}
		os.Exit(1)
	}
}

// options are what the flags set.
type options struct {
	endpoints   []string // routes to measure; empty means all
	deltas      int
	conc        []int
	n           map[int]int // requests per concurrency, for each of upstream and Ferry
	rounds      int
	warmup      int
	phaseTime   time.Duration
	streams     int
	memDelay    time.Duration
	pace        time.Duration
	paceN       int // requests per side at the paced level
	skipMemory  bool
	floor       bool
	pin         bool
	fixed       bool
	profile     string
	ferryEnv    []string
	ferryBin    string
	logLevel    string
	out         string
	timeout     time.Duration
	verifyEvery int
	issue       int    // whose targets to report, and in which section
	before      string // an earlier run's BENCHMARKS.md, to compare with
	priorBin    string // another build of Ferry to measure beside this one
	beforeLabel string
	// settle is how long memory readings wait for the process to settle,
	// and how long the peak readings span; 1 s (the smoke test shortens it).
	settle time.Duration
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := &options{settle: time.Second}
	endpoints := fs.String("endpoints", "", "comma-separated routes to measure, as in /ai/chat/stream (default: all that this Ferry build serves)")
	fs.IntVar(&c.deltas, "deltas", 100, "text deltas per streamed answer")
	conc := fs.String("c", "1,64", "concurrency levels")
	n := fs.String("n", "1:2000,64:5000", "requests per concurrency level, for each of upstream and Ferry (level:count,…; a level not listed gets 2000)")
	fs.IntVar(&c.rounds, "rounds", 10, "the requests of a level are split into this many rounds, each started by the next side in turn, so that drift falls on every side alike")
	fs.IntVar(&c.warmup, "warmup", 200, "requests to each side before measuring a level (every one verified)")
	fs.DurationVar(&c.phaseTime, "phase-time", 3*time.Minute, "longest one endpoint at one concurrency level may run; rounds stop early past it")
	fs.IntVar(&c.streams, "streams", 5000, "streams held open at once for the memory measurement")
	fs.DurationVar(&c.memDelay, "mem-delay", time.Second, "the fake upstream's pause before each delta while streams are held open")
	fs.DurationVar(&c.pace, "pace", 2*time.Millisecond, "also measure the highest concurrency level with the fake pausing this long before each delta, as a model streams its tokens: the level the first-byte target is judged on (0: not)")
	fs.IntVar(&c.paceN, "pace-n", 4000, "requests per side at the paced level with spread starts, whose streams each take the deltas' pauses (its p99 is the 40th slowest of 4,000)")
	fs.BoolVar(&c.skipMemory, "skip-memory", false, "skip the memory measurement")
	fs.BoolVar(&c.fixed, "fixed", true, "also measure each endpoint at concurrency 1 with a one-delta answer: its fixed cost per request, apart from its cost per delta")
	fs.BoolVar(&c.pin, "pin", true, "run the server measured (Ferry, the bare proxy) on half the machine's cores and this process (the client and the fake upstream) on the other half, as on machines of their own; false shares every core")
	fs.BoolVar(&c.floor, "floor", true, "also measure a bare standard-library reverse proxy, in its own process, as the floor of one more HTTP hop")
	fs.StringVar(&c.profile, "profile", "", "directory to save Ferry's CPU profiles (concurrency 1, an extra run per endpoint) and heap and goroutine profiles (streams open) into; builds Ferry with a pprof listener overlaid")
	fs.Func("ferry-env", "`KEY=VALUE` added to Ferry's environment, for experiments (GOGC=200, GOMAXPROCS=1, …); repeatable", func(v string) error {
		if k, _, ok := strings.Cut(v, "="); !ok || k == "" {
			return fmt.Errorf("want KEY=VALUE")
		}
		c.ferryEnv = append(c.ferryEnv, v)
		return nil
	})
	fs.StringVar(&c.ferryBin, "ferry", "", "a Ferry binary to run (default: go build ./cmd/ferry into a temporary directory)")
	fs.StringVar(&c.logLevel, "log-level", "warn", "Ferry's FERRY_LOG_LEVEL (info adds an access log line per request)")
	fs.StringVar(&c.out, "out", "BENCHMARKS.md", "file (relative to the module root) to write the results into; empty writes none")
	fs.IntVar(&c.issue, "issue", 6, "whose targets to report, and so which section of the -out file to write: 6, or 3 (its section is kept as history)")
	fs.StringVar(&c.before, "before", "", "`FILE`: a BENCHMARKS.md written by an earlier run of this command (at another commit, in a worktree), whose figures are set beside this run's")
	fs.StringVar(&c.priorBin, "before-ferry", "", "`BIN`: another build of Ferry (an earlier commit's, built in its worktree) measured in the same run as one more side of every level, and with its own memory run, so that before and after share the machine's load")
	fs.StringVar(&c.beforeLabel, "before-label", "before", "what the -before run or the -before-ferry build was of, such as its commit, for the report")
	fs.DurationVar(&c.timeout, "timeout", 30*time.Minute, "stop everything after this long")
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
	case headings[c.issue] == "":
		return nil, fmt.Errorf("-issue must be 3 or 6")
	case c.profile != "" && c.ferryBin != "":
		return nil, fmt.Errorf("-profile builds its own Ferry; it cannot be used with -ferry")
	}
	return c, nil
}

func (c *options) requests(conc int) int {
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
	if err := raiseFileLimit(2*cfg.streams + 1024); err != nil {
		logf("warning: %v", err)
	}

	rep := &report{issue: cfg.issue, command: command(args), machine: describeMachine(), started: time.Now().UTC(), loadStart: loadAverage()}
	if cfg.priorBin != "" {
		rep.priorLabel = cfg.beforeLabel
	}
	if cfg.before != "" {
		// Read first, so a wrong path fails before minutes of measuring.
		if rep.before, err = readEarlier(cfg.before, cfg.beforeLabel, headings[cfg.issue]); err != nil {
			return fmt.Errorf("-before: %w", err)
		}
	}
	b, err := newBench(ctx, cfg, root, logf)
	if err != nil {
		return err
	}
	defer b.close()
	rep.cores = b.cores
	if err := b.measureAll(ctx, rep); err != nil {
		return err
	}
	rep.loadEnd = loadAverage()
	md := rep.markdown()
	fmt.Fprint(stdout, md)
	if cfg.out != "" {
		path := cfg.out
		if !strings.HasPrefix(path, "/") {
			path = root + "/" + path
		}
		if err := writeSection(path, headings[cfg.issue], md); err != nil {
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
// the Ferry it starts: a held-open stream is two sockets in each process
// (this one holds the client's and the fake upstream's ends).
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

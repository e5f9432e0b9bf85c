package chat

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/auth"
	"github.com/ferryhq/ferry/cache"
	"github.com/ferryhq/ferry/llm"
	"github.com/ferryhq/ferry/store"
)

// Call is one model call on its way through the funnel that every model
// call passes, whatever endpoint or wire format it came by: Start resolves
// its model and admits it, Stream or Relay runs it, and its end is recorded
// in one place (the usage log, then the observers).
type Call struct {
	Principal *ferry.Principal
	Endpoint  string // e.g. "/ai/chat/stream", for the usage log
	Provider  string // the provider's routing prefix
	Model     string // the provider's own model name; "" for its default
	// Request is what is sent upstream; Model is set.
	Request llm.Request
	// Waited is how long the admission held the call in its queue before
	// it could run; Admit sets it.
	Waited time.Duration
	// Cache says how the answer cache takes part, as Start decided: a hit
	// makes no upstream call of its own.
	Cache CacheState

	svc      *Service
	provider llm.Provider
	release  func(*Result)
	// answer is the extra write a conversation turn makes when the call
	// ends: its stored answer.
	answer func(*Result, error) store.Op
	// answerID is the id of a turn's answer row, which TouchMessages keeps
	// fresh while the call runs; "" for a call that is no turn.
	answerID string

	// The answer cache's part (see cache.go): the key, and either the
	// stored answer or the flight led or followed.
	noCache  bool
	cacheKey string
	stored   *cache.Entry
	flight   *flight
	leader   bool

	mu     sync.Mutex
	cause  error                   // why the funnel ended the call (see end); nil while it may run
	cancel context.CancelCauseFunc // ends the running call; nil outside Relay
}

// Admit is the hook that decides whether a call may run: a limiter or a
// queue. It returns an error (RateLimited, Unavailable) to refuse the call,
// or a release function that the funnel calls exactly once with how the
// call ended. A call answered from the cache (Cache is CacheHit) reaches it
// too, so that it counts as a request, but it makes no upstream call and
// costs no tokens: Admit should not hold it in a queue.
type Admit func(ctx context.Context, c *Call) (release func(*Result), err error)

// Observer is told of every call that ran, after its usage is queued for
// writing: the hook for metrics.
type Observer func(ctx context.Context, c *Call, res *Result)

// Result is how a call ended.
type Result struct {
	Text       string
	Status     ferry.MessageStatus
	StopReason string
	Usage      llm.Usage
	Model      string        // the model the upstream used
	Latency    time.Duration // from the call to its end
	FirstToken time.Duration // from the call to the first delta; 0 if none came
	// LastToken is from the call to the last delta, and Deltas counts them
	// (for a relayed call, the upstream's chunks): with FirstToken, the
	// mean time between tokens.
	LastToken time.Duration
	Deltas    int
	// Cached says that no upstream call was made for this one: its answer
	// came from the cache, or from an identical call it followed. Usage is
	// then zero.
	Cached bool
}

// Start is the funnel's entry: it routes model (as a client names it: "",
// "provider/name" or a bare name), checks that the provider takes every
// part and sampling parameter of req, and admits the call. req.Model is
// set to the routed name. Errors: Invalid (unknown or unconfigured model,
// a part the provider does not take, a sampling parameter it cannot honour,
// which the error's field names), Unavailable (the server is shutting
// down), and whatever Admit refuses with. Until it finishes, the call is
// among the active ones that Stop and CancelUser end. With the answer
// cache on, Start also decides whether the call is a hit (see Call.Cache)
// before Admit sees it.
func (s *Service) Start(ctx context.Context, p *ferry.Principal, endpoint, model string, req llm.Request, opts ...StartOption) (*Call, error) {
	if s.active.isStopped() {
		return nil, errStopping
	}
	provider, name, err := s.router.Resolve(model)
	if err != nil {
		return nil, err
	}
	for i, m := range req.Messages {
		for _, part := range m.Parts {
			if !provider.Accepts(part.Kind) {
				return nil, ferry.InvalidField(fmt.Sprintf("messages[%d]", i),
					fmt.Sprintf("%s models do not take %s parts", provider.Name(), part.Kind))
			}
		}
	}
	if err := req.Sampling.Check(provider.Name(), provider.Supports()); err != nil {
		return nil, err
	}
	req.Model = name
	c := &Call{Principal: p, Endpoint: endpoint, Provider: provider.Name(), Model: name, Request: req, svc: s, provider: provider}
	for _, o := range opts {
		o(c)
	}
	c.lookup(ctx)
	if s.opts.Admit != nil {
		if c.release, err = s.opts.Admit(ctx, c); err != nil {
			if c.flight != nil {
				c.flight.leave(ctx, &s.flights)
			}
			return nil, err
		}
	}
	if c.Cache == CacheMiss {
		c.claim(ctx)
	}
	s.active.add(c)
	return c, nil
}

// Stream sends the call to its provider and calls fn with each text delta
// (Done deltas are kept for the Result). However it ends, the call is
// finished: its usage queued for the log even when ctx was cancelled (the
// client left), with what had arrived by then. The error is the
// provider's (see llm.Provider), or ctx's when the client left.
//
// A call that Start found in the answer cache replays the stored deltas
// instead, and one that follows an identical call gets that call's deltas
// as they come.
func (c *Call) Stream(ctx context.Context, fn func(llm.Delta) error) (*Result, error) {
	switch {
	case c.stored != nil:
		return c.replay(ctx, fn)
	case c.flight != nil && !c.leader:
		return c.follow(ctx, fn)
	case c.leader:
		return c.lead(ctx, fn)
	}
	return c.relay(ctx, func(ctx context.Context, progress func()) (*Result, error) { return c.stream(ctx, progress, fn) }, false)
}

// Relay runs the call with run instead of the provider's Stream, for
// endpoints that pass the upstream's own bytes through (/ollama/*). run
// gets a context bounded by FERRY_UPSTREAM_TIMEOUT, calls progress with
// each chunk the upstream sends, and returns how the call ended, Status
// included. Once the first chunk has come, a silence longer than
// FERRY_UPSTREAM_IDLE_TIMEOUT cancels run's context and the call ends with
// a Timeout error. Relay fills in the latency, estimates usage the upstream
// never reported, and finishes the call. The call must have been started
// with UseCache(false): relayed bytes are not cached.
func (c *Call) Relay(ctx context.Context, run func(ctx context.Context, progress func()) (*Result, error)) (*Result, error) {
	if c.Cache != CacheOff {
		panic("chat: Relay on a call started with the answer cache; start it with UseCache(false)")
	}
	return c.relay(ctx, run, true)
}

// relay is Relay; chunkTimes says that the times of run's chunks stand for
// those of the answer's tokens in the Result (Stream times its text deltas
// itself).
func (c *Call) relay(ctx context.Context, run func(ctx context.Context, progress func()) (*Result, error), chunkTimes bool) (*Result, error) {
	start := time.Now()
	uctx, cancel := c.begin(ctx)
	idle := newIdleTimer(uctx, c.svc.opts.UpstreamIdleTimeout, c.Provider)
	res, err := run(idle.ctx, idle.progress)
	err = idle.stop(err)
	cancel()
	return c.conclude(ctx, start, idle, res, err, chunkTimes)
}

// conclude completes the Result of a call that began at start and ended with
// res and err, and finishes the call. It is relay's second half, apart so
// that relay's frame, which a parked stream holds on its stack, stays
// small.
func (c *Call) conclude(ctx context.Context, start time.Time, idle *idleTimer, res *Result, err error, chunkTimes bool) (*Result, error) {
	if res == nil {
		res = &Result{}
	}
	if chunkTimes && idle.chunks > 0 {
		res.FirstToken, res.LastToken, res.Deltas = idle.first.Sub(start), idle.last.Sub(start), idle.chunks
	}
	res.Latency = time.Since(start)
	if res.Model == "" {
		res.Model = c.Model
	}
	switch {
	case err == nil:
		if res.Status == "" {
			res.Status = ferry.StatusComplete
		}
	case c.ended() != nil:
		// The funnel ended it (shutdown, or its user was disabled); what
		// arrived is kept.
		res.Status, err = ferry.StatusCancelled, c.ended()
	case ctx.Err() != nil:
		// The client left (or the server is draining); what arrived is kept.
		res.Status, err = ferry.StatusCancelled, ctx.Err()
	default:
		res.Status = ferry.StatusFailed
	}
	if res.Status != ferry.StatusComplete {
		// The upstream never reported usage (it was cut off): estimate it,
		// so the usage log does not count an interrupted call as free.
		if res.Usage.InputTokens == 0 {
			res.Usage.InputTokens = estimateRequest(c.Request)
		}
		if res.Usage.OutputTokens == 0 {
			res.Usage.OutputTokens = EstimateTokens(res.Text)
		}
	}
	c.finish(ctx, res, err)
	return res, err
}

// stream runs the provider's Stream, collecting the answer. NUL
// characters are dropped from the upstream's text here, before anything
// streams or stores it: PostgreSQL cannot store them, and no client needs
// them.
func (c *Call) stream(ctx context.Context, progress func(), fn func(llm.Delta) error) (*Result, error) {
	a := &answering{start: time.Now(), progress: progress, fn: fn}
	err := c.provider.Stream(ctx, c.Request, a.delta)
	return a.result(err), err
}

// answering collects a streamed answer.
type answering struct {
	start    time.Time
	progress func()
	fn       func(llm.Delta) error
	res      Result
	text     strings.Builder
	final    llm.Delta
}

func (a *answering) delta(d llm.Delta) error {
	a.progress()
	if d.Done {
		a.final = d
		return nil
	}
	a.res.LastToken = time.Since(a.start)
	if a.res.FirstToken == 0 {
		a.res.FirstToken = a.res.LastToken
	}
	a.res.Deltas++
	// A delta left empty still goes on: it may end a burst (More false)
	// that the writer is holding back.
	d.Text = withoutNUL(d.Text)
	a.text.WriteString(d.Text)
	if a.fn == nil {
		return nil
	}
	return a.fn(d)
}

// result is the answer, once the provider's Stream has returned err.
func (a *answering) result(err error) *Result {
	res := &a.res
	res.Text, res.StopReason, res.Usage, res.Model = a.text.String(), withoutNUL(a.final.StopReason), a.final.Usage, withoutNUL(a.final.Model)
	if err == nil {
		res.Status = ferry.StatusComplete
	}
	return res
}

// finish records how the call ended: the turn's answer and the usage-log
// entry are queued (nothing waits for them, and they may share a commit
// with the next calls' writes: see store.SubmitLater), the call leaves the active
// ones, then the admission is released and the observers told.
func (c *Call) finish(ctx context.Context, res *Result, err error) {
	c.save(ctx, res)
	// The answer has been given; a write that fails for good is only worth
	// a log line here (a turn's own rows were checked before done).
	unsaved := func(err error) {
		c.svc.opts.Log.ErrorContext(ctx, "saving a model call", "endpoint", c.Endpoint, "error", err)
	}
	if c.answer != nil {
		c.svc.store.SubmitLater(func(err error) {
			// An answer whose conversation was deleted meanwhile (its user
			// too, perhaps) is not there to finish: nothing is lost.
			if ferry.ErrorCode(err) != ferry.NotFound {
				unsaved(err)
			}
		}, c.answer(res, err))
	}
	// The usage entry is a group of its own, so that it is kept when the
	// answer's row is gone (its conversation or user was deleted while the
	// call ran).
	c.svc.store.SubmitLater(unsaved, store.InsertUsage(c.usage(res)))
	c.svc.active.remove(c)
	if c.release != nil {
		c.release(res)
	}
	// Observers run after the client may have gone; they must not inherit
	// its cancellation.
	octx := context.WithoutCancel(ctx)
	for _, o := range c.svc.opts.Observers {
		o(octx, c, res)
	}
}

func (c *Call) usage(res *Result) *ferry.Usage {
	u := &ferry.Usage{ID: auth.NewID(), Endpoint: c.Endpoint, Model: res.Model, Provider: c.Provider,
		InputTokens: res.Usage.InputTokens, OutputTokens: res.Usage.OutputTokens, LatencyMS: res.Latency.Milliseconds(),
		Status: string(res.Status), Cached: res.Cached}
	if c.Principal != nil {
		u.UserID, u.APIKeyID = c.Principal.User.ID, c.Principal.APIKeyID
	}
	return u
}

// EstimatedInput is the call's request in estimated tokens: what a limit
// counts before the upstream reports the real usage.
func (c *Call) EstimatedInput() int { return estimateRequest(c.Request) }

func estimateRequest(r llm.Request) int {
	n := EstimateTokens(r.System)
	for _, m := range r.Messages {
		n += EstimateTokens(m.Text())
	}
	return n
}

// withoutNUL returns s without its NUL characters.
func withoutNUL(s string) string {
	if strings.IndexByte(s, 0) < 0 {
		return s
	}
	return strings.ReplaceAll(s, "\x00", "")
}

// idleTimer ends a call whose upstream falls silent once its answer has
// begun: the first progress arms it, and when d passes without one it
// cancels ctx. Before the first chunk the wait is the transport's header
// timeout and FERRY_UPSTREAM_TIMEOUT's.
type idleTimer struct {
	ctx      context.Context // run's context
	cancel   context.CancelFunc
	d        time.Duration
	provider string
	t        *time.Timer // nil until the first chunk
	fired    atomic.Bool
	// first and last are when the first and the last chunk came; chunks
	// counts them. seen is last as an offset from first, for the timer's
	// goroutine.
	first, last time.Time
	seen        atomic.Int64
	chunks      int
}

func newIdleTimer(parent context.Context, d time.Duration, provider string) *idleTimer {
	ctx, cancel := context.WithCancel(parent)
	return &idleTimer{ctx: ctx, cancel: cancel, d: d, provider: provider}
}

// progress notes a chunk. The upstream's reader calls it, one call at a
// time. It only notes the time: re-arming a runtime timer for each of a
// hundred deltas cost more than the rest of passing one on, so the timer
// is armed once and, when it goes off, looks back (check).
func (it *idleTimer) progress() {
	it.last = time.Now()
	it.chunks++
	if it.t == nil {
		it.first = it.last
		it.t = time.AfterFunc(it.d, it.check)
		return
	}
	it.seen.Store(int64(it.last.Sub(it.first)))
}

// check runs when the timer goes off: d after the last chunk it ends the
// call, and sooner it waits out the rest. Once the call is over it does
// neither (a check already running when stop came may re-arm the timer
// once more; that later check then ends here). It reads it.t, which
// progress set after arming, only when seen is not zero: a later chunk's
// Store, which the Load here orders after that assignment.
func (it *idleTimer) check() {
	if it.ctx.Err() != nil {
		return
	}
	if idle := time.Since(it.first) - time.Duration(it.seen.Load()); idle < it.d {
		it.t.Reset(it.d - idle)
		return
	}
	it.fired.Store(true)
	it.cancel()
}

// stop disarms the timer once run has returned err, and returns the error
// the call ended with: a Timeout error when the silence is what ended it.
func (it *idleTimer) stop(err error) error {
	if it.t != nil {
		it.t.Stop()
	}
	it.cancel()
	if err != nil && it.fired.Load() {
		// Not wrapping err (context.Canceled): that would read as a
		// client that left.
		return &ferry.Error{Code: ferry.Timeout,
			Message: fmt.Sprintf("%s sent nothing for %s in the middle of its answer", it.provider, it.d)}
	}
	return err
}

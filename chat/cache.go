package chat

// The answer cache: a call whose request is the same as one answered
// within FERRY_CACHE_TTL, for the same user, is answered from the cache
// (package cache) with the stored deltas, and an identical call already
// running on this instance is followed live instead of being sent again
// (single flight). Start looks up, Stream replays or follows, and finish
// stores a complete answer.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"sync"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/cache"
	"github.com/ferryhq/ferry/llm"
)

// CacheState says how the answer cache took part in a call.
type CacheState string

const (
	// CacheOff: the cache was not asked (it is off, the request said
	// "cache": false, or the call has no user to scope it to).
	CacheOff CacheState = ""
	// CacheMiss: nothing was stored or running; the call asks the model
	// and stores a complete answer.
	CacheMiss CacheState = "miss"
	// CacheHit: the answer comes from the cache, or from an identical call
	// running on this instance; no upstream call of its own is made.
	CacheHit CacheState = "hit"
)

// StartOption changes how Start treats one call.
type StartOption func(*Call)

// UseCache(false) keeps a call away from the answer cache: it is neither
// answered from it nor stored in it. Calls run with Relay must be started
// with it, since their bytes cannot be replayed.
func UseCache(on bool) StartOption {
	return func(c *Call) { c.noCache = !on }
}

// cacheSaveTimeout bounds storing an answer, which its end waits for so
// that an identical request right after it is a hit.
const cacheSaveTimeout = 2 * time.Second

// cacheKey is the hash an answer is stored under: the user, the provider,
// and the whole request sent upstream (model, system prompt, history,
// message, parts and sampling parameters). It returns "" when the request
// cannot be encoded (a malformed raw field), which leaves the call
// uncached.
func cacheKey(userID, provider string, req llm.Request) string {
	h := sha256.New()
	h.Write([]byte("ferry-answer-v1\x00" + userID + "\x00" + provider + "\x00"))
	if err := json.NewEncoder(h).Encode(req); err != nil {
		return ""
	}
	return hex.EncodeToString(h.Sum(nil))
}

// lookup, before admission, makes c a hit when its answer is stored or an
// identical call is running here; otherwise a miss, to be claimed once
// admitted. A cache that cannot be read is a miss.
func (c *Call) lookup(ctx context.Context) {
	if c.noCache || c.svc.opts.Cache == nil || c.userID() == "" {
		return
	}
	if c.cacheKey = cacheKey(c.userID(), c.Provider, c.Request); c.cacheKey == "" {
		return
	}
	c.Cache = CacheMiss
	if c.fromStore(ctx) {
		return
	}
	if f := c.svc.flights.join(c.cacheKey); f != nil {
		c.Cache, c.flight = CacheHit, f
	}
}

// fromStore makes c a hit if its answer is stored.
func (c *Call) fromStore(ctx context.Context) bool {
	e, ok, err := c.svc.opts.Cache.Get(ctx, c.cacheKey)
	if err != nil {
		c.svc.opts.Log.WarnContext(ctx, "reading the answer cache", "error", err)
	}
	if !ok {
		return false
	}
	c.Cache, c.stored = CacheHit, e
	return true
}

// claim, once a miss is admitted, makes c the leader of its key's flight,
// unless an identical call became one (or stored its answer) while c
// waited for admission: then c follows it, and gives its admission back
// at once, as it will not call the model.
func (c *Call) claim(ctx context.Context) {
	f, leader := c.svc.flights.claim(c.cacheKey)
	c.flight, c.leader = f, leader
	if leader && c.fromStore(ctx) {
		// Claimed just after the previous leader stored its answer and
		// left: the flight serves the stored answer to whoever joined it.
		f.serve(c.stored)
		c.svc.flights.drop(f)
		f.leaveDone()
		c.flight, c.leader = nil, false
	}
	if c.leader {
		return
	}
	c.Cache = CacheHit
	if c.release != nil {
		c.release(&Result{Cached: true})
		c.release = nil
	}
}

// replay streams a stored answer to fn as the model sent it, the deltas
// of a burst marked More so that they leave in one write.
func (c *Call) replay(ctx context.Context, fn func(llm.Delta) error) (*Result, error) {
	start := time.Now()
	e := c.stored
	res := &Result{Cached: true, StopReason: e.StopReason, Model: e.Model}
	err := c.ended()
	if err == nil {
		err = ctx.Err()
	}
	sent := 0
	for i := 0; err == nil && i < len(e.Deltas); i++ {
		if i == 0 {
			res.FirstToken = time.Since(start)
		}
		if fn != nil {
			err = fn(llm.Delta{Text: e.Deltas[i], More: i < len(e.Deltas)-1})
		}
		sent++
		res.LastToken, res.Deltas = time.Since(start), sent
	}
	if sent == len(e.Deltas) {
		res.Text = e.Text()
	} else {
		res.Text = (&cache.Entry{Deltas: e.Deltas[:sent]}).Text()
	}
	return c.end2(ctx, start, res, err, nil)
}

// follow streams the answer of the identical call that c's flight's
// leader is running, from its first delta, and ends as it ends: a failed
// leader's followers fail with its error (asking the upstream again at
// once, N times over, would only repeat the failure; the client may
// retry). The leader's call goes on while anyone follows it, even once its
// own client has left.
func (c *Call) follow(ctx context.Context, fn func(llm.Delta) error) (*Result, error) {
	start := time.Now()
	fctx, release := c.begin(ctx)
	res := &Result{Cached: true}
	fin, ferr, err := c.flight.follow(fctx, func(d llm.Delta) error {
		res.LastToken = time.Since(start)
		if res.FirstToken == 0 {
			res.FirstToken = res.LastToken
		}
		res.Deltas++
		if fn == nil {
			return nil
		}
		return fn(d)
	}, &res.Text)
	release()
	c.flight.leave(ctx, &c.svc.flights)
	if fin != nil {
		res.StopReason, res.Model = fin.StopReason, fin.Model
	}
	return c.end2(ctx, start, res, err, ferr)
}

// end2 finishes a call answered without an upstream call of its own: err
// is how delivering it went (nil when all of it reached fn), lead the
// leader's error when it is the leader's failure that ended it.
func (c *Call) end2(ctx context.Context, start time.Time, res *Result, err, lead error) (*Result, error) {
	res.Latency = time.Since(start)
	if res.Model == "" {
		res.Model = c.Model
	}
	switch {
	case err == nil && lead == nil:
		res.Status = ferry.StatusComplete
	case c.ended() != nil:
		res.Status, err = ferry.StatusCancelled, c.ended()
	case ctx.Err() != nil:
		res.Status, err = ferry.StatusCancelled, ctx.Err()
	case lead != nil:
		res.Status, err = ferry.StatusFailed, lead
	default:
		res.Status = ferry.StatusFailed
	}
	c.finish(ctx, res, err)
	return res, err
}

// lead runs c's upstream call for its flight: each delta goes to the
// followers and, while its own client listens, to fn. The call runs under
// a context of its own, cancelled when the last listener leaves (the
// leader's client included), so that followers keep their answer when the
// leader's client goes.
func (c *Call) lead(ctx context.Context, fn func(llm.Delta) error) (*Result, error) {
	f := c.flight
	fctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	defer cancel(nil)
	var mu sync.Mutex // fn is not called once the leader's client has left
	listening := true
	leave := func() {
		mu.Lock()
		defer mu.Unlock()
		if listening {
			listening = false
			f.leave(ctx, &c.svc.flights)
		}
	}
	f.start(cancel)
	stop := context.AfterFunc(ctx, leave)
	res, err := c.relay(fctx, func(rctx context.Context, progress func()) (*Result, error) {
		return c.stream(rctx, progress, func(d llm.Delta) error {
			f.publish(d)
			mu.Lock()
			defer mu.Unlock()
			if !listening || fn == nil {
				return nil
			}
			if err := fn(d); err != nil {
				// The client cannot be written to: it has gone.
				listening = false
				f.leave(ctx, &c.svc.flights)
			}
			return nil
		})
	}, false)
	// finish has stored a complete answer: from now on an identical
	// request finds it there.
	f.end(res, err)
	c.svc.flights.drop(f)
	stop()
	leave()
	return res, err
}

// save stores a leader's complete answer; a cache that cannot be written
// costs only the next hit.
func (c *Call) save(ctx context.Context, res *Result) {
	if !c.leader || res.Status != ferry.StatusComplete {
		return
	}
	e := c.flight.entry(res)
	if len(e.Deltas) == 0 {
		return // an empty answer is more likely a glitch than worth keeping
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cacheSaveTimeout)
	defer cancel()
	if err := c.svc.opts.Cache.Put(sctx, c.cacheKey, e); err != nil {
		c.svc.opts.Log.WarnContext(ctx, "writing the answer cache", "error", err)
	}
}

// flights are the calls running on this instance that identical calls may
// follow, by cache key.
type flights struct {
	mu sync.Mutex
	m  map[string]*flight
}

// flight is one leader's call and its followers. The leader publishes
// deltas; followers read them from the first, then wait for more.
type flight struct {
	key string

	mu        sync.Mutex
	deltas    []llm.Delta
	changed   chan struct{} // closed, and replaced, when deltas grow or the flight ends
	ended     bool
	res       *Result
	err       error
	listeners int  // the leader's client and the followers still reading
	gone      bool // every listener left: nobody may join; the call is cancelled
	cancel    context.CancelCauseFunc
}

// join adds a follower to key's flight, if one runs and is not being
// cancelled.
func (fs *flights) join(key string) *flight {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	f := fs.m[key]
	if f == nil {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.gone {
		return nil
	}
	f.listeners++
	return f
}

// claim joins key's flight, or starts one led by the caller (leader true).
func (fs *flights) claim(key string) (f *flight, leader bool) {
	if f := fs.join(key); f != nil {
		return f, false
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if f := fs.m[key]; f != nil {
		f.mu.Lock()
		defer f.mu.Unlock()
		if !f.gone {
			f.listeners++
			return f, false
		}
	}
	if fs.m == nil {
		fs.m = map[string]*flight{}
	}
	f = &flight{key: key, listeners: 1, changed: make(chan struct{})}
	fs.m[key] = f
	return f, true
}

// drop removes f, if it is still key's flight: nobody joins it any more.
func (fs *flights) drop(f *flight) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.m[f.key] == f {
		delete(fs.m, f.key)
	}
}

func (f *flight) start(cancel context.CancelCauseFunc) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cancel = cancel
}

// publish adds a delta of the leader's answer.
func (f *flight) publish(d llm.Delta) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deltas = append(f.deltas, d)
	close(f.changed)
	f.changed = make(chan struct{})
}

// end publishes how the leader's call ended.
func (f *flight) end(res *Result, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ended, f.res, f.err = true, res, err
	close(f.changed)
}

// serve ends a flight whose leader found its answer stored after all,
// with that answer.
func (f *flight) serve(e *cache.Entry) {
	for i, d := range e.Deltas {
		f.publish(llm.Delta{Text: d, More: i < len(e.Deltas)-1})
	}
	f.end(&Result{Status: ferry.StatusComplete, Text: e.Text(), StopReason: e.StopReason, Model: e.Model}, nil)
}

// leaveDone takes a listener off a flight that has ended.
func (f *flight) leaveDone() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.listeners--
}

// leave takes a listener off; when none is left before the call ended,
// the call is cancelled with ctx's cause and nobody may join it any more.
func (f *flight) leave(ctx context.Context, fs *flights) {
	f.mu.Lock()
	f.listeners--
	cancel := f.listeners == 0 && !f.ended
	if cancel {
		f.gone = true
		if f.cancel != nil {
			f.cancel(context.Cause(ctx))
		}
	}
	f.mu.Unlock()
	if cancel {
		fs.drop(f)
	}
}

// follow calls fn with each delta of the flight from the first, appending
// its text to text, until the flight ends (it returns the leader's result,
// and the leader's error if it failed) or fn fails or ctx ends (err). A
// follower behind by several deltas gets them marked More, to be written
// at once.
func (f *flight) follow(ctx context.Context, fn func(llm.Delta) error, text *string) (fin *Result, lead, err error) {
	next := 0
	var b []byte
	defer func() { *text = string(b) }()
	for {
		f.mu.Lock()
		batch, ended, changed := f.deltas[next:], f.ended, f.changed
		fin, lead = f.res, f.err
		f.mu.Unlock()
		for i, d := range batch {
			if i < len(batch)-1 {
				d.More = true
			}
			if err := fn(d); err != nil {
				return nil, nil, err
			}
			b = append(b, d.Text...)
		}
		next += len(batch)
		if ended {
			return fin, lead, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
	}
}

// entry is the flight's answer, to store.
func (f *flight) entry(res *Result) *cache.Entry {
	f.mu.Lock()
	defer f.mu.Unlock()
	e := &cache.Entry{Deltas: make([]string, len(f.deltas)), StopReason: res.StopReason, Model: res.Model}
	for i, d := range f.deltas {
		e.Deltas[i] = d.Text
	}
	return e
}

package limit

import (
	"context"
	"crypto/rand"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferryhq/ferry"
)

// Admission decides whether a model call may run: first the caller's rate
// limits (a cheap refusal, 429), then a slot under the concurrency cap,
// waiting in the fair queue if need be (503 when it cannot). Either part
// may be nil.
type Admission struct {
	Rates Rates
	// Default are the limits of a user without an override; zero: none.
	Default ferry.Limits
	Queue   *Queue

	// settling are the count corrections on their way to Rates (see
	// Ticket.Done).
	settling settling
}

// Request is a model call asking to be admitted.
type Request struct {
	Principal *ferry.Principal // nil: not limited, queued as nobody's
	Provider  string
	// Tokens is the call's estimated size, counted until its real usage
	// is known.
	Tokens int64
	// Unqueued is a call that makes no upstream call (an answer-cache
	// hit): it counts against the limits, but takes no slot and never
	// waits in the queue.
	Unqueued bool
}

// Ticket is an admitted call: Done gives back its slot and settles its
// count with the tokens it used.
type Ticket struct {
	// Waited is how long the call waited in the queue.
	Waited time.Duration

	a         *Admission
	id        string
	buckets   []Bucket
	estimated int64
	release   func()
}

// Admit admits r or refuses it: RateLimited (with RetryAfter) when it is
// over a limit, Unavailable (with RetryAfter) when the queue is full or the
// wait too long, ctx's error when ctx ended while it waited. Where ctx
// carries a Report (see WithReport), the state of the caller's limits is
// noted in it, admitted or refused.
func (a *Admission) Admit(ctx context.Context, r Request) (*Ticket, error) {
	t := &Ticket{a: a}
	if a.Rates != nil && r.Principal != nil {
		t.buckets = a.buckets(r.Principal)
	}
	if len(t.buckets) > 0 {
		t.id, t.estimated = newCallID(), r.Tokens
		// The caller's last calls' corrections count before this one.
		if err := a.settling.wait(ctx, t.buckets); err != nil {
			return nil, err
		}
		st, err := a.Rates.Take(ctx, t.id, t.buckets, r.Tokens)
		if st.RPM > 0 || st.TPM > 0 {
			Note(ctx, st)
		}
		if err != nil {
			return nil, err
		}
	}
	if a.Queue != nil && !r.Unqueued {
		user := ""
		if r.Principal != nil && r.Principal.User != nil {
			user = r.Principal.User.ID
		}
		release, waited, err := a.Queue.Acquire(ctx, user, r.Provider)
		t.Waited = waited
		if err != nil {
			// The call never ran: it does not count against the limits.
			t.settle(-1)
			return nil, err
		}
		t.release = release
	}
	return t, nil
}

// Done ends the call, which used tokens: its slot goes to the next waiter
// at once, and its count is corrected from the estimate to what it used in
// the background, off the path of the response that is ending (with Redis,
// a round trip). The next Admit on this instance for the same user or key
// waits for the correction, so a caller always meets its own usage.
func (t *Ticket) Done(tokens int64) {
	if t.release != nil {
		t.release()
	}
	t.settle(tokens)
}

// settleTimeout bounds a correction's wait on Rates (Redis, failing, has
// said so in the log already).
const settleTimeout = 2 * time.Second

func (t *Ticket) settle(tokens int64) {
	if len(t.buckets) == 0 {
		return
	}
	a := t.a
	done := a.settling.start(t.buckets)
	go func() {
		defer done()
		ctx, cancel := context.WithTimeout(context.Background(), settleTimeout)
		defer cancel()
		a.Rates.Settle(ctx, t.id, t.buckets, t.estimated, tokens)
	}()
}

// Settled waits until every correction started has reached Rates, or ctx
// ends: at shutdown.
func (a *Admission) Settled(ctx context.Context) error {
	return a.settling.all(ctx)
}

// settling tracks the corrections in flight per bucket key. A waiter waits
// only for those started before it came: it seals the key's latest entry,
// and later corrections start a new one, so a busy user's stream of ending
// calls cannot hold its next call back.
type settling struct {
	mu    sync.Mutex
	byKey map[string][]*inFlight // oldest first; only the last may be unsealed
	total int
	idle  chan struct{} // closed when total drops to zero; nil while none waits
}

type inFlight struct {
	n      int
	sealed bool
	done   chan struct{}
}

// start records a correction of buckets; the returned func ends it.
func (s *settling) start(buckets []Bucket) func() {
	s.mu.Lock()
	if s.byKey == nil {
		s.byKey = make(map[string][]*inFlight)
	}
	mine := make([]*inFlight, len(buckets))
	for i, b := range buckets {
		list := s.byKey[b.Key]
		if len(list) == 0 || list[len(list)-1].sealed {
			list = append(list, &inFlight{done: make(chan struct{})})
			s.byKey[b.Key] = list
		}
		f := list[len(list)-1]
		f.n++
		mine[i] = f
	}
	s.total++
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		for i, f := range mine {
			if f.n--; f.n > 0 {
				continue
			}
			close(f.done)
			key := buckets[i].Key
			list := slices.DeleteFunc(s.byKey[key], func(g *inFlight) bool { return g == f })
			if len(list) == 0 {
				delete(s.byKey, key)
			} else {
				s.byKey[key] = list
			}
		}
		if s.total--; s.total == 0 && s.idle != nil {
			close(s.idle)
			s.idle = nil
		}
	}
}

// wait waits for the corrections of buckets in flight now.
func (s *settling) wait(ctx context.Context, buckets []Bucket) error {
	s.mu.Lock()
	var waits []chan struct{}
	for _, b := range buckets {
		for _, f := range s.byKey[b.Key] {
			f.sealed = true
			waits = append(waits, f.done)
		}
	}
	s.mu.Unlock()
	for _, w := range waits {
		select {
		case <-w:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// all waits until no correction is in flight.
func (s *settling) all(ctx context.Context) error {
	s.mu.Lock()
	if s.total == 0 {
		s.mu.Unlock()
		return nil
	}
	if s.idle == nil {
		s.idle = make(chan struct{})
	}
	idle := s.idle
	s.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// buckets are the counts a call by p goes against: always its user's, under
// the user's override or else the default, and the API key's too when the
// key has limits of its own.
func (a *Admission) buckets(p *ferry.Principal) []Bucket {
	var out []Bucket
	if p.User != nil {
		u := Bucket{Key: "u:" + p.User.ID, RPM: pick(p.User.Limits.RPM, a.Default.RPM), TPM: pick(p.User.Limits.TPM, a.Default.TPM)}
		if u.RPM > 0 || u.TPM > 0 {
			out = append(out, u)
		}
	}
	if p.APIKeyID != "" && (p.KeyLimits.RPM > 0 || p.KeyLimits.TPM > 0) {
		out = append(out, Bucket{Key: "k:" + p.APIKeyID, RPM: max(p.KeyLimits.RPM, 0), TPM: max(p.KeyLimits.TPM, 0)})
	}
	return out
}

// pick is an override when set (negative: no limit), else the default.
func pick(override, def int64) int64 {
	switch {
	case override < 0:
		return 0
	case override > 0:
		return override
	}
	return def
}

// callIDs makes ids unique across instances without a random read per
// call: a random prefix per process and a counter.
var (
	callPrefix = rand.Text()[:12] + "."
	callSeq    atomic.Uint64
)

func newCallID() string {
	return callPrefix + strconv.FormatUint(callSeq.Add(1), 36)
}

package limit

import (
	"context"
	"crypto/rand"
	"strconv"
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

	rates     Rates
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
	t := &Ticket{}
	if a.Rates != nil && r.Principal != nil {
		t.buckets = a.buckets(r.Principal)
	}
	if len(t.buckets) > 0 {
		t.rates, t.id, t.estimated = a.Rates, newCallID(), r.Tokens
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

// Done ends the call, which used tokens: its slot goes to the next waiter,
// and its count is corrected from the estimate to what it used. Neither
// waits on the network: with Redis, the correction goes with this
// instance's next call (see RedisRates.Settle).
func (t *Ticket) Done(tokens int64) {
	if t.release != nil {
		t.release()
	}
	t.settle(tokens)
}

func (t *Ticket) settle(tokens int64) {
	if t.rates == nil {
		return
	}
	// A correction that fails is lost (Redis, failing, has said so in
	// the log already): the call has ended, whoever waits on it.
	t.rates.Settle(context.Background(), t.id, t.buckets, t.estimated, tokens)
}

// Flush sends the count corrections still waiting to go with a call: at
// shutdown.
func (a *Admission) Flush(ctx context.Context) error {
	if f, ok := a.Rates.(interface{ Flush(context.Context) error }); ok {
		return f.Flush(ctx)
	}
	return nil
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

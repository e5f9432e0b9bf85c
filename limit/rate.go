package limit

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/ferryhq/ferry"
)

// Rates counts model calls, and the tokens they use, per bucket (a user, an
// API key) over a sliding window, normally a minute: a call is let through
// only if, with it, no bucket it counts against has more than its RPM calls
// or TPM tokens started within the last window. The window slides with
// each call rather than restarting on the minute, so no burst at a window's
// edge gets twice the limit.
type Rates interface {
	// Take counts call id, estimated to use tokens, against every bucket
	// at once, atomically with the decision, however many instances share
	// the store: either each bucket counts it or none does. Refused, it
	// returns a RateLimited *ferry.Error whose RetryAfter is when the call
	// would fit. The Status, for the response's headers, is filled either
	// way. tokens is counted as at most the smallest TPM of the buckets, so
	// that a request larger than the budget runs once the window is clear
	// rather than never. Other errors mean the store is unreachable.
	Take(ctx context.Context, id string, buckets []Bucket, tokens int64) (Status, error)
	// Settle replaces the estimate a taken call was counted with by the
	// tokens it really used, keeping when it was counted. A call that
	// outlived the window is counted again, now, with what it used, so
	// that a long answer's tokens are not free. A negative used forgets
	// the call, as one that never ran (the queue refused it).
	Settle(ctx context.Context, id string, buckets []Bucket, estimated, used int64) error
}

// Bucket is one count of calls and tokens, and its limits.
type Bucket struct {
	// Key names the count, such as "u:<user id>" or "k:<API key id>".
	Key string
	// RPM and TPM are the calls and tokens allowed per window; zero: no
	// limit on that.
	RPM, TPM int64
}

// Status is where a call leaves its buckets: for each of calls and tokens
// the tightest limit among them, what remains of it and how long until it
// starts to come back. A limit of zero was not set.
type Status struct {
	RPM, TPM                      int64
	RemainingCalls, RemainingTkns int64
	ResetCalls, ResetTokens       time.Duration
	Window                        time.Duration
}

// bucketState is one bucket's count after a Take.
type bucketState struct {
	calls, tokens int64
	// oldest is how long until the oldest counted call leaves the window.
	oldest time.Duration
}

// status folds the buckets' states into the tightest of each limit.
func status(window time.Duration, buckets []Bucket, states []bucketState) Status {
	st := Status{Window: window, RemainingCalls: -1, RemainingTkns: -1}
	for i, b := range buckets {
		s := states[i]
		if b.RPM > 0 {
			if left := max(b.RPM-s.calls, 0); st.RemainingCalls < 0 || left < st.RemainingCalls {
				st.RPM, st.RemainingCalls, st.ResetCalls = b.RPM, left, s.oldest
			}
		}
		if b.TPM > 0 {
			if left := max(b.TPM-s.tokens, 0); st.RemainingTkns < 0 || left < st.RemainingTkns {
				st.TPM, st.RemainingTkns, st.ResetTokens = b.TPM, left, s.oldest
			}
		}
	}
	return st
}

// cost is tokens capped at the smallest TPM among buckets.
func cost(buckets []Bucket, tokens int64) int64 {
	tokens = max(tokens, 0)
	for _, b := range buckets {
		if b.TPM > 0 && tokens > b.TPM {
			tokens = b.TPM
		}
	}
	return tokens
}

// changes reports whether settling a call estimated at estimated with used
// changes its buckets: forgetting it (used < 0) always does; a new token
// count only when it differs and some bucket counts tokens.
func changes(buckets []Bucket, estimated, used int64) bool {
	if used < 0 {
		return true
	}
	return used != estimated && slices.ContainsFunc(buckets, func(b Bucket) bool { return b.TPM > 0 })
}

// refused is Take's error for a call that would fit after wait.
func refused(wait time.Duration, tokens bool) error {
	wait = max(wait, time.Millisecond)
	what := "too many model calls"
	if tokens {
		what = "too many tokens"
	}
	return &ferry.Error{Code: ferry.RateLimited, RetryAfter: wait,
		Message: what + " this minute; try again in " + InWords(wait)}
}

// Header values of the IETF RateLimit fields
// (draft-ietf-httpapi-ratelimit-headers-10): the policy names each limit
// with its quota (q) and window in seconds (w); the state, what remains of
// it (r) and the seconds until it is whole again (t). Tokens are a unit of
// Ferry's own (qu="tokens"); calls are the draft's default, requests.
const (
	callsPolicy  = `"calls"`
	tokensPolicy = `"tokens"`
)

// Policy is the RateLimit-Policy field for st, or "" when no limit is set.
func (st Status) Policy() string {
	var b []byte
	w := strconv.FormatInt(int64((st.Window+time.Second-1)/time.Second), 10)
	if st.RPM > 0 {
		b = append(b, callsPolicy+";q="...)
		b = strconv.AppendInt(b, st.RPM, 10)
		b = append(b, ";w="+w...)
	}
	if st.TPM > 0 {
		if len(b) > 0 {
			b = append(b, ", "...)
		}
		b = append(b, tokensPolicy+";q="...)
		b = strconv.AppendInt(b, st.TPM, 10)
		b = append(b, `;qu="tokens";w=`+w...)
	}
	return string(b)
}

// State is the RateLimit field for st, or "" when no limit is set.
func (st Status) State() string {
	var b []byte
	secs := func(d time.Duration) int64 { return int64((max(d, 0) + time.Second - 1) / time.Second) }
	if st.RPM > 0 {
		b = append(b, callsPolicy+";r="...)
		b = strconv.AppendInt(b, st.RemainingCalls, 10)
		b = append(b, ";t="...)
		b = strconv.AppendInt(b, secs(st.ResetCalls), 10)
	}
	if st.TPM > 0 {
		if len(b) > 0 {
			b = append(b, ", "...)
		}
		b = append(b, tokensPolicy+";r="...)
		b = strconv.AppendInt(b, st.RemainingTkns, 10)
		b = append(b, ";t="...)
		b = strconv.AppendInt(b, secs(st.ResetTokens), 10)
	}
	return string(b)
}

// Report carries a request's rate-limit state from the admission of its
// model call to whatever writes its response, which sets the RateLimit
// fields from it: on an admitted call and on a refused one alike. The
// response may be started by another goroutine (a stream's keepalive), so
// it is safe for concurrent use.
type Report struct {
	mu            sync.Mutex
	policy, state string
}

type reportKey struct{}

// WithReport returns a context whose admissions fill r.
func WithReport(ctx context.Context, r *Report) context.Context {
	return context.WithValue(ctx, reportKey{}, r)
}

// Note records st in the Report ctx carries, if any.
func Note(ctx context.Context, st Status) {
	r, _ := ctx.Value(reportKey{}).(*Report)
	if r == nil {
		return
	}
	p, s := st.Policy(), st.State()
	r.mu.Lock()
	r.policy, r.state = p, s
	r.mu.Unlock()
}

// Fields returns the RateLimit-Policy and RateLimit field values noted,
// "" when none was.
func (r *Report) Fields() (policy, state string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.policy, r.state
}

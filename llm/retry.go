package llm

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/ferryhq/ferry"
)

// RetryPolicy says how WithRetry retries. The zero value is the default
// policy.
type RetryPolicy struct {
	// MaxAttempts bounds the calls made, the first included. Default 3.
	MaxAttempts int
	// MaxElapsed bounds the time from the first call to the start of the
	// last: a wait that would end later is not made. Default 30s.
	MaxElapsed time.Duration
	// BaseDelay is the wait before the first retry when the upstream gives
	// no Retry-After; it doubles with each retry, with jitter, up to
	// MaxDelay. Defaults 500ms and 8s.
	BaseDelay time.Duration
	MaxDelay  time.Duration
	// Sleep waits for d, returning early with ctx.Err() when ctx is done.
	// Tests replace it to run without waiting; nil means a timer.
	Sleep func(ctx context.Context, d time.Duration) error
	// Failed, if set, is told of each attempt that failed with an error
	// from the upstream or its transport (a *ferry.Error, not the caller's
	// cancellation), and whether it is tried again: the hook for metrics.
	Failed func(provider string, err *ferry.Error, retrying bool)
}

// WithDefaults returns p with its zero fields set to the defaults
// WithRetry uses, for other clients that retry the same way.
func (p RetryPolicy) WithDefaults() RetryPolicy {
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = 3
	}
	if p.MaxElapsed <= 0 {
		p.MaxElapsed = 30 * time.Second
	}
	if p.BaseDelay <= 0 {
		p.BaseDelay = 500 * time.Millisecond
	}
	if p.MaxDelay <= 0 {
		p.MaxDelay = 8 * time.Second
	}
	if p.Sleep == nil {
		p.Sleep = sleep
	}
	return p
}

// WithRetry returns p with failed calls retried under policy. A call is
// retried when it failed with RateLimited or Unavailable (HTTP 429, 408,
// 5xx, Anthropic's 529, a refused or dropped connection) and, for Stream,
// only while no delta has reached the callback: after that a retry would
// repeat text the caller already has, so the error is returned as it is.
//
// The wait honours the upstream's Retry-After; without one it backs off
// exponentially with jitter. A cancelled ctx ends the wait at once. When
// retries run out on a 429 the RateLimited error always carries a
// RetryAfter, the upstream's or the next backoff.
func WithRetry(p Provider, policy RetryPolicy) Provider {
	return &retrying{Provider: p, policy: policy.WithDefaults()}
}

type retrying struct {
	Provider
	policy RetryPolicy
}

// Stream and Models call the provider in a loop rather than through a
// shared closure: Stream's frames are on a parked stream's stack.
func (r *retrying) Stream(ctx context.Context, req Request, fn func(Delta) error) error {
	d := &delivery{fn: fn}
	start := time.Now()
	for n := 1; ; n++ {
		err := r.Provider.Stream(ctx, req, d.deliver)
		if again, err := r.again(ctx, start, n, !d.delivered, err); !again {
			return err
		}
	}
}

// delivery passes deltas on, noting that one was: a stream that has
// delivered cannot be repeated.
type delivery struct {
	fn        func(Delta) error
	delivered bool
}

func (d *delivery) deliver(delta Delta) error {
	d.delivered = true
	return d.fn(delta)
}

func (r *retrying) Models(ctx context.Context) ([]Model, error) {
	start := time.Now()
	for n := 1; ; n++ {
		models, err := r.Provider.Models(ctx)
		if again, err := r.again(ctx, start, n, true, err); !again {
			return models, err
		}
	}
}

// again reports whether to make attempt n+1 of a call that began at start,
// now that attempt n ended with err (safe: repeating it is still safe),
// having waited for it; if not, the error to return.
func (r *retrying) again(ctx context.Context, start time.Time, n int, safe bool, err error) (bool, error) {
	var fe *ferry.Error
	if err == nil || !errors.As(err, &fe) {
		return false, err
	}
	if !safe || (fe.Code != ferry.RateLimited && fe.Code != ferry.Unavailable) {
		r.failed(fe, false)
		return false, err
	}
	wait := fe.RetryAfter
	if wait == 0 {
		wait = r.backoff(n)
	}
	if n >= r.policy.MaxAttempts || !r.fits(ctx, start, wait) {
		r.failed(fe, false)
		return false, withRetryAfter(fe, wait)
	}
	r.failed(fe, true)
	if err := r.policy.Sleep(ctx, wait); err != nil {
		if ctx.Err() != nil {
			return false, ContextError(ctx, r.Name())
		}
		return false, err
	}
	return true, nil
}

func (r *retrying) failed(fe *ferry.Error, retrying bool) {
	if r.policy.Failed != nil {
		r.policy.Failed(r.Name(), fe, retrying)
	}
}

// backoff is the wait before retry n (1 for the first): exponential, capped
// at MaxDelay, with "equal jitter" so that many clients failing together do
// not come back together, yet none retries at once.
func (r *retrying) backoff(n int) time.Duration {
	d := r.policy.BaseDelay << (n - 1)
	if d > r.policy.MaxDelay || d <= 0 {
		d = r.policy.MaxDelay
	}
	return d/2 + rand.N(d/2+1)
}

// fits reports whether waiting wait still leaves the next call inside both
// MaxElapsed and ctx's deadline.
func (r *retrying) fits(ctx context.Context, start time.Time, wait time.Duration) bool {
	next := time.Now().Add(wait)
	if next.Sub(start) > r.policy.MaxElapsed {
		return false
	}
	deadline, ok := ctx.Deadline()
	return !ok || next.Before(deadline)
}

// withRetryAfter makes sure a RateLimited error tells the client when to
// come back, without changing the error the provider returned.
func withRetryAfter(fe *ferry.Error, wait time.Duration) *ferry.Error {
	if fe.Code != ferry.RateLimited || fe.RetryAfter > 0 {
		return fe
	}
	c := *fe
	c.RetryAfter = max(wait, time.Second)
	return &c
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

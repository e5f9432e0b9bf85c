package llm_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/llm"
)

// scripted is a Provider that answers each call with the next error of
// errs (nil: success), delivering deltas text pieces first.
type scripted struct {
	name   string
	mu     sync.Mutex
	calls  int
	errs   []error
	deltas int
	models []llm.Model
	temps  []float64 // the temperature of each Stream call's request
}

func (s *scripted) Name() string { return s.name }

func (s *scripted) Accepts(k llm.PartKind) bool { return k == llm.PartText }

func (s *scripted) Supports() llm.Support { return llm.Support{Temperature: llm.Range{Min: 0, Max: 1}} }

func (s *scripted) next() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.calls <= len(s.errs) {
		return s.errs[s.calls-1]
	}
	return nil
}

func (s *scripted) Stream(ctx context.Context, req llm.Request, fn func(llm.Delta) error) error {
	if t := req.Sampling.Temperature; t != nil {
		s.mu.Lock()
		s.temps = append(s.temps, *t)
		s.mu.Unlock()
	}
	err := s.next()
	for range s.deltas {
		if ferr := fn(llm.Delta{Text: "x"}); ferr != nil {
			return ferr
		}
	}
	if err != nil {
		return err
	}
	return fn(llm.Delta{Done: true})
}

func (s *scripted) Models(ctx context.Context) ([]llm.Model, error) {
	if err := s.next(); err != nil {
		return nil, err
	}
	return s.models, nil
}

func rateLimited(after time.Duration) error {
	return &ferry.Error{Code: ferry.RateLimited, Message: "slow down", RetryAfter: after}
}

var overloaded = &ferry.Error{Code: ferry.Unavailable, Message: "overloaded"}

// recordWaits returns a policy that waits for nothing and records what it
// was asked to wait.
func recordWaits(p llm.RetryPolicy, waits *[]time.Duration) llm.RetryPolicy {
	p.Sleep = func(ctx context.Context, d time.Duration) error {
		*waits = append(*waits, d)
		return ctx.Err()
	}
	return p
}

func TestRetryRetriesBeforeFirstDelta(t *testing.T) {
	p := &scripted{name: "x", errs: []error{rateLimited(2 * time.Second), overloaded}}
	var waits []time.Duration
	r := llm.WithRetry(p, recordWaits(llm.RetryPolicy{BaseDelay: 100 * time.Millisecond}, &waits))
	var done int
	err := r.Stream(t.Context(), llm.Request{}, func(d llm.Delta) error {
		if d.Done {
			done++
		}
		return nil
	})
	if err != nil || done != 1 || p.calls != 3 {
		t.Fatalf("Stream = %v after %d calls with %d Done, want success on the 3rd call", err, p.calls, done)
	}
	if waits[0] != 2*time.Second {
		t.Errorf("first wait = %v, want Retry-After's 2s", waits[0])
	}
	// The second has no Retry-After: backoff for retry 2 is 200ms with
	// equal jitter, so between 100ms and 200ms.
	if waits[1] < 100*time.Millisecond || waits[1] > 200*time.Millisecond {
		t.Errorf("second wait = %v, want 100ms..200ms", waits[1])
	}
}

func TestRetryNeverAfterFirstDelta(t *testing.T) {
	p := &scripted{name: "x", errs: []error{overloaded}, deltas: 1}
	var waits []time.Duration
	r := llm.WithRetry(p, recordWaits(llm.RetryPolicy{}, &waits))
	err := r.Stream(t.Context(), llm.Request{}, func(llm.Delta) error { return nil })
	if !errors.Is(err, overloaded) || p.calls != 1 {
		t.Fatalf("Stream = %v after %d calls, want the error after 1 call", err, p.calls)
	}
}

func TestRetryOnlyTransientErrors(t *testing.T) {
	for _, err := range []error{
		&ferry.Error{Code: ferry.Upstream, Message: "bad key"},
		&ferry.Error{Code: ferry.Timeout, Message: "slow"},
		context.Canceled,
		errors.New("callback failed"),
	} {
		p := &scripted{name: "x", errs: []error{err}}
		var waits []time.Duration
		got := llm.WithRetry(p, recordWaits(llm.RetryPolicy{}, &waits)).Stream(t.Context(), llm.Request{}, func(llm.Delta) error { return nil })
		if got != err || p.calls != 1 {
			t.Errorf("%v: Stream = %v after %d calls, want it returned as is after 1", err, got, p.calls)
		}
	}
}

func TestRetryGivesUpAfterMaxAttempts(t *testing.T) {
	p := &scripted{name: "x", errs: []error{rateLimited(0), rateLimited(0), rateLimited(0), rateLimited(0)}}
	var waits []time.Duration
	err := llm.WithRetry(p, recordWaits(llm.RetryPolicy{MaxAttempts: 3}, &waits)).
		Stream(t.Context(), llm.Request{}, func(llm.Delta) error { return nil })
	var fe *ferry.Error
	if !errors.As(err, &fe) || fe.Code != ferry.RateLimited || p.calls != 3 {
		t.Fatalf("Stream = %v after %d calls, want RateLimited after 3", err, p.calls)
	}
	if fe.RetryAfter < time.Second {
		t.Errorf("RetryAfter = %v, want the client told when to come back (>= 1s)", fe.RetryAfter)
	}
}

func TestRetryWaitBeyondMaxElapsedIsNotMade(t *testing.T) {
	p := &scripted{name: "x", errs: []error{rateLimited(time.Minute)}}
	var waits []time.Duration
	err := llm.WithRetry(p, recordWaits(llm.RetryPolicy{MaxElapsed: 30 * time.Second}, &waits)).
		Stream(t.Context(), llm.Request{}, func(llm.Delta) error { return nil })
	var fe *ferry.Error
	if !errors.As(err, &fe) || fe.RetryAfter != time.Minute || p.calls != 1 || len(waits) != 0 {
		t.Fatalf("Stream = %v after %d calls and waits %v, want RateLimited (1m) at once", err, p.calls, waits)
	}
}

func TestRetryWaitBeyondDeadlineIsNotMade(t *testing.T) {
	p := &scripted{name: "x", errs: []error{rateLimited(5 * time.Second)}}
	var waits []time.Duration
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	err := llm.WithRetry(p, recordWaits(llm.RetryPolicy{}, &waits)).
		Stream(ctx, llm.Request{}, func(llm.Delta) error { return nil })
	if ferry.ErrorCode(err) != ferry.RateLimited || len(waits) != 0 {
		t.Fatalf("Stream = %v, waits %v; want RateLimited without waiting", err, waits)
	}
}

func TestRetryCancelAbortsWait(t *testing.T) {
	p := &scripted{name: "x", errs: []error{rateLimited(20 * time.Second)}}
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	err := llm.WithRetry(p, llm.RetryPolicy{}).Stream(ctx, llm.Request{}, func(llm.Delta) error { return nil })
	if err != context.Canceled {
		t.Errorf("Stream = %v, want context.Canceled itself", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("cancel took %v to end the wait", d)
	}
}

func TestRetryDeadlineDuringWaitIsTimeout(t *testing.T) {
	p := &scripted{name: "x", errs: []error{rateLimited(0)}}
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	// The wait fits before the deadline, but the deadline passes during it.
	err := llm.WithRetry(p, llm.RetryPolicy{BaseDelay: 10 * time.Millisecond, MaxDelay: 10 * time.Millisecond,
		Sleep: func(ctx context.Context, _ time.Duration) error { <-ctx.Done(); return ctx.Err() },
	}).Stream(ctx, llm.Request{}, func(llm.Delta) error { return nil })
	if ferry.ErrorCode(err) != ferry.Timeout || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Stream = %v, want Timeout wrapping context.DeadlineExceeded", err)
	}
}

func TestRetryModels(t *testing.T) {
	want := []llm.Model{{ID: "x/m", Provider: "x", Name: "m"}}
	p := &scripted{name: "x", errs: []error{overloaded}, models: want}
	var waits []time.Duration
	got, err := llm.WithRetry(p, recordWaits(llm.RetryPolicy{}, &waits)).Models(t.Context())
	if err != nil || len(got) != 1 || p.calls != 2 {
		t.Fatalf("Models = %v, %v after %d calls, want the list after 2", got, err, p.calls)
	}
}

func TestRetryKeepsName(t *testing.T) {
	if got := llm.WithRetry(&scripted{name: "ollama"}, llm.RetryPolicy{}).Name(); got != "ollama" {
		t.Errorf("Name = %q", got)
	}
}

func TestWithRetryKeepsAccepts(t *testing.T) {
	p := llm.WithRetry(&scripted{name: "x"}, llm.RetryPolicy{})
	if !p.Accepts(llm.PartText) || p.Accepts(llm.PartDocument) {
		t.Errorf("Accepts through WithRetry: text %v, document %v; want true, false", p.Accepts(llm.PartText), p.Accepts(llm.PartDocument))
	}
}

// TestWithRetryKeepsSampling checks that a provider's Supports shows
// through WithRetry, so that callers can refuse a parameter before the
// call, and that every attempt sends the request's sampling parameters.
func TestWithRetryKeepsSampling(t *testing.T) {
	inner := &scripted{name: "x", errs: []error{rateLimited(0)}}
	p := llm.WithRetry(inner, recordWaits(llm.RetryPolicy{}, new([]time.Duration)))
	if got := p.Supports(); got.Temperature != (llm.Range{Min: 0, Max: 1}) || got.Seed {
		t.Errorf("Supports through WithRetry = %+v", got)
	}
	temp := 0.25
	if err := p.Stream(t.Context(), llm.Request{Sampling: llm.Sampling{Temperature: &temp}}, func(llm.Delta) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if len(inner.temps) != 2 || inner.temps[0] != temp || inner.temps[1] != temp {
		t.Errorf("temperatures sent = %v, want %v twice", inner.temps, temp)
	}
}

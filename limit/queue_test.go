package limit

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ferryhq/ferry"
)

// acquired is what one Acquire returned.
type acquired struct {
	who     string
	release func()
	waited  time.Duration
	err     error
}

// acquireAsync starts an Acquire and waits until it is either done or
// waiting in the queue, so that calls join the queue in a known order.
func acquireAsync(t *testing.T, q *Queue, ctx context.Context, who, user, provider string, out chan<- acquired) {
	t.Helper()
	before := q.Depth()
	done := make(chan struct{})
	go func() {
		rel, waited, err := q.Acquire(ctx, user, provider)
		out <- acquired{who: who, release: rel, waited: waited, err: err}
		close(done)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for q.Depth() == before {
		select {
		case <-done:
			return
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s neither ran nor queued", who)
		}
		time.Sleep(time.Millisecond)
	}
}

func next(t *testing.T, ch <-chan acquired) acquired {
	t.Helper()
	select {
	case a := <-ch:
		return a
	case <-time.After(5 * time.Second):
		t.Fatal("no call got a slot")
		return acquired{}
	}
}

// TestQueueFair: with one slot, a user who floods the queue does not delay
// another user's single call past the next free slot, and the flood is
// then served in its own order.
func TestQueueFair(t *testing.T) {
	q := NewQueue(QueueOptions{Max: 1, Size: 100, Timeout: time.Minute})
	ctx := context.Background()
	got := make(chan acquired, 100)
	acquireAsync(t, q, ctx, "heavy-0", "heavy", "p", got)
	running := next(t, got)
	if running.err != nil || running.waited != 0 {
		t.Fatalf("first call: %+v", running)
	}
	for i := 1; i <= 20; i++ {
		acquireAsync(t, q, ctx, "heavy-"+string(rune('a'+i)), "heavy", "p", got)
	}
	acquireAsync(t, q, ctx, "light", "light", "p", got)
	if d := q.Depth(); d != 21 {
		t.Fatalf("depth %d, want 21", d)
	}
	running.release()
	first := next(t, got)
	if first.who != "light" {
		t.Fatalf("after one slot freed, %s ran; want the light user's call", first.who)
	}
	if first.waited <= 0 {
		t.Error("Waited not recorded")
	}
	first.release()
	// The heavy user's calls follow in order.
	for i := 1; i <= 20; i++ {
		a := next(t, got)
		if want := "heavy-" + string(rune('a'+i)); a.who != want || a.err != nil {
			t.Fatalf("served %s (%v), want %s", a.who, a.err, want)
		}
		a.release()
	}
	if q.Depth() != 0 || q.Running() != 0 {
		t.Errorf("depth %d, running %d after all, want 0 and 0", q.Depth(), q.Running())
	}
}

// TestQueueRoundRobin: three users with several calls each take turns.
func TestQueueRoundRobin(t *testing.T) {
	q := NewQueue(QueueOptions{Max: 1, Size: 100})
	ctx := context.Background()
	got := make(chan acquired, 100)
	acquireAsync(t, q, ctx, "hold", "x", "p", got)
	hold := next(t, got)
	for _, u := range []string{"a", "a", "a", "b", "b", "b", "c", "c", "c"} {
		acquireAsync(t, q, ctx, u, u, "p", got)
	}
	hold.release()
	var order string
	for range 9 {
		a := next(t, got)
		order += a.who
		a.release()
	}
	// Each user joining is served next, so c, b, a joined in that order of
	// priority, and then they alternate.
	if order != "cbacbacba" {
		t.Errorf("order %s, want users in turn (cbacbacba)", order)
	}
}

func TestQueueTimeout(t *testing.T) {
	q := NewQueue(QueueOptions{Max: 1, Size: 10, Timeout: 50 * time.Millisecond})
	ctx := context.Background()
	rel, _, err := q.Acquire(ctx, "a", "p")
	if err != nil {
		t.Fatal(err)
	}
	_, waited, err := q.Acquire(ctx, "b", "p")
	var fe *ferry.Error
	if !errors.As(err, &fe) || fe.Code != ferry.Unavailable || fe.RetryAfter <= 0 {
		t.Fatalf("after the timeout: %v, want Unavailable with RetryAfter", err)
	}
	if waited < 50*time.Millisecond {
		t.Errorf("gave up after %v, before the timeout", waited)
	}
	if q.Depth() != 0 {
		t.Errorf("depth %d after the timeout, want 0", q.Depth())
	}
	rel()
	if q.Running() != 0 {
		t.Errorf("running %d, want 0", q.Running())
	}
}

func TestQueueFull(t *testing.T) {
	q := NewQueue(QueueOptions{Max: 1, Size: 1, Timeout: time.Minute})
	ctx := context.Background()
	got := make(chan acquired, 3)
	acquireAsync(t, q, ctx, "run", "a", "p", got)
	running := next(t, got)
	acquireAsync(t, q, ctx, "wait", "b", "p", got)
	start := time.Now()
	_, _, err := q.Acquire(ctx, "c", "p")
	var fe *ferry.Error
	if !errors.As(err, &fe) || fe.Code != ferry.Unavailable || fe.RetryAfter <= 0 {
		t.Fatalf("queue full: %v, want Unavailable with RetryAfter", err)
	}
	if time.Since(start) > time.Second {
		t.Error("a full queue made the call wait")
	}
	running.release()
	if a := next(t, got); a.who != "wait" || a.err != nil {
		t.Fatalf("%+v, want the waiting call served", a)
	} else {
		a.release()
	}
}

// TestQueueClientLeaves: a call whose client left is out of the queue at
// once, and the next slot goes to the one behind it.
func TestQueueClientLeaves(t *testing.T) {
	q := NewQueue(QueueOptions{Max: 1, Size: 10, Timeout: time.Minute})
	got := make(chan acquired, 3)
	acquireAsync(t, q, context.Background(), "run", "a", "p", got)
	running := next(t, got)
	ctx, cancel := context.WithCancel(context.Background())
	acquireAsync(t, q, ctx, "leaves", "b", "p", got)
	acquireAsync(t, q, context.Background(), "stays", "c", "p", got)
	cancel()
	a := next(t, got)
	if a.who != "leaves" || !errors.Is(a.err, context.Canceled) {
		t.Fatalf("%+v, want the cancelled call out with its context's error", a)
	}
	if q.Depth() != 1 {
		t.Errorf("depth %d after the client left, want 1", q.Depth())
	}
	running.release()
	if a := next(t, got); a.who != "stays" || a.err != nil {
		t.Fatalf("%+v, want the remaining call served", a)
	} else {
		a.release()
	}
	if q.Running() != 0 || q.Depth() != 0 {
		t.Errorf("running %d, depth %d, want 0, 0", q.Running(), q.Depth())
	}
}

// TestQueuePerProvider: a provider at its own cap holds back only its
// calls.
func TestQueuePerProvider(t *testing.T) {
	q := NewQueue(QueueOptions{Max: 3, PerProvider: map[string]int{"ollama": 1}, Size: 10, Timeout: time.Minute})
	ctx := context.Background()
	got := make(chan acquired, 5)
	acquireAsync(t, q, ctx, "o1", "a", "ollama", got)
	o1 := next(t, got)
	acquireAsync(t, q, ctx, "o2", "a", "ollama", got)
	if q.Depth() != 1 {
		t.Fatalf("a second ollama call did not wait")
	}
	acquireAsync(t, q, ctx, "x1", "b", "anthropic", got)
	if a := next(t, got); a.who != "x1" || a.err != nil {
		t.Fatalf("%+v, want the anthropic call run at once", a)
	} else {
		defer a.release()
	}
	o1.release()
	if a := next(t, got); a.who != "o2" {
		t.Fatalf("%+v, want the second ollama call", a)
	} else {
		a.release()
	}
}

func TestQueueOff(t *testing.T) {
	q := NewQueue(QueueOptions{})
	for range 100 {
		if _, _, err := q.Acquire(context.Background(), "a", "p"); err != nil {
			t.Fatal(err)
		}
	}
}

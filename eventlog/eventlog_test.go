package eventlog_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ferryhq/ferry/eventlog"
	"github.com/ferryhq/ferry/limit/limittest"
)

// event is the n-th event of an answer, as the seed dialect writes one.
func event(n int) string { return fmt.Sprintf("id: %d\ndata: {\"text\":\"tok%d \"}\n\n", n, n) }

// pair returns a writer's logs and a reader's: the same logs in memory,
// two instances' logs on one Redis.
func pair(t *testing.T, backend string, o eventlog.Options) (w, r *eventlog.Logs) {
	t.Helper()
	if backend == "memory" {
		l := eventlog.New(o)
		return l, l
	}
	rdb := limittest.Redis(t)
	o.Redis, o.Prefix = rdb, limittest.Prefix(t, rdb)
	return eventlog.New(o), eventlog.New(o)
}

var backends = []string{"memory", "redis"}

// ids reads cur to the end and returns the ids of its events in order.
func ids(t *testing.T, cur *eventlog.Cursor) []int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var got []int
	for {
		b, err := cur.Next(ctx)
		if err != nil {
			t.Fatalf("after ids %v: %v", got, err)
		}
		for _, ev := range strings.SplitAfter(string(b.Events), "\n\n") {
			if ev == "" {
				continue
			}
			line, _, _ := strings.Cut(ev, "\n")
			n, err := strconv.Atoi(strings.TrimPrefix(line, "id: "))
			if err != nil || ev != event(n) {
				t.Fatalf("event %q is not whole", ev)
			}
			got = append(got, n)
		}
		if b.Done {
			return got
		}
	}
}

func want(from, to int) []int {
	var w []int
	for n := from; n <= to; n++ {
		w = append(w, n)
	}
	return w
}

// TestFollowResumesAfterTheLastEvent writes an answer while a reader that
// came back after event 4 follows it: it gets 5 to the end, each once,
// then done, live; on Redis from another instance.
func TestFollowResumesAfterTheLastEvent(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			wl, rl := pair(t, backend, eventlog.Options{})
			ctx := context.Background()
			if cur, _, err := rl.Follow(ctx, "conv", -1); cur != nil || err != nil {
				t.Fatalf("Follow before any answer: %v, %v; want nothing", cur, err)
			}
			a := wl.Open(ctx, "user", "conv", "answer1")
			a.Append([]byte(event(1) + event(2))) // a start event and the first delta come together
			for n := 3; n <= 6; n++ {
				a.Append([]byte(event(n)))
			}
			cur, owner, err := rl.Follow(ctx, "conv", 4)
			if err != nil || cur == nil || owner != "user" {
				t.Fatalf("Follow: %v, %q, %v", cur, owner, err)
			}
			got := make(chan []int, 1)
			go func() { got <- ids(t, cur) }()
			for n := 7; n <= 40; n++ {
				a.Append([]byte(event(n)))
				if n%10 == 0 {
					time.Sleep(5 * time.Millisecond) // the reader waits for live events too
				}
			}
			a.End([]byte(event(41) + event(42)))
			a.Wait(ctx)
			if g := <-got; fmt.Sprint(g) != fmt.Sprint(want(5, 42)) {
				t.Errorf("events after 4: %v", g)
			}
			if answerID, owner, err := rl.Active(ctx, "conv"); answerID != "answer1" || owner != "user" || err != nil {
				t.Errorf("Active: %q %q %v", answerID, owner, err)
			}
			// Ended: a client that got everything, or none of it, has
			// nothing to follow; one a little behind gets the end.
			for _, after := range []int64{42, -1} {
				if cur, _, err := rl.Follow(ctx, "conv", after); cur != nil || err != nil {
					t.Errorf("Follow(%d) of an ended answer: %v, %v; want nothing", after, cur, err)
				}
			}
			cur, _, err = rl.Follow(ctx, "conv", 40)
			if err != nil || cur == nil {
				t.Fatalf("Follow(40): %v %v", cur, err)
			}
			if g := ids(t, cur); fmt.Sprint(g) != fmt.Sprint(want(41, 42)) {
				t.Errorf("events after 40 of an ended answer: %v", g)
			}
		})
	}
}

// TestLogEndsAfterLinger checks that an ended answer's log is dropped
// Linger after its end, and that a newer answer of the conversation is
// the one followed.
func TestLogEndsAfterLinger(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			wl, rl := pair(t, backend, eventlog.Options{Linger: 100 * time.Millisecond})
			ctx := context.Background()
			old := wl.Open(ctx, "user", "conv", "old")
			old.End([]byte(event(1)))
			old.Wait(ctx)
			a := wl.Open(ctx, "user", "conv", "new")
			a.Append([]byte(event(1)))
			time.Sleep(300 * time.Millisecond)
			if id, _, err := rl.Active(ctx, "conv"); id != "new" || err != nil {
				t.Fatalf("Active after the old answer's linger: %q %v; want new", id, err)
			}
			a.End([]byte(event(2)))
			a.Wait(ctx)
			time.Sleep(300 * time.Millisecond)
			if id, _, err := rl.Active(ctx, "conv"); id != "" || err != nil {
				t.Errorf("Active after linger: %q %v; want none", id, err)
			}
			if cur, _, err := rl.Follow(ctx, "conv", 1); cur != nil || err != nil {
				t.Errorf("Follow after linger: %v %v; want nothing", cur, err)
			}
		})
	}
}

// TestLogIsBounded writes far more than MaxBytes: the log keeps its
// newest events, and a reader from the start gets them without a hole
// after the first it gets.
func TestLogIsBounded(t *testing.T) {
	l := eventlog.New(eventlog.Options{MaxBytes: 4 << 10})
	a := l.Open(context.Background(), "user", "conv", "answer")
	for n := 1; n <= 1000; n++ {
		a.Append([]byte(event(n)))
	}
	a.End([]byte(event(1001)))
	cur, _, _ := l.Follow(context.Background(), "conv", 0)
	got := ids(t, cur)
	if len(got)*len(event(1000)) > 4<<10 || got[len(got)-1] != 1001 || fmt.Sprint(got) != fmt.Sprint(want(got[0], 1001)) {
		t.Errorf("kept %d events: %v", len(got), got)
	}
}

// TestRemoteReaderSeesAGoneLog checks that a reader on another instance
// ends with ErrGone when the answer's keys expire without an end, its
// instance having died (here: lost Redis), and that until then the
// instance's renewals keep a silent answer followable.
func TestRemoteReaderSeesAGoneLog(t *testing.T) {
	rdb := limittest.Redis(t)
	o := eventlog.Options{LiveTTL: time.Second, Prefix: limittest.Prefix(t, rdb)}
	// The generating instance has its own connection, to lose.
	wo := o
	wo.Redis = redis.NewClient(rdb.Options())
	wl := eventlog.New(wo)
	o.Redis = rdb
	rl := eventlog.New(o)
	ctx := context.Background()
	a := wl.Open(ctx, "user", "conv", "answer")
	t.Cleanup(func() { a.End(nil) }) // its mirror stops
	a.Append([]byte(event(1)))
	cur, _, err := rl.Follow(ctx, "conv", -1)
	if err != nil || cur == nil {
		t.Fatalf("Follow: %v %v", cur, err)
	}
	// Silent for three times LiveTTL, the answer is still followed.
	silent, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	var got []byte
	for {
		b, err := cur.Next(silent)
		if err == context.DeadlineExceeded {
			break
		}
		if err != nil {
			t.Fatalf("Next while the answer is silent: %v; want it still followed", err)
		}
		got = append(got, b.Events...)
	}
	if string(got) != event(1) {
		t.Fatalf("read %q before the silence, want the first event", got)
	}
	a.Append([]byte(event(2)))
	b, err := cur.Next(ctx)
	if err != nil || string(b.Events) != event(2) {
		t.Fatalf("after the silence: %q, %v; want the second event", b.Events, err)
	}

	// The instance loses Redis (as if it died): the reader learns it.
	wo.Redis.Close()
	start := time.Now()
	rctx, cancelRead := context.WithTimeout(ctx, 15*time.Second)
	defer cancelRead()
	for {
		_, err := cur.Next(rctx)
		if err == eventlog.ErrGone {
			t.Logf("gone after %v", time.Since(start).Round(100*time.Millisecond))
			return
		}
		if err != nil {
			t.Fatalf("Next: %v; want ErrGone", err)
		}
	}
}

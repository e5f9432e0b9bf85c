package limit

import (
	"context"
	"testing"
	"time"

	"github.com/ferryhq/ferry"
)

// TestAdmissionNotesAndForgets: an admission notes the caller's limits for
// the response, the API key's own limit narrows the user's, an override
// replaces the default, and a call the queue refuses does not count.
func TestAdmissionNotesAndForgets(t *testing.T) {
	a := &Admission{Rates: NewMemoryRates(time.Minute, nil), Default: ferry.Limits{RPM: 3},
		Queue: NewQueue(QueueOptions{Max: 1, Size: 0})}
	user := &ferry.User{ID: "u1"}
	p := &ferry.Principal{User: user}
	var rep Report
	ctx := WithReport(context.Background(), &rep)

	t1, err := a.Admit(ctx, Request{Principal: p, Provider: "x", Tokens: 5})
	if err != nil {
		t.Fatal(err)
	}
	if policy, state := rep.Fields(); policy != `"calls";q=3;w=60` || state != `"calls";r=2;t=60` {
		t.Errorf("noted %q, %q", policy, state)
	}
	// The slot is taken and nobody may wait: refused, and not counted.
	if _, err := a.Admit(ctx, Request{Principal: p, Provider: "x"}); ferry.ErrorCode(err) != ferry.Unavailable {
		t.Fatalf("over the cap: %v, want Unavailable", err)
	}
	t1.Done(7)
	for i := range 2 {
		tk, err := a.Admit(ctx, Request{Principal: p, Provider: "x"})
		if err != nil {
			t.Fatalf("call %d of 3 (the refused one not counted): %v", i+2, err)
		}
		tk.Done(1)
	}
	if _, err := a.Admit(ctx, Request{Principal: p, Provider: "x"}); ferry.ErrorCode(err) != ferry.RateLimited {
		t.Fatalf("4th call of 3: %v", err)
	}
	if _, state := rep.Fields(); state != `"calls";r=0;t=60` {
		t.Errorf("refused: noted %q", state)
	}

	// An admin's override replaces the default; a key's limit narrows it.
	p2 := &ferry.Principal{User: &ferry.User{ID: "u2", Limits: ferry.Limits{RPM: 100}}, APIKeyID: "k2", KeyLimits: ferry.Limits{RPM: 1}}
	tk, err := a.Admit(ctx, Request{Principal: p2})
	if err != nil {
		t.Fatal(err)
	}
	tk.Done(0)
	if policy, _ := rep.Fields(); policy != `"calls";q=1;w=60` {
		t.Errorf("with the key's limit: policy %q", policy)
	}
	if _, err := a.Admit(ctx, Request{Principal: p2}); ferry.ErrorCode(err) != ferry.RateLimited {
		t.Fatalf("the key's 2nd call of 1: %v", err)
	}
	p2.APIKeyID = "" // signed in rather than by key: the user's 100
	tk, err = a.Admit(ctx, Request{Principal: p2})
	if err != nil {
		t.Fatalf("the user's own 2nd call of 100: %v", err)
	}
	tk.Done(0)
	// A negative override lifts the limit.
	p3 := &ferry.Principal{User: &ferry.User{ID: "u3", Limits: ferry.Limits{RPM: -1}}}
	for range 5 {
		tk, err := a.Admit(ctx, Request{Principal: p3})
		if err != nil {
			t.Fatalf("unlimited user: %v", err)
		}
		tk.Done(0)
	}
}

// TestAdmissionUnqueued: a call that needs no upstream (an answer-cache
// hit) is admitted while every slot is taken, and counts as a call.
func TestAdmissionUnqueued(t *testing.T) {
	a := &Admission{Rates: NewMemoryRates(time.Minute, nil), Default: ferry.Limits{RPM: 2},
		Queue: NewQueue(QueueOptions{Max: 1, Size: 0})}
	p := &ferry.Principal{User: &ferry.User{ID: "u1"}}
	ctx := context.Background()
	busy, err := a.Admit(ctx, Request{Principal: p, Provider: "x", Tokens: 5})
	if err != nil {
		t.Fatal(err)
	}
	hit, err := a.Admit(ctx, Request{Principal: p, Provider: "x", Unqueued: true})
	if err != nil {
		t.Fatalf("a hit while the only slot is taken: %v", err)
	}
	hit.Done(0)
	busy.Done(5)
	if _, err := a.Admit(ctx, Request{Principal: p, Provider: "x", Unqueued: true}); ferry.ErrorCode(err) != ferry.RateLimited {
		t.Errorf("a 3rd call of 2, a hit: %v, want RateLimited", err)
	}
}

package auth

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestHashSlotsKeepSignInsTheirOwn is issue 7's "300 accounts in 5.2 s
// pushed a normal login from 96 ms to 3.5 s": registrations saturating the
// hashing capacity must leave sign-ins slots of their own.
func TestHashSlotsKeepSignInsTheirOwn(t *testing.T) {
	h := newHashSlots(1, 2)
	ctx := context.Background()
	// Registrations take every shared slot and hold them.
	for range 2 {
		if _, err := h.acquire(ctx, false); err != nil {
			t.Fatal(err)
		}
	}
	short := func() context.Context {
		c, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		t.Cleanup(cancel)
		return c
	}
	if _, err := h.acquire(short(), false); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a third registration got a slot (%v); want it to wait", err)
	}
	done, err := h.acquire(short(), true)
	if err != nil {
		t.Fatalf("a sign-in waited while registrations held the shared slots: %v", err)
	}
	// Its own slots are all it gets beyond the shared ones.
	if _, err := h.acquire(short(), true); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a second sign-in got a slot beyond the bound (%v)", err)
	}
	done()
	if _, err := h.acquire(short(), true); err != nil {
		t.Fatalf("a sign-in after one ended: %v", err)
	}
}

// TestHashSlotsSignInsUseShared: with no registrations about, sign-ins may
// use every slot.
func TestHashSlotsSignInsUseShared(t *testing.T) {
	h := newHashSlots(1, 2)
	for i := range 3 {
		c, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		_, err := h.acquire(c, true)
		cancel()
		if err != nil {
			t.Fatalf("sign-in %d: %v", i+1, err)
		}
	}
}

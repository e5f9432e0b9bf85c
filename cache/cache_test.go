package cache_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/cache"
	"github.com/ferryhq/ferry/limit/limittest"
)

// clock is a fake time for the memory store.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func entry(text string) *cache.Entry {
	return &cache.Entry{Deltas: []string{text[:len(text)/2], text[len(text)/2:]}, StopReason: "end_turn", Model: "m"}
}

// runStore checks what both stores promise: a put entry comes back whole
// until its TTL passes, and one over the entry cap is not kept.
func runStore(t *testing.T, s cache.Store, advance func(time.Duration)) {
	ctx := context.Background()
	if _, ok, err := s.Get(ctx, "k1"); ok || err != nil {
		t.Fatalf("empty store: %v, %v", ok, err)
	}
	if err := s.Put(ctx, "k1", entry("hello world")); err != nil {
		t.Fatal(err)
	}
	e, ok, err := s.Get(ctx, "k1")
	if err != nil || !ok {
		t.Fatalf("after Put: %v, %v", ok, err)
	}
	if e.Text() != "hello world" || len(e.Deltas) != 2 || e.StopReason != "end_turn" || e.Model != "m" {
		t.Errorf("got %+v back", e)
	}
	if err := s.Put(ctx, "big", entry(strings.Repeat("x", 5000))); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.Get(ctx, "big"); ok {
		t.Error("an entry over the entry cap was kept")
	}
	advance(2 * time.Second)
	if _, ok, _ := s.Get(ctx, "k1"); ok {
		t.Error("an entry outlived its TTL")
	}
}

func TestMemory(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	m := cache.NewMemory(cache.Limits{TTL: time.Second, MaxBytes: 100_000, MaxEntryBytes: 4096}, c.now)
	runStore(t, m, func(d time.Duration) { c.t = c.t.Add(d) })
}

func TestRedis(t *testing.T) {
	rdb := limittest.Redis(t)
	prefix := limittest.Prefix(t, rdb)
	r := cache.NewRedis(rdb, prefix, cache.Limits{TTL: time.Second, MaxEntryBytes: 4096})
	runStore(t, r, func(d time.Duration) { time.Sleep(d + 100*time.Millisecond) })
	// The key is the caller's hash under the prefix; the answer is the
	// value, and it expires.
	ctx := context.Background()
	r.Put(ctx, "abc", entry("secret answer"))
	ttl, err := rdb.PTTL(ctx, prefix+"abc").Result()
	if err != nil || ttl <= 0 || ttl > time.Second {
		t.Errorf("TTL %v, %v; want at most 1 s", ttl, err)
	}
}

// TestMemoryEvictsLeastRecentlyUsed checks the memory bound: when full,
// the entry used least recently goes first, and the total stays under
// MaxBytes.
func TestMemoryEvictsLeastRecentlyUsed(t *testing.T) {
	ctx := context.Background()
	m := cache.NewMemory(cache.Limits{TTL: time.Hour, MaxBytes: 1000, MaxEntryBytes: 1000}, nil)
	text := strings.Repeat("y", 200) // about 300 bytes held each
	for _, k := range []string{"a", "b", "c"} {
		m.Put(ctx, k, entry(text))
	}
	m.Get(ctx, "a") // b is now the least recently used
	m.Put(ctx, "d", entry(text))
	for k, want := range map[string]bool{"a": true, "b": false, "c": true, "d": true} {
		if _, ok, _ := m.Get(ctx, k); ok != want {
			t.Errorf("%s kept: %v, want %v", k, ok, want)
		}
	}
	if n, bytes := m.Len(); n != 3 || bytes > 1000 {
		t.Errorf("%d entries, %d bytes; want 3 within 1000", n, bytes)
	}
}

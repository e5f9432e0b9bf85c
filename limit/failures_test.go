package limit

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/limit/limittest"
)

// testPolicy: the first 3 attempts free, the next three held 100, 200,
// 250 (capped) ms, then refused from the 7th for a minute.
var testPolicy = Policy{
	Window:     time.Minute,
	SlowAfter:  3,
	BlockAfter: 6,
	FirstDelay: 100 * time.Millisecond,
	MaxDelay:   250 * time.Millisecond,
}

// shortWindow is for cases that wait out the window; Redis waits in real time.
var shortWindow = Policy{Window: 700 * time.Millisecond, SlowAfter: 3, BlockAfter: 6,
	FirstDelay: 100 * time.Millisecond, MaxDelay: 250 * time.Millisecond}

// step lets time pass, makes pre reservations whose answers are not
// checked, and then either does op or, when op is empty, makes one more
// reservation and checks its answer.
type step struct {
	key, group string // key "k" when empty
	scale      int64
	advance    time.Duration
	pre        int
	op         string // "release", "reset", "reset group"

	wantDelay   time.Duration
	wantBlocked bool
}

var failuresCases = []struct {
	name   string
	policy Policy
	steps  []step
}{
	{"unknown key is free", testPolicy, []step{{}}},
	{"free below SlowAfter", testPolicy, []step{{pre: 2}}},
	{"slowed, doubling, capped, then refused", testPolicy, []step{
		{pre: 3, wantDelay: 100 * time.Millisecond},
		{wantDelay: 200 * time.Millisecond},
		{wantDelay: 250 * time.Millisecond},
		{wantBlocked: true},
	}},
	{"refused attempts are not counted", testPolicy, []step{
		{pre: 6, wantBlocked: true},
		{pre: 3, wantBlocked: true},
		{op: "release"},
		{wantDelay: 250 * time.Millisecond},
		{wantBlocked: true},
	}},
	{"release gives back one attempt", testPolicy, []step{
		{pre: 3, wantDelay: 100 * time.Millisecond},
		{op: "release"},
		{op: "release"},
		{},
		{wantDelay: 100 * time.Millisecond},
	}},
	{"release of an unknown key counts nothing", testPolicy, []step{{op: "release"}, {pre: 2}}},
	{"reset clears a block", testPolicy, []step{{pre: 6, wantBlocked: true}, {op: "reset"}, {pre: 2}}},
	{"reset of an unknown key", testPolicy, []step{{op: "reset"}, {}}},
	{"keys are independent", testPolicy, []step{
		{key: "login:a@example.com", pre: 6, wantBlocked: true},
		{key: "login:b@example.com"},
		{key: "addr:192.0.2.1", pre: 4, wantDelay: 200 * time.Millisecond},
		{key: "login:a@example.com", wantBlocked: true},
	}},
	{"scale multiplies the thresholds", testPolicy, []step{
		{scale: 10, pre: 29},
		{scale: 10, wantDelay: 100 * time.Millisecond},
		{scale: 10, pre: 28, wantDelay: 250 * time.Millisecond},
		{scale: 10, wantBlocked: true},
	}},
	{"reset group clears its keys and no other", testPolicy, []step{
		{key: "a", group: "account:x", pre: 6, wantBlocked: true},
		{key: "b", group: "account:x", pre: 6, wantBlocked: true},
		{key: "c", group: "account:y", pre: 6, wantBlocked: true},
		{key: "d", pre: 6, wantBlocked: true},
		{group: "account:x", op: "reset group"},
		{key: "a", group: "account:x", pre: 2},
		{key: "b"},
		{key: "c", wantBlocked: true},
		{key: "d", wantBlocked: true},
	}},
	{"block lapses with the window", shortWindow, []step{
		{pre: 6, wantBlocked: true},
		{advance: 800 * time.Millisecond},
		{pre: 2, wantDelay: 100 * time.Millisecond}, // counting started over
	}},
	{"later attempts do not extend the window", shortWindow, []step{
		{},
		{advance: 400 * time.Millisecond, pre: 5, wantBlocked: true},
		{advance: 400 * time.Millisecond},
	}},
	{"zero policy means the default", Policy{}, []step{
		{pre: 5, wantDelay: 250 * time.Millisecond},
		{pre: 3, wantDelay: 2 * time.Second},
		{wantBlocked: true},
	}},
}

// newFailures makes a fresh, empty Failures under test and a function that
// lets time pass for it.
type newFailures func(t *testing.T, p Policy) (Failures, func(time.Duration))

func runFailuresCases(t *testing.T, newF newFailures) {
	for _, tc := range failuresCases {
		t.Run(tc.name, func(t *testing.T) {
			f, advance := newF(t, tc.policy)
			ctx := context.Background()
			window := tc.policy.withDefaults().Window
			for i, s := range tc.steps {
				k := Key{Name: s.key, Group: s.group, Scale: s.scale}
				if k.Name == "" {
					k.Name = "k"
				}
				if s.advance > 0 {
					advance(s.advance)
				}
				for range s.pre {
					if _, err := f.Reserve(ctx, k); err != nil && ferry.ErrorCode(err) != ferry.RateLimited {
						t.Fatalf("step %d: Reserve: %v", i, err)
					}
				}
				var err error
				switch s.op {
				case "release":
					err = f.Release(ctx, k)
				case "reset":
					err = f.Reset(ctx, k)
				case "reset group":
					err = f.ResetGroup(ctx, k.Group)
				}
				if err != nil {
					t.Fatalf("step %d: %s: %v", i, s.op, err)
				}
				if s.op != "" {
					continue
				}
				delay, err := f.Reserve(ctx, k)
				if s.wantBlocked {
					var fe *ferry.Error
					if !errors.As(err, &fe) || fe.Code != ferry.RateLimited {
						t.Fatalf("step %d: Reserve = %v, %v; want RateLimited", i, delay, err)
					}
					if fe.RetryAfter <= 0 || fe.RetryAfter > window {
						t.Errorf("step %d: RetryAfter = %v; want within (0, %v]", i, fe.RetryAfter, window)
					}
					if !strings.Contains(fe.Message, "try again in ") {
						t.Errorf("step %d: message %q does not say how long to wait", i, fe.Message)
					}
					continue
				}
				if err != nil || delay != s.wantDelay {
					t.Fatalf("step %d: Reserve = %v, %v; want %v, nil", i, delay, err, s.wantDelay)
				}
			}
		})
	}
}

// testClock is a settable clock for MemoryFailures.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newMemory(t *testing.T, p Policy) (Failures, func(time.Duration)) {
	c := &testClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	return NewMemoryFailures(p, c.now), c.advance
}

func TestMemoryFailures(t *testing.T) { runFailuresCases(t, newMemory) }

func TestRedisFailures(t *testing.T) {
	rdb := limittest.Redis(t)
	runFailuresCases(t, func(t *testing.T, p Policy) (Failures, func(time.Duration)) {
		return NewRedisFailures(rdb, limittest.Prefix(t, rdb), p), time.Sleep
	})
}

// TestReserveParallel is issue 7's "199 wrong passwords sent at once were
// all verified": attempts racing on one key, on two instances sharing
// Redis, must not all pass before any is counted.
func TestReserveParallel(t *testing.T) {
	check := func(t *testing.T, instances ...Failures) {
		var passed, refused atomic.Int64
		var wg sync.WaitGroup
		for i := range 200 {
			f := instances[i%len(instances)]
			wg.Go(func() {
				_, err := f.Reserve(context.Background(), Key{Name: "login:victim"})
				switch {
				case err == nil:
					passed.Add(1)
				case ferry.ErrorCode(err) == ferry.RateLimited:
					refused.Add(1)
				default:
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if passed.Load() != testPolicy.BlockAfter || refused.Load() != 200-testPolicy.BlockAfter {
			t.Errorf("200 parallel attempts: %d let through, %d refused; want exactly %d through", passed.Load(), refused.Load(), testPolicy.BlockAfter)
		}
	}
	t.Run("memory", func(t *testing.T) { check(t, NewMemoryFailures(testPolicy, nil)) })
	t.Run("redis, two instances", func(t *testing.T) {
		prefix := limittest.Prefix(t, limittest.Redis(t))
		check(t, NewRedisFailures(limittest.Redis(t), prefix, testPolicy), NewRedisFailures(limittest.Redis(t), prefix, testPolicy))
	})
}

func TestRedisFailuresRepairsMissingExpiry(t *testing.T) {
	rdb := limittest.Redis(t)
	ctx := context.Background()
	f := NewRedisFailures(rdb, limittest.Prefix(t, rdb), testPolicy)
	k := f.redisKey("k")
	if err := rdb.Set(ctx, k, 9, 0).Err(); err != nil {
		t.Fatal(err)
	}
	// A count without expiry blocks, reporting the whole window, and gets
	// one, so it cannot block forever.
	_, err := f.Reserve(ctx, Key{Name: "k"})
	var fe *ferry.Error
	if !errors.As(err, &fe) || fe.RetryAfter != testPolicy.Window {
		t.Fatalf("Reserve = %v; want RateLimited for the whole window", err)
	}
	if ttl := rdb.PTTL(ctx, k).Val(); ttl <= 0 || ttl > testPolicy.Window {
		t.Errorf("PTTL after Reserve = %v; want within the window", ttl)
	}
}

func TestRedisFailuresHidesKeys(t *testing.T) {
	rdb := limittest.Redis(t)
	ctx := context.Background()
	prefix := limittest.Prefix(t, rdb)
	f := NewRedisFailures(rdb, prefix, testPolicy)
	if _, err := f.Reserve(ctx, Key{Name: "login:alice@example.com|192.0.2.1", Group: "account:alice@example.com"}); err != nil {
		t.Fatal(err)
	}
	keys, err := rdb.Keys(ctx, prefix+"*").Result()
	if err != nil || len(keys) != 2 {
		t.Fatalf("keys = %v, %v; want the count and its group", keys, err)
	}
	for _, k := range keys {
		rest := strings.TrimPrefix(strings.TrimPrefix(k, prefix), "g:")
		if len(rest) != 32 || strings.Contains(k, "alice") {
			t.Errorf("stored key %q is not the prefix and a 128-bit hex hash", k)
		}
	}
	members := rdb.SMembers(ctx, f.groupKey("account:alice@example.com")).Val()
	if len(members) != 1 || strings.Contains(members[0], "alice") {
		t.Errorf("group members = %v; want the one hashed key", members)
	}
}

func TestRedisFailuresUnreachable(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{
		Dialer: func(context.Context, string, string) (net.Conn, error) {
			return nil, errors.New("no Redis here")
		},
		MaxRetries:         -1,
		DialerRetries:      1,
		DialerRetryTimeout: time.Millisecond,
	})
	defer rdb.Close()
	f := NewRedisFailures(rdb, "x:", testPolicy)
	ctx := context.Background()
	if _, err := f.Reserve(ctx, Key{Name: "k", Group: "g"}); err == nil || ferry.ErrorCode(err) == ferry.RateLimited {
		t.Errorf("Reserve = %v; want a store error", err)
	}
	if err := f.Release(ctx, Key{Name: "k"}); err == nil {
		t.Error("Release succeeded without Redis")
	}
	if err := f.Reset(ctx, Key{Name: "k"}); err == nil {
		t.Error("Reset succeeded without Redis")
	}
	if err := f.ResetGroup(ctx, "g"); err == nil {
		t.Error("ResetGroup succeeded without Redis")
	}
}

func TestMemoryFailuresSweepsExpired(t *testing.T) {
	c := &testClock{t: time.Now()}
	f := NewMemoryFailures(testPolicy, c.now)
	ctx := context.Background()
	for _, k := range []string{"a", "b", "c"} {
		f.Reserve(ctx, Key{Name: k, Group: "g:" + k})
	}
	c.advance(testPolicy.Window + memorySweepEvery)
	f.Reserve(ctx, Key{Name: "d"})
	if n, g := len(f.entries), len(f.groups); n != 1 || g != 0 {
		t.Errorf("%d entries and %d groups after the window passed; want only the new entry", n, g)
	}
}

func TestMemoryFailuresBounded(t *testing.T) {
	f := NewMemoryFailures(testPolicy, nil)
	f.maxKeys = 10
	ctx := context.Background()
	for i := range 100 {
		f.Reserve(ctx, Key{Name: string(rune('a' + i)), Group: "g"})
	}
	if n, m := len(f.entries), len(f.groups[hashKey("g")]); n > 10 || m != n {
		t.Errorf("%d entries, %d in their group; want at most 10, all in it", n, m)
	}
}

func TestVerdictHugeCounts(t *testing.T) {
	p := Policy{SlowAfter: 1, BlockAfter: 1 << 62}.withDefaults()
	if d, err := p.verdict(1<<40, time.Minute); err != nil || d != p.MaxDelay {
		t.Errorf("verdict = %v, %v; want the maximum delay", d, err)
	}
}

func TestInWords(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                                 "1 second",
		time.Millisecond:                  "1 second",
		40 * time.Second:                  "40 seconds",
		59*time.Second + time.Millisecond: "1 minute",
		894 * time.Second:                 "15 minutes",
		time.Hour:                         "60 minutes",
		2 * time.Hour:                     "120 minutes",
		2*time.Hour + time.Second:         "3 hours",
	} {
		if got := InWords(d); got != want {
			t.Errorf("InWords(%v) = %q; want %q", d, got, want)
		}
	}
}

func BenchmarkMemoryFailuresReserve(b *testing.B) {
	f := NewMemoryFailures(Policy{BlockAfter: 1 << 62, SlowAfter: 1 << 62}, nil)
	ctx := context.Background()
	k := Key{Name: "login:alice@example.com|192.0.2.1", Group: "account:alice@example.com"}
	b.ReportAllocs()
	for b.Loop() {
		f.Reserve(ctx, k)
	}
}

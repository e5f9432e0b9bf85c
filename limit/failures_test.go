package limit

import (
	"context"
	"crypto/rand"
	"errors"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ferryhq/ferry"
)

// testPolicy: free up to 3 failures, slowed 100, 200, 250 (capped) ms, then
// blocked from the 6th failure for a minute.
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

// step acts on a key and then checks it.
type step struct {
	key     string // "k" when empty
	fail    int    // failures to record
	reset   bool
	advance time.Duration // time to let pass before checking

	wantDelay   time.Duration
	wantBlocked bool
}

var failuresCases = []struct {
	name   string
	policy Policy
	steps  []step
}{
	{"unknown key is free", testPolicy, []step{{}}},
	{"free below SlowAfter", testPolicy, []step{{fail: 1}, {fail: 1}}},
	{"slowed, doubling, capped", testPolicy, []step{
		{fail: 2},
		{fail: 1, wantDelay: 100 * time.Millisecond},
		{fail: 1, wantDelay: 200 * time.Millisecond},
		{fail: 1, wantDelay: 250 * time.Millisecond},
	}},
	{"blocked at BlockAfter", testPolicy, []step{{fail: 6, wantBlocked: true}, {fail: 3, wantBlocked: true}}},
	{"reset clears a block", testPolicy, []step{{fail: 6, wantBlocked: true}, {reset: true}, {fail: 1}}},
	{"reset of an unknown key", testPolicy, []step{{reset: true}}},
	{"keys are independent", testPolicy, []step{
		{key: "email:a@example.com", fail: 6, wantBlocked: true},
		{key: "email:b@example.com"},
		{key: "ip:192.0.2.1", fail: 4, wantDelay: 200 * time.Millisecond},
		{key: "email:a@example.com", wantBlocked: true},
	}},
	{"block lapses with the window", shortWindow, []step{
		{fail: 6, wantBlocked: true},
		{advance: 800 * time.Millisecond},
		{fail: 3, wantDelay: 100 * time.Millisecond}, // counting started over
	}},
	{"later failures do not extend the window", shortWindow, []step{
		{fail: 1},
		{advance: 400 * time.Millisecond, fail: 5, wantBlocked: true},
		{advance: 400 * time.Millisecond},
	}},
	{"zero policy means the default", Policy{}, []step{
		{fail: 4},
		{fail: 1, wantDelay: 250 * time.Millisecond},
		{fail: 5, wantBlocked: true},
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
				key := s.key
				if key == "" {
					key = "k"
				}
				if s.advance > 0 {
					advance(s.advance)
				}
				if s.reset {
					if err := f.Reset(ctx, key); err != nil {
						t.Fatalf("step %d: Reset: %v", i, err)
					}
				}
				for range s.fail {
					if err := f.Fail(ctx, key); err != nil {
						t.Fatalf("step %d: Fail: %v", i, err)
					}
				}
				delay, err := f.Check(ctx, key)
				if s.wantBlocked {
					var fe *ferry.Error
					if !errors.As(err, &fe) || fe.Code != ferry.RateLimited {
						t.Fatalf("step %d: Check = %v, %v; want RateLimited", i, delay, err)
					}
					if fe.RetryAfter <= 0 || fe.RetryAfter > window {
						t.Errorf("step %d: RetryAfter = %v; want within (0, %v]", i, fe.RetryAfter, window)
					}
					continue
				}
				if err != nil || delay != s.wantDelay {
					t.Fatalf("step %d: Check = %v, %v; want %v, nil", i, delay, err, s.wantDelay)
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
	rdb := testRedis(t)
	runFailuresCases(t, func(t *testing.T, p Policy) (Failures, func(time.Duration)) {
		return NewRedisFailures(rdb, testPrefix(t, rdb), p), time.Sleep
	})
}

func TestRedisFailuresRepairsMissingExpiry(t *testing.T) {
	rdb := testRedis(t)
	ctx := context.Background()
	f := NewRedisFailures(rdb, testPrefix(t, rdb), testPolicy)
	k := f.redisKey("k")
	if err := rdb.Set(ctx, k, 9, 0).Err(); err != nil {
		t.Fatal(err)
	}
	// A count without expiry blocks, reporting the whole window...
	_, err := f.Check(ctx, "k")
	var fe *ferry.Error
	if !errors.As(err, &fe) || fe.RetryAfter != testPolicy.Window {
		t.Fatalf("Check = %v; want RateLimited for the whole window", err)
	}
	// ...and the next failure gives it one, so it cannot block forever.
	if err := f.Fail(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if ttl := rdb.PTTL(ctx, k).Val(); ttl <= 0 || ttl > testPolicy.Window {
		t.Errorf("PTTL after Fail = %v; want within the window", ttl)
	}
}

func TestRedisFailuresHidesKeys(t *testing.T) {
	rdb := testRedis(t)
	ctx := context.Background()
	prefix := testPrefix(t, rdb)
	f := NewRedisFailures(rdb, prefix, testPolicy)
	if err := f.Fail(ctx, "email:alice@example.com"); err != nil {
		t.Fatal(err)
	}
	keys, err := rdb.Keys(ctx, prefix+"*").Result()
	if err != nil || len(keys) != 1 {
		t.Fatalf("keys = %v, %v; want one", keys, err)
	}
	if len(keys[0]) != len(prefix)+32 {
		t.Errorf("stored key %q is not the prefix and a 128-bit hex hash", keys[0])
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
	if _, err := f.Check(ctx, "k"); err == nil || ferry.ErrorCode(err) == ferry.RateLimited {
		t.Errorf("Check = %v; want a store error", err)
	}
	if err := f.Fail(ctx, "k"); err == nil {
		t.Error("Fail succeeded without Redis")
	}
	if err := f.Reset(ctx, "k"); err == nil {
		t.Error("Reset succeeded without Redis")
	}
}

func testRedis(t *testing.T) *redis.Client {
	t.Helper()
	url := os.Getenv("FERRY_TEST_REDIS_URL")
	if url == "" {
		t.Skip("FERRY_TEST_REDIS_URL not set: skipping Redis tests")
	}
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatalf("FERRY_TEST_REDIS_URL: %v", err)
	}
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	if err := rdb.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("Redis at FERRY_TEST_REDIS_URL: %v", err)
	}
	return rdb
}

// testPrefix returns a key prefix no other test uses and deletes its keys
// when t ends.
func testPrefix(t *testing.T, rdb *redis.Client) string {
	prefix := "ferry-test:" + rand.Text() + ":"
	t.Cleanup(func() {
		ctx := context.Background()
		iter := rdb.Scan(ctx, 0, prefix+"*", 100).Iterator()
		for iter.Next(ctx) {
			rdb.Del(ctx, iter.Val())
		}
	})
	return prefix
}

func TestMemoryFailuresConcurrent(t *testing.T) {
	f := NewMemoryFailures(Policy{BlockAfter: 1000, SlowAfter: 999}, nil)
	ctx := context.Background()
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			for range 100 {
				f.Fail(ctx, "k")
				f.Check(ctx, "k")
			}
		})
	}
	wg.Wait()
	if _, err := f.Check(ctx, "k"); ferry.ErrorCode(err) != ferry.RateLimited {
		t.Errorf("1000 concurrent failures did not all count: Check = %v", err)
	}
}

func TestMemoryFailuresSweepsExpired(t *testing.T) {
	c := &testClock{t: time.Now()}
	f := NewMemoryFailures(testPolicy, c.now)
	ctx := context.Background()
	for _, k := range []string{"a", "b", "c"} {
		f.Fail(ctx, k)
	}
	c.advance(testPolicy.Window + memorySweepEvery)
	f.Fail(ctx, "d")
	if n := len(f.entries); n != 1 {
		t.Errorf("%d entries after the window passed; want only the new one", n)
	}
}

func TestMemoryFailuresBounded(t *testing.T) {
	f := NewMemoryFailures(testPolicy, nil)
	f.maxKeys = 10
	ctx := context.Background()
	for i := range 100 {
		f.Fail(ctx, string(rune('a'+i)))
	}
	if n := len(f.entries); n > 10 {
		t.Errorf("%d entries; want at most 10", n)
	}
}

func TestVerdictHugeCounts(t *testing.T) {
	p := Policy{SlowAfter: 1, BlockAfter: 1 << 62}.withDefaults()
	if d, err := p.verdict(1<<40, time.Minute); err != nil || d != p.MaxDelay {
		t.Errorf("verdict = %v, %v; want the maximum delay", d, err)
	}
}

func BenchmarkMemoryFailuresCheck(b *testing.B) {
	f := NewMemoryFailures(DefaultPolicy, nil)
	ctx := context.Background()
	f.Fail(ctx, "email:alice@example.com")
	b.ReportAllocs()
	for b.Loop() {
		f.Check(ctx, "email:alice@example.com")
	}
}

package limit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
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

// ratesUnderTest is one Rates with a window and a way to let time pass.
type ratesUnderTest struct {
	r       Rates
	window  time.Duration
	advance func(time.Duration)
}

// eachRates runs fn on a MemoryRates with a fake clock and, when
// FERRY_TEST_REDIS_URL is set, on a RedisRates, whose window is short and
// real, since Redis's clock decides.
func eachRates(t *testing.T, fn func(t *testing.T, u ratesUnderTest)) {
	t.Run("memory", func(t *testing.T) {
		now := time.Unix(1_000_000, 0)
		var mu sync.Mutex
		clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
		fn(t, ratesUnderTest{r: NewMemoryRates(time.Minute, clock), window: time.Minute,
			advance: func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }})
	})
	t.Run("redis", func(t *testing.T) {
		rdb := limittest.Redis(t)
		window := 600 * time.Millisecond
		fn(t, ratesUnderTest{r: NewRedisRates(rdb, limittest.Prefix(t, rdb), window, nil), window: window,
			advance: time.Sleep})
	})
}

// take makes one Take and fails the test on a store error.
func take(t *testing.T, r Rates, id string, buckets []Bucket, tokens int64) (Status, *ferry.Error) {
	t.Helper()
	st, err := r.Take(context.Background(), id, buckets, tokens)
	if err == nil {
		return st, nil
	}
	var fe *ferry.Error
	if !errors.As(err, &fe) || fe.Code != ferry.RateLimited {
		t.Fatalf("Take: %v, want nil or RateLimited", err)
	}
	if fe.RetryAfter <= 0 {
		t.Errorf("refusal without RetryAfter: %v", fe)
	}
	return st, fe
}

func TestRatesCalls(t *testing.T) {
	eachRates(t, func(t *testing.T, u ratesUnderTest) {
		b := []Bucket{{Key: "u:calls", RPM: 3}}
		for i := range 3 {
			st, fe := take(t, u.r, fmt.Sprint("c", i), b, 10)
			if fe != nil {
				t.Fatalf("call %d refused: %v", i+1, fe)
			}
			if st.RPM != 3 || st.RemainingCalls != int64(2-i) {
				t.Errorf("call %d: status %+v, want RPM 3 and %d remaining", i+1, st, 2-i)
			}
			if st.ResetCalls <= 0 || st.ResetCalls > u.window {
				t.Errorf("call %d: reset %v, want within the window %v", i+1, st.ResetCalls, u.window)
			}
		}
		st, fe := take(t, u.r, "c3", b, 10)
		if fe == nil {
			t.Fatal("the 4th call of 3 a window was let through")
		}
		if fe.RetryAfter > u.window {
			t.Errorf("RetryAfter %v beyond the window %v", fe.RetryAfter, u.window)
		}
		if st.RemainingCalls != 0 {
			t.Errorf("refused: %d remaining, want 0", st.RemainingCalls)
		}
		// Refused calls are not counted: once the window has passed, three
		// more go through.
		u.advance(u.window + 50*time.Millisecond)
		for i := range 3 {
			if _, fe := take(t, u.r, fmt.Sprint("d", i), b, 10); fe != nil {
				t.Fatalf("after the window, call %d refused: %v", i+1, fe)
			}
		}
	})
}

func TestRatesTokensSettle(t *testing.T) {
	eachRates(t, func(t *testing.T, u ratesUnderTest) {
		ctx := context.Background()
		b := []Bucket{{Key: "u:tokens", TPM: 100}}
		if _, fe := take(t, u.r, "a", b, 40); fe != nil {
			t.Fatal(fe)
		}
		st, fe := take(t, u.r, "b", b, 40)
		if fe != nil || st.TPM != 100 || st.RemainingTkns != 20 || st.RPM != 0 {
			t.Fatalf("second call: %+v, %v; want 20 tokens left and no call limit", st, fe)
		}
		if _, fe := take(t, u.r, "c", b, 40); fe == nil {
			t.Fatal("120 tokens of 100 let through")
		} else if !strings.Contains(fe.Message, "tokens") {
			t.Errorf("refusal %q does not say tokens", fe.Message)
		}
		// The first call really used 10: now 50 more fit, 51 do not.
		if err := u.r.Settle(ctx, "a", b, 40, 10); err != nil {
			t.Fatal(err)
		}
		if _, fe := take(t, u.r, "c", b, 51); fe == nil {
			t.Fatal("10+40+51 tokens of 100 let through")
		}
		st, fe = take(t, u.r, "d", b, 50)
		if fe != nil || st.RemainingTkns != 0 {
			t.Fatalf("after settling, 50 tokens: %+v, %v; want let through with none left", st, fe)
		}
		// A call that used more than estimated counts what it used.
		if err := u.r.Settle(ctx, "d", b, 50, 90); err != nil {
			t.Fatal(err)
		}
		if _, fe := take(t, u.r, "e", b, 1); fe == nil {
			t.Fatal("usage over the estimate was not counted")
		}
		// A call the queue refused is forgotten.
		if err := u.r.Settle(ctx, "d", b, 90, -1); err != nil {
			t.Fatal(err)
		}
		if err := u.r.Settle(ctx, "b", b, 40, -1); err != nil {
			t.Fatal(err)
		}
		if st, fe := take(t, u.r, "f", b, 90); fe != nil || st.RemainingTkns != 0 {
			t.Fatalf("after forgetting two calls, 90 tokens: %+v, %v", st, fe)
		}
	})
}

func TestRatesOversizedCallRunsWhenClear(t *testing.T) {
	eachRates(t, func(t *testing.T, u ratesUnderTest) {
		b := []Bucket{{Key: "u:big", TPM: 100}}
		if _, fe := take(t, u.r, "big", b, 5000); fe != nil {
			t.Fatalf("a call over the whole budget is refused forever: %v", fe)
		}
		if _, fe := take(t, u.r, "next", b, 1); fe == nil {
			t.Fatal("it did not use the whole budget")
		}
	})
}

func TestRatesSettleAfterWindow(t *testing.T) {
	eachRates(t, func(t *testing.T, u ratesUnderTest) {
		ctx := context.Background()
		b := []Bucket{{Key: "u:long", TPM: 100}}
		if _, fe := take(t, u.r, "long", b, 10); fe != nil {
			t.Fatal(fe)
		}
		u.advance(u.window + 50*time.Millisecond)
		// The answer took longer than the window and used 95 tokens: they
		// count now.
		if err := u.r.Settle(ctx, "long", b, 10, 95); err != nil {
			t.Fatal(err)
		}
		if _, fe := take(t, u.r, "next", b, 10); fe == nil {
			t.Fatal("a long call's usage was free")
		}
	})
}

func TestRatesBucketsTogether(t *testing.T) {
	eachRates(t, func(t *testing.T, u ratesUnderTest) {
		user := Bucket{Key: "u:both", RPM: 5}
		key := Bucket{Key: "k:both", RPM: 2}
		withKey := []Bucket{user, key}
		for i := range 2 {
			st, fe := take(t, u.r, fmt.Sprint("k", i), withKey, 1)
			if fe != nil {
				t.Fatal(fe)
			}
			// The tighter limit is the one reported.
			if st.RPM != 2 || st.RemainingCalls != int64(1-i) {
				t.Errorf("status %+v, want the key's limit 2 with %d left", st, 1-i)
			}
		}
		if _, fe := take(t, u.r, "k2", withKey, 1); fe == nil {
			t.Fatal("the key's 3rd call of 2 let through")
		}
		// The refused call counted against neither: the user has 3 left.
		for i := range 3 {
			if _, fe := take(t, u.r, fmt.Sprint("s", i), []Bucket{user}, 1); fe != nil {
				t.Fatalf("the user's call %d (of 5, 2 used) refused: %v", i+3, fe)
			}
		}
		if _, fe := take(t, u.r, "s3", []Bucket{user}, 1); fe == nil {
			t.Fatal("the user's 6th call of 5 let through")
		}
	})
}

// TestRedisRatesSharedExactly: three instances, each with its own client,
// share one limit: of 90 calls racing across them, exactly the limit pass.
func TestRedisRatesSharedExactly(t *testing.T) {
	rdb := limittest.Redis(t)
	prefix := limittest.Prefix(t, rdb)
	const limit = 25
	var instances []Rates
	for range 3 {
		c := redis.NewClient(rdb.Options())
		t.Cleanup(func() { c.Close() })
		instances = append(instances, NewRedisRates(c, prefix, time.Minute, nil))
	}
	b := []Bucket{{Key: "u:shared", RPM: limit, TPM: 1_000_000}}
	var passed, refusedN atomic.Int64
	var wg sync.WaitGroup
	for i := range 90 {
		wg.Go(func() {
			_, err := instances[i%3].Take(context.Background(), fmt.Sprint("call", i), b, 100)
			switch ferry.ErrorCode(err) {
			case ferry.Internal:
				if err == nil {
					passed.Add(1)
					return
				}
				t.Error(err)
			case ferry.RateLimited:
				refusedN.Add(1)
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if passed.Load() != limit || refusedN.Load() != 90-limit {
		t.Errorf("%d passed and %d refused, want %d and %d", passed.Load(), refusedN.Load(), limit, 90-limit)
	}
}

// TestRedisRatesSumFollowsCalls: the token sum kept beside each bucket's
// calls is always the sum of their tokens, as calls are taken, settled up
// and down, forgotten, and leave the window.
func TestRedisRatesSumFollowsCalls(t *testing.T) {
	rdb := limittest.Redis(t)
	prefix := limittest.Prefix(t, rdb)
	window := 300 * time.Millisecond
	r := NewRedisRates(rdb, prefix, window, nil)
	ctx := context.Background()
	b := []Bucket{{Key: "u:sum", RPM: 1000, TPM: 1_000_000}, {Key: "k:sum", RPM: 1000, TPM: 1_000_000}}
	check := func(step string) {
		t.Helper()
		if err := r.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		for _, bk := range b {
			set := prefix + bk.Key
			members, err := rdb.ZRange(ctx, set, 0, -1).Result()
			if err != nil {
				t.Fatal(err)
			}
			var want int64
			for _, m := range members {
				var n int64
				fmt.Sscanf(m, "%d:", &n)
				want += n
			}
			got, err := rdb.Get(ctx, set+":tokens").Int64()
			if err == redis.Nil && len(members) == 0 {
				continue // both gone with the window
			}
			if err != nil || got != want {
				t.Fatalf("%s: %s's sum %d (%v), its %d calls hold %d", step, bk.Key, got, err, len(members), want)
			}
		}
	}
	for round := range 3 {
		for i := range 12 {
			id := fmt.Sprintf("r%d-%d", round, i)
			est := int64(10 + i)
			if _, err := r.Take(ctx, id, b, est); err != nil {
				t.Fatal(err)
			}
			check("take " + id)
			switch i % 4 {
			case 0: // used more
				err := r.Settle(ctx, id, b, est, est*3)
				if err != nil {
					t.Fatal(err)
				}
			case 1: // used less
				if err := r.Settle(ctx, id, b, est, 1); err != nil {
					t.Fatal(err)
				}
			case 2: // never ran
				if err := r.Settle(ctx, id, b, est, -1); err != nil {
					t.Fatal(err)
				}
			}
			check("settle " + id)
			time.Sleep(window / 10)
		}
		// The first calls have left the window; one settled now comes back,
		// once: a correction applied twice changes nothing.
		for range 2 {
			if err := r.Settle(ctx, fmt.Sprintf("r%d-3", round), b, 13, 40); err != nil {
				t.Fatal(err)
			}
			check("late settle")
		}
		if _, err := r.Take(ctx, fmt.Sprintf("r%d-trim", round), b, 5); err != nil {
			t.Fatal(err)
		}
		check("trim")
	}
	time.Sleep(window + 50*time.Millisecond)
	st, err := r.Take(ctx, "after", b, 7)
	if err != nil {
		t.Fatal(err)
	}
	check("after the window")
	if st.RemainingCalls != 999 {
		t.Errorf("after the window: %d calls remain, want 999", st.RemainingCalls)
	}
}

// TestRedisRatesCorrectionRidesAlong: a correction is not a round trip of
// its own: the same instance's next call carries it, and meets it; with
// no next call, it reaches the other instances within settleDelay.
func TestRedisRatesCorrectionRidesAlong(t *testing.T) {
	rdb := limittest.Redis(t)
	prefix := limittest.Prefix(t, rdb)
	ctx := context.Background()
	here, there := NewRedisRates(rdb, prefix, time.Minute, nil), NewRedisRates(rdb, prefix, time.Minute, nil)
	b := []Bucket{{Key: "u:rides", TPM: 1000}}
	calls := func() int64 {
		n, err := rdb.Get(ctx, prefix+"u:rides:tokens").Int64()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if _, err := here.Take(ctx, "a", b, 10); err != nil {
		t.Fatal(err)
	}
	if err := here.Settle(ctx, "a", b, 10, 900); err != nil {
		t.Fatal(err)
	}
	if n := calls(); n != 10 {
		t.Fatalf("the correction was sent at once: %d tokens counted", n)
	}
	// The next call here is decided on 900, not 10.
	if _, fe := take(t, here, "b", b, 200); fe == nil || !strings.Contains(fe.Message, "tokens") {
		t.Fatalf("200 more after 900 of 1,000: %v, want refused by tokens", fe)
	}
	if n := calls(); n != 900 {
		t.Errorf("after the next call: %d tokens counted, want 900", n)
	}

	// Alone, it is sent within settleDelay, for the other instances.
	if _, err := here.Take(ctx, "c", b, 50); err != nil {
		t.Fatal(err)
	}
	here.Settle(ctx, "c", b, 50, 1)
	deadline := time.Now().Add(5 * time.Second)
	for calls() != 901 {
		if time.Now().After(deadline) {
			t.Fatalf("the lone correction never arrived: %d tokens counted, want 901", calls())
		}
		time.Sleep(settleDelay / 2)
	}
	if st, fe := take(t, there, "d", b, 99); fe != nil || st.RemainingTkns != 0 {
		t.Errorf("another instance, 99 more after 901: %+v, %v; want let through, none left", st, fe)
	}
}

// TestRedisRatesDown: with Redis gone, limits fail open to a count of the
// instance's own, which still holds, and the outage is logged once.
func TestRedisRatesDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer rdb.Close()
	var logs bytes.Buffer
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &mu}, nil))
	r := NewRedisRates(rdb, "ferry-test:", time.Minute, log)
	b := []Bucket{{Key: "u:down", RPM: 3}}
	for i := range 3 {
		st, err := r.Take(context.Background(), fmt.Sprint("c", i), b, 10)
		if err != nil {
			t.Fatalf("call %d with Redis down: %v, want let through (fail open)", i+1, err)
		}
		if st.RemainingCalls != int64(2-i) {
			t.Errorf("call %d: %d remaining, want %d", i+1, st.RemainingCalls, 2-i)
		}
		r.Settle(context.Background(), fmt.Sprint("c", i), b, 10, 12)
	}
	if _, err := r.Take(context.Background(), "c3", b, 10); ferry.ErrorCode(err) != ferry.RateLimited {
		t.Errorf("4th call of 3 with Redis down: %v, want RateLimited from the instance's own count", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if n := strings.Count(logs.String(), "Redis is not answering"); n != 1 {
		t.Errorf("the outage was logged %d times, want once:\n%s", n, logs.String())
	}
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func TestStatusFields(t *testing.T) {
	st := Status{RPM: 10, TPM: 5000, RemainingCalls: 7, RemainingTkns: 1200,
		ResetCalls: 41500 * time.Millisecond, ResetTokens: 3 * time.Second, Window: time.Minute}
	if got, want := st.Policy(), `"calls";q=10;w=60, "tokens";q=5000;qu="tokens";w=60`; got != want {
		t.Errorf("Policy() = %s, want %s", got, want)
	}
	if got, want := st.State(), `"calls";r=7;t=42, "tokens";r=1200;t=3`; got != want {
		t.Errorf("State() = %s, want %s", got, want)
	}
	if got := (Status{RPM: 2, RemainingCalls: 0, Window: time.Minute}).Policy(); got != `"calls";q=2;w=60` {
		t.Errorf("calls only: %s", got)
	}
	if (Status{}).Policy() != "" {
		t.Error("no limits, yet a policy")
	}
}

package limit

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/limit/limittest"
)

// BenchmarkAdmission is what the limiter and the queue add to one admitted
// model call: Admit (the rate limit's check and count, a slot) and Done
// (the slot back, the count's correction with the real usage queued to go
// with the next call's round trip), for users with limits they never
// reach, under a cap with free slots. admit-ns/op is the part a call waits
// for before it starts. The calls come one after another, in "users" each
// from the next of 64 users, in "one-user" all from the same user.
func BenchmarkAdmission(b *testing.B) {
	run := func(b *testing.B, rates Rates, users int) {
		a := &Admission{Rates: rates, Default: ferry.Limits{RPM: 1 << 40, TPM: 1 << 50},
			Queue: NewQueue(QueueOptions{Max: 64, Size: 256, Timeout: time.Second})}
		ctx := WithReport(context.Background(), &Report{})
		ps := make([]*ferry.Principal, users)
		for i := range ps {
			ps[i] = &ferry.Principal{User: &ferry.User{ID: "bench-" + strconv.Itoa(i)}}
		}
		b.ReportAllocs()
		b.ResetTimer()
		var admitting time.Duration
		for i := range b.N {
			start := time.Now()
			t, err := a.Admit(ctx, Request{Principal: ps[i%users], Provider: "anthropic", Tokens: 200})
			admitting += time.Since(start)
			if err != nil {
				b.Fatal(err)
			}
			t.Done(350)
		}
		if err := a.Flush(ctx); err != nil {
			b.Fatal(err)
		}
		// What the call waits for before it may start; ns/op adds Done's
		// work.
		b.ReportMetric(float64(admitting.Nanoseconds())/float64(b.N), "admit-ns/op")
	}
	// The yardstick: one bare round trip to the same Redis.
	b.Run("redis/ping", func(b *testing.B) {
		rdb := limittest.Redis(b)
		ctx := context.Background()
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			if err := rdb.Ping(ctx).Err(); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, users := range []struct {
		name string
		n    int
	}{{"users", 64}, {"one-user", 1}} {
		b.Run("memory/"+users.name, func(b *testing.B) { run(b, NewMemoryRates(time.Minute, nil), users.n) })
		b.Run("redis/"+users.name, func(b *testing.B) {
			rdb := limittest.Redis(b)
			run(b, NewRedisRates(rdb, limittest.Prefix(b, rdb), time.Minute, nil), users.n)
		})
	}
}

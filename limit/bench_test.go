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
// (the slot back, the count corrected with the real usage), for a user
// with a limit they never reach, under a cap with free slots.
func BenchmarkAdmission(b *testing.B) {
	run := func(b *testing.B, rates Rates) {
		a := &Admission{Rates: rates, Default: ferry.Limits{RPM: 1 << 40, TPM: 1 << 50},
			Queue: NewQueue(QueueOptions{Max: 64, Size: 256, Timeout: time.Second})}
		ctx := WithReport(context.Background(), &Report{})
		// One user per 1,000 calls keeps each window's log short, as a
		// user's is under a real limit.
		users := make([]*ferry.Principal, b.N/1000+1)
		for i := range users {
			users[i] = &ferry.Principal{User: &ferry.User{ID: "bench-" + strconv.Itoa(i)}}
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			t, err := a.Admit(ctx, Request{Principal: users[i/1000], Provider: "anthropic", Tokens: 200})
			if err != nil {
				b.Fatal(err)
			}
			if err := t.Done(ctx, 350); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("memory", func(b *testing.B) { run(b, NewMemoryRates(time.Minute, nil)) })
	b.Run("redis", func(b *testing.B) {
		rdb := limittest.Redis(b)
		run(b, NewRedisRates(rdb, limittest.Prefix(b, rdb), time.Minute, nil))
	})
}

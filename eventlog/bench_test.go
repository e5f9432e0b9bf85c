package eventlog_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	"github.com/ferryhq/ferry/eventlog"
	"github.com/ferryhq/ferry/limit/limittest"
)

// BenchmarkFollowFirstEvent measures a client coming back: from Follow
// with a Last-Event-ID to the first replayed event in hand, on a log of
// 200 events, read where it is written (memory) and from another
// instance (redis).
func BenchmarkFollowFirstEvent(b *testing.B) {
	for _, backend := range backends {
		b.Run(backend, func(b *testing.B) {
			wl, rl := benchPair(b, backend)
			ctx := context.Background()
			a := wl.Open(ctx, "user", "conv", "answer")
			for n := 1; n <= 200; n++ {
				a.Append([]byte(event(n)))
			}
			defer a.End([]byte(event(201)))
			// The mirror may still be writing.
			for {
				cur, _, err := rl.Follow(ctx, "conv", 199)
				if err != nil {
					b.Fatal(err)
				}
				if cur != nil {
					if bt, _ := cur.Next(ctx); string(bt.Events) == event(200) {
						break
					}
				}
			}
			b.ResetTimer()
			for i := range b.N {
				cur, _, err := rl.Follow(ctx, "conv", int64(100+i%50))
				if err != nil || cur == nil {
					b.Fatal(cur, err)
				}
				if bt, err := cur.Next(ctx); err != nil || len(bt.Events) == 0 {
					b.Fatal(err)
				}
			}
		})
	}
}

func benchPair(b *testing.B, backend string) (w, r *eventlog.Logs) {
	if backend == "memory" {
		l := eventlog.New(eventlog.Options{})
		return l, l
	}
	rdb := limittest.Redis(b)
	o := eventlog.Options{Redis: rdb, Prefix: limittest.Prefix(b, rdb)}
	return eventlog.New(o), eventlog.New(o)
}

// BenchmarkLogsInFlight measures the memory the logs of 5,000 answers in
// flight take, just opened (a start event and a first delta) and after
// 200 deltas each, in bytes per answer (heap in use after a collection).
func BenchmarkLogsInFlight(b *testing.B) {
	const answers = 5000
	for _, deltas := range []int{1, 200} {
		b.Run(fmt.Sprintf("deltas=%d", deltas), func(b *testing.B) {
			var perAnswer float64
			for range b.N {
				l := eventlog.New(eventlog.Options{})
				before := heapInUse()
				ctx := context.Background()
				logs := make([]*eventlog.Answer, answers)
				for i := range logs {
					logs[i] = l.Open(ctx, "user", fmt.Sprintf("conv%d", i), fmt.Sprintf("answer%d", i))
					logs[i].Append([]byte(event(1) + event(2)))
					for n := 3; n <= deltas+1; n++ {
						logs[i].Append([]byte(event(n)))
					}
				}
				perAnswer = float64(heapInUse()-before) / answers
				runtime.KeepAlive(logs)
				runtime.KeepAlive(l)
			}
			b.ReportMetric(perAnswer, "B/answer")
			b.ReportMetric(perAnswer*answers/(1<<20), "MiB/5000")
		})
	}
}

func heapInUse() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse)
}

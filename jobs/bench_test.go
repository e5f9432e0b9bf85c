package jobs

import (
	"context"
	"testing"

	"github.com/ferryhq/ferry/chat"
	"github.com/ferryhq/ferry/store/storetest"
)

// BenchmarkSubmit is what POST /ai/jobs costs beyond HTTP: the checks and
// the one transaction that stores the job's row and its River job.
func BenchmarkSubmit(b *testing.B) {
	for _, engine := range storetest.Engines(b) {
		b.Run(engine, func(b *testing.B) {
			in, closeFn, err := openInstance(context.Background(), storetest.Database(b, engine), "http://127.0.0.1:1", false,
				chat.Options{}, testOptions)
			if err != nil {
				b.Fatal(err)
			}
			defer closeFn()
			p := in.user(b, "ann")
			req := chat.Request{Message: "hello there", Model: model}
			b.ResetTimer()
			for b.Loop() {
				if _, err := in.jobs.Submit(context.Background(), p, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

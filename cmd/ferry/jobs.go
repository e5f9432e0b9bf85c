package main

import (
	"context"

	"github.com/ferryhq/ferry/jobs"
)

// jobCounts is js.Counts in the form metrics.Metrics.Jobs exports as
// ferry_jobs{state}.
func jobCounts(js *jobs.Service) func(context.Context) (map[string]int, error) {
	return func(ctx context.Context) (map[string]int, error) {
		counts, err := js.Counts(ctx)
		if err != nil {
			return nil, err
		}
		out := make(map[string]int, len(counts))
		for state, n := range counts {
			out[string(state)] = n
		}
		return out, nil
	}
}

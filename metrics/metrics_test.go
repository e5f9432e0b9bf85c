package metrics

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/chat"
	"github.com/ferryhq/ferry/llm"
)

// A request's end costs no allocation once its route and status have been
// seen: the middleware runs on every request, streams included.
func TestObserveRequestAllocatesNothing(t *testing.T) {
	m := New()
	m.ObserveRequest("POST /ai/chat/stream", 200, time.Millisecond)
	if n := testing.AllocsPerRun(100, func() { m.ObserveRequest("POST /ai/chat/stream", 200, time.Millisecond) }); n != 0 {
		t.Errorf("ObserveRequest allocates %v times a request", n)
	}
	if got := testutil.ToFloat64(m.requests.WithLabelValues("POST", "/ai/chat/stream", "200")); got != 102 {
		t.Errorf("counted %v requests, want 102", got)
	}
	m.ObserveRequest("", 404, time.Millisecond)
	if got := testutil.ToFloat64(m.requests.WithLabelValues("", "unmatched", "404")); got != 1 {
		t.Errorf("counted %v unmatched requests, want 1", got)
	}
}

// Model names past maxModels are counted as "other", so that clients
// naming models cannot grow the series without bound.
func TestModelLabelIsBounded(t *testing.T) {
	m := New()
	observe := m.CallObserver(nil)
	for i := range maxModels + 10 {
		observe(context.Background(), &chat.Call{Provider: "ollama"},
			&chat.Result{Model: fmt.Sprintf("m%d", i), Status: ferry.StatusComplete})
	}
	// Three outcomes each.
	if n := testutil.CollectAndCount(m.calls); n != 3*(maxModels+1) {
		t.Errorf("%d model call series, want %d", n, 3*(maxModels+1))
	}
	if got := testutil.ToFloat64(m.calls.WithLabelValues("ollama", "other", "complete")); got != 10 {
		t.Errorf("%v calls counted as other, want 10", got)
	}
	// A model seen before the cap keeps its name.
	observe(context.Background(), &chat.Call{Provider: "ollama"}, &chat.Result{Model: "m3", Status: ferry.StatusComplete})
	if got := testutil.ToFloat64(m.calls.WithLabelValues("ollama", "m3", "complete")); got != 2 {
		t.Errorf("m3 counted %v times, want 2", got)
	}
}

// The inter-token latency is the mean gap after the first token; the
// overhead is the request's time less the call's, for requests only.
func TestCallObserver(t *testing.T) {
	m := New()
	start := time.Now().Add(-time.Second)
	observe := m.CallObserver(func(ctx context.Context) (time.Time, bool) {
		return start, ctx.Value(requestKey{}) != nil
	})
	res := &chat.Result{Model: "claude-sonnet-4-6", Status: ferry.StatusComplete, Latency: 900 * time.Millisecond,
		FirstToken: 100 * time.Millisecond, LastToken: 500 * time.Millisecond, Deltas: 5,
		Usage: llm.Usage{InputTokens: 7, OutputTokens: 5}}
	c := &chat.Call{Provider: "anthropic", Endpoint: "/ai/chat", Waited: 50 * time.Millisecond}
	observe(context.WithValue(context.Background(), requestKey{}, true), c, res)
	observe(context.Background(), c, res) // a job's: no overhead
	want := `
# HELP ferry_model_inter_token_latency_seconds A call's mean time between two text deltas after the first (one observation per call with two or more), by provider and model.
# TYPE ferry_model_inter_token_latency_seconds histogram
ferry_model_inter_token_latency_seconds_bucket{model="claude-sonnet-4-6",provider="anthropic",le="0.001"} 0
ferry_model_inter_token_latency_seconds_bucket{model="claude-sonnet-4-6",provider="anthropic",le="0.0025"} 0
ferry_model_inter_token_latency_seconds_bucket{model="claude-sonnet-4-6",provider="anthropic",le="0.005"} 0
ferry_model_inter_token_latency_seconds_bucket{model="claude-sonnet-4-6",provider="anthropic",le="0.01"} 0
ferry_model_inter_token_latency_seconds_bucket{model="claude-sonnet-4-6",provider="anthropic",le="0.02"} 0
ferry_model_inter_token_latency_seconds_bucket{model="claude-sonnet-4-6",provider="anthropic",le="0.03"} 0
ferry_model_inter_token_latency_seconds_bucket{model="claude-sonnet-4-6",provider="anthropic",le="0.05"} 0
ferry_model_inter_token_latency_seconds_bucket{model="claude-sonnet-4-6",provider="anthropic",le="0.075"} 0
ferry_model_inter_token_latency_seconds_bucket{model="claude-sonnet-4-6",provider="anthropic",le="0.1"} 2
ferry_model_inter_token_latency_seconds_bucket{model="claude-sonnet-4-6",provider="anthropic",le="0.2"} 2
ferry_model_inter_token_latency_seconds_bucket{model="claude-sonnet-4-6",provider="anthropic",le="0.5"} 2
ferry_model_inter_token_latency_seconds_bucket{model="claude-sonnet-4-6",provider="anthropic",le="1"} 2
ferry_model_inter_token_latency_seconds_bucket{model="claude-sonnet-4-6",provider="anthropic",le="+Inf"} 2
ferry_model_inter_token_latency_seconds_sum{model="claude-sonnet-4-6",provider="anthropic"} 0.2
ferry_model_inter_token_latency_seconds_count{model="claude-sonnet-4-6",provider="anthropic"} 2
`
	if err := testutil.CollectAndCompare(m.interToken, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	if got := testutil.ToFloat64(m.tokens.WithLabelValues("anthropic", "claude-sonnet-4-6", "in")); got != 14 {
		t.Errorf("%v tokens in, want 14", got)
	}
	if n := testutil.CollectAndCount(m.overhead); n != 1 {
		t.Fatalf("%d overhead series, want 1", n)
	}
	// About 50 ms: the second the request has lasted less the call's 900
	// ms and its 50 ms in the queue.
	var d dto.Metric
	if err := m.overhead.WithLabelValues("/ai/chat").(prometheus.Metric).Write(&d); err != nil {
		t.Fatal(err)
	}
	if sum := d.Histogram.GetSampleSum(); sum < 0.045 || sum > 0.4 {
		t.Errorf("overhead %v s, want about 0.05", sum)
	}
}

type requestKey struct{}

// BenchmarkRequest is what metrics add to one model call made over HTTP:
// the request's end (ObserveRequest, which the API's ServeHTTP calls once,
// after the answer, never per event) and the call's observer.
func BenchmarkRequest(b *testing.B) {
	m := New()
	observe := m.CallObserver(func(context.Context) (time.Time, bool) { return time.Now(), true })
	c := &chat.Call{Provider: "anthropic", Endpoint: "/ai/chat/stream"}
	res := &chat.Result{Model: "claude-sonnet-4-6", Status: ferry.StatusComplete, Latency: time.Second,
		FirstToken: 100 * time.Millisecond, LastToken: 900 * time.Millisecond, Deltas: 100,
		Usage: llm.Usage{InputTokens: 20, OutputTokens: 100}}
	ctx := context.Background()
	b.ReportAllocs()
	b.Run("request", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m.ObserveRequest("POST /ai/chat/stream", 200, time.Second)
		}
	})
	b.Run("call", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			observe(ctx, c, res)
		}
	})
	b.Run("both", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			observe(ctx, c, res)
			m.ObserveRequest("POST /ai/chat/stream", 200, time.Second)
		}
	})
}

// Admit counts refusals by their code: rate limits apart from the queue's.
func TestAdmitCountsRefusals(t *testing.T) {
	m := New()
	var refuse error
	admit := m.Admit(func(context.Context, *chat.Call) (func(*chat.Result), error) { return nil, refuse })
	c := &chat.Call{Endpoint: "/v1/chat/completions"}
	for _, err := range []error{nil, ferry.Errorf(ferry.RateLimited, "slow down"), ferry.Errorf(ferry.RateLimited, "slow down"),
		ferry.Errorf(ferry.Unavailable, "queue full"), ferry.Errorf(ferry.Invalid, "bad")} {
		refuse = err
		if _, got := admit(context.Background(), c); got != err {
			t.Fatalf("Admit returned %v, want %v", got, err)
		}
	}
	if got := testutil.ToFloat64(m.rateLimited.WithLabelValues("/v1/chat/completions")); got != 2 {
		t.Errorf("%v rate-limit refusals, want 2", got)
	}
	if got := testutil.ToFloat64(m.queueRefused.WithLabelValues("/v1/chat/completions")); got != 1 {
		t.Errorf("%v queue refusals, want 1", got)
	}
}

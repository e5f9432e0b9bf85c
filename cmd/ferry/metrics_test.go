package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/ferryhq/ferry/jobs"
	"github.com/ferryhq/ferry/llm/llmtest"
	"github.com/ferryhq/ferry/store/storetest"
)

// metricsAddr returns the address of the instance's metrics listener from
// its "metrics listening" log line, or "" when it logged none.
func (in *instance) metricsAddr() string {
	for _, line := range strings.Split(in.stdout.String(), "\n") {
		var rec struct {
			Msg  string `json:"msg"`
			Addr string `json:"addr"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "metrics listening" {
			return rec.Addr
		}
	}
	return ""
}

// scrape reads /metrics at addr and parses it with Prometheus's own text
// parser.
func scrape(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	res, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(res.Body)
		t.Fatalf("/metrics: %d %s", res.StatusCode, b)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(res.Body)
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	return fams
}

// sample sums the series of family name whose labels include labels: a
// counter's or gauge's value, a histogram's count of observations.
func sample(fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	f := fams[name]
	if f == nil {
		return 0
	}
	var sum float64
next:
	for _, m := range f.Metric {
		have := map[string]string{}
		for _, l := range m.Label {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range labels {
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		}
	}
	return sum
}

// TestMetrics drives traffic through the API against the fake upstreams
// (streams, a retried 503, a refused request, a relayed Ollama stream, an
// unknown route, a background job, a rate-limit refusal) and checks that /metrics, on its own listener, parses
// and counts it all by route pattern, provider, model and outcome; and
// that without FERRY_METRICS_ADDR there is no metrics listener and the
// API has no /metrics.
func TestMetrics(t *testing.T) {
	t.Parallel()
	for _, engine := range storetest.Engines(t) {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			fake := llmtest.Start(t)
			fake.SetScript(llmtest.Script{Deltas: llmtest.Deltas(5), Delay: 2 * time.Millisecond})
			env := withFake(engineEnv(t, engine), fake)

			off := start(t, env)
			if addr := off.metricsAddr(); addr != "" {
				t.Fatalf("metrics listen on %s without FERRY_METRICS_ADDR", addr)
			}
			if status, _ := off.call(t, "GET", "/metrics", "", nil); status != http.StatusNotFound {
				t.Errorf("the API answers /metrics with %d, want 404", status)
			}
			off.stop(t)

			env.vars["FERRY_METRICS_ADDR"] = "127.0.0.1:0"
			// The first user makes 5 model calls; the second floods.
			env.vars["FERRY_RATE_LIMIT_RPM"] = "6"
			in := start(t, env)
			addr := in.metricsAddr()
			if addr == "" {
				t.Fatalf("no metrics listening line:\n%s", in.stdout)
			}
			access, _ := in.signUp(t, "watched@example.com", "watched password")
			// Each question differs, so that each reaches the upstream
			// (identical ones are answered by the answer cache).
			stream := func(wantStatus int, message string) {
				t.Helper()
				res, err := in.post(t.Context(), "/ai/chat/stream", access, map[string]any{"message": message, "model": "claude-sonnet-4-6"})
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(res.Body)
				res.Body.Close()
				if res.StatusCode != wantStatus {
					t.Fatalf("stream: %d, want %d: %s", res.StatusCode, wantStatus, b)
				}
			}
			stream(http.StatusOK, "hi")
			// A 503 with Retry-After-Ms: 1, retried once, then the answer.
			fake.SetScript(llmtest.Script{Deltas: llmtest.Deltas(5), Delay: 2 * time.Millisecond, FailFirst: 1, FailStatus: 503,
				FailHeader: http.Header{"Retry-After-Ms": {"1"}}})
			stream(http.StatusOK, "hi again")
			// A 400 from the upstream: the client's to fix, not retried.
			fake.SetScript(llmtest.Script{FailFirst: 10, FailStatus: 400, FailMessage: "bad request"})
			in.must(t, http.StatusBadRequest, "POST", "/ai/chat", access, map[string]any{"message": "hi, badly", "model": "claude-sonnet-4-6"})
			fake.SetScript(llmtest.Script{Deltas: llmtest.Deltas(5), Delay: 2 * time.Millisecond})
			res, err := in.post(t.Context(), "/ollama/api/chat", access, map[string]any{"model": "llama3.2",
				"messages": []any{map[string]any{"role": "user", "content": "hi"}}})
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusOK {
				t.Fatalf("/ollama/api/chat: %d", res.StatusCode)
			}
			// The first question again: a hit.
			stream(http.StatusOK, "hi")
			in.call(t, "GET", "/no/such/route/42", access, nil)
			// A background job, on another provider: no request waits for
			// it, so it has no overhead.
			in.must(t, http.StatusAccepted, "POST", "/ai/jobs", access, map[string]any{"message": "hi", "model": "openai/gpt-4o-mini"})
			// Another user's 7th call in a minute is refused.
			flood, _ := in.signUp(t, "flood@example.com", "flood password")
			for range 6 {
				in.must(t, http.StatusOK, "POST", "/ai/chat", flood, map[string]any{"message": "hi", "model": "openai/o3-mini"})
			}
			in.must(t, http.StatusTooManyRequests, "POST", "/ai/chat", flood, map[string]any{"message": "hi", "model": "openai/o3-mini"})

			type want struct {
				name   string
				labels map[string]string
				n      float64 // at least
				most   float64 // at most; 0: no bound
			}
			claude := map[string]string{"provider": "anthropic", "model": "claude-sonnet-4-6"}
			with := func(m map[string]string, k, v string) map[string]string {
				c := map[string]string{k: v}
				for a, b := range m {
					c[a] = b
				}
				return c
			}
			wants := []want{
				{"ferry_http_requests_total", map[string]string{"method": "POST", "route": "/ai/chat/stream", "status": "200"}, 3, 3},
				{"ferry_http_requests_total", map[string]string{"method": "POST", "route": "/ai/chat", "status": "400"}, 1, 1},
				{"ferry_http_requests_total", map[string]string{"method": "POST", "route": "/ollama/api/chat", "status": "200"}, 1, 1},
				{"ferry_http_requests_total", map[string]string{"route": "unmatched", "status": "404"}, 1, 1},
				{"ferry_http_request_duration_seconds", map[string]string{"route": "/ai/chat/stream", "status": "200"}, 3, 3},
				{"ferry_model_calls_total", with(claude, "outcome", "complete"), 3, 3},
				{"ferry_model_calls_total", with(claude, "outcome", "failed"), 1, 1},
				{"ferry_model_calls_total", map[string]string{"provider": "ollama", "outcome": "complete"}, 1, 1},
				{"ferry_model_time_to_first_token_seconds", claude, 2, 2},
				{"ferry_model_time_to_first_token_seconds", map[string]string{"provider": "ollama"}, 1, 1},
				{"ferry_model_inter_token_latency_seconds", claude, 2, 2},
				{"ferry_model_tokens_total", with(claude, "direction", "out"), 10, 0},
				{"ferry_model_tokens_total", with(claude, "direction", "in"), 1, 0},
				{"ferry_upstream_retries_total", map[string]string{"provider": "anthropic", "code": "unavailable"}, 1, 1},
				{"ferry_upstream_errors_total", map[string]string{"provider": "anthropic", "code": "unavailable"}, 1, 1},
				{"ferry_upstream_errors_total", map[string]string{"provider": "anthropic", "code": "invalid"}, 1, 1},
				{"ferry_upstream_retries_total", map[string]string{"provider": "anthropic", "code": "invalid"}, 0, 0},
				{"ferry_overhead_seconds", map[string]string{"endpoint": "/ai/chat/stream"}, 3, 3},
				{"ferry_cache_requests_total", map[string]string{"result": "miss"}, 5, 5},
				{"ferry_cache_requests_total", map[string]string{"result": "hit"}, 6, 6},
				{"ferry_model_calls_total", map[string]string{"provider": "openai", "model": "gpt-4o-mini", "outcome": "complete"}, 1, 1},
				{"ferry_model_calls_total", map[string]string{"provider": "openai", "model": "o3-mini", "outcome": "complete"}, 6, 6},
				{"ferry_rate_limit_refusals_total", map[string]string{"endpoint": "/ai/chat"}, 1, 1},
				{"ferry_http_requests_total", map[string]string{"method": "POST", "route": "/ai/chat", "status": "429"}, 1, 1},
				{"ferry_queue_wait_seconds", nil, 12, 12},
				{"ferry_queue_refusals_total", nil, 0, 0},
				{"ferry_overhead_seconds", map[string]string{"endpoint": jobs.Endpoint}, 0, 0},
				{"ferry_jobs", map[string]string{"state": "succeeded"}, 1, 1},
				{"ferry_jobs", map[string]string{"state": "queued"}, 0, 0},
			}
			// The request's own series are written after its answer has
			// left, and the job's as it ends: wait for them.
			var fams map[string]*dto.MetricFamily
			deadline := time.Now().Add(10 * time.Second)
			for {
				fams = scrape(t, addr)
				if sample(fams, "ferry_http_requests_total", map[string]string{"route": "unmatched"}) >= 1 &&
					sample(fams, "ferry_jobs", map[string]string{"state": "succeeded"}) >= 1 &&
					sample(fams, "ferry_model_calls_total", map[string]string{"model": "gpt-4o-mini"}) >= 1 || time.Now().After(deadline) {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			for _, w := range wants {
				got := sample(fams, w.name, w.labels)
				if got < w.n || (w.most > 0 || w.n == 0) && got > w.most {
					t.Errorf("%s%v = %v, want %v..%v; all: %v", w.name, w.labels, got, w.n, w.most, fams[w.name])
				}
			}
			if fams["ferry_queue_depth"] == nil || sample(fams, "ferry_queue_depth", nil) != 0 {
				t.Errorf("ferry_queue_depth: %v, want 0 with no call waiting", fams["ferry_queue_depth"])
			}
			// Overhead is Ferry's share of a call: well under the call.
			if h := fams["ferry_overhead_seconds"]; h != nil {
				for _, m := range h.Metric {
					if m.Histogram.GetSampleSum() < 0 || m.Histogram.GetSampleSum() > 5 {
						t.Errorf("overhead sums to %v s", m.Histogram.GetSampleSum())
					}
				}
			}
			// Stopping the server stops the metrics listener with it.
			in.stop(t)
			if _, err := http.Get("http://" + addr + "/metrics"); err == nil {
				t.Error("the metrics listener still answers after the server stopped")
			}
		})
	}
}

// Package metrics owns every Prometheus metric Ferry exports, on a registry
// of its own (never the global one), and the small hooks through which the
// other packages feed them: Ferry's packages never import Prometheus, they
// call a func field or an Observer that run wires to a Metrics.
//
// Every name starts with ferry_. Labels are bounded: HTTP requests are
// counted by the route pattern that served them (never the raw path),
// models by their name up to maxModels distinct ones, errors by Ferry's
// error code.
package metrics

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/chat"
)

// Metrics holds Ferry's metrics. Its methods are safe for concurrent use.
type Metrics struct {
	reg *prometheus.Registry

	requests     *prometheus.CounterVec
	requestTime  *prometheus.HistogramVec
	calls        *prometheus.CounterVec
	callTime     *prometheus.HistogramVec
	firstToken   *prometheus.HistogramVec
	interToken   *prometheus.HistogramVec
	tokens       *prometheus.CounterVec
	overhead     *prometheus.HistogramVec
	retries      *prometheus.CounterVec
	upErrors     *prometheus.CounterVec
	rateLimited  *prometheus.CounterVec
	queueRefused *prometheus.CounterVec
	queueWait    prometheus.Histogram
	cache        *prometheus.CounterVec

	// routes caches each (route pattern, status) pair's series, so that a
	// request's end costs a map read and no allocation.
	routesMu sync.RWMutex
	routes   map[routeStatus]routeSeries

	modelsMu sync.RWMutex
	models   map[string]bool

	// series caches each provider and model's series, and overheads each
	// endpoint's (the endpoints are Ferry's own names), so that a call's
	// end costs map reads and no allocation.
	seriesMu  sync.RWMutex
	series    map[providerModel]*callSeries
	overheads map[string]prometheus.Observer
}

// maxModels bounds the model label's values: a client may name models the
// operator never heard of (an Ollama model pulled yesterday), and each
// name would be new series in every model metric. Past this many distinct
// names, further ones are counted as "other".
const maxModels = 100

type routeStatus struct {
	pattern string
	status  int
}

type routeSeries struct {
	count prometheus.Counter
	time  prometheus.Observer
}

// Buckets, in seconds. A stream's request lasts as long as its answer, so
// the HTTP and model-call buckets reach minutes; Ferry's own share of a
// call is sub-millisecond to tens of milliseconds.
var (
	requestBuckets    = []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}
	firstTokenBuckets = []float64{0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 20, 30, 60}
	interTokenBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.5, 1}
	overheadBuckets   = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1}
	queueBuckets      = []float64{0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}
)

// New returns Ferry's metrics on a registry of their own.
func New() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), routes: map[routeStatus]routeSeries{}, models: map[string]bool{},
		series: map[providerModel]*callSeries{}, overheads: map[string]prometheus.Observer{}}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_http_requests_total",
		Help: "HTTP requests answered, by method and route pattern (unmatched: no route) and status."},
		[]string{"method", "route", "status"})
	m.requestTime = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "ferry_http_request_duration_seconds",
		Help: "Time from a request's arrival to the end of its answer (a stream's whole length), by method, route and status.", Buckets: requestBuckets},
		[]string{"method", "route", "status"})
	m.calls = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_model_calls_total",
		Help: "Model calls that ran, by provider, model and outcome (complete, failed, cancelled)."},
		[]string{"provider", "model", "outcome"})
	m.callTime = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "ferry_model_call_duration_seconds",
		Help: "Time from a model call's start upstream to its end, by provider and model.", Buckets: requestBuckets},
		[]string{"provider", "model"})
	m.firstToken = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "ferry_model_time_to_first_token_seconds",
		Help: "Time from a model call's start upstream to its first text, by provider and model.", Buckets: firstTokenBuckets},
		[]string{"provider", "model"})
	m.interToken = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "ferry_model_inter_token_latency_seconds",
		Help:    "A call's mean time between two text deltas after the first (one observation per call with two or more), by provider and model.",
		Buckets: interTokenBuckets}, []string{"provider", "model"})
	m.tokens = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_model_tokens_total",
		Help: "Tokens sent to (in) and received from (out) the models, as the upstream reported or, for a call cut short, as estimated."},
		[]string{"provider", "model", "direction"})
	m.overhead = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "ferry_overhead_seconds",
		Help:    "Ferry's own time per model call made over HTTP: from the request's arrival to the call's end, less the time the call ran upstream and waited in the queue, by endpoint.",
		Buckets: overheadBuckets}, []string{"endpoint"})
	m.retries = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_upstream_retries_total",
		Help: "Upstream attempts that failed and were tried again, by provider and Ferry error code (rate_limited: HTTP 429; unavailable: 408, 5xx, 529 or a lost connection)."},
		[]string{"provider", "code"})
	m.upErrors = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_upstream_errors_total",
		Help: "Upstream attempts that failed, retried or not, by provider and Ferry error code (rate_limited: 429; unavailable: 408, 5xx, 529, lost connection; timeout; upstream: 401, 403, in-stream errors; invalid, not_found, too_large: 400, 422, 404, 413)."},
		[]string{"provider", "code"})
	m.rateLimited = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_rate_limit_refusals_total",
		Help: "Model calls refused by a per-user rate limit (429), by endpoint."}, []string{"endpoint"})
	m.queueRefused = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_queue_refusals_total",
		Help: "Model calls refused by the concurrency cap's queue (503: full, or waited too long), by endpoint."}, []string{"endpoint"})
	m.queueWait = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ferry_queue_wait_seconds",
		Help: "Time an admitted model call waited in the queue for a slot (0 when one was free).", Buckets: queueBuckets})
	m.cache = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_cache_requests_total",
		Help: "Model calls the answer cache was asked about, by result (hit, miss)."}, []string{"result"})
	m.reg.MustRegister(m.requests, m.requestTime, m.calls, m.callTime, m.firstToken, m.interToken, m.tokens, m.overhead,
		m.retries, m.upErrors, m.rateLimited, m.queueRefused, m.queueWait, m.cache)
	return m
}

// Handler serves the metrics in Prometheus's exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// ObserveRequest counts one HTTP request that ended with status after d.
// pattern is the route pattern that served it ("POST /ai/chat"), "" for a
// request no route matched; never the raw path, whose values a client
// chooses. It allocates only the first time a pattern ends with a status.
func (m *Metrics) ObserveRequest(pattern string, status int, d time.Duration) {
	k := routeStatus{pattern, status}
	m.routesMu.RLock()
	s, ok := m.routes[k]
	m.routesMu.RUnlock()
	if !ok {
		s = m.routeSeries(k)
	}
	s.count.Inc()
	s.time.Observe(d.Seconds())
}

func (m *Metrics) routeSeries(k routeStatus) routeSeries {
	method, route, ok := strings.Cut(k.pattern, " ")
	if !ok {
		method, route = "", k.pattern
	}
	if route == "" {
		route = "unmatched"
	}
	status := strconv.Itoa(k.status)
	s := routeSeries{m.requests.WithLabelValues(method, route, status), m.requestTime.WithLabelValues(method, route, status)}
	m.routesMu.Lock()
	m.routes[k] = s
	m.routesMu.Unlock()
	return s
}

// CallObserver returns the chat.Observer that records each model call:
// its outcome, duration, time to first token, mean inter-token latency,
// tokens, and Ferry's overhead (the request's time so far less the call's
// upstream time and its wait in the queue). requestStart returns when the HTTP request
// that made the call arrived (false for a call no request made, such as a
// background job's, whose overhead is not recorded).
func (m *Metrics) CallObserver(requestStart func(context.Context) (time.Time, bool)) chat.Observer {
	return func(ctx context.Context, c *chat.Call, res *chat.Result) {
		s := m.callSeriesOf(c.Provider, res.Model)
		switch res.Status {
		case ferry.StatusComplete:
			s.complete.Inc()
		case ferry.StatusFailed:
			s.failed.Inc()
		case ferry.StatusCancelled:
			s.cancelled.Inc()
		default:
			m.calls.WithLabelValues(c.Provider, s.model, string(res.Status)).Inc()
		}
		s.time.Observe(res.Latency.Seconds())
		if c.Cache != chat.CacheOff {
			m.CacheResult(c.Cache == chat.CacheHit)
		}
		// A call answered by the cache, replayed or followed, did not time
		// the model.
		if res.FirstToken > 0 && !res.Cached {
			s.firstToken.Observe(res.FirstToken.Seconds())
		}
		if res.Deltas > 1 && res.LastToken > res.FirstToken && !res.Cached {
			gap := (res.LastToken - res.FirstToken) / time.Duration(res.Deltas-1)
			s.interToken.Observe(gap.Seconds())
		}
		s.in.Add(float64(res.Usage.InputTokens))
		s.out.Add(float64(res.Usage.OutputTokens))
		if requestStart == nil {
			return
		}
		if start, ok := requestStart(ctx); ok {
			own := time.Since(start) - res.Latency - c.Waited
			m.overheadOf(c.Endpoint).Observe(max(own, 0).Seconds())
		}
	}
}

type providerModel struct{ provider, model string }

// callSeries are one provider and model's series, looked up once.
type callSeries struct {
	model                        string // the label value
	complete, failed, cancelled  prometheus.Counter
	in, out                      prometheus.Counter
	time, firstToken, interToken prometheus.Observer
}

func (m *Metrics) callSeriesOf(provider, model string) *callSeries {
	k := providerModel{provider, model}
	m.seriesMu.RLock()
	s := m.series[k]
	m.seriesMu.RUnlock()
	if s != nil {
		return s
	}
	label := m.model(model)
	s = &callSeries{model: label,
		complete:  m.calls.WithLabelValues(provider, label, string(ferry.StatusComplete)),
		failed:    m.calls.WithLabelValues(provider, label, string(ferry.StatusFailed)),
		cancelled: m.calls.WithLabelValues(provider, label, string(ferry.StatusCancelled)),
		in:        m.tokens.WithLabelValues(provider, label, "in"), out: m.tokens.WithLabelValues(provider, label, "out"),
		time: m.callTime.WithLabelValues(provider, label), firstToken: m.firstToken.WithLabelValues(provider, label),
		interToken: m.interToken.WithLabelValues(provider, label)}
	m.seriesMu.Lock()
	defer m.seriesMu.Unlock()
	if label == model && len(m.series) < 4*maxModels {
		// Names counted as "other" are not kept: there may be any number.
		m.series[k] = s
	}
	return s
}

func (m *Metrics) overheadOf(endpoint string) prometheus.Observer {
	m.seriesMu.RLock()
	o := m.overheads[endpoint]
	m.seriesMu.RUnlock()
	if o != nil {
		return o
	}
	o = m.overhead.WithLabelValues(endpoint)
	m.seriesMu.Lock()
	m.overheads[endpoint] = o
	m.seriesMu.Unlock()
	return o
}

// model returns name as a label value: itself while fewer than maxModels
// names have been seen, "other" for names beyond them.
func (m *Metrics) model(name string) string {
	if name == "" {
		return "default"
	}
	m.modelsMu.RLock()
	seen, full := m.models[name], len(m.models) >= maxModels
	m.modelsMu.RUnlock()
	if seen {
		return name
	}
	if full {
		return "other"
	}
	m.modelsMu.Lock()
	defer m.modelsMu.Unlock()
	if len(m.models) >= maxModels {
		return "other"
	}
	m.models[name] = true
	return name
}

// UpstreamFailed counts an upstream attempt that failed with err, and
// whether it is being tried again: llm.RetryPolicy's Failed hook.
func (m *Metrics) UpstreamFailed(provider string, err *ferry.Error, retrying bool) {
	code := string(err.Code)
	m.upErrors.WithLabelValues(provider, code).Inc()
	if retrying {
		m.retries.WithLabelValues(provider, code).Inc()
	}
}

// Admit returns admit counting the calls it refuses: RateLimited as rate
// limit refusals, Unavailable as queue refusals. A nil admit admits
// everything, and counts nothing.
func (m *Metrics) Admit(admit chat.Admit) chat.Admit {
	if admit == nil {
		return nil
	}
	return func(ctx context.Context, c *chat.Call) (func(*chat.Result), error) {
		release, err := admit(ctx, c)
		switch ferry.ErrorCode(err) {
		case ferry.RateLimited:
			m.rateLimited.WithLabelValues(c.Endpoint).Inc()
		case ferry.Unavailable:
			m.queueRefused.WithLabelValues(c.Endpoint).Inc()
		}
		return release, err
	}
}

// ObserveQueueWait records how long an admitted call waited for a slot.
func (m *Metrics) ObserveQueueWait(d time.Duration) {
	m.queueWait.Observe(d.Seconds())
}

// QueueDepth exports depth, read at each scrape, as ferry_queue_depth:
// the model calls waiting for a slot on this instance.
func (m *Metrics) QueueDepth(depth func() int) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ferry_queue_depth",
		Help: "Model calls waiting in this instance's queue for a slot under FERRY_MAX_CONCURRENT."},
		func() float64 { return float64(depth()) }))
}

// CacheResult counts one answer-cache lookup: a hit or a miss.
func (m *Metrics) CacheResult(hit bool) {
	if hit {
		m.cache.WithLabelValues("hit").Inc()
	} else {
		m.cache.WithLabelValues("miss").Inc()
	}
}

// jobsTimeout bounds the query that counts jobs at a scrape.
const jobsTimeout = 5 * time.Second

// Jobs exports count, called at each scrape, as ferry_jobs{state}: the
// background chat jobs in each state, in the database every instance
// shares. A count that fails leaves the metric out of that scrape.
func (m *Metrics) Jobs(count func(context.Context) (map[string]int, error)) {
	desc := prometheus.NewDesc("ferry_jobs", "Background chat jobs by state (shared by every instance).", []string{"state"}, nil)
	m.reg.MustRegister(&funcCollector{desc: desc, collect: func(ch chan<- prometheus.Metric) {
		ctx, cancel := context.WithTimeout(context.Background(), jobsTimeout)
		defer cancel()
		n, err := count(ctx)
		if err != nil {
			return
		}
		for state, v := range n {
			ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, float64(v), state)
		}
	}})
}

// funcCollector is a collector of one described metric whose values come
// from a function at scrape time.
type funcCollector struct {
	desc    *prometheus.Desc
	collect func(chan<- prometheus.Metric)
}

func (f *funcCollector) Describe(ch chan<- *prometheus.Desc) { ch <- f.desc }
func (f *funcCollector) Collect(ch chan<- prometheus.Metric) { f.collect(ch) }

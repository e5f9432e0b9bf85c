package main

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/ferryhq/ferry/chat"
	"github.com/ferryhq/ferry/config"
	"github.com/ferryhq/ferry/httpapi"
	"github.com/ferryhq/ferry/llm"
	"github.com/ferryhq/ferry/metrics"
)

// newMetrics returns the metrics the packages' hooks feed when
// FERRY_METRICS_ADDR is set, else nil: with metrics off, no hook is set and
// nothing is counted. The functions below take nil for "off".
func newMetrics(cfg *config.Config) *metrics.Metrics {
	if cfg.MetricsAddr == "" {
		return nil
	}
	return metrics.New()
}

// retryPolicy is the upstreams' retry policy, telling m of each failed
// attempt.
func retryPolicy(m *metrics.Metrics) llm.RetryPolicy {
	if m == nil {
		return llm.RetryPolicy{}
	}
	return llm.RetryPolicy{Failed: m.UpstreamFailed}
}

// callObservers are chat's observers: m's, which tells the HTTP requests'
// calls apart by httpapi.RequestStart.
func callObservers(m *metrics.Metrics) []chat.Observer {
	if m == nil {
		return nil
	}
	return []chat.Observer{m.CallObserver(httpapi.RequestStart)}
}

// requestObserver is the API's Observe hook.
func requestObserver(m *metrics.Metrics) func(string, int, time.Duration) {
	if m == nil {
		return nil
	}
	return m.ObserveRequest
}

// metricsShutdown bounds the wait for a scrape in progress when the
// metrics listener closes.
const metricsShutdown = 2 * time.Second

// serveMetrics serves m at /metrics on FERRY_METRICS_ADDR, a listener of
// its own so that the metrics never share the API's port (or its
// authentication), and returns the function that stops it, which run calls
// after the API's shutdown, so that the drain itself can be watched. With
// m nil it does nothing.
func serveMetrics(cfg *config.Config, m *metrics.Metrics, log *slog.Logger) (stop func(), err error) {
	if m == nil {
		return func() {}, nil
	}
	ln, err := net.Listen("tcp", cfg.MetricsAddr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
			log.Error("serving metrics", "error", err)
		}
	}()
	log.Info("metrics listening", "addr", ln.Addr().String())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), metricsShutdown)
		defer cancel()
		if srv.Shutdown(ctx) != nil {
			srv.Close()
		}
		<-done
	}, nil
}

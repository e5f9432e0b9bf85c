package main

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ferryhq/ferry/chat"
	"github.com/ferryhq/ferry/config"
)

// handlerWait is how long, after the server closed the connections still
// open at the shutdown deadline, the store waits for their handlers to
// return before it closes under them.
const handlerWait = 5 * time.Second

// stopMargin is how long before the shutdown deadline the model calls
// still running are ended: enough for each to be answered (503, or an
// error event then done) and queued for saving, which the store's Close
// then commits.
func stopMargin(timeout time.Duration) time.Duration {
	return min(2*time.Second, timeout/10)
}

// shutdown stops the server once SIGTERM came, in steps, all within
// FERRY_SHUTDOWN_TIMEOUT of it:
//
//  1. /readyz answers 503 (markStopping) while everything is still served,
//     for FERRY_SHUTDOWN_GRACE, so that load balancers move away first;
//  2. the listener closes and the requests in flight run on (srv.Shutdown);
//  3. a little before the deadline (stopMargin), the model calls still
//     running are ended and saved as cancelled with what they produced
//     (chat's Stop; drain ends the streams), so their clients hear 503 or
//     an error event then done, instead of a cut connection;
//  4. at the deadline, whatever is left is cut off (srv.Close);
//  5. it returns once every handler has returned (or handlerWait passed),
//     so that the caller closes the store, which commits what they queued,
//     after them.
func shutdown(log *slog.Logger, cfg *config.Config, srv *http.Server, served <-chan error, handlers *inflight,
	chatSvc *chat.Service, markStopping, drain func()) {
	deadline := time.Now().Add(cfg.ShutdownTimeout)
	endCalls := deadline.Add(-stopMargin(cfg.ShutdownTimeout))
	grace := max(0, min(cfg.ShutdownGrace, time.Until(endCalls)))
	log.Info("shutting down", "timeout", cfg.ShutdownTimeout.String(), "grace", grace.String())
	markStopping()
	if grace > 0 {
		t := time.NewTimer(grace)
		select {
		case <-t.C:
		case <-served: // the listener failed; nothing more comes in anyway
		}
		t.Stop()
	}
	ending := time.AfterFunc(time.Until(endCalls), func() {
		log.Info("ending the model calls still running")
		chatSvc.Stop()
		drain()
	})
	sctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		// Past the deadline: cut what is left. The model calls were ended
		// and queued for saving before it, so this is still an orderly
		// stop.
		log.Warn("shutdown deadline passed; closing remaining connections", "error", err)
		srv.Close()
	}
	ending.Stop()
	chatSvc.Stop() // a call that slipped in late is refused
	drain()
	wctx, cancelWait := context.WithTimeout(context.Background(), handlerWait)
	defer cancelWait()
	if err := handlers.wait(wctx); err != nil {
		log.Warn("requests still running; closing the store under them", "error", err)
	}
	log.Info("stopped")
}

// inflight counts the requests being handled. srv.Shutdown waits for them,
// but srv.Close does not: the store must not close under a handler that is
// still saving.
type inflight struct {
	mu   sync.Mutex
	n    int
	idle chan struct{} // closed when n drops to 0; nil while nobody waits
}

// track returns h, counted.
func (f *inflight) track(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.add(1)
		defer f.add(-1)
		h.ServeHTTP(w, r)
	})
}

func (f *inflight) add(d int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n += d
	if f.n == 0 && f.idle != nil {
		close(f.idle)
		f.idle = nil
	}
}

// wait returns once no request is being handled, or ctx's error.
func (f *inflight) wait(ctx context.Context) error {
	f.mu.Lock()
	if f.n == 0 {
		f.mu.Unlock()
		return nil
	}
	if f.idle == nil {
		f.idle = make(chan struct{})
	}
	idle := f.idle
	f.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// userChannel is the Redis channel on which instances announce users who
// were disabled or deleted, by id, so that each ends their model calls.
const userChannel = "ferry:users:revoked"

// shareUserRevocations ends, on this instance, the model calls of users
// that other instances announce on userChannel, and returns the function
// that announces one (httpapi's Options.UserRevoked) and the one that
// stops listening.
func shareUserRevocations(ctx context.Context, rdb *redis.Client, chatSvc *chat.Service, log *slog.Logger) (announce func(userID string), stop func()) {
	sub := rdb.Subscribe(ctx, userChannel)
	go func() {
		for msg := range sub.Channel() {
			chatSvc.CancelUser(msg.Payload)
		}
	}()
	announce = func(userID string) {
		if err := rdb.Publish(context.Background(), userChannel, userID).Err(); err != nil {
			log.Warn("telling other instances of a revoked user", "error", err)
		}
	}
	return announce, func() { sub.Close() }
}

package httpapi

import (
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"
)

// A parked stream's memory is mostly its goroutine's stack, and a
// goroutine's stack only grows: one that once went deeper than 8 KB keeps
// 16 KB for the rest of its life, as deep as it is when it waits. The work
// before a stream's first byte goes deep (huma validates the body
// recursively, SQLite's engine has large frames), while the stream itself
// does not. So the handler of a request runs on a worker goroutine, whose
// stack has grown once and serves request after request, and a stream it
// starts is handed back, to run on the connection's own goroutine (see
// streamed), which then never grows past the 8 KB a bare proxy's does.
// TestStreamStackStaysSmall holds it there.

// workers run handlers; idle ones wait for the next for workerIdle, then
// end.
type workers struct {
	jobs chan func()
}

const workerIdle = 10 * time.Second

func newWorkers() *workers {
	return &workers{jobs: make(chan func())}
}

// run runs fn on an idle worker, or on a new one when none is idle, and
// returns at once.
func (ws *workers) run(fn func()) {
	select {
	case ws.jobs <- fn:
	default:
		go ws.work(fn)
	}
}

// do runs fn on a worker and waits for it; a panic in fn is raised again
// here. It is for a call too deep for the calling goroutine's stack. With
// no workers (a server built in a test without NewServer) fn runs here.
func (ws *workers) do(fn func()) {
	if ws == nil {
		fn()
		return
	}
	done := make(chan any, 1)
	ws.run(func() {
		defer func() { done <- recover() }()
		fn()
	})
	if p := <-done; p != nil {
		panic(p)
	}
}

func (ws *workers) work(fn func()) {
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		fn()
		idle.Reset(workerIdle)
		select {
		case fn = <-ws.jobs:
		case <-idle.C:
			return
		}
	}
}

// handled is what a worker reports back about a request it handled.
type handled struct {
	panicked any    // what the handler panicked with, to panic with again
	rest     func() // the stream to run on the request's own goroutine
}

// serveOnWorker serves r with s.mux on a worker and waits for it; then
// runs the stream, if the handler started one, on this goroutine. A panic
// on the worker is raised again here, where ServeHTTP recovers it.
func (s *server) serveOnWorker(w http.ResponseWriter, r *http.Request, ri *requestInfo) {
	ri.handled = make(chan handled, 1)
	s.work.run(func() {
		var rest func()
		defer func() {
			ri.handled <- handled{panicked: recover(), rest: rest}
		}()
		s.mux.ServeHTTP(w, r)
		rest, ri.rest = ri.rest, nil
	})
	h := <-ri.handled
	ri.handled = nil
	if h.panicked != nil {
		panic(h.panicked)
	}
	if h.rest != nil {
		h.rest()
	}
}

// streamed is the response of a handler that streams: fn writes it. On a
// worker, fn is handed back to run on the request's own goroutine once
// the handler has returned; elsewhere (a test's huma API without
// ServeHTTP) it runs at once. fn must not keep the input's RawBody, which
// huma reuses once the handler has returned.
func streamed(fn func(w http.ResponseWriter, r *http.Request)) *huma.StreamResponse {
	return &huma.StreamResponse{Body: func(hctx huma.Context) {
		r, w := humago.Unwrap(hctx)
		if ri, ok := r.Context().Value(requestIDKey).(*requestInfo); ok && ri.handled != nil {
			ri.rest = func() { fn(w, r) }
			return
		}
		fn(w, r)
	}}
}

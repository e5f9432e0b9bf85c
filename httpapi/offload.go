package httpapi

import (
	"iter"
	"net/http"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"
)

// A parked stream's memory is mostly its goroutine's stack, and a
// goroutine's stack only grows: one that once went deeper than 8 KB keeps
// 16 KB for the rest of its life, as deep as it is when it waits. The work
// before a stream's first byte goes deep (huma validates the body
// recursively, SQLite's engine has large frames), while the stream itself
// does not. So the handler of a request runs on a worker, whose stack has
// grown once and serves request after request, and a stream it starts is
// handed back, to run on the connection's own goroutine (see streamed),
// which then never grows past the 8 KB a bare proxy's does.
// TestStreamStackStaysSmall holds it there.

// workers run calls for other goroutines, one at a time each.
type workers struct {
	idle chan *worker
}

// maxIdleWorkers bounds the workers kept between calls; each holds the
// stack its deepest call grew.
const maxIdleWorkers = 64

func newWorkers() *workers {
	return &workers{idle: make(chan *worker, maxIdleWorkers)}
}

// A worker is a goroutine that the caller switches to directly, as to a
// coroutine (iter.Pull), and that switches back when the call returns: no
// trip through the scheduler's queues, no other thread woken, as there
// would be with a channel to a goroutine waiting on it.
type worker struct {
	call       func()
	next       func() (struct{}, bool)
	stopWorker func()
}

func newWorker() *worker {
	w := &worker{}
	w.next, w.stopWorker = iter.Pull(func(yield func(struct{}) bool) {
		for {
			w.call()
			w.call = nil
			if !yield(struct{}{}) {
				return
			}
		}
	})
	return w
}

// do runs fn on a worker and returns once fn has; a panic in fn is raised
// here (iter.Pull's next raises it), and ends the worker. With no workers
// (a server built in a test without NewServer) fn runs on the caller.
func (ws *workers) do(fn func()) {
	if ws == nil {
		fn()
		return
	}
	var w *worker
	select {
	case w = <-ws.idle:
	default:
		w = newWorker()
	}
	w.call = fn
	w.next()
	select {
	case ws.idle <- w:
	default:
		w.stopWorker()
	}
}

// serveOnWorker serves r with s.mux on a worker; then runs the stream, if
// the handler started one, on this goroutine.
func (s *server) serveOnWorker(w http.ResponseWriter, r *http.Request, ri *requestInfo) {
	ri.onWorker = true
	s.work.do(func() { s.mux.ServeHTTP(w, r) })
	ri.onWorker = false
	if rest := ri.rest; rest != nil {
		ri.rest = nil
		rest()
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
		if ri, ok := r.Context().Value(requestIDKey).(*requestInfo); ok && ri.onWorker {
			ri.rest = func() { fn(w, r) }
			return
		}
		fn(w, r)
	}}
}

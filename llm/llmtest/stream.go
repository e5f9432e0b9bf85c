package llmtest

import (
	"net/http"
	"time"
	"unicode/utf8"
)

// wire is one provider's streaming format.
type wire interface {
	// open is what precedes the first delta.
	open() []byte
	// delta is the event carrying one piece of text, given as a JSON string.
	delta(quoted []byte) []byte
	// fail is the in-stream error event.
	fail(message string) []byte
	// close is what follows the last delta, reporting sent deltas.
	close(sent int) []byte
}

// stream writes one scripted streaming response.
type stream struct {
	w     http.ResponseWriter
	rc    *http.ResponseController
	r     *http.Request
	quit  <-chan struct{}
	rec   *Request
	p     plan
	timer *time.Timer // reused between deltas; thousands of streams pause at once
}

// run streams p through wf and reports whether the client went away first.
func (s *Server) run(w http.ResponseWriter, r *http.Request, rec *Request, p plan, contentType string, wf wire) {
	st := &stream{w: w, rc: http.NewResponseController(w), r: r, quit: s.quit, rec: rec, p: p}
	cancelled := !st.stream(contentType, wf)
	if st.timer != nil {
		st.timer.Stop()
	}
	s.end(rec, cancelled)
	if p.Break == Drop && !cancelled {
		// The documented way to make net/http cut the connection mid-response.
		panic(http.ErrAbortHandler)
	}
}

// stream returns false when the client went away before the end.
func (st *stream) stream(contentType string, wf wire) bool {
	h := st.w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Cache-Control", "no-cache")
	st.w.WriteHeader(http.StatusOK)
	open, first := wf.open(), 0 // first: the delta the loop starts at
	if st.p.OpenWithFirst && len(st.p.quoted) > 0 && (st.p.Break == NoBreak || st.p.BreakAfter > 0) {
		if !st.pause(st.p.Delay) {
			return false
		}
		open, first = append(open, wf.delta(st.p.quoted[0])...), 1
	}
	if !st.send(open) {
		return false
	}
	st.rec.deltas.Add(int64(first))
	for i := first; i < len(st.p.quoted); i++ {
		q := st.p.quoted[i]
		if st.p.Break != NoBreak && i == st.p.BreakAfter {
			return st.breakOff(wf)
		}
		if !st.pause(st.p.Delay) || !st.send(wf.delta(q)) {
			return false
		}
		st.rec.deltas.Add(1)
	}
	if st.p.Break != NoBreak {
		return st.breakOff(wf)
	}
	return st.send(wf.close(len(st.p.quoted)))
}

func (st *stream) breakOff(wf wire) bool {
	switch st.p.Break {
	case ErrorEvent:
		return st.send(wf.fail(st.p.ErrorMessage))
	case Hang:
		select {
		case <-st.r.Context().Done():
			return false
		case <-st.quit:
			return true
		}
	}
	return true
}

// send writes b and flushes it, in two pieces when the script says
// Fragment. It returns false when the client has gone away.
func (st *stream) send(b []byte) bool {
	if st.r.Context().Err() != nil {
		return false
	}
	if st.p.Fragment && len(b) > 1 {
		cut := splitPoint(b)
		return st.write(b[:cut]) && st.write(b[cut:])
	}
	return st.write(b)
}

func (st *stream) write(b []byte) bool {
	if _, err := st.w.Write(b); err != nil {
		return false
	}
	return st.rc.Flush() == nil
}

// splitPoint is inside the first multi-byte character of b, or its middle.
func splitPoint(b []byte) int {
	for i := 1; i < len(b); i++ {
		if !utf8.RuneStart(b[i]) {
			return i
		}
	}
	return len(b) / 2
}

func (st *stream) pause(d time.Duration) bool {
	if d <= 0 {
		return true
	}
	if st.timer == nil {
		st.timer = time.NewTimer(d)
	} else {
		st.timer.Reset(d)
	}
	select {
	case <-st.r.Context().Done():
		return false
	case <-st.quit:
		return false
	case <-st.timer.C:
		return true
	}
}

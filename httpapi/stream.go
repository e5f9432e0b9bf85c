package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/chat"
	"github.com/ferryhq/ferry/llm"
)

// eventWriteTimeout bounds how long one write may take to reach a client
// that stopped reading; each write extends the deadline again.
const eventWriteTimeout = 30 * time.Second

// errDraining is why a stream stops when the server shuts down.
var errDraining = ferry.Errorf(ferry.Unavailable, "the server is restarting; send the message again")

// dialect is one wire format of a streamed answer. Its methods append
// frames to a buffer the stream reuses, so a frame costs no allocation of
// its own.
type dialect interface {
	// header sets the response's headers; the status is 200.
	header(h http.Header)
	// text appends the frames of one delta. first is true for the first
	// delta, which may need an opening frame before it.
	text(b []byte, d llm.Delta, first bool) []byte
	// fail appends what a failure after the first byte becomes: an error
	// frame and whatever ends the stream.
	fail(b []byte, fe *ferry.Error, started bool) []byte
	// done appends the end of a stream that succeeded; started says
	// whether any delta came before.
	done(b []byte, res *chat.Result, started bool) []byte
	// keepalive is what is sent after a silence: nil when the format has
	// no frame that clients ignore.
	keepalive() []byte
	// errors is the shape of an error answered before the first byte.
	errors() errorShape
}

// stream runs one streamed answer, whatever its wire format: run produces
// deltas through emit, and stream writes them in d's frames. Until the
// first frame the response is not committed, so a failure still gets its
// own status and d's error body; after it, a failure becomes d's error
// frame and the stream is ended properly. A client that leaves, or a
// server that starts draining, cancels run's ctx; the cause is in the
// error. A silent model gets d's keepalive every s.opts.Keepalive.
func (s *server) stream(w http.ResponseWriter, r *http.Request, d dialect,
	run func(ctx context.Context, emit func(llm.Delta) error) (*chat.Result, error)) {
	ctx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)
	stop := context.AfterFunc(s.opts.Draining, func() { cancel(errDraining) })
	defer stop()

	sw := newStreamWriter(w, d, s.opts.Keepalive, s.work.do)
	res, err := run(ctx, sw.text)
	if r.Context().Err() != nil {
		sw.stop()
		return // the client left; the call is finished as cancelled
	}
	var fe *ferry.Error
	if err != nil {
		if errors.Is(err, context.Canceled) {
			err = context.Cause(ctx)
		}
		fe = s.public(r.Context(), err)
	}
	if !sw.end(fe, res) {
		writeError(w, d.errors(), fe)
	}
}

// streamWriter writes a dialect's frames. It commits the response (status
// 200 and the dialect's headers) with its first write, so a handler can
// still answer with an error status until then. The keepalive timer and
// the handler may write at once.
type streamWriter struct {
	w  http.ResponseWriter
	rc *http.ResponseController
	d  dialect

	mu        sync.Mutex
	started   bool // the response is committed
	texts     bool // a delta was written
	ended     bool
	buf       []byte // frames not yet written
	keepalive *time.Timer
	wrote     time.Time // the last write's start
	deadline  time.Time // the write deadline set last
	err       error     // the first write error: the client is gone
	// deep, when set, runs the first write on another goroutine (see
	// flush); nil runs it here.
	deep func(func())
}

func newStreamWriter(w http.ResponseWriter, d dialect, interval time.Duration, deep func(func())) *streamWriter {
	sw := &streamWriter{w: w, rc: http.NewResponseController(w), d: d, buf: make([]byte, 0, 512), deep: deep}
	if ka := d.keepalive(); ka != nil && interval > 0 {
		// Hold mu while arming, so the timer's first run sees the field set.
		sw.mu.Lock()
		defer sw.mu.Unlock()
		sw.keepalive = time.AfterFunc(interval, func() {
			sw.mu.Lock()
			defer sw.mu.Unlock()
			if sw.ended {
				return
			}
			// A write since the timer was armed moved the silence's start:
			// writes only note their time, rather than re-arm the timer.
			if quiet := time.Since(sw.wrote); quiet < interval {
				sw.keepalive.Reset(interval - quiet)
				return
			}
			sw.buf = append(sw.buf, ka...)
			sw.flush()
			sw.keepalive.Reset(interval)
		})
	}
	return sw
}

// text writes one delta. A delta the upstream has already sent more after
// (d.More) waits in the buffer, so a burst leaves in one write; the last
// one of a burst is written and flushed at once, and so is the first
// delta of all, since the time to the first token is what a user feels.
func (sw *streamWriter) text(d llm.Delta) error {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	if sw.err != nil {
		return sw.err
	}
	first := !sw.texts
	sw.buf = sw.d.text(sw.buf, d, first)
	sw.texts = true
	if d.More && !first && len(sw.buf) < 16<<10 {
		return nil
	}
	return sw.flush()
}

// end stops the keepalive and writes the stream's last frames: d's fail
// frames for fe, else its done frames for res, under one lock, so that no
// keepalive can commit the response between the decision and the write.
// It reports false, writing nothing, when fe is set and nothing was
// committed yet: the caller answers with fe's own status instead.
func (sw *streamWriter) end(fe *ferry.Error, res *chat.Result) (committed bool) {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	sw.ended = true
	if sw.keepalive != nil {
		sw.keepalive.Stop()
	}
	if sw.err != nil {
		return true // the client is gone
	}
	if fe != nil {
		if !sw.started && !sw.texts {
			return false
		}
		sw.buf = sw.d.fail(sw.buf, fe, sw.texts)
	} else {
		sw.buf = sw.d.done(sw.buf, res, sw.texts)
	}
	sw.flush()
	return true
}

// stop ends the stream without writing anything more.
func (sw *streamWriter) stop() {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	sw.ended = true
	if sw.keepalive != nil {
		sw.keepalive.Stop()
	}
}

// flush writes the buffer, committing the response first. Callers hold mu.
func (sw *streamWriter) flush() error {
	if !sw.started {
		sw.started = true
		sw.d.header(sw.w.Header())
		sw.w.WriteHeader(http.StatusOK)
		if sw.deep != nil {
			// net/http writes the headers out with the first flush, in a
			// function whose frame alone is 2.8 KB: on a worker, so that the
			// stream's goroutine, far down its calls here, need not grow
			// (see offload.go).
			var err error
			sw.deep(func() { err = sw.write() })
			return err
		}
	}
	return sw.write()
}

// write is flush, once the response is committed.
func (sw *streamWriter) write() error {
	if len(sw.buf) > 0 {
		// Not every ResponseWriter supports deadlines (httptest's recorder
		// does not); flushing is what matters, so that error is ignored.
		// The deadline moves on only once a second has passed: setting it
		// re-arms a runtime timer, which for every delta costs more than
		// the write.
		sw.wrote = time.Now()
		if sw.deadline.Sub(sw.wrote) < eventWriteTimeout-time.Second {
			sw.deadline = sw.wrote.Add(eventWriteTimeout)
			sw.rc.SetWriteDeadline(sw.deadline)
		}
		_, err := sw.w.Write(sw.buf)
		sw.buf = sw.buf[:0]
		if err != nil {
			sw.err = err
			return err
		}
	}
	if err := sw.rc.Flush(); err != nil {
		sw.err = err
		return err
	}
	return nil
}

// sseKeepalive is the comment line an event stream sends after a silence,
// which every SSE client ignores.
var sseKeepalive = []byte(": keepalive\n\n")

// setSSEHeaders sets the headers of a text/event-stream response; proxies
// such as nginx must not buffer it.
func setSSEHeaders(h http.Header) {
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	h.Set("X-Accel-Buffering", "no")
}

// sseFrames appends server-sent events whose data is JSON, encoding into a
// buffer it reuses. JSON escapes newlines, so one data line always carries
// the whole value.
type sseFrames struct {
	buf    bytes.Buffer
	enc    *json.Encoder // writes to buf
	lastID int
}

// data appends v as one event's data line.
func (f *sseFrames) data(b []byte, v any) []byte {
	if f.enc == nil {
		f.enc = json.NewEncoder(&f.buf)
		f.enc.SetEscapeHTML(false)
	}
	f.buf.Reset()
	f.enc.Encode(v) // a value of ours, always encodable; Encode ends the line
	b = append(b, "data: "...)
	b = append(b, f.buf.Bytes()...)
	return append(b, '\n')
}

// event appends v as one event with the next id line, so that a client can
// say where it got to.
func (f *sseFrames) event(b []byte, v any) []byte {
	return f.data(f.nextID(b), v)
}

// nextID appends the next event's id line.
func (f *sseFrames) nextID(b []byte) []byte {
	f.lastID++
	b = append(b, "id: "...)
	b = strconv.AppendInt(b, int64(f.lastID), 10)
	return append(b, '\n')
}

// named appends v as an event with an event: line, as Anthropic's stream
// names each event.
func (f *sseFrames) named(b []byte, name string, v any) []byte {
	b = append(b, "event: "...)
	b = append(b, name...)
	b = append(b, '\n')
	return f.data(b, v)
}

// textFrame is an event whose data is fixed JSON around one text value,
// split where the text goes, so that a delta's frame is two appends and a
// quoted string instead of a reflective encode: a stream sends hundreds.
type textFrame struct {
	prefix, suffix []byte
}

// newTextFrame encodes v, whose only empty string field set to "" is where
// the text goes (marker must be that field's key with its quotes and
// colon, as in `"text":`), and splits it there.
func newTextFrame(v any, marker string) textFrame {
	b, _ := json.Marshal(v)
	i := bytes.Index(b, []byte(marker+`""`))
	if i < 0 {
		panic("textFrame: " + marker + ` "" not in ` + string(b))
	}
	cut := i + len(marker)
	return textFrame{prefix: append([]byte(nil), b[:cut]...), suffix: append([]byte(nil), b[cut+2:]...)}
}

// data appends one event's data line with text in place.
func (f textFrame) data(b []byte, text string) []byte {
	b = append(b, "data: "...)
	b = append(b, f.prefix...)
	b = appendJSONString(b, text)
	b = append(b, f.suffix...)
	return append(b, '\n', '\n')
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string, as encoding/json writes it
// with HTML escaping off: quotes, backslashes and control characters
// escaped, invalid UTF-8 as U+FFFD, and U+2028 and U+2029 escaped so the
// line is safe for JavaScript too.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

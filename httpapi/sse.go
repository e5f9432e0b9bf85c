package httpapi

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/ferryhq/ferry"
)

// eventWriteTimeout bounds how long one event may take to reach a client
// that stopped reading; each event extends the deadline again.
const eventWriteTimeout = 30 * time.Second

// sseWriter writes a text/event-stream response. It commits the response
// (status 200 and the stream headers) with its first event or keepalive, so
// a handler can still answer with an error status until then. It is safe
// for the keepalive timer and the handler to write at once.
type sseWriter struct {
	w  http.ResponseWriter
	rc *http.ResponseController

	mu        sync.Mutex
	started   bool
	closed    bool
	nextID    int
	buf       bytes.Buffer
	enc       *json.Encoder // writes to buf
	interval  time.Duration
	keepalive *time.Timer
}

// newSSE returns a writer on w whose keepalive runs every interval of
// silence; 0 disables it.
func newSSE(w http.ResponseWriter, interval time.Duration) *sseWriter {
	s := &sseWriter{w: w, rc: http.NewResponseController(w), interval: interval}
	s.enc = json.NewEncoder(&s.buf)
	s.enc.SetEscapeHTML(false)
	if interval > 0 {
		// Hold mu while arming, so the timer's first run sees the field set.
		s.mu.Lock()
		defer s.mu.Unlock()
		s.keepalive = time.AfterFunc(interval, func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.closed {
				return
			}
			s.begin()
			s.w.Write([]byte(": keepalive\n\n"))
			s.flush()
			s.keepalive.Reset(interval)
		})
	}
	return s
}

// Started reports whether the response is committed, after which failures
// can only travel as events.
func (s *sseWriter) Started() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.started
}

// begin commits the response. Callers hold mu.
func (s *sseWriter) begin() {
	if s.started {
		return
	}
	s.started = true
	h := s.w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	h.Set("X-Accel-Buffering", "no")
	s.w.WriteHeader(http.StatusOK)
}

// Send writes each of vs as one event's JSON data, with an id line, and
// flushes them together: one write for events that are ready at once.
// JSON escapes newlines, so one data line always carries the whole value.
func (s *sseWriter) Send(vs ...any) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.begin()
	s.buf.Reset()
	for _, v := range vs {
		s.nextID++
		s.buf.WriteString("id: ")
		s.buf.WriteString(strconv.Itoa(s.nextID))
		s.buf.WriteString("\ndata: ")
		if err := s.enc.Encode(v); err != nil { // Encode ends with the line's \n
			return err
		}
		s.buf.WriteByte('\n')
	}
	return s.write(s.buf.Bytes())
}

// write sends b, rearms the keepalive and flushes. Callers hold mu.
func (s *sseWriter) write(b []byte) error {
	if _, err := s.w.Write(b); err != nil {
		return err
	}
	if s.keepalive != nil {
		s.keepalive.Reset(s.interval)
	}
	return s.flush()
}

// SendData writes data as one event's data line, as it is and without an
// id line, and flushes it: for sentinels such as OpenAI's "[DONE]". data
// must hold no newline.
func (s *sseWriter) SendData(data string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.begin()
	return s.write([]byte("data: " + data + "\n\n"))
}

func (s *sseWriter) flush() error {
	// Not every ResponseWriter supports deadlines (httptest's recorder does
	// not); flushing is what matters, so that error is ignored.
	s.rc.SetWriteDeadline(time.Now().Add(eventWriteTimeout))
	return s.rc.Flush()
}

// Close stops the keepalive; nothing is written after it.
func (s *sseWriter) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.keepalive != nil {
		s.keepalive.Stop()
	}
}

// errorEvent is the event a failure after the first byte becomes, before
// the done event.
type errorEvent struct {
	Error errorBody `json:"error"`
}

type errorBody struct {
	Code    ferry.Code `json:"code"`
	Message string     `json:"message"`
	Status  int        `json:"status"`
}

func newErrorEvent(fe *ferry.Error) errorEvent {
	return errorEvent{Error: errorBody{Code: fe.Code, Message: fe.Message, Status: statusOf[fe.Code]}}
}

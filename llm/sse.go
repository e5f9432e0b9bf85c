package llm

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// DefaultMaxEvent bounds one server-sent event read by NewEventReader.
// Events carry a few tokens each; the bound only keeps a broken upstream
// from exhausting memory.
const DefaultMaxEvent = 8 << 20

// ErrEventTooLong is what EventReader.Next returns for an event, or a line
// of one, longer than the reader's bound.
var ErrEventTooLong = errors.New("server-sent event too long")

// EventReader reads a text/event-stream body, as Anthropic and OpenAI
// stream their answers: "event:" and "data:" fields, several data lines
// joined by "\n", comment lines (":") skipped, lines ending in LF, CRLF or
// CR, however they were split across reads. The fields "id" and "retry"
// mean nothing to a client that does not reconnect, and are skipped too.
//
// Its buffer holds 4 KiB and grows only for a longer line, so that
// thousands of open streams stay cheap.
type EventReader struct {
	r       *bufio.Reader
	max     int
	started bool // the byte order mark, if any, is behind us
	skipLF  bool // the last line ended in CR: a LF next belongs to it
	long    []byte
	event   []byte
	data    []byte
}

// NewEventReader returns an EventReader of r that allows events of up to
// DefaultMaxEvent bytes.
func NewEventReader(r io.Reader) *EventReader { return NewEventReaderSize(r, DefaultMaxEvent) }

// NewEventReaderSize returns an EventReader of r that allows events of up to
// maxEvent bytes.
func NewEventReaderSize(r io.Reader, maxEvent int) *EventReader {
	// A provider's events are a few hundred bytes; the reader grows past
	// the buffer for a longer line, so thousands of open streams stay cheap.
	return &EventReader{r: bufio.NewReaderSize(r, 2<<10), max: maxEvent}
}

// Next returns the next event's name (empty when the event has none) and
// its data. Both are only valid until the next call. An event without a
// data field is skipped, as the standard says. At the end of the stream
// Next returns io.EOF, dropping an event left unfinished; a failed read
// returns the reader's error, and an event longer than the bound
// ErrEventTooLong.
func (e *EventReader) Next() (event, data []byte, err error) {
	e.event, e.data = e.event[:0], e.data[:0]
	hasData := false
	for {
		line, err := e.line()
		if err != nil {
			return nil, nil, err
		}
		if !e.started {
			e.started = true
			line = bytes.TrimPrefix(line, []byte("\uFEFF"))
		}
		if len(line) == 0 {
			if hasData {
				return e.event, e.data, nil
			}
			e.event = e.event[:0]
			continue
		}
		if line[0] == ':' {
			continue
		}
		name, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(name) {
		case "event":
			e.event = append(e.event[:0], value...)
		case "data":
			if hasData {
				e.data = append(e.data, '\n')
			}
			e.data, hasData = append(e.data, value...), true
			if len(e.data) > e.max {
				return nil, nil, ErrEventTooLong
			}
		}
	}
}

// Buffered reports whether the reader already holds the whole of a next
// event, which Next will then return without waiting, so that a writer may
// hold the current delta back and send a burst in one write. It is only a
// hint: it does not look at what the event says.
func (e *EventReader) Buffered() bool {
	b, _ := e.r.Peek(e.r.Buffered())
	return bytes.Contains(b, []byte("\n\n")) || bytes.Contains(b, []byte("\r\n\r\n")) || bytes.Contains(b, []byte("\r\r"))
}

// line returns the next line without its line ending. It is only valid
// until the next read.
func (e *EventReader) line() ([]byte, error) {
	e.long = e.long[:0]
	for {
		b, _ := e.r.Peek(e.r.Buffered())
		if e.skipLF && len(b) > 0 {
			e.skipLF = false
			if b[0] == '\n' {
				e.r.Discard(1)
				b = b[1:]
			}
		}
		if i := bytes.IndexAny(b, "\r\n"); i >= 0 {
			line, n := b[:i], i+1
			if b[i] == '\r' {
				switch {
				case i+1 == len(b):
					// The LF of a CRLF may still be on its way; the line
					// is complete either way.
					e.skipLF = true
				case b[i+1] == '\n':
					n++
				}
			}
			if len(e.long) > 0 {
				e.long = append(e.long, line...)
				line = e.long
			}
			if len(line) > e.max {
				return nil, ErrEventTooLong
			}
			e.r.Discard(n)
			return line, nil
		}
		if e.r.Buffered() == e.r.Size() {
			// A line longer than the buffer: keep what we have, read on.
			e.long = append(e.long, b...)
			e.r.Discard(len(b))
			if len(e.long) > e.max {
				return nil, ErrEventTooLong
			}
			continue
		}
		// Wait for at least one more byte.
		if _, err := e.r.Peek(e.r.Buffered() + 1); err != nil {
			return nil, err
		}
	}
}

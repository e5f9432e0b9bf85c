// Package eventlog keeps the events of the answers being generated, so
// that a client that lost its connection (a reload, a dropped network) can
// come back, say which event it got last, and receive the rest: the
// events it missed, then the live ones, then the end.
//
// Each answer's log lives in the memory of the instance generating it,
// which is where the connected clients read it, the first one included.
// With Redis, every log is also mirrored to a Redis stream (one key per
// answer, trimmed and expiring), with a key naming each conversation's
// answer, so that a client can come back to any instance. An event's
// sequence number, which is its SSE id, is also its Redis stream id
// (0-seq), so ids mean the same on every instance.
//
// An event is one server-sent event, with its id line, ending in a blank
// line; the log does not look inside it.
package eventlog

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Options tune the logs; the zero value is a memory-only log with the
// defaults below.
type Options struct {
	// Redis, when set, mirrors every log so that other instances can read
	// it; nil keeps the logs in this process only.
	Redis *redis.Client
	// Prefix starts every Redis key; default "ferry:".
	Prefix string
	// Linger is how long an answer's log is kept after its end, so that a
	// client that comes back late still gets the end; default 1 minute.
	Linger time.Duration
	// MaxBytes bounds one answer's log in memory; past it the oldest
	// events are dropped (a client asking for them gets the log from the
	// oldest kept). Default 4 MiB.
	MaxBytes int
	// MaxEvents bounds one answer's Redis stream (MAXLEN ~); default
	// 100,000.
	MaxEvents int64
	// LiveTTL is how long a Redis key of a live answer lives unless the
	// instance generating it renews it, which it does with every write and
	// every LiveTTL/3 of silence (a model thinking): readers on other
	// instances learn within about LiveTTL that the instance died. Default
	// 30 seconds.
	LiveTTL time.Duration
	// Log gets the failures to mirror a log to Redis.
	Log *slog.Logger
}

// Logs holds the logs of the answers being generated, or ended less than
// Linger ago.
type Logs struct {
	o Options

	mu     sync.Mutex
	byConv map[string]*Answer // each conversation's latest answer
}

// New returns the logs.
func New(o Options) *Logs {
	if o.Prefix == "" {
		o.Prefix = "ferry:"
	}
	if o.Linger == 0 {
		o.Linger = time.Minute
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = 4 << 20
	}
	if o.MaxEvents == 0 {
		o.MaxEvents = 100_000
	}
	if o.LiveTTL == 0 {
		o.LiveTTL = 30 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return &Logs{o: o, byConv: map[string]*Answer{}}
}

// Answer is the log of one answer. One goroutine writes it (Append, then
// End); any number read it (Cursor).
type Answer struct {
	logs             *Logs
	conv, id, userID string
	mirrored         chan struct{} // closed when the Redis mirror is done; nil without Redis

	mu    sync.Mutex
	data  []byte  // the events kept, back to back
	ends  []int32 // where each event kept ends in data
	first int64   // the sequence number of the event before the first kept
	done  bool
	wake  chan struct{} // closed at the next write; nil while nobody waits
}

// Open starts the log of answer answerID, which userID's conversation
// convID is generating; it becomes the conversation's answer that Follow
// finds. With Redis, the conversation is named there too; if Redis fails,
// the log still serves this instance.
func (l *Logs) Open(ctx context.Context, userID, convID, answerID string) *Answer {
	a := &Answer{logs: l, conv: convID, id: answerID, userID: userID}
	l.mu.Lock()
	l.byConv[convID] = a
	l.mu.Unlock()
	if l.o.Redis != nil {
		if err := l.o.Redis.Set(ctx, l.convKey(convID), userID+" "+answerID, l.o.LiveTTL).Err(); err != nil {
			l.o.Log.WarnContext(ctx, "naming a live answer in Redis", "conversation_id", convID, "error", err)
		}
		a.mirrored = make(chan struct{})
		go a.mirror()
	}
	return a
}

// ID is the answer's id.
func (a *Answer) ID() string { return a.id }

// Append adds events (one or more, each ending in a blank line) to the
// log, each numbered one more than the last.
func (a *Answer) Append(events []byte) {
	a.mu.Lock()
	a.append(events)
	a.mu.Unlock()
}

// End adds the last events and ends the log, which is dropped Linger
// later.
func (a *Answer) End(events []byte) {
	a.mu.Lock()
	a.append(events)
	a.done = true
	a.mu.Unlock()
	time.AfterFunc(a.logs.o.Linger, func() { a.logs.drop(a) })
}

// Wait returns once the log is mirrored to Redis up to its end (at once
// without Redis), or when ctx ends.
func (a *Answer) Wait(ctx context.Context) {
	if a.mirrored == nil {
		return
	}
	select {
	case <-a.mirrored:
	case <-ctx.Done():
	}
}

// append adds events; callers hold mu.
func (a *Answer) append(events []byte) {
	for len(events) > 0 {
		n := bytes.Index(events, eventEnd)
		if n < 0 {
			n = len(events) // not an event as promised; kept whole all the same
		} else {
			n += len(eventEnd)
		}
		a.data = append(a.data, events[:n]...)
		a.ends = append(a.ends, int32(len(a.data)))
		events = events[n:]
	}
	if len(a.data) > a.logs.o.MaxBytes {
		a.trim()
	}
	if a.wake != nil {
		close(a.wake)
		a.wake = nil
	}
}

var eventEnd = []byte("\n\n")

// trim drops the oldest events until the log holds at most three quarters
// of MaxBytes. The kept bytes move to a new array: readers may still hold
// slices of the old one.
func (a *Answer) trim() {
	keep := a.logs.o.MaxBytes * 3 / 4
	k := 0
	for k < len(a.ends)-1 && len(a.data)-int(a.ends[k]) > keep {
		k++
	}
	cut := int(a.ends[k])
	if k == len(a.ends)-1 {
		return // one event over the bound: kept
	}
	data := make([]byte, len(a.data)-cut, keep+keep/3)
	copy(data, a.data[cut:])
	ends := make([]int32, 0, len(a.ends)-k-1)
	for _, e := range a.ends[k+1:] {
		ends = append(ends, e-int32(cut))
	}
	a.data, a.ends, a.first = data, ends, a.first+int64(k)+1
}

// read returns the events after seq after (from the oldest kept when those
// were dropped), the sequence number of the last, and whether the log
// ended. Callers hold mu. The bytes are never written again.
func (a *Answer) read(after int64) (events []byte, last int64, done bool) {
	last = a.first + int64(len(a.ends))
	if after < a.first {
		after = a.first
	}
	if after >= last {
		return nil, last, a.done
	}
	start := 0
	if i := after - a.first; i > 0 {
		start = int(a.ends[i-1])
	}
	return a.data[start:a.ends[len(a.ends)-1]], last, a.done
}

// Cursor returns a reader of the events after seq after.
func (a *Answer) Cursor(after int64) *Cursor {
	return &Cursor{local: a, after: after}
}

// Batch is what a cursor read: whole events.
type Batch struct {
	Events []byte
	// Done says the answer ended with these events.
	Done bool
}

// ErrGone is a cursor's error when the answer's log went away before its
// end: the instance generating it stopped without ending it.
var ErrGone = errors.New("eventlog: the answer's log is gone")

// Cursor reads one answer's events in order, each once.
type Cursor struct {
	local  *Answer
	remote *remote
	after  int64
}

// Next waits for the events after those read so far and returns them:
// at once when there are some, else when the next ones come or the answer
// ends. Errors: ctx's, ErrGone, and Redis's.
func (c *Cursor) Next(ctx context.Context) (Batch, error) {
	if c.remote != nil {
		return c.remote.next(ctx, &c.after)
	}
	a := c.local
	for {
		a.mu.Lock()
		events, last, done := a.read(c.after)
		if len(events) > 0 || done {
			a.mu.Unlock()
			c.after = last
			return Batch{Events: events, Done: done}, nil
		}
		if a.wake == nil {
			a.wake = make(chan struct{})
		}
		wake := a.wake
		a.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return Batch{}, ctx.Err()
		}
	}
}

// Follow returns a cursor over the events after seq after of the answer
// conversation convID is generating, or ended less than Linger ago. It
// returns nil when there is none, or when the answer ended and no event
// follows after; after below 0 says the client has none of the answer's
// events yet, and gets nil for an answer that ended, reading the
// conversation instead, and else the events from the first. owner is the user whose conversation it is ("" when
// there is no answer): the caller must not show another user's answer.
func (l *Logs) Follow(ctx context.Context, convID string, after int64) (c *Cursor, owner string, err error) {
	l.mu.Lock()
	a := l.byConv[convID]
	l.mu.Unlock()
	if a != nil {
		a.mu.Lock()
		_, last, done := a.read(after)
		a.mu.Unlock()
		if done && (after < 0 || last <= after) {
			return nil, a.userID, nil
		}
		return a.Cursor(max(after, 0)), a.userID, nil
	}
	if l.o.Redis == nil {
		return nil, "", nil
	}
	return l.followRemote(ctx, convID, after)
}

// Active returns the answer conversation convID is generating (or ended
// less than Linger ago) and its owner, on this instance or, with Redis,
// another; "" when there is none.
func (l *Logs) Active(ctx context.Context, convID string) (answerID, owner string, err error) {
	l.mu.Lock()
	a := l.byConv[convID]
	l.mu.Unlock()
	if a != nil {
		return a.id, a.userID, nil
	}
	if l.o.Redis == nil {
		return "", "", nil
	}
	return l.remoteAnswer(ctx, convID)
}

// drop forgets a's log, unless its conversation has a newer answer.
func (l *Logs) drop(a *Answer) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.byConv[a.conv] == a {
		delete(l.byConv, a.conv)
	}
}

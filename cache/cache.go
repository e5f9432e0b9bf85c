// Package cache keeps answers to model calls for a while, so that the same
// request sent again is answered without asking the model (the seed's Redis
// TTL cache). It stores; deciding what is "the same request", whose answer
// may be kept, and replaying it is package chat's. Every store has an
// in-memory implementation for a single instance and a Redis one that
// instances share.
package cache

import (
	"context"
	"encoding/json"
	"time"
)

// Entry is a stored answer: its text deltas as the model sent them, so that
// a replay sends the same events, and how it ended.
type Entry struct {
	Deltas     []string `json:"d"`
	StopReason string   `json:"s,omitempty"`
	Model      string   `json:"m,omitempty"` // the model the upstream reported
}

// Text returns the answer's whole text.
func (e *Entry) Text() string {
	n := 0
	for _, d := range e.Deltas {
		n += len(d)
	}
	b := make([]byte, 0, n)
	for _, d := range e.Deltas {
		b = append(b, d...)
	}
	return string(b)
}

// size is about what the entry costs to hold: its strings and a string
// header per delta.
func (e *Entry) size() int {
	n := len(e.StopReason) + len(e.Model) + 64
	for _, d := range e.Deltas {
		n += len(d) + 16
	}
	return n
}

// Store holds entries by key for a fixed time to live. Keys are opaque
// hashes made by the caller, never a prompt itself: Redis's keys are
// listed by anyone who can reach it. A store may add its own prefix.
type Store interface {
	// Get returns the entry stored under key and true, or false when there
	// is none (never stored, expired or evicted). Errors mean the store is
	// unreachable; callers treat them as a miss.
	Get(ctx context.Context, key string) (*Entry, bool, error)
	// Put stores e under key for the store's time to live, replacing what
	// was there. An entry larger than the store's entry cap is not stored
	// (and no error). Errors mean the store is unreachable.
	Put(ctx context.Context, key string, e *Entry) error
}

// Limits bound a store.
type Limits struct {
	// TTL is how long an entry is kept.
	TTL time.Duration
	// MaxBytes bounds what a Memory holds in all; the least recently used
	// entries go first. Redis is bounded by the TTL, the entry cap and its
	// own maxmemory policy.
	MaxBytes int
	// MaxEntryBytes bounds one entry, in both stores: a longer answer is
	// not kept.
	MaxEntryBytes int
}

func encode(e *Entry) ([]byte, error) { return json.Marshal(e) }

func decode(b []byte) (*Entry, error) {
	var e Entry
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, err
	}
	return &e, nil
}

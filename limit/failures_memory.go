package limit

import (
	"context"
	"crypto/sha256"
	"sync"
	"time"
)

const (
	// memoryMaxKeys bounds a MemoryFailures to a few tens of MB even when
	// someone sprays it with fresh keys.
	memoryMaxKeys = 100_000
	// memorySweepEvery is how often expired entries are dropped.
	memorySweepEvery = time.Minute
)

// MemoryFailures is a Failures kept in this process's memory, for a single
// instance. It never returns store errors. It holds at most 100,000 keys:
// when full even after dropping expired ones, an arbitrary key is forgotten
// to admit a new one, trading a little precision for bounded memory.
type MemoryFailures struct {
	policy  Policy
	now     func() time.Time
	maxKeys int

	mu        sync.Mutex
	entries   map[[sha256.Size]byte]failEntry
	nextSweep time.Time
}

type failEntry struct {
	count   int64
	expires time.Time
}

var _ Failures = (*MemoryFailures)(nil)

// NewMemoryFailures returns an empty MemoryFailures applying p. now is the
// clock (nil means time.Now); tests pass a fake one.
func NewMemoryFailures(p Policy, now func() time.Time) *MemoryFailures {
	if now == nil {
		now = time.Now
	}
	return &MemoryFailures{
		policy:  p.withDefaults(),
		now:     now,
		maxKeys: memoryMaxKeys,
		entries: make(map[[sha256.Size]byte]failEntry),
	}
}

// Check implements Failures.
func (m *MemoryFailures) Check(_ context.Context, key string) (time.Duration, error) {
	h := hashKey(key)
	now := m.now()
	m.mu.Lock()
	e, ok := m.entries[h]
	if ok && !now.Before(e.expires) {
		delete(m.entries, h)
		ok = false
	}
	m.mu.Unlock()
	if !ok {
		return 0, nil
	}
	return m.policy.verdict(e.count, e.expires.Sub(now))
}

// Fail implements Failures.
func (m *MemoryFailures) Fail(_ context.Context, key string) error {
	h := hashKey(key)
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.entries[h]
	if !ok || !now.Before(e.expires) {
		if !ok {
			m.makeRoom(now)
		}
		e = failEntry{expires: now.Add(m.policy.Window)}
	}
	e.count++
	m.entries[h] = e
	return nil
}

// Reset implements Failures.
func (m *MemoryFailures) Reset(_ context.Context, key string) error {
	h := hashKey(key)
	m.mu.Lock()
	delete(m.entries, h)
	m.mu.Unlock()
	return nil
}

// makeRoom drops expired entries every memorySweepEvery, or at once when the
// map is full, and evicts one live entry if that was not enough. It is called
// with m.mu held, only before inserting a new key, so growth pays for it.
func (m *MemoryFailures) makeRoom(now time.Time) {
	full := len(m.entries) >= m.maxKeys
	if !full && now.Before(m.nextSweep) {
		return
	}
	for k, e := range m.entries {
		if !now.Before(e.expires) {
			delete(m.entries, k)
		}
	}
	m.nextSweep = now.Add(memorySweepEvery)
	if len(m.entries) >= m.maxKeys {
		for k := range m.entries {
			delete(m.entries, k)
			break
		}
	}
}

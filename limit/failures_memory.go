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

	// mu makes each Reserve's decision and count one step.
	mu        sync.Mutex
	entries   map[[sha256.Size]byte]failEntry
	groups    map[[sha256.Size]byte]map[[sha256.Size]byte]struct{}
	nextSweep time.Time
}

type failEntry struct {
	count   int64
	expires time.Time
	group   *[sha256.Size]byte // nil: in no group
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
		groups:  make(map[[sha256.Size]byte]map[[sha256.Size]byte]struct{}),
	}
}

// Reserve implements Failures.
func (m *MemoryFailures) Reserve(_ context.Context, k Key) (time.Duration, error) {
	h := hashKey(k.Name)
	p := m.policy.scaled(k.Scale)
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.live(h, now)
	if ok && e.count >= p.BlockAfter {
		return p.verdict(e.count, e.expires.Sub(now))
	}
	if !ok {
		m.makeRoom(now)
		e = failEntry{expires: now.Add(p.Window)}
	}
	counted := e.count
	e.count++
	if k.Group != "" && e.group == nil {
		g := hashKey(k.Group)
		e.group = &g
		if m.groups[g] == nil {
			m.groups[g] = make(map[[sha256.Size]byte]struct{})
		}
		m.groups[g][h] = struct{}{}
	}
	m.entries[h] = e
	return p.verdict(counted, e.expires.Sub(now))
}

// Release implements Failures.
func (m *MemoryFailures) Release(_ context.Context, k Key) error {
	h := hashKey(k.Name)
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.live(h, now)
	switch {
	case !ok:
	case e.count <= 1:
		m.drop(h, e)
	default:
		e.count--
		m.entries[h] = e
	}
	return nil
}

// Reset implements Failures.
func (m *MemoryFailures) Reset(_ context.Context, k Key) error {
	h := hashKey(k.Name)
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.entries[h]; ok {
		m.drop(h, e)
	}
	return nil
}

// ResetGroup implements Failures.
func (m *MemoryFailures) ResetGroup(_ context.Context, group string) error {
	g := hashKey(group)
	m.mu.Lock()
	defer m.mu.Unlock()
	for h := range m.groups[g] {
		delete(m.entries, h)
	}
	delete(m.groups, g)
	return nil
}

// live returns h's entry unless it has expired, which it drops. It is
// called with m.mu held.
func (m *MemoryFailures) live(h [sha256.Size]byte, now time.Time) (failEntry, bool) {
	e, ok := m.entries[h]
	if ok && !now.Before(e.expires) {
		m.drop(h, e)
		return failEntry{}, false
	}
	return e, ok
}

// drop forgets h and its place in its group. It is called with m.mu held.
func (m *MemoryFailures) drop(h [sha256.Size]byte, e failEntry) {
	delete(m.entries, h)
	if e.group == nil {
		return
	}
	members := m.groups[*e.group]
	delete(members, h)
	if len(members) == 0 {
		delete(m.groups, *e.group)
	}
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
			m.drop(k, e)
		}
	}
	m.nextSweep = now.Add(memorySweepEvery)
	if len(m.entries) >= m.maxKeys {
		for k, e := range m.entries {
			m.drop(k, e)
			break
		}
	}
}

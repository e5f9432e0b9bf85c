package cache

import (
	"container/list"
	"context"
	"sync"
	"time"
)

// Memory is a Store in this process's memory, for a single instance: a
// least-recently-used list bounded by Limits.MaxBytes, whose entries also
// expire after Limits.TTL. It never returns errors.
type Memory struct {
	lim Limits
	now func() time.Time

	mu    sync.Mutex
	byKey map[string]*list.Element // of *memoryItem
	lru   list.List                // most recently used first
	bytes int
}

type memoryItem struct {
	key     string
	e       *Entry
	size    int
	expires time.Time
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty Memory bounded by lim. now is the clock (nil
// means time.Now); tests pass a fake one.
func NewMemory(lim Limits, now func() time.Time) *Memory {
	if now == nil {
		now = time.Now
	}
	return &Memory{lim: lim, now: now, byKey: map[string]*list.Element{}}
}

// Get implements Store. The entry returned is shared: callers must not
// change it.
func (m *Memory) Get(_ context.Context, key string) (*Entry, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	el, ok := m.byKey[key]
	if !ok {
		return nil, false, nil
	}
	it := el.Value.(*memoryItem)
	if !m.now().Before(it.expires) {
		m.remove(el)
		return nil, false, nil
	}
	m.lru.MoveToFront(el)
	return it.e, true, nil
}

// Put implements Store. It keeps e itself: callers must not change it
// afterwards.
func (m *Memory) Put(_ context.Context, key string, e *Entry) error {
	size := e.size() + len(key)
	if size > m.lim.MaxEntryBytes || size > m.lim.MaxBytes {
		return nil
	}
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if el, ok := m.byKey[key]; ok {
		m.remove(el)
	}
	// Expired entries go before live ones, whatever their place in the
	// list; then the least recently used.
	for el := m.lru.Back(); el != nil && m.bytes+size > m.lim.MaxBytes; {
		prev := el.Prev()
		if !now.Before(el.Value.(*memoryItem).expires) {
			m.remove(el)
		}
		el = prev
	}
	for m.bytes+size > m.lim.MaxBytes {
		m.remove(m.lru.Back())
	}
	m.byKey[key] = m.lru.PushFront(&memoryItem{key: key, e: e, size: size, expires: now.Add(m.lim.TTL)})
	m.bytes += size
	return nil
}

// Len returns how many entries are held, expired ones not yet dropped
// included, and their size in bytes.
func (m *Memory) Len() (entries, bytes int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lru.Len(), m.bytes
}

func (m *Memory) remove(el *list.Element) {
	it := m.lru.Remove(el).(*memoryItem)
	delete(m.byKey, it.key)
	m.bytes -= it.size
}

package limit

import (
	"context"
	"sync"
	"time"
)

// MemoryRates is a Rates kept in this process's memory, for a single
// instance. It never returns store errors. Each bucket keeps one entry per
// call in the window, so its memory is bounded by the limits; buckets
// whose calls have all left the window are dropped.
type MemoryRates struct {
	window time.Duration
	now    func() time.Time

	mu        sync.Mutex
	logs      map[string][]rateEntry // oldest first
	nextSweep time.Time
}

type rateEntry struct {
	at     time.Time
	id     string
	tokens int64
}

var _ Rates = (*MemoryRates)(nil)

// NewMemoryRates returns an empty MemoryRates counting over window (zero
// means a minute). now is the clock (nil means time.Now).
func NewMemoryRates(window time.Duration, now func() time.Time) *MemoryRates {
	if window <= 0 {
		window = time.Minute
	}
	if now == nil {
		now = time.Now
	}
	return &MemoryRates{window: window, now: now, logs: make(map[string][]rateEntry)}
}

// Take implements Rates.
func (m *MemoryRates) Take(_ context.Context, id string, buckets []Bucket, tokens int64) (Status, error) {
	tokens = cost(buckets, tokens)
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sweep(now)
	states := make([]bucketState, len(buckets))
	var wait time.Duration
	var byTokens bool
	for i, b := range buckets {
		log := m.live(b.Key, now)
		var used int64
		for _, e := range log {
			used += e.tokens
		}
		n := int64(len(log))
		states[i] = bucketState{calls: n, tokens: used}
		if b.RPM > 0 && n+1 > b.RPM {
			// The call fits once all but RPM-1 of the counted ones left.
			if w := log[n-b.RPM].at.Add(m.window).Sub(now); w > wait {
				wait, byTokens = w, false
			}
		}
		if b.TPM > 0 && used+tokens > b.TPM {
			for _, e := range log {
				used -= e.tokens
				if used+tokens <= b.TPM {
					if w := e.at.Add(m.window).Sub(now); w > wait {
						wait, byTokens = w, true
					}
					break
				}
			}
		}
	}
	if wait > 0 {
		for i, b := range buckets {
			states[i].oldest = m.oldest(b.Key, now)
		}
		return status(m.window, buckets, states), refused(wait, byTokens)
	}
	for i, b := range buckets {
		m.logs[b.Key] = append(m.logs[b.Key], rateEntry{at: now, id: id, tokens: tokens})
		states[i].calls++
		states[i].tokens += tokens
		states[i].oldest = m.oldest(b.Key, now)
	}
	return status(m.window, buckets, states), nil
}

// Settle implements Rates.
func (m *MemoryRates) Settle(_ context.Context, id string, buckets []Bucket, estimated, used int64) error {
	if !changes(buckets, cost(buckets, estimated), used) {
		return nil
	}
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, b := range buckets {
		log := m.live(b.Key, now)
		found := false
		for i := range log {
			if log[i].id == id {
				if used < 0 {
					m.logs[b.Key] = append(log[:i], log[i+1:]...)
				} else {
					log[i].tokens = used
				}
				found = true
				break
			}
		}
		if !found && used > 0 {
			m.logs[b.Key] = append(log, rateEntry{at: now, id: id, tokens: used})
		}
	}
	return nil
}

// live returns key's log without the calls that left the window, which it
// drops. It is called with m.mu held.
func (m *MemoryRates) live(key string, now time.Time) []rateEntry {
	log := m.logs[key]
	i := 0
	for i < len(log) && !now.Before(log[i].at.Add(m.window)) {
		i++
	}
	if i > 0 {
		log = append(log[:0], log[i:]...)
		if len(log) == 0 {
			delete(m.logs, key)
			return nil
		}
		m.logs[key] = log
	}
	return log
}

// oldest is how long until key's oldest call leaves the window: the whole
// window for an empty log. It is called with m.mu held.
func (m *MemoryRates) oldest(key string, now time.Time) time.Duration {
	if log := m.logs[key]; len(log) > 0 {
		return log[0].at.Add(m.window).Sub(now)
	}
	return m.window
}

// sweep drops, once a window, the buckets no call has used within it.
// It is called with m.mu held.
func (m *MemoryRates) sweep(now time.Time) {
	if now.Before(m.nextSweep) {
		return
	}
	m.nextSweep = now.Add(m.window)
	for key := range m.logs {
		m.live(key, now)
	}
}

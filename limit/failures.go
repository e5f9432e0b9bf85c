package limit

import (
	"context"
	"crypto/sha256"
	"time"

	"github.com/ferryhq/ferry"
)

// Failures counts failed attempts per key (callers use keys such as
// "email:<address>" and "ip:<address>") and says how the next attempt must be
// treated under a Policy.
type Failures interface {
	// Check reports how long to hold the next attempt for key before
	// answering it (zero when key has few failures). When key has failed
	// too often it returns a RateLimited *ferry.Error whose RetryAfter is
	// the time left in the window; other errors mean the store is
	// unreachable.
	Check(ctx context.Context, key string) (delay time.Duration, err error)
	// Fail records one failed attempt for key. The window starts at the
	// first failure and is not extended by later ones.
	Fail(ctx context.Context, key string) error
	// Reset forgets key's failures, as after a successful attempt.
	Reset(ctx context.Context, key string) error
}

// Policy says how failures are punished. Within Window of a key's first
// failure, from SlowAfter failures on each attempt is held for FirstDelay,
// doubling with each further failure up to MaxDelay; from BlockAfter
// failures on, attempts are refused until the window ends. Zero fields take
// DefaultPolicy's values.
type Policy struct {
	Window     time.Duration
	SlowAfter  int64
	BlockAfter int64
	FirstDelay time.Duration
	MaxDelay   time.Duration
}

// DefaultPolicy allows 5 failures in 15 minutes freely, slows the next five
// (250 ms doubling to 2 s) and then blocks for the rest of the window.
var DefaultPolicy = Policy{
	Window:     15 * time.Minute,
	SlowAfter:  5,
	BlockAfter: 10,
	FirstDelay: 250 * time.Millisecond,
	MaxDelay:   2 * time.Second,
}

func (p Policy) withDefaults() Policy {
	d := DefaultPolicy
	if p.Window <= 0 {
		p.Window = d.Window
	}
	if p.SlowAfter <= 0 {
		p.SlowAfter = d.SlowAfter
	}
	if p.BlockAfter <= 0 {
		p.BlockAfter = d.BlockAfter
	}
	if p.FirstDelay <= 0 {
		p.FirstDelay = d.FirstDelay
	}
	if p.MaxDelay <= 0 {
		p.MaxDelay = d.MaxDelay
	}
	return p
}

// verdict turns a key's failure count and the time left in its window into
// Check's answer. Both implementations share it so they cannot disagree.
func (p Policy) verdict(failures int64, left time.Duration) (time.Duration, error) {
	if failures >= p.BlockAfter {
		if left <= 0 {
			// The count exists but its expiry could not be read: assume
			// the whole window rather than letting the block lapse.
			left = p.Window
		}
		return 0, &ferry.Error{
			Code:       ferry.RateLimited,
			Message:    "too many failed attempts, try again later",
			RetryAfter: left,
		}
	}
	if failures < p.SlowAfter {
		return 0, nil
	}
	delay := p.FirstDelay
	for i := p.SlowAfter; i < failures && delay < p.MaxDelay; i++ {
		delay *= 2
	}
	return min(delay, p.MaxDelay), nil
}

// hashKey keeps stored keys short and free of the emails and addresses
// callers put in them.
func hashKey(key string) [sha256.Size]byte {
	return sha256.Sum256([]byte(key))
}

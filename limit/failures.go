package limit

import (
	"context"
	"crypto/sha256"
	"fmt"
	"time"

	"github.com/ferryhq/ferry"
)

// Failures counts attempts per key (callers use keys such as
// "login:<account>|<address>") and says how each must be treated under a
// Policy. An attempt is counted when it is reserved, before it is made, so
// that attempts arriving together cannot all pass a check that none of them
// has counted yet; the caller gives the reservation back when the attempt
// turns out not to be a failure.
type Failures interface {
	// Reserve counts one attempt for k, atomically with the decision about
	// it, however many arrive at once on however many instances sharing the
	// store: per window at most the policy's BlockAfter (times k.Scale) are
	// let through. It returns how long to hold the attempt before making it
	// (zero while k has few attempts counted) or, once k has BlockAfter,
	// a RateLimited *ferry.Error whose RetryAfter is the time left in the
	// window; a refused attempt is not counted. Other errors mean the store
	// is unreachable.
	Reserve(ctx context.Context, k Key) (delay time.Duration, err error)
	// Release gives back one attempt reserved for k, because it succeeded
	// or was never made. The window keeps its end.
	Release(ctx context.Context, k Key) error
	// Reset forgets k's count, as after a success that forgives earlier
	// failures.
	Reset(ctx context.Context, k Key) error
	// ResetGroup forgets the count of every key reserved with that Group,
	// as when an admin lifts every block on one account.
	ResetGroup(ctx context.Context, group string) error
}

// Key names one count.
type Key struct {
	// Name identifies what is counted. It is stored hashed.
	Name string
	// Group, when set, ties the count to others that ResetGroup forgets
	// together, such as every count about one account.
	Group string
	// Scale multiplies the policy's SlowAfter and BlockAfter for this key
	// (zero means one): a count that many people share, such as an
	// address behind which an office sits, needs a higher ceiling than
	// one person's.
	Scale int64
}

// Policy says how failures are punished. Within Window of a key's first
// counted attempt, from SlowAfter attempts on each further one is held for
// FirstDelay, doubling with each further attempt up to MaxDelay; from
// BlockAfter on, attempts are refused until the window ends. Zero fields
// take DefaultPolicy's values.
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

// scaled is p with its thresholds multiplied by n (when above one).
func (p Policy) scaled(n int64) Policy {
	if n > 1 {
		p.SlowAfter *= n
		p.BlockAfter *= n
	}
	return p
}

// verdict turns the number of attempts a key had counted before this one,
// and the time left in its window, into Reserve's answer. Both
// implementations share it so they cannot disagree.
func (p Policy) verdict(counted int64, left time.Duration) (time.Duration, error) {
	if counted >= p.BlockAfter {
		if left <= 0 {
			// The count exists but its expiry could not be read: assume
			// the whole window rather than letting the block lapse.
			left = p.Window
		}
		return 0, &ferry.Error{
			Code:       ferry.RateLimited,
			Message:    "too many attempts; try again in " + InWords(left),
			RetryAfter: left,
		}
	}
	if counted < p.SlowAfter {
		return 0, nil
	}
	delay := p.FirstDelay
	for i := p.SlowAfter; i < counted && delay < p.MaxDelay; i++ {
		delay *= 2
	}
	return min(delay, p.MaxDelay), nil
}

// InWords says how long d is the way one tells a person to wait: rounded
// up, so that waiting that long is enough, in seconds under a minute, in
// minutes up to two hours and in hours beyond ("40 seconds", "15 minutes",
// "3 hours").
func InWords(d time.Duration) string {
	unit := func(n int64, name string) string {
		if n == 1 {
			return "1 " + name
		}
		return fmt.Sprintf("%d %ss", n, name)
	}
	secs := int64((d + time.Second - 1) / time.Second)
	switch {
	case secs < 60:
		return unit(max(secs, 1), "second")
	case secs <= 120*60:
		return unit((secs+59)/60, "minute")
	}
	return unit((secs+3599)/3600, "hour")
}

// hashKey keeps stored keys short and free of the emails and addresses
// callers put in them.
func hashKey(key string) [sha256.Size]byte {
	return sha256.Sum256([]byte(key))
}

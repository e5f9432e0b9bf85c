package limit

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/ferryhq/ferry"
)

// Queue caps the model calls this instance runs at once, in all and per
// provider, and makes the calls over the cap wait their turn in a bounded
// queue that serves users round-robin: when a slot frees, it goes to the
// next user in turn who has a call waiting that may take it, not to
// whoever has waited longest, so one user's hundred calls delay another
// user's one by at most one call each. A user who joins the queue is
// served next. Within one user, calls to one provider keep their order.
type Queue struct {
	max, size   int
	timeout     time.Duration
	providerMax map[string]int

	mu      sync.Mutex
	running int
	byProv  map[string]int
	waiting int
	ring    []*userLine // users with calls waiting, in turn order
	next    int         // index in ring of the user served next
	lines   map[string]*userLine
}

type userLine struct {
	user  string
	calls []*waiter // oldest first
}

type waiter struct {
	provider string
	ready    chan struct{} // closed when the call got its slot
	granted  bool
}

// QueueOptions configure a Queue.
type QueueOptions struct {
	// Max is how many calls may run at once; zero or less: no cap, and no
	// queue.
	Max int
	// PerProvider caps the calls to one provider (by routing prefix, as
	// "ollama") below Max.
	PerProvider map[string]int
	// Size is how many calls may wait; a call finding it full is refused
	// at once. Zero: none waits.
	Size int
	// Timeout is the longest a call waits before it is refused.
	Timeout time.Duration
}

// NewQueue returns an empty Queue.
func NewQueue(o QueueOptions) *Queue {
	return &Queue{max: o.Max, size: max(o.Size, 0), timeout: o.Timeout, providerMax: o.PerProvider,
		byProv: make(map[string]int), lines: make(map[string]*userLine)}
}

// Depth is how many calls are waiting now.
func (q *Queue) Depth() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.waiting
}

// Running is how many calls hold a slot now.
func (q *Queue) Running() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.running
}

// Acquire waits for a slot for one of user's calls to provider and returns
// the function that gives it back, which must be called once, and how long
// the call waited. Errors: Unavailable, with a RetryAfter, when the queue
// is full or the wait outlasts the timeout; ctx's error when ctx ends
// first (the client left), and the call leaves the queue at once.
func (q *Queue) Acquire(ctx context.Context, user, provider string) (release func(), waited time.Duration, err error) {
	if q.max <= 0 {
		return func() {}, 0, nil
	}
	q.mu.Lock()
	if q.fits(provider) {
		// Slots are handed to waiters the moment they free up, so a slot
		// still free here is one that no waiter may take: nobody is passed.
		q.take(provider)
		q.mu.Unlock()
		return q.releaser(provider), 0, nil
	}
	if q.waiting >= q.size {
		q.mu.Unlock()
		return nil, 0, &ferry.Error{Code: ferry.Unavailable, RetryAfter: q.retryAfter(),
			Message: fmt.Sprintf("the server is busy: %d model calls are running and %d waiting; try again shortly", q.max, q.size)}
	}
	w := &waiter{provider: provider, ready: make(chan struct{})}
	q.enqueue(user, w)
	q.mu.Unlock()

	start := time.Now()
	var timeout <-chan time.Time
	if q.timeout > 0 {
		t := time.NewTimer(q.timeout)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-w.ready:
		return q.releaser(provider), time.Since(start), nil
	case <-ctx.Done():
		err = ctx.Err()
	case <-timeout:
		err = &ferry.Error{Code: ferry.Unavailable, RetryAfter: q.retryAfter(),
			Message: fmt.Sprintf("the server is busy: no model call slot came free within %s; try again shortly", q.timeout)}
	}
	q.mu.Lock()
	if w.granted {
		// The slot came as the wait ended: give it to the next one.
		q.give(provider)
	} else {
		q.remove(user, w)
	}
	q.mu.Unlock()
	return nil, time.Since(start), err
}

// retryAfter is the wait a refused call is told: the queue's timeout, or a
// few seconds without one.
func (q *Queue) retryAfter() time.Duration {
	if q.timeout > 0 {
		return max(q.timeout, time.Second)
	}
	return 5 * time.Second
}

func (q *Queue) releaser(provider string) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			q.mu.Lock()
			q.give(provider)
			q.mu.Unlock()
		})
	}
}

// fits reports whether a call to provider may run now. Callers hold mu.
func (q *Queue) fits(provider string) bool {
	if q.running >= q.max {
		return false
	}
	if m, ok := q.providerMax[provider]; ok && q.byProv[provider] >= m {
		return false
	}
	return true
}

func (q *Queue) take(provider string) {
	q.running++
	q.byProv[provider]++
}

// give returns a slot of provider's and hands every slot that may now be
// taken to the waiters, round-robin. Callers hold mu.
func (q *Queue) give(provider string) {
	q.running--
	q.byProv[provider]--
	if q.byProv[provider] <= 0 {
		delete(q.byProv, provider)
	}
	q.dispatch()
}

// dispatch grants slots to waiters while any waiter may take one, visiting
// users in turn from q.next. Callers hold mu.
func (q *Queue) dispatch() {
	for q.running < q.max && len(q.ring) > 0 {
		granted := false
		for i := 0; i < len(q.ring); i++ {
			at := (q.next + i) % len(q.ring)
			line := q.ring[at]
			for j, w := range line.calls {
				if !q.fits(w.provider) {
					continue
				}
				q.take(w.provider)
				w.granted = true
				close(w.ready)
				line.calls = append(line.calls[:j], line.calls[j+1:]...)
				q.waiting--
				if len(line.calls) == 0 {
					q.dropLine(at)
					q.next = at // the one after it moved into its place
				} else {
					q.next = at + 1
				}
				if len(q.ring) > 0 {
					q.next %= len(q.ring)
				} else {
					q.next = 0
				}
				granted = true
				break
			}
			if granted {
				break
			}
		}
		if !granted {
			return // every waiter waits for a provider that is full
		}
	}
}

// enqueue puts w at the end of user's line; a user not yet waiting is
// served next. Callers hold mu.
func (q *Queue) enqueue(user string, w *waiter) {
	q.waiting++
	line := q.lines[user]
	if line == nil {
		line = &userLine{user: user}
		q.lines[user] = line
		if len(q.ring) == 0 {
			q.ring, q.next = append(q.ring, line), 0
		} else {
			q.ring = append(q.ring, nil)
			copy(q.ring[q.next+1:], q.ring[q.next:])
			q.ring[q.next] = line
		}
	}
	line.calls = append(line.calls, w)
}

// remove takes w, which was not granted, out of user's line. Callers hold
// mu.
func (q *Queue) remove(user string, w *waiter) {
	line := q.lines[user]
	if line == nil {
		return
	}
	for j, c := range line.calls {
		if c == w {
			line.calls = append(line.calls[:j], line.calls[j+1:]...)
			q.waiting--
			break
		}
	}
	if len(line.calls) > 0 {
		return
	}
	for at, l := range q.ring {
		if l == line {
			q.dropLine(at)
			if at < q.next {
				q.next--
			}
			if len(q.ring) > 0 {
				q.next %= len(q.ring)
			} else {
				q.next = 0
			}
			return
		}
	}
}

// dropLine takes the empty line at ring index at out of the ring. Callers
// hold mu and fix q.next.
func (q *Queue) dropLine(at int) {
	delete(q.lines, q.ring[at].user)
	q.ring = append(q.ring[:at], q.ring[at+1:]...)
}

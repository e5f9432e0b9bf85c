package chat

import (
	"context"
	"sync"
	"time"

	"github.com/ferryhq/ferry"
)

// errStopping ends the calls still running when the server shuts down, and
// refuses new ones: the client may send its request again, to this
// instance once restarted or to another.
var errStopping = &ferry.Error{Code: ferry.Unavailable, Message: "the server is restarting; send the message again",
	RetryAfter: 5 * time.Second}

// errUserRevoked ends the calls of a user who was disabled or deleted.
var errUserRevoked = ferry.Errorf(ferry.Unauthorized, "the account was disabled or deleted")

// active holds the calls that have started and not finished, by user id
// ("" for calls without a principal), so that they can be ended from
// outside: all of them at shutdown (Stop), or one user's (CancelUser).
type active struct {
	mu      sync.Mutex
	byUser  map[string]map[*Call]struct{}
	stopped bool
}

func (a *active) add(c *Call) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.byUser == nil {
		a.byUser = map[string]map[*Call]struct{}{}
	}
	u := c.userID()
	calls := a.byUser[u]
	if calls == nil {
		calls = map[*Call]struct{}{}
		a.byUser[u] = calls
	}
	calls[c] = struct{}{}
	if a.stopped {
		// Stop came between Start's check and here: the call ends as soon
		// as it runs.
		c.end(errStopping)
	}
}

func (a *active) remove(c *Call) {
	a.mu.Lock()
	defer a.mu.Unlock()
	u := c.userID()
	delete(a.byUser[u], c)
	if len(a.byUser[u]) == 0 {
		delete(a.byUser, u)
	}
}

func (a *active) isStopped() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.stopped
}

// calls returns the user's active calls, or everyone's when all is set.
func (a *active) calls(userID string, all bool) []*Call {
	a.mu.Lock()
	defer a.mu.Unlock()
	var list []*Call
	if !all {
		for c := range a.byUser[userID] {
			list = append(list, c)
		}
		return list
	}
	for _, calls := range a.byUser {
		for c := range calls {
			list = append(list, c)
		}
	}
	return list
}

// CancelUser ends every model call of the user that is running on this
// instance, or has started and not yet run, and returns how many it ended.
// Each ends as a client that left ends it: what the model wrote so far is
// saved (status cancelled) with its usage, and its client hears an
// Unauthorized error. The caller tells other instances (see httpapi's
// Options.UserRevoked).
func (s *Service) CancelUser(userID string) int {
	calls := s.active.calls(userID, false)
	for _, c := range calls {
		c.end(errUserRevoked)
	}
	return len(calls)
}

// Stop ends every model call on this instance, and refuses those that
// start after it (code Unavailable, with a Retry-After): what each call's
// model wrote so far is saved (status cancelled) with its usage, and its
// client hears that the server is restarting. run calls it a little before
// the shutdown deadline, so that the calls are saved while the store is
// still open.
func (s *Service) Stop() {
	s.active.mu.Lock()
	s.active.stopped = true
	s.active.mu.Unlock()
	for _, c := range s.active.calls("", true) {
		c.end(errStopping)
	}
}

// answerIDs returns the answer rows of the active conversation turns.
func (a *active) answerIDs() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var ids []string
	for _, calls := range a.byUser {
		for c := range calls {
			if c.answerID != "" {
				ids = append(ids, c.answerID)
			}
		}
	}
	return ids
}

func (c *Call) userID() string {
	if c.Principal == nil || c.Principal.User == nil {
		return ""
	}
	return c.Principal.User.ID
}

// end ends the call with cause: at once if it is running, else as soon as
// it runs. The first cause stays.
func (c *Call) end(cause error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cause != nil {
		return
	}
	c.cause = cause
	if c.cancel != nil {
		c.cancel(cause)
	}
}

// ended returns the cause the call was ended with, or nil.
func (c *Call) ended() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cause
}

// begin returns the context the running call's upstream request gets:
// ctx's, bounded by FERRY_UPSTREAM_TIMEOUT, and cancelled by end. The
// returned func releases it.
func (c *Call) begin(ctx context.Context) (context.Context, context.CancelFunc) {
	cctx, cancelCause := context.WithCancelCause(ctx)
	uctx, cancel := context.WithTimeout(cctx, c.svc.opts.UpstreamTimeout)
	c.mu.Lock()
	c.cancel = cancelCause
	if c.cause != nil {
		cancelCause(c.cause)
	}
	c.mu.Unlock()
	return uctx, func() {
		cancel()
		c.mu.Lock()
		c.cancel = nil
		c.mu.Unlock()
		cancelCause(nil)
	}
}

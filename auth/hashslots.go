package auth

import "context"

// hashSlots bounds how many argon2 computations run at once, since each
// holds Params.Memory, and keeps some of them for sign-ins: a flood of
// registrations (or password changes) can fill only the shared slots, so a
// person signing in still gets a slot promptly.
type hashSlots struct {
	login  chan struct{} // for sign-ins only
	shared chan struct{} // for any hashing, sign-ins included
}

func newHashSlots(login, shared int) *hashSlots {
	return &hashSlots{login: make(chan struct{}, login), shared: make(chan struct{}, shared)}
}

// acquire waits for a slot, of either kind for a sign-in, else a shared
// one, and returns the function that frees it; or ctx's error if it ends
// first.
func (h *hashSlots) acquire(ctx context.Context, signIn bool) (release func(), err error) {
	login := h.login
	if !signIn {
		login = nil // a nil channel never receives: shared slots only
	}
	select {
	case login <- struct{}{}:
		return func() { <-login }, nil
	case h.shared <- struct{}{}:
		return func() { <-h.shared }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

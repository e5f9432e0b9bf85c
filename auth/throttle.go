package auth

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/limit"
)

// sharedScale is how much higher the ceiling is on counts that many
// people share (an address: an office, a school, a carrier's NAT) or that
// many places feed (an account guessed at from everywhere), than on one
// client's guesses at one account.
const sharedScale = 10

// RegisterPolicy is the default limit on registrations: five an hour from
// one client address, after which they are refused until the hour is out.
var RegisterPolicy = limit.Policy{Window: time.Hour, SlowAfter: 5, BlockAfter: 5}

// loginKeys are the counts a sign-in to the account email from the client
// address addr is held to: the pair, one client guessing at one account,
// under the policy itself; and, under a ceiling sharedScale times higher,
// the address alone (many accounts guessed at from one place) and the
// account alone (one account guessed at from many places). So one client
// that keeps failing blocks only itself from that account, not the others
// behind its address, nor the account's owner elsewhere.
func loginKeys(email, addr string) []limit.Key {
	group := accountGroup(email)
	return []limit.Key{
		{Name: "login:" + email + "|" + addr, Group: group},
		loginAddrKey(addr),
		{Name: "login-account:" + email, Group: group, Scale: sharedScale},
	}
}

func loginAddrKey(addr string) limit.Key {
	return limit.Key{Name: "login-addr:" + addr, Scale: sharedScale}
}

// accountGroup ties together the counts that Unblock clears for an account.
func accountGroup(email string) string { return "account:" + email }

func registerKey(addr string) limit.Key { return limit.Key{Name: "register:" + addr} }

// addressKey is the form of a client address that limits count under. An
// IPv6 client usually holds a whole /64, so its addresses count as one.
// Anything unparsable is kept as it is.
func addressKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	a = a.Unmap()
	if a.Is6() {
		return netip.PrefixFrom(a, 64).Masked().String()
	}
	return a.String()
}

// reserve counts one attempt against each of keys, in order, before it is
// made, and returns the longest delay they ask for. When one refuses, the
// attempt is given back to those already counted, so that a refused attempt
// counts nowhere.
func reserve(ctx context.Context, f limit.Failures, keys []limit.Key) (time.Duration, error) {
	var delay time.Duration
	for i, k := range keys {
		d, err := f.Reserve(ctx, k)
		if err != nil {
			release(ctx, f, keys[:i])
			return 0, err
		}
		delay = max(delay, d)
	}
	return delay, nil
}

// release gives back one attempt to each of keys. It runs after the
// request may have ended, and a failure only leaves a count one too high,
// so it neither heeds ctx's cancellation nor reports errors.
func release(ctx context.Context, f limit.Failures, keys []limit.Key) {
	ctx = context.WithoutCancel(ctx)
	for _, k := range keys {
		f.Release(ctx, k)
	}
}

// hold waits d, or until ctx ends.
func hold(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// refused rewords a RateLimited error from a limit to say what was limited,
// keeping how long to wait; other errors pass unchanged.
func refused(err error, what string) error {
	var fe *ferry.Error
	if !errors.As(err, &fe) || fe.Code != ferry.RateLimited {
		return err
	}
	return &ferry.Error{Code: ferry.RateLimited, RetryAfter: fe.RetryAfter,
		Message: what + "; try again in " + limit.InWords(fe.RetryAfter)}
}

// UnblockUser forgets the failed sign-ins counted against the account with
// id, from every address, so its owner can sign in again at once. It does
// not lift a block on an address (see UnblockAddress). An unknown id is
// NotFound.
func (s *Service) UnblockUser(ctx context.Context, id string) error {
	u, err := s.store.UserByID(ctx, id)
	if err != nil {
		return err
	}
	return s.failures.ResetGroup(ctx, accountGroup(u.Email))
}

// UnblockAddress forgets the failed sign-ins and the registrations counted
// against the client address ip, which an Invalid error says when it is
// not an IP address.
func (s *Service) UnblockAddress(ctx context.Context, ip string) error {
	if _, err := netip.ParseAddr(ip); err != nil {
		return ferry.InvalidField("address", "not an IP address")
	}
	addr := addressKey(ip)
	if err := s.failures.Reset(ctx, loginAddrKey(addr)); err != nil {
		return err
	}
	return s.registrations.Reset(ctx, registerKey(addr))
}

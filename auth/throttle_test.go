package auth_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/auth"
	"github.com/ferryhq/ferry/limit"
	"github.com/ferryhq/ferry/limit/limittest"
	"github.com/ferryhq/ferry/store"
	"github.com/ferryhq/ferry/store/storetest"
)

// noDelays refuses from the 10th counted failure on, without holding any
// attempt, so tests count verdicts rather than wait.
var noDelays = limit.Policy{Window: 15 * time.Minute, SlowAfter: 1000, BlockAfter: 10, FirstDelay: time.Nanosecond, MaxDelay: time.Nanosecond}

// newLimits makes the two limits a Service needs: in memory, or, with
// prefix set, in the test Redis under it, as instances sharing Redis do.
func newLimits(t *testing.T, prefix string, login, register limit.Policy) (limit.Failures, limit.Failures) {
	if prefix == "" {
		return limit.NewMemoryFailures(login, nil), limit.NewMemoryFailures(register, nil)
	}
	rdb := limittest.Redis(t)
	return limit.NewRedisFailures(rdb, prefix, login), limit.NewRedisFailures(rdb, prefix+"register:", register)
}

// newService returns a Service over st; services made with the same
// non-empty prefix share their limits through Redis.
func newService(t *testing.T, st *store.Store, prefix string, login, register limit.Policy) *auth.Service {
	t.Helper()
	tokens, err := auth.NewTokens([]byte(strings.Repeat("k", auth.MinSecretKeyLen)))
	if err != nil {
		t.Fatal(err)
	}
	failures, registrations := newLimits(t, prefix, login, register)
	return auth.NewService(st, tokens, failures, auth.ServiceOptions{
		Hasher:        auth.Hasher{Params: auth.TestPasswordParams},
		Registrations: registrations,
	})
}

// sharing runs fn per engine with the services it asks for: in memory
// (one instance), and, when FERRY_TEST_REDIS_URL is set, two instances
// sharing Redis on the same database.
func sharing(t *testing.T, login, register limit.Policy, fn func(t *testing.T, st *store.Store, instances []*auth.Service)) {
	for _, engine := range storetest.Engines(t) {
		t.Run(engine+"/memory", func(t *testing.T) {
			st := storetest.Open(t, engine)
			fn(t, st, []*auth.Service{newService(t, st, "", login, register)})
		})
		t.Run(engine+"/redis", func(t *testing.T) {
			if limittest.URL() == "" {
				t.Skip("FERRY_TEST_REDIS_URL not set")
			}
			st := storetest.Open(t, engine)
			prefix := limittest.Prefix(t, limittest.Redis(t))
			fn(t, st, []*auth.Service{newService(t, st, prefix, login, register), newService(t, st, prefix, login, register)})
		})
	}
}

const password = "correct horse battery"

// TestLoginParallelGuesses is issue 7's "199 wrong passwords sent at once
// were all verified and the right one accepted": guesses sent together,
// spread over instances, must not all pass a check that none of them has
// counted yet. Only the policy's allowance may reach the password check.
func TestLoginParallelGuesses(t *testing.T) {
	sharing(t, noDelays, auth.RegisterPolicy, func(t *testing.T, st *store.Store, instances []*auth.Service) {
		ctx := context.Background()
		if _, err := instances[0].CreateUser(ctx, "victim@example.com", password, "", ferry.RoleUser); err != nil {
			t.Fatal(err)
		}
		var checked, refused atomic.Int64
		var wg sync.WaitGroup
		for i := range 50 {
			svc := instances[i%len(instances)]
			wg.Go(func() {
				_, err := svc.Login(ctx, "victim@example.com", fmt.Sprintf("guess %d", i), "198.51.100.7")
				switch ferry.ErrorCode(err) {
				case ferry.Unauthorized: // the password was checked, and wrong
					checked.Add(1)
				case ferry.RateLimited:
					refused.Add(1)
				default:
					t.Errorf("guess %d: %v", i, err)
				}
			})
		}
		wg.Wait()
		if checked.Load() > noDelays.BlockAfter {
			t.Errorf("%d of 50 parallel guesses had their password checked (%d refused); want at most %d",
				checked.Load(), refused.Load(), noDelays.BlockAfter)
		}
		for _, svc := range instances {
			if _, err := svc.Login(ctx, "victim@example.com", password, "198.51.100.7"); ferry.ErrorCode(err) != ferry.RateLimited {
				t.Errorf("the right password after the guesses: %v; want RateLimited", err)
			}
		}
	})
}

// TestLoginOneAddressDoesNotLockOutOthers is issue 7's "after 12 failures
// for one account, every other account behind the same address gets 429".
func TestLoginOneAddressDoesNotLockOutOthers(t *testing.T) {
	sharing(t, noDelays, auth.RegisterPolicy, func(t *testing.T, st *store.Store, instances []*auth.Service) {
		ctx := context.Background()
		svc := func(i int) *auth.Service { return instances[i%len(instances)] }
		for _, e := range []string{"victim@example.com", "colleague@example.com"} {
			if _, err := svc(0).CreateUser(ctx, e, password, "", ferry.RoleUser); err != nil {
				t.Fatal(err)
			}
		}
		const office = "198.51.100.7"
		for i := range 12 {
			if _, err := svc(i).Login(ctx, "victim@example.com", "guess", office); i < 10 && ferry.ErrorCode(err) != ferry.Unauthorized ||
				i >= 10 && ferry.ErrorCode(err) != ferry.RateLimited {
				t.Fatalf("failure %d: %v", i+1, err)
			}
		}
		_, err := svc(1).Login(ctx, "victim@example.com", password, office)
		var fe *ferry.Error
		if !errors.As(err, &fe) || fe.Code != ferry.RateLimited || fe.RetryAfter <= 0 {
			t.Fatalf("the blocked account from the same address: %v; want RateLimited", err)
		}
		if !strings.Contains(fe.Message, "try again in 15 minutes") {
			t.Errorf("message %q does not say how long to wait in words", fe.Message)
		}
		if _, err := svc(0).Login(ctx, "colleague@example.com", password, office); err != nil {
			t.Errorf("another account behind the same address: %v; want it signed in", err)
		}
		if _, err := svc(1).Login(ctx, "victim@example.com", password, "203.0.113.9"); err != nil {
			t.Errorf("the blocked account from its owner's own address: %v; want it signed in", err)
		}

		// The address alone has a ceiling too, ten times higher: guesses at
		// many accounts from one place are refused in the end.
		for i := range 90 {
			svc(i).Login(ctx, fmt.Sprintf("nobody%d@example.com", i), "guess", office)
		}
		if _, err := svc(0).Login(ctx, "colleague@example.com", password, office); ferry.ErrorCode(err) != ferry.RateLimited {
			t.Errorf("after 100 failures from one address: %v; want RateLimited", err)
		}
		if err := svc(1).UnblockAddress(ctx, office); err != nil {
			t.Fatal(err)
		}
		if _, err := svc(0).Login(ctx, "colleague@example.com", password, office); err != nil {
			t.Errorf("after UnblockAddress: %v", err)
		}
	})
}

// TestLoginIPv6Prefix: an IPv6 client holds a /64, so stepping through its
// addresses does not buy fresh guesses.
func TestLoginIPv6Prefix(t *testing.T) {
	sharing(t, noDelays, auth.RegisterPolicy, func(t *testing.T, st *store.Store, instances []*auth.Service) {
		ctx := context.Background()
		if _, err := instances[0].CreateUser(ctx, "victim@example.com", password, "", ferry.RoleUser); err != nil {
			t.Fatal(err)
		}
		for i := range 10 {
			instances[0].Login(ctx, "victim@example.com", "guess", fmt.Sprintf("2001:db8:1:2::%x", i+1))
		}
		if _, err := instances[0].Login(ctx, "victim@example.com", password, "2001:db8:1:2:ffff::1"); ferry.ErrorCode(err) != ferry.RateLimited {
			t.Errorf("another address in the same /64: %v; want RateLimited", err)
		}
		if _, err := instances[0].Login(ctx, "victim@example.com", password, "2001:db8:1:3::1"); err != nil {
			t.Errorf("another /64: %v", err)
		}
	})
}

func TestUnblockUser(t *testing.T) {
	sharing(t, noDelays, auth.RegisterPolicy, func(t *testing.T, st *store.Store, instances []*auth.Service) {
		ctx := context.Background()
		u, err := instances[0].CreateUser(ctx, "victim@example.com", password, "", ferry.RoleUser)
		if err != nil {
			t.Fatal(err)
		}
		other, err := instances[0].CreateUser(ctx, "other@example.com", password, "", ferry.RoleUser)
		if err != nil {
			t.Fatal(err)
		}
		// Blocked from two addresses, and the other account from one.
		for _, addr := range []string{"198.51.100.1", "198.51.100.2"} {
			for range 10 {
				instances[0].Login(ctx, "victim@example.com", "guess", addr)
			}
		}
		for range 10 {
			instances[0].Login(ctx, "other@example.com", "guess", "198.51.100.1")
		}
		last := instances[len(instances)-1]
		if err := last.UnblockUser(ctx, u.ID); err != nil {
			t.Fatal(err)
		}
		for _, addr := range []string{"198.51.100.1", "198.51.100.2"} {
			if _, err := instances[0].Login(ctx, "victim@example.com", password, addr); err != nil {
				t.Errorf("after UnblockUser, from %s: %v", addr, err)
			}
		}
		if _, err := instances[0].Login(ctx, other.Email, password, "198.51.100.1"); ferry.ErrorCode(err) != ferry.RateLimited {
			t.Errorf("another account's block: %v; want it to stand", err)
		}
		if err := last.UnblockUser(ctx, "no-such-id"); ferry.ErrorCode(err) != ferry.NotFound {
			t.Errorf("UnblockUser(unknown) = %v; want NotFound", err)
		}
	})
}

// TestRegisterLimit is issue 7's "300 accounts in 5.2 s": registrations
// from one address are limited, on every instance together.
func TestRegisterLimit(t *testing.T) {
	sharing(t, noDelays, auth.RegisterPolicy, func(t *testing.T, st *store.Store, instances []*auth.Service) {
		ctx := context.Background()
		svc := func(i int) *auth.Service { return instances[i%len(instances)] }
		for i := range 5 {
			if _, err := svc(i).Register(ctx, fmt.Sprintf("u%d@example.com", i), password, "", "198.51.100.7"); err != nil {
				t.Fatalf("registration %d: %v", i+1, err)
			}
		}
		// Bad input costs nothing and counts nothing.
		if _, err := svc(0).Register(ctx, "not an email", password, "", "198.51.100.8"); ferry.ErrorCode(err) != ferry.Invalid {
			t.Fatalf("bad email: %v", err)
		}
		for i := range 2 {
			_, err := svc(i).Register(ctx, fmt.Sprintf("more%d@example.com", i), password, "", "198.51.100.7")
			var fe *ferry.Error
			if !errors.As(err, &fe) || fe.Code != ferry.RateLimited || fe.RetryAfter <= 0 || fe.RetryAfter > time.Hour {
				t.Fatalf("registration 6 from one address: %v; want RateLimited within the hour", err)
			}
			if !strings.Contains(fe.Message, "try again in ") {
				t.Errorf("message %q does not say how long to wait", fe.Message)
			}
		}
		if _, err := st.UserByEmail(ctx, "more0@example.com"); ferry.ErrorCode(err) != ferry.NotFound {
			t.Errorf("a refused registration made an account: %v", err)
		}
		for i := range 5 {
			if _, err := svc(i).Register(ctx, fmt.Sprintf("v%d@example.com", i), password, "", "198.51.100.8"); err != nil {
				t.Fatalf("another address, registration %d: %v", i+1, err)
			}
		}
		// Admins are not limited.
		if _, err := svc(0).CreateUser(ctx, "admin-made@example.com", password, "", ferry.RoleUser); err != nil {
			t.Errorf("CreateUser: %v", err)
		}
		if err := svc(1).UnblockAddress(ctx, "198.51.100.7"); err != nil {
			t.Fatal(err)
		}
		if _, err := svc(0).Register(ctx, "after@example.com", password, "", "198.51.100.7"); err != nil {
			t.Errorf("after UnblockAddress: %v", err)
		}
	})
}

package httpapi_test

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/auth"
)

// TestLoginForwardedFor: X-Forwarded-For names the client only when a
// trusted proxy sent it, and then only its right-most entry that is not a
// trusted proxy counts; anything further left is the client's own word.
func TestLoginForwardedFor(t *testing.T) {
	proxies := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	eachEngine(t, options{policy: blockAfter3, trustedProxies: proxies}, func(t *testing.T, h *harness) {
		h.signUp(t, "victim@example.com")
		via := func(peer, xff, password string) request {
			r := loginFrom("victim@example.com", password, peer+":1000")
			r.header = map[string]string{"X-Forwarded-For": xff}
			return r
		}
		var sc []scenario
		for i := range 3 {
			sc = append(sc, scenario{name: fmt.Sprintf("untrusted peer, failure %d under a new forwarded address", i+1),
				request: via("198.51.100.1", fmt.Sprintf("203.0.113.%d", 100+i), "guess"), status: 401})
		}
		sc = append(sc, scenario{name: "an untrusted peer's X-Forwarded-For is ignored",
			request: via("198.51.100.1", "203.0.113.99", testPassword), status: 429})
		for i := range 3 {
			sc = append(sc, scenario{name: fmt.Sprintf("through the proxy, failure %d", i+1),
				request: via("10.0.0.1", "203.0.113.5", "guess"), status: 401})
		}
		sc = append(sc,
			scenario{name: "the client is refused through another trusted proxy",
				request: via("10.0.0.2", "203.0.113.5", testPassword), status: 429},
			scenario{name: "what the client wrote to the left does not count",
				request: via("10.0.0.1", "192.0.2.66, 203.0.113.5", testPassword), status: 429},
			scenario{name: "a chain of trusted proxies is walked",
				request: via("10.0.0.1", "203.0.113.5, 10.0.0.3:8080", testPassword), status: 429},
			scenario{name: "another client behind the same proxy signs in",
				request: via("10.0.0.1", "203.0.113.6", testPassword), status: 200},
			scenario{name: "the proxy's own address is not blocked",
				request: loginFrom("victim@example.com", testPassword, "10.0.0.1:1000"), status: 200},
		)
		h.run(t, sc)
	})
}

func TestUnblockUser(t *testing.T) {
	eachEngine(t, options{policy: blockAfter3}, func(t *testing.T, h *harness) {
		root := h.signUpAdmin(t, "root@example.com")
		victim := h.signUp(t, "victim@example.com")
		other := h.signUp(t, "other@example.com")
		for _, e := range []string{victim.email, other.email} {
			for range 3 {
				h.do(t, loginFrom(e, "guess", "198.51.100.1:1"))
			}
		}
		unblock := func(cred, id string) request {
			return request{method: "POST", path: "/users/" + id + "/unblock", auth: cred}
		}
		h.run(t, []scenario{
			{name: "blocked", request: loginFrom(victim.email, testPassword, "198.51.100.1:1"), status: 429},
			{name: "not for a user", request: unblock(other.access, victim.id), status: 403, problem: true},
			{name: "not without credentials", request: unblock("", victim.id), status: 401, problem: true},
			{name: "unknown user", request: unblock(root.access, "no-such-user"), status: 404, problem: true},
			{name: "an admin unblocks", request: unblock(root.access, victim.id), status: 204},
			{name: "the user signs in from the blocked address", request: loginFrom(victim.email, testPassword, "198.51.100.1:1"), status: 200},
			{name: "another account's block stands", request: loginFrom(other.email, testPassword, "198.51.100.1:1"), status: 429},
		})
	})
}

// TestRegisterLimit: registrations from one address are limited, and the
// refusal says how long to wait; another address is unaffected.
func TestRegisterLimit(t *testing.T) {
	eachEngine(t, options{registrations: auth.RegisterPolicy}, func(t *testing.T, h *harness) {
		reg := func(email, addr string) request {
			return request{method: "POST", path: "/auth/register", remoteAddr: addr + ":1000",
				body: map[string]string{"email": email, "password": testPassword}}
		}
		var sc []scenario
		for i := range 5 {
			sc = append(sc, scenario{name: fmt.Sprintf("registration %d", i+1),
				request: reg(fmt.Sprintf("u%d@example.com", i), "198.51.100.1"), status: 201})
		}
		sc = append(sc,
			scenario{name: "the sixth is refused", request: reg("u5@example.com", "198.51.100.1"), status: 429, problem: true,
				contains: []string{"too many accounts registered from your address; try again in 60 minutes"}},
			scenario{name: "another address is not", request: reg("u5@example.com", "198.51.100.2"), status: 201},
		)
		h.run(t, sc)
		res := h.do(t, reg("u6@example.com", "198.51.100.1"))
		checkRetryAfter(t, res, time.Hour)
		if !strings.Contains(res.body, "try again in") {
			t.Errorf("body does not say how long to wait: %s", res.body)
		}
		if h.do(t, request{method: "POST", path: "/auth/login", remoteAddr: "198.51.100.1:1",
			body: map[string]string{"email": "u0@example.com", "password": testPassword}}).status != http.StatusOK {
			t.Error("signing in from an address that may register no more was refused")
		}
	})
}

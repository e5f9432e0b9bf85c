package httpapi_test

import (
	"context"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/auth"
	"github.com/ferryhq/ferry/limit"
)

func TestRegister(t *testing.T) {
	eachEngine(t, options{}, func(t *testing.T, h *harness) {
		h.run(t, []scenario{
			{name: "created, email normalised, no hash",
				request:  request{method: "POST", path: "/auth/register", body: map[string]string{"email": "Alice@Example.COM", "password": "s3cret-pass", "name": "Alice"}},
				status:   201,
				contains: []string{`"email":"alice@example.com"`, `"name":"Alice"`, `"role":"user"`, `"disabled":false`, `"id":"`, `"created_at":"`},
				excludes: []string{"password", "hash", "argon2", "s3cret-pass"}},
			{name: "same email in other case is a conflict",
				request: request{method: "POST", path: "/auth/register", body: map[string]string{"email": "ALICE@example.com", "password": "another-pass"}},
				status:  409, problem: true, contains: []string{"already exists"}},
			{name: "same email with spaces is a conflict",
				request: request{method: "POST", path: "/auth/register", body: map[string]string{"email": " alice@example.com ", "password": "another-pass"}},
				status:  409, problem: true},
			{name: "name is optional",
				request: request{method: "POST", path: "/auth/register", body: map[string]string{"email": "bob@example.com", "password": "12345678"}},
				status:  201, contains: []string{`"name":""`}},
			{name: "8 multi-byte characters are 8 characters",
				request: request{method: "POST", path: "/auth/register", body: map[string]string{"email": "carol@example.com", "password": "密码密码密码密码"}},
				status:  201},
			{name: "malformed JSON",
				request: request{method: "POST", path: "/auth/register", body: `{"email":`},
				status:  400, problem: true},
			{name: "no body",
				request: request{method: "POST", path: "/auth/register"},
				status:  400, problem: true},
		})

		// Validation errors name each bad field in errors[].location.
		for _, tc := range []struct {
			name string
			body string
			locs []string
		}{
			{"bad email and short password", `{"email":"not-an-email","password":"short"}`, []string{"body.email", "body.password"}},
			{"password too long", fmt.Sprintf(`{"email":"d@example.com","password":%q}`, strings.Repeat("p", auth.MaxPasswordLen+1)), []string{"body.password"}},
			{"password too long in characters", fmt.Sprintf(`{"email":"d@example.com","password":%q}`, strings.Repeat("密", auth.MaxPasswordLen+1)), []string{"body.password"}},
			{"name too long", fmt.Sprintf(`{"email":"d@example.com","password":"12345678","name":%q}`, strings.Repeat("n", 201)), []string{"body.name"}},
			{"unknown field", `{"email":"d@example.com","password":"12345678","role":"admin"}`, []string{"body.role"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				res := h.do(t, request{method: "POST", path: "/auth/register", body: tc.body})
				if res.status != http.StatusUnprocessableEntity {
					t.Fatalf("status %d, want 422: %s", res.status, res.body)
				}
				checkProblem(t, res)
				if got := errorLocations(t, res); !slices.Equal(got, tc.locs) {
					t.Errorf("error locations %v, want %v", got, tc.locs)
				}
			})
		}
		t.Run("missing fields are named", func(t *testing.T) {
			res := h.do(t, request{method: "POST", path: "/auth/register", body: `{}`})
			if res.status != http.StatusUnprocessableEntity {
				t.Fatalf("status %d, want 422: %s", res.status, res.body)
			}
			for _, f := range []string{"property email", "property password"} {
				if !strings.Contains(res.body, f) {
					t.Errorf("body does not name %s: %s", f, res.body)
				}
			}
		})
		t.Run("validation errors do not echo the password", func(t *testing.T) {
			res := h.do(t, request{method: "POST", path: "/auth/register", body: `{"email":"e@example.com","password":"Xy7!q"}`})
			if res.status != http.StatusUnprocessableEntity || strings.Contains(res.body, "Xy7!q") {
				t.Fatalf("status %d, body %s: want 422 without the password", res.status, res.body)
			}
		})
		t.Run("the stored password is an argon2id hash", func(t *testing.T) {
			u, err := h.store.UserByEmail(context.Background(), "alice@example.com")
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(u.PasswordHash, "$argon2id$") || strings.Contains(u.PasswordHash, "s3cret-pass") {
				t.Fatalf("stored hash %q", u.PasswordHash)
			}
		})
	})
}

func TestLogin(t *testing.T) {
	eachEngine(t, options{}, func(t *testing.T, h *harness) {
		h.signUp(t, "alice@example.com")
		form := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
		h.run(t, []scenario{
			{name: "JSON",
				request: request{method: "POST", path: "/auth/login", body: map[string]string{"email": "alice@example.com", "password": testPassword}},
				status:  200, contains: []string{`"access_token":"ey`, `"refresh_token":"frt_`, `"token_type":"bearer"`, `"expires_in":900`}},
			{name: "email in another case",
				request: request{method: "POST", path: "/auth/login", body: map[string]string{"email": " ALICE@example.com", "password": testPassword}},
				status:  200},
			{name: "OAuth2 password form",
				request: request{method: "POST", path: "/auth/login", header: form, body: "grant_type=password&username=alice%40example.com&password=correct+horse+battery"},
				status:  200, contains: []string{`"access_token":"ey`, `"token_type":"bearer"`}},
			{name: "form with an email field",
				request: request{method: "POST", path: "/auth/login", header: form, body: "email=alice%40example.com&password=correct+horse+battery"},
				status:  200},
			{name: "form with a wrong password",
				request: request{method: "POST", path: "/auth/login", header: form, body: "username=alice%40example.com&password=nope"},
				status:  401, problem: true, excludes: []string{"access_token"}},
			{name: "JSON with a wrong password",
				request: request{method: "POST", path: "/auth/login", body: map[string]string{"email": "alice@example.com", "password": "wrong password"}},
				status:  401, problem: true, contains: []string{"incorrect email or password"}},
			{name: "missing password names the field",
				request: request{method: "POST", path: "/auth/login", body: map[string]string{"email": "alice@example.com"}},
				status:  400, problem: true, contains: []string{`"location":"body.password"`}},
			{name: "missing email names the field",
				request: request{method: "POST", path: "/auth/login", body: map[string]string{"password": testPassword}},
				status:  400, problem: true, contains: []string{`"location":"body.email"`}},
			{name: "unknown JSON field",
				request: request{method: "POST", path: "/auth/login", body: `{"email":"alice@example.com","password":"x","admin":true}`},
				status:  400, problem: true},
			{name: "other content type",
				request: request{method: "POST", path: "/auth/login", header: map[string]string{"Content-Type": "text/plain"}, body: "alice"},
				status:  415, problem: true, contains: []string{"send application/json or application/x-www-form-urlencoded"}},
			{name: "GET is not allowed",
				request: request{method: "GET", path: "/auth/login"},
				status:  405, problem: true},
		})
	})
}

// TestLoginUnknownEmailLikeWrongPassword: the answer must not reveal which
// emails have accounts.
func TestLoginUnknownEmailLikeWrongPassword(t *testing.T) {
	eachEngine(t, options{}, func(t *testing.T, h *harness) {
		h.signUp(t, "alice@example.com")
		wrong := h.do(t, request{method: "POST", path: "/auth/login", body: map[string]string{"email": "alice@example.com", "password": "wrong password"}})
		unknown := h.do(t, request{method: "POST", path: "/auth/login", body: map[string]string{"email": "nobody@example.com", "password": "wrong password"}})
		if wrong.status != http.StatusUnauthorized {
			t.Fatalf("wrong password: %d %s", wrong.status, wrong.body)
		}
		if unknown.status != wrong.status || unknown.body != wrong.body {
			t.Errorf("unknown email answered %d %s\nwrong password answered %d %s", unknown.status, unknown.body, wrong.status, wrong.body)
		}
		for _, hdr := range []http.Header{wrong.header, unknown.header} {
			hdr.Del("X-Request-ID")
		}
		if !maps.EqualFunc(wrong.header, unknown.header, slices.Equal) {
			t.Errorf("headers differ: unknown %v, wrong %v", unknown.header, wrong.header)
		}
	})
}

// blockAfter3 refuses from the third failure on, without delays.
var blockAfter3 = limit.Policy{Window: 15 * time.Minute, SlowAfter: 100, BlockAfter: 3, FirstDelay: time.Nanosecond, MaxDelay: time.Nanosecond}

func loginFrom(email, password, addr string) request {
	return request{method: "POST", path: "/auth/login", remoteAddr: addr, body: map[string]string{"email": email, "password": password}}
}

func TestLoginThrottle(t *testing.T) {
	t.Run("per account and address", func(t *testing.T) {
		eachEngine(t, options{policy: blockAfter3}, func(t *testing.T, h *harness) {
			h.signUp(t, "victim@example.com")
			h.signUp(t, "bystander@example.com")
			var sc []scenario
			for i := range 3 {
				sc = append(sc, scenario{name: fmt.Sprintf("failure %d", i+1),
					request: loginFrom("victim@example.com", "guess", "198.51.100.1:1000"), status: 401})
			}
			sc = append(sc,
				scenario{name: "refused even with the right password, saying how long to wait",
					request: loginFrom("Victim@example.com", testPassword, "198.51.100.1:2000"),
					status:  429, problem: true, contains: []string{"too many failed sign-in attempts; try again in 15 minutes"}},
				scenario{name: "another account from the same address is unaffected",
					request: loginFrom("bystander@example.com", testPassword, "198.51.100.1:1000"), status: 200},
				scenario{name: "the account from another address is unaffected",
					request: loginFrom("victim@example.com", testPassword, "203.0.113.9:1"), status: 200},
			)
			h.run(t, sc)
			checkRetryAfter(t, h.do(t, loginFrom("victim@example.com", testPassword, "198.51.100.1:1")), blockAfter3.Window)
		})
	})
	t.Run("per account from many addresses, ten times higher", func(t *testing.T) {
		eachEngine(t, options{policy: blockAfter3}, func(t *testing.T, h *harness) {
			h.signUp(t, "victim@example.com")
			for i := range 30 {
				if res := h.do(t, loginFrom("victim@example.com", "guess", fmt.Sprintf("198.51.100.%d:1000", i))); res.status != 401 {
					t.Fatalf("failure %d: %d %s", i+1, res.status, res.body)
				}
			}
			checkRetryAfter(t, h.do(t, loginFrom("victim@example.com", testPassword, "203.0.113.9:1")), blockAfter3.Window)
		})
	})
	t.Run("per address, unknown emails count, ten times higher", func(t *testing.T) {
		eachEngine(t, options{policy: blockAfter3}, func(t *testing.T, h *harness) {
			h.signUp(t, "alice@example.com")
			for i := range 30 {
				if res := h.do(t, loginFrom(fmt.Sprintf("nobody%d@example.com", i), "guess", "198.51.100.7:1000")); res.status != 401 {
					t.Fatalf("unknown email %d: %d %s", i+1, res.status, res.body)
				}
			}
			h.run(t, []scenario{
				{name: "that address is refused for a real account",
					request: loginFrom("alice@example.com", testPassword, "198.51.100.7:2000"), status: 429, problem: true},
				{name: "another address is not",
					request: loginFrom("alice@example.com", testPassword, "198.51.100.8:1000"), status: 200},
			})
			checkRetryAfter(t, h.do(t, loginFrom("alice@example.com", testPassword, "198.51.100.7:1000")), blockAfter3.Window)
		})
	})
	t.Run("a success forgives earlier failures", func(t *testing.T) {
		eachEngine(t, options{policy: blockAfter3}, func(t *testing.T, h *harness) {
			h.signUp(t, "alice@example.com")
			var sc []scenario
			for round := range 3 {
				for i := range 2 {
					sc = append(sc, scenario{name: fmt.Sprintf("round %d failure %d", round, i),
						request: loginFrom("alice@example.com", "guess", "198.51.100.1:1"), status: 401})
				}
				sc = append(sc, scenario{name: fmt.Sprintf("round %d success", round),
					request: loginFrom("alice@example.com", testPassword, "198.51.100.1:1"), status: 200})
			}
			h.run(t, sc)
		})
	})
	t.Run("slowed before refused", func(t *testing.T) {
		// From the first failure on, every attempt at that account from that
		// address is held an hour: a login that is held cannot answer before
		// its client gives up, so it ends with 499 rather than 200.
		slow := limit.Policy{SlowAfter: 1, BlockAfter: 100, FirstDelay: time.Hour, MaxDelay: time.Hour}
		eachEngine(t, options{policy: slow}, func(t *testing.T, h *harness) {
			h.signUp(t, "alice@example.com")
			h.signUp(t, "bob@example.com")
			if res := h.do(t, loginFrom("alice@example.com", "guess", "198.51.100.1:1")); res.status != 401 {
				t.Fatalf("failure: %d %s", res.status, res.body)
			}
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(200*time.Millisecond, cancel)
			r := loginFrom("alice@example.com", testPassword, "198.51.100.1:2")
			r.ctx = ctx
			if res := h.do(t, r); res.status != 499 {
				t.Fatalf("login after a failure answered %d before its client left, want it held (499): %s", res.status, res.body)
			}
			if res := h.do(t, loginFrom("bob@example.com", testPassword, "198.51.100.3:1")); res.status != 200 {
				t.Fatalf("unrelated login: %d %s", res.status, res.body)
			}
		})
	})
}

func checkRetryAfter(t *testing.T, res response, window time.Duration) {
	t.Helper()
	if res.status != http.StatusTooManyRequests {
		t.Fatalf("status %d, want 429: %s", res.status, res.body)
	}
	secs, err := strconv.Atoi(res.header.Get("Retry-After"))
	if err != nil || secs < 1 || secs > int(window.Seconds()) {
		t.Fatalf("Retry-After = %q, want whole seconds in [1, %v]", res.header.Get("Retry-After"), window.Seconds())
	}
}

func TestRefresh(t *testing.T) {
	eachEngine(t, options{}, func(t *testing.T, h *harness) {
		u := h.signUp(t, "alice@example.com")
		other := h.signUp(t, "bob@example.com")
		a2, r2 := h.refresh(t, u.refresh)
		if a2 == u.access || r2 == u.refresh {
			t.Fatal("refresh returned the same tokens")
		}
		if claims(t, a2)["sid"] != claims(t, u.access)["sid"] {
			t.Fatal("refresh opened a new session")
		}
		// A second sign-in of the same user is a separate session.
		a3, r3 := h.login(t, u.email, u.password)
		_, key := h.newAPIKey(t, u.access, "k")
		refresh := func(tok string) request {
			return request{method: "POST", path: "/auth/refresh", body: map[string]string{"refresh_token": tok}}
		}
		me := func(cred string) request { return request{method: "GET", path: "/users/me", auth: cred} }
		h.run(t, []scenario{
			{name: "rotated access token works", request: me(a2), status: 200, contains: []string{u.email}},
			{name: "reusing a spent refresh token is refused", request: refresh(u.refresh), status: 401, problem: true},
			{name: "... and revokes its session: the rotated refresh token", request: refresh(r2), status: 401},
			{name: "... the rotated access token", request: me(a2), status: 401},
			{name: "... the first access token", request: me(u.access), status: 401},
			{name: "the user's other session lives", request: me(a3), status: 200},
			{name: "the user's API key lives", request: me(key), status: 200},
			{name: "another user is unaffected", request: me(other.access), status: 200},
			{name: "unknown refresh token", request: refresh("frt_" + strings.Repeat("x", 43)), status: 401, problem: true},
			{name: "an access token is not a refresh token (too long to be one)", request: refresh(a3), status: 422},
			{name: "an API key is not a refresh token", request: refresh(key), status: 401},
			{name: "empty", request: refresh(""), status: 422, problem: true, contains: []string{"body.refresh_token"}},
			{name: "the other session still refreshes", request: refresh(r3), status: 200, contains: []string{`"refresh_token":"frt_`}},
		})
	})
}

func TestLogout(t *testing.T) {
	eachEngine(t, options{}, func(t *testing.T, h *harness) {
		u := h.signUp(t, "alice@example.com")
		a2, r2 := h.login(t, u.email, u.password)
		_, key := h.newAPIKey(t, u.access, "k")
		logout := func(cred string) request { return request{method: "POST", path: "/auth/logout", auth: cred} }
		h.run(t, []scenario{
			{name: "token works before", request: request{method: "GET", path: "/users/me", auth: u.access}, status: 200},
			{name: "logout", request: logout(u.access), status: 204},
			{name: "its access token stops working", request: request{method: "GET", path: "/users/me", auth: u.access}, status: 401},
			{name: "its refresh token stops working", request: request{method: "POST", path: "/auth/refresh", body: map[string]string{"refresh_token": u.refresh}}, status: 401},
			{name: "logout again", request: logout(u.access), status: 401},
			{name: "the other session lives", request: request{method: "GET", path: "/users/me", auth: a2}, status: 200},
			{name: "and refreshes", request: request{method: "POST", path: "/auth/refresh", body: map[string]string{"refresh_token": r2}}, status: 200},
			{name: "an API key has no session", request: logout(key), status: 400, problem: true, contains: []string{"revoke the key"}},
			{name: "unauthenticated", request: logout(""), status: 401, problem: true},
		})
	})
}

// TestAccessTokens sends forged and altered access tokens through the API.
// Each is built from a real token of a live session, and a control re-signs
// the same claims correctly, so every rejection is down to the one thing
// changed.
func TestAccessTokens(t *testing.T) {
	eachEngine(t, options{}, func(t *testing.T, h *harness) {
		u := h.signUp(t, "alice@example.com")
		other := h.signUp(t, "bob@example.com")
		// Warm the credential cache for both sessions: checks must hold on a
		// cache hit too.
		if h.status(t, u.access) != 200 || h.status(t, other.access) != 200 {
			t.Fatal("tokens do not work")
		}
		base := claims(t, u.access)
		with := func(f func(c jwt.MapClaims)) jwt.MapClaims {
			c := jwt.MapClaims(maps.Clone(base))
			f(c)
			return c
		}
		key := h.tokenKey(t)
		now := float64(time.Now().Unix())
		parts := strings.Split(u.access, ".")
		tampered := parts[0] + "." + b64json(t, with(func(c jwt.MapClaims) { c["sub"] = other.id; c["sid"] = claims(t, other.access)["sid"] })) + "." + parts[2]
		sig := []byte(parts[2])
		sig[len(sig)/2] ^= 1
		badSig := parts[0] + "." + parts[1] + "." + string(sig)
		oldTokens, err := auth.NewTokens(h.secret, auth.WithTokenClock(func() time.Time { return time.Now().Add(-16 * time.Minute) }))
		if err != nil {
			t.Fatal(err)
		}
		expired, _, err := oldTokens.Issue(u.id, base["sid"].(string))
		if err != nil {
			t.Fatal(err)
		}
		otherSecret := []byte(strings.Repeat("k", 32))
		otherTokens, _ := auth.NewTokens(otherSecret)
		wrongKey, _, _ := otherTokens.Issue(u.id, base["sid"].(string))

		for _, tc := range []struct {
			name   string
			token  string
			status int
		}{
			{"control: the real token", u.access, 200},
			{"control: the same claims re-signed HS256", signJWT(t, jwt.SigningMethodHS256, base, key), 200},
			{"alg none", unsignedJWT(t, "none", base), 401},
			{"alg None", unsignedJWT(t, "None", base), 401},
			{"alg none with the real signature", unsignedJWT(t, "none", base) + parts[2], 401},
			{"HS512 under the server key", signJWT(t, jwt.SigningMethodHS512, base, key), 401},
			{"HS384 under the server key", signJWT(t, jwt.SigningMethodHS384, base, key), 401},
			{"wrong key", wrongKey, 401},
			{"signed with the raw secret, not the derived key", signJWT(t, jwt.SigningMethodHS256, base, h.secret), 401},
			{"payload swapped for another user's", tampered, 401},
			{"signature altered", badSig, 401},
			{"expired (issued 16 minutes ago)", expired, 401},
			{"expired a minute ago", signJWT(t, jwt.SigningMethodHS256, with(func(c jwt.MapClaims) { c["exp"] = now - 60; c["iat"] = now - 960; c["nbf"] = now - 960 }), key), 401},
			{"not valid yet", signJWT(t, jwt.SigningMethodHS256, with(func(c jwt.MapClaims) { c["nbf"] = now + 3600 }), key), 401},
			{"issued in the future", signJWT(t, jwt.SigningMethodHS256, with(func(c jwt.MapClaims) { c["iat"] = now + 3600 }), key), 401},
			{"no exp", signJWT(t, jwt.SigningMethodHS256, with(func(c jwt.MapClaims) { delete(c, "exp") }), key), 401},
			{"no nbf", signJWT(t, jwt.SigningMethodHS256, with(func(c jwt.MapClaims) { delete(c, "nbf") }), key), 401},
			{"no iat", signJWT(t, jwt.SigningMethodHS256, with(func(c jwt.MapClaims) { delete(c, "iat") }), key), 401},
			{"no jti", signJWT(t, jwt.SigningMethodHS256, with(func(c jwt.MapClaims) { delete(c, "jti") }), key), 401},
			{"no sub", signJWT(t, jwt.SigningMethodHS256, with(func(c jwt.MapClaims) { delete(c, "sub") }), key), 401},
			{"no sid", signJWT(t, jwt.SigningMethodHS256, with(func(c jwt.MapClaims) { delete(c, "sid") }), key), 401},
			{"another issuer", signJWT(t, jwt.SigningMethodHS256, with(func(c jwt.MapClaims) { c["iss"] = "someone-else" }), key), 401},
			{"unknown session", signJWT(t, jwt.SigningMethodHS256, with(func(c jwt.MapClaims) { c["sid"] = auth.NewID() }), key), 401},
			{"another user's session", signJWT(t, jwt.SigningMethodHS256, with(func(c jwt.MapClaims) { c["sid"] = claims(t, other.access)["sid"] }), key), 401},
			{"garbage", "not-a-token", 401},
			{"oversized", u.access + strings.Repeat("A", 4096), 401},
		} {
			t.Run(tc.name, func(t *testing.T) {
				res := h.do(t, request{method: "GET", path: "/users/me", auth: tc.token})
				if res.status != tc.status {
					t.Fatalf("status %d, want %d: %s", res.status, tc.status, res.body)
				}
				if tc.status == 401 {
					checkProblem(t, res)
					if res.header.Get("WWW-Authenticate") == "" {
						t.Error("401 without WWW-Authenticate")
					}
				} else if !strings.Contains(res.body, `"email":"alice@example.com"`) {
					t.Errorf("authenticated as someone else: %s", res.body)
				}
			})
		}
		h.run(t, []scenario{
			{name: "no Authorization", request: request{method: "GET", path: "/users/me"}, status: 401, problem: true,
				headers: map[string]string{"WWW-Authenticate": `Bearer realm="ferry"`}},
			{name: "Basic scheme", request: request{method: "GET", path: "/users/me", header: map[string]string{"Authorization": "Basic YTpi"}}, status: 401, problem: true},
			{name: "empty bearer", request: request{method: "GET", path: "/users/me", header: map[string]string{"Authorization": "Bearer "}}, status: 401, problem: true},
			{name: "scheme is case-insensitive", request: request{method: "GET", path: "/users/me", header: map[string]string{"Authorization": "bearer " + u.access}}, status: 200},
		})
	})
}

// tokenKey derives the access-token signing key from the server's secret the
// way auth.NewTokens does, so tests can sign tokens the server would accept
// and change one thing at a time.
func (h *harness) tokenKey(t testing.TB) []byte {
	t.Helper()
	k, err := hkdf.Key(sha256.New, h.secret, nil, "ferry access token v1", 32)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func signJWT(t testing.TB, m jwt.SigningMethod, c jwt.MapClaims, key []byte) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, c).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// unsignedJWT returns header.payload. with alg set and an empty signature.
func unsignedJWT(t testing.TB, alg string, c jwt.MapClaims) string {
	t.Helper()
	return b64json(t, map[string]string{"alg": alg, "typ": "JWT"}) + "." + b64json(t, c) + "."
}

func b64json(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func TestAPIKeys(t *testing.T) {
	eachEngine(t, options{}, func(t *testing.T, h *harness) {
		u := h.signUp(t, "alice@example.com")
		other := h.signUp(t, "bob@example.com")

		res := h.do(t, request{method: "POST", path: "/auth/api-keys", auth: u.access, body: map[string]string{"name": "laptop"}})
		if res.status != http.StatusCreated {
			t.Fatalf("create: %d %s", res.status, res.body)
		}
		created := res.json(t)
		id, key := created["id"].(string), created["key"].(string)
		if !strings.HasPrefix(key, "fk_") || len(key) < 40 || created["prefix"] != key[:10] || created["last_used_at"] != nil {
			t.Fatalf("created key %v", created)
		}
		stored, err := h.store.APIKeys(context.Background(), u.id)
		if err != nil || len(stored) != 1 || stored[0].Hash != auth.HashSecret(key) || strings.Contains(stored[0].Hash, key) {
			t.Fatalf("stored keys %+v, %v: want one, by hash", stored, err)
		}
		otherID, otherKey := h.newAPIKey(t, other.access, "bob's")
		_, byKey := h.newAPIKey(t, key, "made with a key")

		future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
		list := request{method: "GET", path: "/auth/api-keys", auth: u.access}
		h.run(t, []scenario{
			{name: "list hides secrets", request: list, status: 200,
				contains: []string{id, `"name":"laptop"`, `"prefix":"` + key[:10], `"last_used_at":null`},
				excludes: []string{key, byKey, `"key"`, otherID}},
			{name: "the key authenticates", request: request{method: "GET", path: "/users/me", auth: key}, status: 200, contains: []string{`"email":"alice@example.com"`}},
		})
		t.Run("last use is listed", func(t *testing.T) {
			type listedKey struct {
				ID         string     `json:"id"`
				LastUsedAt *time.Time `json:"last_used_at"`
			}
			var body struct {
				Items []listedKey `json:"items"`
			}
			res := h.do(t, list)
			if err := json.Unmarshal([]byte(res.body), &body); err != nil {
				t.Fatal(err)
			}
			i := slices.IndexFunc(body.Items, func(it listedKey) bool { return it.ID == id })
			if i < 0 || body.Items[i].LastUsedAt == nil {
				t.Fatalf("key %s after use, in list %s", id, res.body)
			}
		})
		h.run(t, []scenario{
			{name: "the key works wherever a token does", request: request{method: "PATCH", path: "/users/me", auth: key, body: map[string]string{"name": "Al"}}, status: 200, contains: []string{`"name":"Al"`}},
			{name: "a key made with a key works", request: request{method: "GET", path: "/auth/api-keys", auth: byKey}, status: 200},
			{name: "an altered key is refused", request: request{method: "GET", path: "/users/me", auth: key[:len(key)-1] + flip(key[len(key)-1])}, status: 401, problem: true},
			{name: "a made-up key is refused", request: request{method: "GET", path: "/users/me", auth: "fk_" + strings.Repeat("a", 43)}, status: 401, problem: true},
			{name: "name required", request: request{method: "POST", path: "/auth/api-keys", auth: u.access, body: `{}`}, status: 422, problem: true},
			{name: "blank name", request: request{method: "POST", path: "/auth/api-keys", auth: u.access, body: map[string]string{"name": "  "}}, status: 400, problem: true, contains: []string{"body.name"}},
			{name: "past expiry", request: request{method: "POST", path: "/auth/api-keys", auth: u.access, body: map[string]string{"name": "x", "expires_at": "2001-01-01T00:00:00Z"}}, status: 400, problem: true, contains: []string{"body.expires_at"}},
			{name: "future expiry", request: request{method: "POST", path: "/auth/api-keys", auth: u.access, body: map[string]string{"name": "x", "expires_at": future}}, status: 201, contains: []string{`"key":"fk_`, `"expires_at":"`}},
			{name: "unauthenticated create", request: request{method: "POST", path: "/auth/api-keys", body: map[string]string{"name": "x"}}, status: 401},
			{name: "another user's key cannot be revoked", request: request{method: "DELETE", path: "/auth/api-keys/" + otherID, auth: u.access}, status: 404, problem: true},
			{name: "... nor by the user's own key", request: request{method: "DELETE", path: "/auth/api-keys/" + otherID, auth: key}, status: 404},
			{name: "... and still works", request: request{method: "GET", path: "/users/me", auth: otherKey}, status: 200, contains: []string{"bob@example.com"}},
			{name: "an unknown key id", request: request{method: "DELETE", path: "/auth/api-keys/" + auth.NewID(), auth: u.access}, status: 404, problem: true},
			{name: "revoke", request: request{method: "DELETE", path: "/auth/api-keys/" + id, auth: u.access}, status: 204},
			{name: "a revoked key stops working", request: request{method: "GET", path: "/users/me", auth: key}, status: 401, problem: true},
			{name: "and is gone from the list", request: list, status: 200, excludes: []string{id}},
			{name: "revoke again", request: request{method: "DELETE", path: "/auth/api-keys/" + id, auth: u.access}, status: 404},
		})
		t.Run("last_used_at is set", func(t *testing.T) {
			keys, err := h.store.APIKeys(context.Background(), other.id)
			if err != nil || len(keys) != 1 || keys[0].LastUsedAt == nil {
				t.Fatalf("bob's key after use: %+v, %v", keys, err)
			}
		})
		t.Run("an expired key", func(t *testing.T) {
			secret, prefix := auth.NewAPIKey()
			past := time.Now().Add(-time.Minute)
			k := &ferry.APIKey{ID: auth.NewID(), UserID: u.id, Name: "old", Prefix: prefix, Hash: auth.HashSecret(secret), ExpiresAt: &past}
			if err := h.store.CreateAPIKey(context.Background(), k); err != nil {
				t.Fatal(err)
			}
			if got := h.status(t, secret); got != 401 {
				t.Fatalf("expired key: %d, want 401", got)
			}
		})
	})
}

// TestAPIKeyExpiresWhileCached: a key that was valid when it was cached
// stops working when it expires, however long the cache keeps credentials.
func TestAPIKeyExpiresWhileCached(t *testing.T) {
	eachEngine(t, options{cacheTTL: time.Hour}, func(t *testing.T, h *harness) {
		u := h.signUp(t, "alice@example.com")
		secret, prefix := auth.NewAPIKey()
		expires := time.Now().Add(time.Second)
		k := &ferry.APIKey{ID: auth.NewID(), UserID: u.id, Name: "short", Prefix: prefix, Hash: auth.HashSecret(secret), ExpiresAt: &expires}
		if err := h.store.CreateAPIKey(context.Background(), k); err != nil {
			t.Fatal(err)
		}
		if got := h.status(t, secret); got != 200 {
			if time.Now().After(expires) {
				t.Skip("machine too slow: the key expired before its first use")
			}
			t.Fatalf("fresh key: %d", got)
		}
		time.Sleep(time.Until(expires) + 50*time.Millisecond)
		if got := h.status(t, secret); got != 401 {
			t.Fatalf("key after its expiry: %d, want 401", got)
		}
	})
}

func flip(c byte) string {
	if c == 'a' {
		return "b"
	}
	return "a"
}

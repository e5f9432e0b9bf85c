package auth

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/ferryhq/ferry"
)

var testSecret = []byte("0123456789abcdef0123456789abcdef")

// fakeClock is a settable clock safe to read from parallel parses.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

func newTestTokens(t testing.TB, opts ...TokenOption) *Tokens {
	t.Helper()
	tk, err := NewTokens(testSecret, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

func TestTokensRoundTrip(t *testing.T) {
	clock := &fakeClock{t: time.Date(2030, 1, 2, 3, 4, 5, 678, time.UTC)}
	tk := newTestTokens(t, WithTokenClock(clock.Now))
	tok, exp, err := tk.Issue("user-1", "session-1")
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2030, 1, 2, 3, 19, 5, 0, time.UTC); !exp.Equal(want) {
		t.Errorf("expiresAt = %v; want %v (15 min, whole seconds)", exp, want)
	}
	c, err := tk.Parse(tok)
	if err != nil {
		t.Fatal(err)
	}
	if c.UserID != "user-1" || c.SessionID != "session-1" || c.ID == "" || !c.ExpiresAt.Equal(exp) {
		t.Errorf("Parse = %+v", c)
	}
	tok2, _, _ := tk.Issue("user-1", "session-1")
	if c2, _ := tk.Parse(tok2); c2.ID == c.ID {
		t.Error("two tokens share a jti")
	}

	// Still valid until the last second, then not.
	clock.Set(exp.Add(-time.Second))
	if _, err := tk.Parse(tok); err != nil {
		t.Errorf("token refused before it expired: %v", err)
	}
	clock.Set(exp.Add(tokenLeeway + time.Second))
	expectRefused(t, "after expiry", tk, tok, tokenExpired)

	// Another TTL and issuer are honoured, and each Tokens refuses the
	// other's issuer.
	other := newTestTokens(t, WithTokenTTL(time.Hour), WithTokenIssuer("elsewhere"), WithTokenClock(clock.Now))
	tok3, exp3, _ := other.Issue("u", "s")
	if exp3.Sub(clock.Now()) < 59*time.Minute {
		t.Errorf("TTL option ignored: expires %v after now", exp3.Sub(clock.Now()))
	}
	if _, err := other.Parse(tok3); err != nil {
		t.Error(err)
	}
	clock.Set(exp.Add(-time.Minute))
	expectUnauthorized(t, "issuer mismatch", tk, tok3)
}

func TestNewTokensRefusesWeakSetup(t *testing.T) {
	if _, err := NewTokens(testSecret[:31]); err == nil {
		t.Error("accepted a 31-byte secret")
	}
	if _, err := NewTokens(nil); err == nil {
		t.Error("accepted no secret")
	}
	if _, err := NewTokens(testSecret, WithTokenTTL(time.Millisecond)); err == nil {
		t.Error("accepted a sub-second TTL")
	}
	if _, err := NewTokens(testSecret, WithTokenIssuer("")); err == nil {
		t.Error("accepted an empty issuer")
	}
	tk := newTestTokens(t)
	if _, _, err := tk.Issue("", "s"); err == nil {
		t.Error("issued a token without a user")
	}
	if _, _, err := tk.Issue("u", ""); err == nil {
		t.Error("issued a token without a session")
	}
}

// expectUnauthorized checks that Parse refuses tok with the message that
// says nothing of why.
func expectUnauthorized(t *testing.T, name string, tk *Tokens, tok string) {
	t.Helper()
	expectRefused(t, name, tk, tok, "invalid or expired token")
}

// expectRefused checks that Parse refuses tok as Unauthorized with message
// and a cause.
func expectRefused(t *testing.T, name string, tk *Tokens, tok, message string) {
	t.Helper()
	c, err := tk.Parse(tok)
	var fe *ferry.Error
	if !errors.As(err, &fe) {
		t.Errorf("%s: Parse = %+v, %v; want an Unauthorized *ferry.Error", name, c, err)
		return
	}
	if fe.Code != ferry.Unauthorized || fe.Message != message || fe.Err == nil {
		t.Errorf("%s: Parse error = %#v; want Unauthorized, %q and a cause", name, fe, message)
	}
	if c != (AccessClaims{}) {
		t.Errorf("%s: Parse returned claims %+v alongside the error", name, c)
	}
}

func b64url(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func TestTokensParseRejects(t *testing.T) {
	now := time.Now()
	tk := newTestTokens(t)
	good, _, err := tk.Issue("user-1", "session-1")
	if err != nil {
		t.Fatal(err)
	}
	claims := func(edit func(jwt.MapClaims)) jwt.MapClaims {
		c := jwt.MapClaims{
			"iss": DefaultIssuer, "sub": "user-1", "sid": "session-1", "jti": "id-1",
			"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Minute).Unix(),
		}
		if edit != nil {
			edit(c)
		}
		return c
	}
	sign := func(m jwt.SigningMethod, key any, c jwt.MapClaims) string {
		s, err := jwt.NewWithClaims(m, c).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	wrong, _ := NewTokens([]byte("another secret of at least 32 bytes!"))
	wrongTok, _, _ := wrong.Issue("user-1", "session-1")
	seg := strings.Split(good, ".")

	// The helpers must be able to make an acceptable token, or every case
	// below would pass for the wrong reason.
	if _, err := tk.Parse(sign(jwt.SigningMethodHS256, tk.key, claims(nil))); err != nil {
		t.Fatalf("control token refused: %v", err)
	}

	for name, tok := range map[string]string{
		"empty":                       "",
		"garbage":                     "not a token",
		"two segments":                seg[0] + "." + seg[1],
		"four segments":               good + ".x",
		"too long":                    good + strings.Repeat("A", maxTokenLen),
		"alg none, hand":              b64url(map[string]string{"alg": "none", "typ": "JWT"}) + "." + b64url(claims(nil)) + ".",
		"alg none, lib":               sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims(nil)),
		"alg None":                    b64url(map[string]string{"alg": "None", "typ": "JWT"}) + "." + b64url(claims(nil)) + ".",
		"alg missing":                 b64url(map[string]string{"typ": "JWT"}) + "." + seg[1] + "." + seg[2],
		"HS256 header, no signature":  seg[0] + "." + seg[1] + ".",
		"HS384 right key":             sign(jwt.SigningMethodHS384, tk.key, claims(nil)),
		"HS512 right key":             sign(jwt.SigningMethodHS512, tk.key, claims(nil)),
		"RS256":                       sign(jwt.SigningMethodRS256, rsaKey, claims(nil)),
		"wrong key":                   wrongTok,
		"raw secret, not derived key": sign(jwt.SigningMethodHS256, testSecret, claims(nil)),
		"tampered payload":            seg[0] + "." + b64url(claims(func(c jwt.MapClaims) { c["sub"] = "admin" })) + "." + seg[2],
		"tampered signature":          seg[0] + "." + seg[1] + "." + flipLast(seg[2]),
		"expired, wrong key":          sign(jwt.SigningMethodHS256, wrong.key, claims(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Minute).Unix() })),
		"nbf in future":               sign(jwt.SigningMethodHS256, tk.key, claims(func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Minute).Unix() })),
		"iat in future":               sign(jwt.SigningMethodHS256, tk.key, claims(func(c jwt.MapClaims) { c["iat"] = now.Add(time.Minute).Unix() })),
		"exp wrong type":              sign(jwt.SigningMethodHS256, tk.key, claims(func(c jwt.MapClaims) { c["exp"] = "tomorrow" })),
		"wrong issuer":                sign(jwt.SigningMethodHS256, tk.key, claims(func(c jwt.MapClaims) { c["iss"] = "someone" })),
		"missing iss":                 sign(jwt.SigningMethodHS256, tk.key, claims(func(c jwt.MapClaims) { delete(c, "iss") })),
		"missing exp":                 sign(jwt.SigningMethodHS256, tk.key, claims(func(c jwt.MapClaims) { delete(c, "exp") })),
		"missing nbf":                 sign(jwt.SigningMethodHS256, tk.key, claims(func(c jwt.MapClaims) { delete(c, "nbf") })),
		"missing iat":                 sign(jwt.SigningMethodHS256, tk.key, claims(func(c jwt.MapClaims) { delete(c, "iat") })),
		"missing sub":                 sign(jwt.SigningMethodHS256, tk.key, claims(func(c jwt.MapClaims) { delete(c, "sub") })),
		"missing sid":                 sign(jwt.SigningMethodHS256, tk.key, claims(func(c jwt.MapClaims) { delete(c, "sid") })),
		"missing jti":                 sign(jwt.SigningMethodHS256, tk.key, claims(func(c jwt.MapClaims) { delete(c, "jti") })),
		"empty sid":                   sign(jwt.SigningMethodHS256, tk.key, claims(func(c jwt.MapClaims) { c["sid"] = "" })),
	} {
		expectUnauthorized(t, name, tk, tok)
	}
	// One this server signed says it expired, and what to do; one signed
	// by another key ("expired, wrong key" above) says nothing of it.
	expired := sign(jwt.SigningMethodHS256, tk.key, claims(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Minute).Unix() }))
	expectRefused(t, "expired", tk, expired, tokenExpired)
}

// flipLast changes the last base64url character of s to another valid one.
func flipLast(s string) string {
	c := byte('A')
	if s[len(s)-1] == 'A' {
		c = 'Q'
	}
	return s[:len(s)-1] + string(c)
}

func TestTokensLeeway(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	tk := newTestTokens(t, WithTokenClock(clock.Now))
	tok, exp, _ := tk.Issue("u", "s")
	// A few seconds of skew between instances must not sign anyone out.
	clock.Set(exp.Add(tokenLeeway / 2))
	if _, err := tk.Parse(tok); err != nil {
		t.Errorf("token refused within the leeway: %v", err)
	}
}

func TestTokensParseConcurrently(t *testing.T) {
	tk := newTestTokens(t)
	tok, _, _ := tk.Issue("u", "s")
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				if _, err := tk.Parse(tok); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func BenchmarkTokensParse(b *testing.B) {
	tk := newTestTokens(b)
	tok, _, err := tk.Issue("0190c3a2-7e1f-7a2b-9c3d-4e5f6a7b8c9d", "0190c3a2-7e1f-7a2b-9c3d-4e5f6a7b8c9e")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tk.Parse(tok); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkTokensIssue(b *testing.B) {
	tk := newTestTokens(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := tk.Issue("0190c3a2-7e1f-7a2b-9c3d-4e5f6a7b8c9d", "0190c3a2-7e1f-7a2b-9c3d-4e5f6a7b8c9e"); err != nil {
			b.Fatal(err)
		}
	}
}

package auth

import (
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"
)

func TestNewAPIKey(t *testing.T) {
	format := regexp.MustCompile(`^fk_[0-9A-Za-z]{43}$`)
	seen := map[string]bool{}
	chars := map[rune]bool{}
	for range 1000 {
		secret, prefix := NewAPIKey()
		if !format.MatchString(secret) {
			t.Fatalf("API key %q has the wrong format", secret)
		}
		if prefix != secret[:10] || !IsAPIKey(secret) {
			t.Fatalf("prefix %q of %q: want its first 10 characters", prefix, secret)
		}
		if seen[secret] {
			t.Fatalf("API key %q generated twice", secret)
		}
		seen[secret] = true
		for _, c := range secret[3:] {
			chars[c] = true
		}
	}
	// 43,000 draws from 62 symbols: a missing symbol means a biased encoder.
	if len(chars) != 62 {
		t.Errorf("only %d of 62 base62 characters ever appear", len(chars))
	}
}

func TestNewRefreshToken(t *testing.T) {
	format := regexp.MustCompile(`^frt_[0-9A-Za-z]{43}$`)
	a, b := NewRefreshToken(), NewRefreshToken()
	if !format.MatchString(a) || a == b {
		t.Errorf("refresh tokens %q, %q: want distinct frt_ + 43 base62", a, b)
	}
	if IsAPIKey(a) {
		t.Error("a refresh token is taken for an API key")
	}
}

func TestIsAPIKey(t *testing.T) {
	tk := newTestTokens(t)
	jwt, _, _ := tk.Issue("u", "s")
	for tok, want := range map[string]bool{
		"fk_abc": true,
		"fk":     false,
		"FK_abc": false,
		"frt_x":  false,
		jwt:      false,
		"":       false,
	} {
		if got := IsAPIKey(tok); got != want {
			t.Errorf("IsAPIKey(%q) = %v; want %v", tok, got, want)
		}
	}
}

func TestHashSecret(t *testing.T) {
	// The stored form must never change, or every stored key stops working.
	if got, want := HashSecret("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"; got != want {
		t.Errorf("HashSecret(abc) = %s; want %s", got, want)
	}
	s, _ := NewAPIKey()
	if HashSecret(s) != HashSecret(s) || HashSecret(s) == HashSecret(s+"x") {
		t.Error("HashSecret is not a stable function of its input")
	}
	if h := HashSecret(s); len(h) != 64 || strings.ToLower(h) != h {
		t.Errorf("HashSecret = %q; want 64 lower-case hex digits", h)
	}
}

func TestNewID(t *testing.T) {
	ids := make([]string, 100)
	for i := range ids {
		ids[i] = NewID()
		u, err := uuid.Parse(ids[i])
		if err != nil || u.Version() != 7 {
			t.Fatalf("NewID = %q: want a UUIDv7 (%v)", ids[i], err)
		}
	}
	if !slices.IsSorted(ids) {
		t.Error("ids made in sequence do not sort in sequence")
	}
}

func BenchmarkHashSecret(b *testing.B) {
	s, _ := NewAPIKey()
	b.ReportAllocs()
	for b.Loop() {
		HashSecret(s)
	}
}

package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"strings"

	"github.com/google/uuid"
)

// Prefixes of the opaque credentials, so a bearer token says what it is and
// leaked secrets are easy to recognise in logs and by secret scanners.
const (
	APIKeyPrefix       = "fk_"
	RefreshTokenPrefix = "frt_"
)

const (
	// secretChars base62 characters carry 43·log2(62) ≈ 256.03 bits, as much
	// as 32 random bytes.
	secretChars = 43
	// apiKeyDisplayLen is how much of an API key is kept in clear to tell
	// keys apart: the prefix and 7 random characters (about 42 bits), which
	// leaves over 214 bits secret.
	apiKeyDisplayLen = 10
)

// base62 rather than base64url: no '-' or '_', so a double click selects the
// whole secret and nothing needs escaping anywhere.
const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// NewAPIKey returns a new API key secret, "fk_" and 43 base62 characters
// (256 random bits), and its display prefix: the first 10 characters, safe
// to store and show. Store only HashSecret(secret); show the secret once.
func NewAPIKey() (secret, prefix string) {
	secret = randomSecret(APIKeyPrefix)
	return secret, secret[:apiKeyDisplayLen]
}

// NewRefreshToken returns a new refresh token secret: "frt_" and 43 base62
// characters (256 random bits). Store only HashSecret(secret).
func NewRefreshToken() string {
	return randomSecret(RefreshTokenPrefix)
}

// randomSecret appends secretChars uniform base62 characters to prefix.
// crypto/rand.Read cannot fail (since Go 1.24 it crashes the program rather
// than return an error), which is why the constructors return no error.
func randomSecret(prefix string) string {
	out := make([]byte, len(prefix), len(prefix)+secretChars)
	copy(out, prefix)
	var buf [64]byte
	for len(out) < cap(out) {
		rand.Read(buf[:])
		for _, b := range buf {
			// Rejection sampling: 248 = 4·62, so keeping only bytes below it
			// makes b%62 uniform.
			if b >= 248 {
				continue
			}
			out = append(out, base62[b%62])
			if len(out) == cap(out) {
				break
			}
		}
	}
	return string(out)
}

// HashSecret returns the hex SHA-256 of secret, the form in which API keys
// and refresh tokens are stored and looked up. A fast unsalted hash is right
// here because the secrets are 256 random bits: there is nothing to guess.
// Passwords, which are guessable, go through Hasher instead.
func HashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	var out [2 * sha256.Size]byte
	hex.Encode(out[:], sum[:])
	return string(out[:])
}

// IsAPIKey reports whether a bearer token is an API key (to be looked up by
// HashSecret) rather than an access token (to be checked by Tokens.Parse).
// It says nothing about whether the key is valid.
func IsAPIKey(token string) bool {
	return strings.HasPrefix(token, APIKeyPrefix)
}

// NewID returns a new database id: a UUIDv7 string, which sorts by creation
// time and so keeps index inserts local.
func NewID() string {
	return uuid.Must(uuid.NewV7()).String()
}

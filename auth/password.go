package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"

	"github.com/ferryhq/ferry"
)

// PasswordParams are the argon2id costs a password hash is made with. They
// are written into every hash, so raising them later leaves old hashes
// verifiable (see Hasher.NeedsRehash).
type PasswordParams struct {
	Memory  uint32 // KiB
	Time    uint32 // passes over the memory
	Threads uint8
	SaltLen uint32 // bytes
	KeyLen  uint32 // bytes
}

// DefaultPasswordParams are OWASP's recommended argon2id settings:
// 19 MiB, two passes, one thread, a 16-byte salt and a 32-byte key.
var DefaultPasswordParams = PasswordParams{Memory: 19 * 1024, Time: 2, Threads: 1, SaltLen: 16, KeyLen: 32}

// TestPasswordParams are deliberately cheap settings for tests, which hash
// many passwords. Never use them in production.
var TestPasswordParams = PasswordParams{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

// Bounds on parameters, applied both to our own settings and to those read
// back from a stored hash: a corrupted or planted row must not make a single
// login allocate gigabytes or spin for minutes.
const (
	minSaltLen   = 8
	maxSaltLen   = 64
	minKeyLen    = 16
	maxKeyLen    = 64
	maxMemoryKiB = 1 << 20 // 1 GiB
	maxTime      = 64
)

func (p PasswordParams) validate() error {
	switch {
	case p.Time < 1 || p.Time > maxTime:
		return fmt.Errorf("argon2id time %d out of range [1, %d]", p.Time, maxTime)
	case p.Threads < 1:
		return errors.New("argon2id threads must be at least 1")
	case p.Memory < 8*uint32(p.Threads) || p.Memory > maxMemoryKiB:
		return fmt.Errorf("argon2id memory %d KiB out of range [%d, %d]", p.Memory, 8*uint32(p.Threads), maxMemoryKiB)
	case p.SaltLen < minSaltLen || p.SaltLen > maxSaltLen:
		return fmt.Errorf("argon2id salt length %d out of range [%d, %d]", p.SaltLen, minSaltLen, maxSaltLen)
	case p.KeyLen < minKeyLen || p.KeyLen > maxKeyLen:
		return fmt.Errorf("argon2id key length %d out of range [%d, %d]", p.KeyLen, minKeyLen, maxKeyLen)
	}
	return nil
}

// Hasher hashes and verifies passwords with argon2id. Its zero value uses
// DefaultPasswordParams. It is safe for concurrent use, but each call holds
// Params.Memory for its duration: callers should bound how many run at once.
type Hasher struct {
	Params PasswordParams
}

func (h Hasher) params() PasswordParams {
	if h.Params == (PasswordParams{}) {
		return DefaultPasswordParams
	}
	return h.Params
}

// b64 is the PHC string format's base64: standard alphabet, no padding.
// Strict refuses non-zero trailing bits, so each hash has one spelling.
var b64 = base64.RawStdEncoding.Strict()

// Hash returns password's argon2id hash in PHC string format,
// $argon2id$v=19$m=<KiB>,t=<time>,p=<threads>$<salt>$<key>, with a fresh
// random salt. It fails only when the Hasher's parameters are out of bounds.
func (h Hasher) Hash(password string) (string, error) {
	p := h.params()
	if err := p.validate(); err != nil {
		return "", fmt.Errorf("auth: %w", err)
	}
	salt := make([]byte, p.SaltLen)
	rand.Read(salt)
	key := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, p.KeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.Memory, p.Time, p.Threads, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// Verify reports whether password matches encoded, a hash made by Hash with
// any parameters. A wrong password is (false, nil); an error means encoded is
// not a hash this package can check, which is a server fault, not the
// client's.
func (h Hasher) Verify(password, encoded string) (bool, error) {
	p, salt, key, err := decodeHash(encoded)
	if err != nil {
		return false, err
	}
	got := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, p.KeyLen)
	return subtle.ConstantTimeCompare(got, key) == 1, nil
}

// VerifyDummy does the work of Verify with the Hasher's parameters against
// no real hash, and always fails. Call it when the account does not exist so
// that a login for an unknown email takes as long as a wrong password.
func (h Hasher) VerifyDummy(password string) {
	p := h.params()
	if p.validate() != nil {
		p = DefaultPasswordParams
	}
	salt := make([]byte, p.SaltLen)
	got := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, p.KeyLen)
	subtle.ConstantTimeCompare(got, make([]byte, p.KeyLen))
}

// NeedsRehash reports whether encoded was made with parameters other than
// the Hasher's, or cannot be read at all. After a successful Verify, a true
// result means the password should be hashed again and stored.
func (h Hasher) NeedsRehash(encoded string) bool {
	p, _, _, err := decodeHash(encoded)
	return err != nil || p != h.params()
}

// errMalformedHash deliberately carries no part of the hash: errors are logged.
var errMalformedHash = errors.New("auth: malformed argon2id password hash")

// decodeHash parses a PHC argon2id string strictly: one version, parameters
// in the order Hash writes them, bounded costs.
func decodeHash(encoded string) (p PasswordParams, salt, key []byte, err error) {
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return p, nil, nil, errMalformedHash
	}
	if parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return p, nil, nil, fmt.Errorf("auth: unsupported argon2 version %q", parts[2])
	}
	fields := strings.Split(parts[3], ",")
	if len(fields) != 3 {
		return p, nil, nil, errMalformedHash
	}
	m, err1 := parseParam(fields[0], "m=", 32)
	t, err2 := parseParam(fields[1], "t=", 32)
	th, err3 := parseParam(fields[2], "p=", 8)
	if err := errors.Join(err1, err2, err3); err != nil {
		return p, nil, nil, errMalformedHash
	}
	if salt, err = b64.DecodeString(parts[4]); err != nil {
		return p, nil, nil, errMalformedHash
	}
	if key, err = b64.DecodeString(parts[5]); err != nil {
		return p, nil, nil, errMalformedHash
	}
	p = PasswordParams{Memory: uint32(m), Time: uint32(t), Threads: uint8(th), SaltLen: uint32(len(salt)), KeyLen: uint32(len(key))}
	if err := p.validate(); err != nil {
		return PasswordParams{}, nil, nil, fmt.Errorf("auth: stored password hash: %w", err)
	}
	return p, salt, key, nil
}

func parseParam(field, name string, bits int) (uint64, error) {
	v, ok := strings.CutPrefix(field, name)
	if !ok {
		return 0, errMalformedHash
	}
	return strconv.ParseUint(v, 10, bits)
}

// Password length limits, in characters (runes) and, as a guard against
// multi-byte padding, in bytes. They are the same for every account.
const (
	MinPasswordLen   = 8
	MaxPasswordLen   = 256
	MaxPasswordBytes = 1024
)

// ValidatePassword returns an Invalid *ferry.Error naming the "password"
// field unless pw is valid UTF-8 of MinPasswordLen to MaxPasswordLen
// characters and at most MaxPasswordBytes bytes. It imposes no composition
// rules: length is what makes a password strong.
func ValidatePassword(pw string) error {
	// Bytes first: counting runes of a huge input is the work we want to avoid.
	if len(pw) > MaxPasswordBytes {
		return ferry.InvalidField("password", fmt.Sprintf("must be at most %d characters", MaxPasswordLen))
	}
	if !utf8.ValidString(pw) {
		return ferry.InvalidField("password", "must be valid UTF-8")
	}
	switch n := utf8.RuneCountInString(pw); {
	case n < MinPasswordLen:
		return ferry.InvalidField("password", fmt.Sprintf("must be at least %d characters", MinPasswordLen))
	case n > MaxPasswordLen:
		return ferry.InvalidField("password", fmt.Sprintf("must be at most %d characters", MaxPasswordLen))
	}
	return nil
}

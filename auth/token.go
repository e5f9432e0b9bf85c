package auth

import (
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/ferryhq/ferry"
)

// Defaults for Tokens.
const (
	DefaultAccessTTL = 15 * time.Minute
	DefaultIssuer    = "ferry"
)

const (
	// tokenLeeway absorbs clock skew between instances that share the key:
	// a token is taken this long after it expires, and this long before it
	// was issued or became valid (README says so).
	tokenLeeway = 10 * time.Second
	// maxTokenLen is far above what Issue produces; longer input is refused
	// before any decoding work.
	maxTokenLen = 2048
	// accessKeyInfo separates the signing key from any other use of the
	// server's secret key, so a value signed for another purpose can never
	// pass as an access token.
	accessKeyInfo = "ferry access token v1"
)

// Tokens issues and checks access tokens: JWTs signed with HS256 under a key
// derived from the server's secret key. A token names a user and the session
// it belongs to; whether that session is still open is for the caller to
// decide. Tokens is safe for concurrent use.
type Tokens struct {
	key     []byte
	keyAny  any // key boxed once, so Parse does not allocate to return it
	ttl     time.Duration
	issuer  string
	now     func() time.Time
	parser  *jwt.Parser
	keyFunc jwt.Keyfunc
}

// TokenOption changes a default of NewTokens.
type TokenOption func(*Tokens)

// WithTokenTTL sets how long issued tokens stay valid (default
// DefaultAccessTTL). It must be at least a second.
func WithTokenTTL(d time.Duration) TokenOption { return func(t *Tokens) { t.ttl = d } }

// WithTokenIssuer sets the iss claim written and required (default
// DefaultIssuer).
func WithTokenIssuer(iss string) TokenOption { return func(t *Tokens) { t.issuer = iss } }

// WithTokenClock replaces time.Now, for tests that need expired or
// not-yet-valid tokens.
func WithTokenClock(now func() time.Time) TokenOption { return func(t *Tokens) { t.now = now } }

// NewTokens returns Tokens keyed by secret, which must be at least
// MinSecretKeyLen bytes (LoadOrCreateSecretKey gives such a key).
func NewTokens(secret []byte, opts ...TokenOption) (*Tokens, error) {
	if len(secret) < MinSecretKeyLen {
		return nil, fmt.Errorf("auth: token secret is %d bytes, need at least %d", len(secret), MinSecretKeyLen)
	}
	key, err := hkdf.Key(sha256.New, secret, nil, accessKeyInfo, 32)
	if err != nil {
		return nil, fmt.Errorf("auth: derive token key: %w", err)
	}
	t := &Tokens{key: key, keyAny: key, ttl: DefaultAccessTTL, issuer: DefaultIssuer, now: time.Now}
	for _, o := range opts {
		o(t)
	}
	if t.ttl < time.Second {
		return nil, fmt.Errorf("auth: token TTL %v is under a second", t.ttl)
	}
	if t.issuer == "" || t.now == nil {
		return nil, errors.New("auth: token issuer and clock must be set")
	}
	t.keyFunc = func(*jwt.Token) (any, error) { return t.keyAny, nil }
	// One parser for every request: building it allocates.
	t.parser = jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithNotBeforeRequired(),
		jwt.WithIssuedAt(),
		jwt.WithIssuer(t.issuer),
		jwt.WithLeeway(tokenLeeway),
		jwt.WithTimeFunc(t.now),
		jwt.WithStrictDecoding(),
	)
	return t, nil
}

// AccessClaims is what a valid access token says.
type AccessClaims struct {
	UserID    string
	SessionID string
	ID        string // the token's own id (jti), unique per token
	ExpiresAt time.Time
}

// accessClaims is the token's JSON payload. Times are plain integers rather
// than jwt.NumericDate: encoding/json decodes them without a callback per
// field, which makes up a good part of Parse's cost, and Issue never writes
// fractional seconds. Zero means absent.
type accessClaims struct {
	Issuer    string `json:"iss"`
	Subject   string `json:"sub"`
	SessionID string `json:"sid"`
	ID        string `json:"jti"`
	IssuedAt  int64  `json:"iat"`
	NotBefore int64  `json:"nbf"`
	ExpiresAt int64  `json:"exp"`
}

func numericDate(sec int64) *jwt.NumericDate {
	if sec == 0 {
		return nil
	}
	return jwt.NewNumericDate(time.Unix(sec, 0))
}

// The jwt.Claims methods, through which the parser checks times and issuer.
func (c *accessClaims) GetExpirationTime() (*jwt.NumericDate, error) {
	return numericDate(c.ExpiresAt), nil
}
func (c *accessClaims) GetIssuedAt() (*jwt.NumericDate, error)  { return numericDate(c.IssuedAt), nil }
func (c *accessClaims) GetNotBefore() (*jwt.NumericDate, error) { return numericDate(c.NotBefore), nil }
func (c *accessClaims) GetIssuer() (string, error)              { return c.Issuer, nil }
func (c *accessClaims) GetSubject() (string, error)             { return c.Subject, nil }
func (c *accessClaims) GetAudience() (jwt.ClaimStrings, error)  { return nil, nil }

// Validate adds the claims jwt's validator does not require by itself; the
// parser calls it after checking times and issuer.
func (c *accessClaims) Validate() error {
	switch {
	case c.Subject == "":
		return errors.New("missing sub")
	case c.SessionID == "":
		return errors.New("missing sid")
	case c.ID == "":
		return errors.New("missing jti")
	case c.IssuedAt == 0:
		return errors.New("missing iat")
	}
	return nil
}

// Issue returns a signed access token for userID's session sessionID and the
// moment it expires. Errors are internal: both ids must be non-empty.
func (t *Tokens) Issue(userID, sessionID string) (token string, expiresAt time.Time, err error) {
	if userID == "" || sessionID == "" {
		return "", time.Time{}, errors.New("auth: access token needs a user id and a session id")
	}
	// JWT times have one-second precision; truncate so expiresAt is exactly
	// what the token carries.
	now := time.Unix(t.now().Unix(), 0)
	expiresAt = now.Add(t.ttl)
	var jti [16]byte
	rand.Read(jti[:])
	c := &accessClaims{
		Issuer:    t.issuer,
		Subject:   userID,
		SessionID: sessionID,
		ID:        base64.RawURLEncoding.EncodeToString(jti[:]),
		IssuedAt:  now.Unix(),
		NotBefore: now.Unix(),
		ExpiresAt: expiresAt.Unix(),
	}
	token, err = jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(t.key)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("auth: sign access token: %w", err)
	}
	return token, expiresAt, nil
}

// Parse checks token's algorithm (HS256 only), signature, issuer and times,
// and that it names a user, a session and an id. Any failure is an
// Unauthorized *ferry.Error. A token this server signed that has expired
// says so, and where to get a new one; any other failure's message says
// nothing about which check failed. The cause is in its Err, for logs.
func (t *Tokens) Parse(token string) (AccessClaims, error) {
	if len(token) > maxTokenLen {
		return AccessClaims{}, invalidToken(errors.New("token too long"))
	}
	var c accessClaims
	if _, err := t.parser.ParseWithClaims(token, &c, t.keyFunc); err != nil {
		// The signature is checked before the times: an expired token
		// is one this server issued.
		if errors.Is(err, jwt.ErrTokenExpired) && !errors.Is(err, jwt.ErrTokenSignatureInvalid) {
			return AccessClaims{}, &ferry.Error{Code: ferry.Unauthorized, Message: tokenExpired, Err: err}
		}
		return AccessClaims{}, invalidToken(err)
	}
	return AccessClaims{UserID: c.Subject, SessionID: c.SessionID, ID: c.ID, ExpiresAt: time.Unix(c.ExpiresAt, 0)}, nil
}

// tokenExpired is the message of Parse's error for an expired token.
const tokenExpired = "access token expired; get a new one from POST /auth/refresh"

func invalidToken(cause error) error {
	return &ferry.Error{Code: ferry.Unauthorized, Message: "invalid or expired token", Err: cause}
}

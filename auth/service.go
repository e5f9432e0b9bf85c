package auth

import (
	"context"
	"errors"
	"net/mail"
	"strings"
	"sync"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/limit"
	"github.com/ferryhq/ferry/store"
)

// Service is Ferry's account system: registration, sign-in sessions with
// rotating refresh tokens, API keys, and authenticating each request.
type Service struct {
	store         *store.Store
	tokens        *Tokens
	hasher        Hasher
	failures      limit.Failures
	registrations limit.Failures
	refreshTTL    time.Duration
	now           func() time.Time

	// hashing bounds how many argon2 computations run at once: each holds
	// Params.Memory, and a burst of logins must not exhaust memory.
	hashing  *hashSlots
	cache    principalCache
	onChange func()
}

// ServiceOptions tunes a Service; zero values take the defaults.
type ServiceOptions struct {
	Hasher     Hasher
	RefreshTTL time.Duration // default 30 days
	// CacheTTL bounds how long an authenticated credential is trusted without
	// a database read. Changes made through this Service (disable, delete,
	// logout, key revocation) take effect at once regardless; the TTL only
	// bounds changes made by another instance that Changed did not reach.
	// Default 5 s.
	CacheTTL time.Duration
	// Changed, if set, is called after every change to credentials, so that
	// run can tell other instances to call Invalidate.
	Changed func()
	// Registrations counts registrations per client address. Nil means in
	// this process's memory under RegisterPolicy; instances that share
	// Redis should share this too.
	Registrations limit.Failures
}

// NewService returns a Service over st that signs access tokens with tokens
// and throttles failed logins with failures, whose policy applies to one
// client's attempts at one account (see Login).
func NewService(st *store.Store, tokens *Tokens, failures limit.Failures, opts ServiceOptions) *Service {
	if opts.Registrations == nil {
		opts.Registrations = limit.NewMemoryFailures(RegisterPolicy, nil)
	}
	if opts.RefreshTTL == 0 {
		opts.RefreshTTL = 30 * 24 * time.Hour
	}
	if opts.CacheTTL == 0 {
		opts.CacheTTL = 5 * time.Second
	}
	return &Service{
		store:         st,
		tokens:        tokens,
		hasher:        opts.Hasher,
		failures:      failures,
		registrations: opts.Registrations,
		refreshTTL:    opts.RefreshTTL,
		now:           time.Now,
		// Two slots only sign-ins may take and two for anything: as many
		// hashes at once as before, of which registrations hold at most half.
		hashing:  newHashSlots(2, 2),
		cache:    principalCache{ttl: opts.CacheTTL, entries: map[string]cacheEntry{}},
		onChange: opts.Changed,
	}
}

// TokenPair is what a sign-in or refresh returns.
type TokenPair struct {
	AccessToken  string
	RefreshToken string
	ExpiresIn    time.Duration
}

// NormalizeEmail trims and lower-cases an email and checks its form. A bad
// one is Invalid, naming the field "email".
func NormalizeEmail(email string) (string, error) {
	e := strings.ToLower(strings.TrimSpace(email))
	addr, err := mail.ParseAddress(e)
	if err != nil || addr.Address != e || len(e) > 254 {
		return "", ferry.InvalidField("email", "not a valid email address")
	}
	return e, nil
}

// CreateUser makes an account with role, for an admin: no limit applies.
// Bad input is Invalid; a taken email is Conflict.
func (s *Service) CreateUser(ctx context.Context, email, password, name string, role ferry.Role) (*ferry.User, error) {
	email, err := checkNewUser(email, password, name)
	if err != nil {
		return nil, err
	}
	return s.createUser(ctx, email, password, name, role)
}

// Register makes an ordinary account for someone signing up from the
// client address ip. Bad input is Invalid and a taken email Conflict, as
// for CreateUser; beyond the Registrations limit's allowance per address
// (RegisterPolicy: five an hour) it is RateLimited, saying how long to
// wait.
func (s *Service) Register(ctx context.Context, email, password, name, ip string) (*ferry.User, error) {
	email, err := checkNewUser(email, password, name)
	if err != nil {
		return nil, err
	}
	key := registerKey(addressKey(ip))
	delay, err := s.registrations.Reserve(ctx, key)
	if err != nil {
		return nil, refused(err, "too many accounts registered from your address")
	}
	u, err := func() (*ferry.User, error) {
		if err := hold(ctx, delay); err != nil {
			return nil, err
		}
		return s.createUser(ctx, email, password, name, ferry.RoleUser)
	}()
	// A taken email cost a hash, and trying emails is how one learns which
	// have accounts: it counts. Anything else that failed made nothing.
	if err != nil && ferry.ErrorCode(err) != ferry.Conflict {
		release(ctx, s.registrations, []limit.Key{key})
	}
	return u, err
}

// checkNewUser checks a new account's fields before anything costly, and
// returns the normalised email.
func checkNewUser(email, password, name string) (string, error) {
	email, err := NormalizeEmail(email)
	if err != nil {
		return "", err
	}
	if err := ValidatePassword(password); err != nil {
		return "", err
	}
	if len(name) > 200 {
		return "", ferry.InvalidField("name", "at most 200 characters")
	}
	return email, nil
}

func (s *Service) createUser(ctx context.Context, email, password, name string, role ferry.Role) (*ferry.User, error) {
	hash, err := s.hash(ctx, password)
	if err != nil {
		return nil, err
	}
	u := &ferry.User{ID: NewID(), Email: email, Name: strings.TrimSpace(name), PasswordHash: hash, Role: role}
	if err := s.store.CreateUser(ctx, u); err != nil {
		return nil, err
	}
	return u, nil
}

// errLogin is the one answer to a wrong email or a wrong password, so the
// response does not tell which accounts exist.
var errLogin = ferry.Errorf(ferry.Unauthorized, "incorrect email or password")

// Login checks email and password and opens a session. ip is the client's
// address. Each attempt is counted before the password is checked, per
// account and address, per address and per account (see loginKeys), so
// that however many arrive at once only the limit's allowance is checked:
// repeated failures are slowed down and then refused with RateLimited,
// saying how long to wait. A success forgives this client's failures at
// this account.
func (s *Service) Login(ctx context.Context, email, password, ip string) (*TokenPair, error) {
	email = strings.ToLower(strings.TrimSpace(email))
	keys := loginKeys(email, addressKey(ip))
	delay, err := reserve(ctx, s.failures, keys)
	if err != nil {
		return nil, refused(err, "too many failed sign-in attempts")
	}
	// giveBack is what the attempt gives back when it ends: everything,
	// unless it checked a password and that was wrong.
	giveBack := keys
	defer func() { release(ctx, s.failures, giveBack) }()
	if err := hold(ctx, delay); err != nil {
		return nil, err
	}
	u, err := s.store.UserByEmail(ctx, email)
	if ferry.ErrorCode(err) == ferry.NotFound {
		// Same work as a real check, so timing does not reveal the answer.
		if err := s.withHashing(ctx, true, func() { s.hasher.VerifyDummy(password) }); err != nil {
			return nil, err
		}
		giveBack = nil
		return nil, errLogin
	}
	if err != nil {
		return nil, err
	}
	var ok bool
	var verr error
	if err := s.withHashing(ctx, true, func() { ok, verr = s.hasher.Verify(password, u.PasswordHash) }); err != nil {
		return nil, err
	}
	if verr != nil {
		return nil, verr
	}
	if !ok {
		giveBack = nil
		return nil, errLogin
	}
	// The owner, or someone who has the password, is at this address: their
	// earlier slips here are forgiven. The counts for the address and the
	// account alone only get this attempt back: signing in to an account of
	// one's own must not wipe the count of guesses at others.
	giveBack = keys[1:]
	if err := s.failures.Reset(ctx, keys[0]); err != nil {
		return nil, err
	}
	if u.Disabled {
		return nil, ferry.Errorf(ferry.Forbidden, "this account is disabled")
	}
	return s.openSession(ctx, u)
}

func (s *Service) openSession(ctx context.Context, u *ferry.User) (*TokenPair, error) {
	now := s.now().UTC()
	sess := &ferry.Session{ID: NewID(), UserID: u.ID, CreatedAt: now, ExpiresAt: now.Add(s.refreshTTL)}
	refresh := NewRefreshToken()
	if err := s.store.CreateSession(ctx, sess, HashSecret(refresh)); err != nil {
		return nil, err
	}
	return s.pair(u.ID, sess.ID, refresh)
}

func (s *Service) pair(userID, sessionID, refresh string) (*TokenPair, error) {
	access, _, err := s.tokens.Issue(userID, sessionID)
	if err != nil {
		return nil, err
	}
	// The token's lifetime, as OAuth2's expires_in means: measuring to its
	// exp, which has whole-second precision, would say 899 half the time.
	return &TokenPair{AccessToken: access, RefreshToken: refresh, ExpiresIn: s.tokens.ttl}, nil
}

// Refresh spends a refresh token and returns a new pair in the same session.
// Presenting a token a second time revokes its session (someone else has a
// copy); that and any other unusable token is Unauthorized.
func (s *Service) Refresh(ctx context.Context, refreshToken string) (*TokenPair, error) {
	next := NewRefreshToken()
	sess, err := s.store.RotateRefreshToken(ctx, HashSecret(refreshToken), HashSecret(next), s.now().UTC())
	if err != nil {
		if errors.Is(err, store.ErrRefreshReused) {
			// Reuse revoked a session whose access tokens may be cached. Only
			// then: any other bad token must not flush every instance's cache.
			s.changed()
		}
		return nil, err
	}
	// The rotation checked the session is live; the user may be disabled.
	u, err := s.store.UserByID(ctx, sess.UserID)
	if err != nil || u.Disabled {
		return nil, ferry.Errorf(ferry.Unauthorized, "invalid refresh token")
	}
	return s.pair(u.ID, sess.ID, next)
}

// Logout revokes the session that p signed in with. A principal from an API
// key has no session: that is Invalid (revoke the key instead).
func (s *Service) Logout(ctx context.Context, p *ferry.Principal) error {
	if p.SessionID == "" {
		return ferry.Errorf(ferry.Invalid, "an API key has no session to sign out of; revoke the key instead")
	}
	defer s.changed()
	return s.store.RevokeSession(ctx, p.User.ID, p.SessionID)
}

// Authenticate resolves a bearer credential (an access token or an API key)
// to a principal. Anything that does not authenticate a live, enabled user
// is Unauthorized.
func (s *Service) Authenticate(ctx context.Context, bearer string) (*ferry.Principal, error) {
	if IsAPIKey(bearer) {
		return s.authenticateKey(ctx, bearer)
	}
	// A token seen recently was verified then; its entry lives no longer
	// than the token itself, so the signature check is skipped safely.
	now := s.now()
	p, gen, ok := s.cache.get(bearer, now)
	if ok {
		return p, nil
	}
	claims, err := s.tokens.Parse(bearer)
	if err != nil {
		return nil, err
	}
	sess, u, err := s.store.SessionUser(ctx, claims.SessionID, now)
	if err != nil {
		return nil, err
	}
	if u.ID != claims.UserID {
		return nil, ferry.Errorf(ferry.Unauthorized, "invalid or expired token")
	}
	if u.Disabled {
		return nil, ferry.Errorf(ferry.Unauthorized, "this account is disabled")
	}
	p = &ferry.Principal{User: u, SessionID: sess.ID}
	s.cache.put(bearer, p, gen, now, claims.ExpiresAt)
	return p, nil
}

var errBadKey = ferry.Errorf(ferry.Unauthorized, "invalid or expired API key")

func (s *Service) authenticateKey(ctx context.Context, secret string) (*ferry.Principal, error) {
	hash := HashSecret(secret)
	now := s.now()
	p, gen, ok := s.cache.get("k:"+hash, now)
	if ok {
		return p, nil
	}
	k, u, err := s.store.APIKeyUser(ctx, hash)
	if ferry.ErrorCode(err) == ferry.NotFound {
		return nil, errBadKey
	}
	if err != nil {
		return nil, err
	}
	if k.ExpiresAt != nil && !now.Before(*k.ExpiresAt) {
		return nil, errBadKey
	}
	if u.Disabled {
		return nil, ferry.Errorf(ferry.Unauthorized, "this account is disabled")
	}
	// last_used_at is for people reading the key list: minute precision is
	// plenty, and it keeps authentication from writing on every request.
	if k.LastUsedAt == nil || now.Sub(*k.LastUsedAt) > time.Minute {
		if err := s.store.TouchAPIKey(context.WithoutCancel(ctx), k.ID, now.UTC()); err != nil {
			return nil, err
		}
	}
	p = &ferry.Principal{User: u, APIKeyID: k.ID, KeyLimits: k.Limits}
	// A cached key is not checked again: its entry must not outlive it.
	var notAfter time.Time
	if k.ExpiresAt != nil {
		notAfter = *k.ExpiresAt
	}
	s.cache.put("k:"+hash, p, gen, now, notAfter)
	return p, nil
}

// CreateAPIKey makes a key for the user and returns it with its secret,
// which is never shown again. A past expiresAt is Invalid.
func (s *Service) CreateAPIKey(ctx context.Context, userID, name string, expiresAt *time.Time) (*ferry.APIKey, string, error) {
	return s.CreateLimitedAPIKey(ctx, userID, name, expiresAt, ferry.Limits{})
}

// CreateLimitedAPIKey is CreateAPIKey for a key with rate limits of its own,
// which narrow its user's for the calls made with it. A negative limit is
// Invalid: a key cannot widen its user's.
func (s *Service) CreateLimitedAPIKey(ctx context.Context, userID, name string, expiresAt *time.Time, limits ferry.Limits) (*ferry.APIKey, string, error) {
	if limits.RPM < 0 {
		return nil, "", ferry.InvalidField("rate_limit_rpm", "at least 0")
	}
	if limits.TPM < 0 {
		return nil, "", ferry.InvalidField("rate_limit_tpm", "at least 0")
	}
	name = strings.TrimSpace(name)
	if name == "" || len(name) > 100 {
		return nil, "", ferry.InvalidField("name", "between 1 and 100 characters")
	}
	if expiresAt != nil && !expiresAt.After(s.now()) {
		return nil, "", ferry.InvalidField("expires_at", "must be in the future")
	}
	secret, prefix := NewAPIKey()
	k := &ferry.APIKey{ID: NewID(), UserID: userID, Name: name, Prefix: prefix, Hash: HashSecret(secret), ExpiresAt: expiresAt, Limits: limits}
	if err := s.store.CreateAPIKey(ctx, k); err != nil {
		return nil, "", err
	}
	return k, secret, nil
}

// APIKeys lists the user's keys, without secrets.
func (s *Service) APIKeys(ctx context.Context, userID string) ([]*ferry.APIKey, error) {
	return s.store.APIKeys(ctx, userID)
}

// RevokeAPIKey deletes the user's key; it stops working at once. Another
// user's key is NotFound.
func (s *Service) RevokeAPIKey(ctx context.Context, userID, id string) error {
	defer s.changed()
	return s.store.DeleteAPIKey(ctx, userID, id)
}

// hash computes a password hash under the concurrency bound, in a shared
// slot: only sign-ins have slots of their own.
func (s *Service) hash(ctx context.Context, password string) (string, error) {
	var h string
	var herr error
	if err := s.withHashing(ctx, false, func() { h, herr = s.hasher.Hash(password) }); err != nil {
		return "", err
	}
	return h, herr
}

// withHashing runs fn, an argon2 computation, once it has a hash slot: any
// free one for a sign-in, a shared one otherwise.
func (s *Service) withHashing(ctx context.Context, signIn bool, fn func()) error {
	done, err := s.hashing.acquire(ctx, signIn)
	if err != nil {
		return err
	}
	defer done()
	fn()
	return nil
}

// Invalidate drops every cached credential, so the next request of each
// reads the database again. Run calls it when another instance reports a
// change.
func (s *Service) Invalidate() { s.cache.clear() }

// changed forgets cached credentials after a change to them, here and,
// through ServiceOptions.Changed, on other instances.
func (s *Service) changed() {
	s.cache.clear()
	if s.onChange != nil {
		s.onChange()
	}
}

// principalCache remembers authenticated principals for a short TTL, so a
// request costs a map lookup instead of a token check and a database read.
type principalCache struct {
	ttl     time.Duration
	mu      sync.RWMutex
	entries map[string]cacheEntry
	// gen counts clears. A principal read from the database while a change
	// committed must not be cached after the clear that followed it, so put
	// takes the generation that get saw and drops stale ones.
	gen uint64
}

type cacheEntry struct {
	p       *ferry.Principal
	expires time.Time
}

// get returns the live entry for key, or the current generation to pass to
// put after reading the database.
func (c *principalCache) get(key string, now time.Time) (*ferry.Principal, uint64, bool) {
	c.mu.RLock()
	e, ok := c.entries[key]
	gen := c.gen
	c.mu.RUnlock()
	if !ok || !now.Before(e.expires) {
		return nil, gen, false
	}
	return e.p, gen, true
}

// put remembers p under key for the cache's TTL, or until notAfter when
// that is sooner (zero: no such bound), unless the cache was cleared since
// generation gen.
func (c *principalCache) put(key string, p *ferry.Principal, gen uint64, now, notAfter time.Time) {
	expires := now.Add(c.ttl)
	if !notAfter.IsZero() && notAfter.Before(expires) {
		expires = notAfter
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		return
	}
	if len(c.entries) >= 100_000 {
		// Entries live seconds; dropping them all is cheaper than tracking
		// order, and only costs a database read each.
		clear(c.entries)
	}
	c.entries[key] = cacheEntry{p: p, expires: expires}
}

// clear forgets everything. Changes to credentials are rare, so one
// coarse invalidation beats tracking which entries a change touches.
func (c *principalCache) clear() {
	c.mu.Lock()
	c.gen++
	clear(c.entries)
	c.mu.Unlock()
}

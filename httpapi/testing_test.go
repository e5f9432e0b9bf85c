package httpapi_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/auth"
	"github.com/ferryhq/ferry/httpapi"
	"github.com/ferryhq/ferry/limit"
	"github.com/ferryhq/ferry/store"
	"github.com/ferryhq/ferry/store/storetest"
)

// harness is the real API (NewServer over a real store and auth service) for
// one engine, driven in-process through ServeHTTP.
type harness struct {
	handler http.Handler
	store   *store.Store
	auth    *auth.Service
	secret  []byte // the server's secret key, for forging tokens in tests
	logs    *syncBuffer
}

// options tunes a harness; the zero value is the production setup except for
// cheap password hashing.
type options struct {
	policy   limit.Policy  // login throttling; zero fields take limit.DefaultPolicy
	cacheTTL time.Duration // auth.ServiceOptions.CacheTTL; zero takes the default
	// registrations limits registrations per address; zero allows 1000 an
	// hour, so that tests can sign many users up from httptest's address.
	registrations  limit.Policy
	trustedProxies []netip.Prefix // httpapi.Options.TrustedProxies
	// quiet logs at info level to nowhere, as a benchmark wants, instead of
	// at debug level into harness.logs.
	quiet bool
	// observe is httpapi.Options.Observe.
	observe func(pattern string, status int, d time.Duration)
}

func newHarness(t testing.TB, engine string, opt options) *harness {
	t.Helper()
	st := storetest.Open(t, engine)
	secret := make([]byte, auth.MinSecretKeyLen)
	rand.Read(secret)
	tokens, err := auth.NewTokens(secret)
	if err != nil {
		t.Fatal(err)
	}
	if opt.registrations == (limit.Policy{}) {
		opt.registrations = limit.Policy{Window: time.Hour, SlowAfter: 1000, BlockAfter: 1000}
	}
	svc := auth.NewService(st, tokens, limit.NewMemoryFailures(opt.policy, nil), auth.ServiceOptions{
		Hasher:        auth.Hasher{Params: auth.TestPasswordParams},
		CacheTTL:      opt.cacheTTL,
		Registrations: limit.NewMemoryFailures(opt.registrations, nil),
	})
	logs := &syncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if opt.quiet {
		log = slog.New(slog.NewJSONHandler(io.Discard, nil))
	}
	h := httpapi.NewServer(log, httpapi.Options{Version: "test", MaxBodyBytes: 1 << 20, Draining: context.Background(),
		TrustedProxies: opt.trustedProxies, Observe: opt.observe},
		httpapi.Services{Store: st, Auth: svc})
	return &harness{handler: h, store: st, auth: svc, secret: secret, logs: logs}
}

// eachEngine runs fn as a parallel subtest per engine, each on a fresh harness.
func eachEngine(t *testing.T, opt options, fn func(t *testing.T, h *harness)) {
	t.Parallel()
	for _, engine := range storetest.Engines(t) {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			fn(t, newHarness(t, engine, opt))
		})
	}
}

// request is one call to the API.
type request struct {
	method, path string
	auth         string // bearer credential; empty sends no Authorization
	// body: nil sends none, a string or []byte is sent as is, anything else
	// is sent as JSON.
	body       any
	header     map[string]string // extra request headers
	remoteAddr string            // client address; default httptest's 192.0.2.1:1234
	ctx        context.Context   // the request's context; default context.Background()
}

// response is what the API answered.
type response struct {
	status int
	header http.Header
	body   string
}

func (h *harness) do(t testing.TB, r request) response {
	t.Helper()
	var body io.Reader
	contentType := ""
	switch b := r.body.(type) {
	case nil:
	case string:
		body, contentType = strings.NewReader(b), "application/json"
	case []byte:
		body, contentType = bytes.NewReader(b), "application/json"
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		body, contentType = bytes.NewReader(j), "application/json"
	}
	req := httptest.NewRequest(r.method, r.path, body)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if r.auth != "" {
		req.Header.Set("Authorization", "Bearer "+r.auth)
	}
	for k, v := range r.header {
		req.Header.Set(k, v)
	}
	if r.remoteAddr != "" {
		req.RemoteAddr = r.remoteAddr
	}
	if r.ctx != nil {
		req = req.WithContext(r.ctx)
	}
	rec := httptest.NewRecorder()
	h.handler.ServeHTTP(rec, req)
	return response{status: rec.Code, header: rec.Header(), body: rec.Body.String()}
}

// json decodes the body as a JSON object.
func (r response) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(r.body), &m); err != nil {
		t.Fatalf("body is not a JSON object: %v\n%s", err, r.body)
	}
	return m
}

// str returns the string at key of the JSON body.
func (r response) str(t testing.TB, key string) string {
	t.Helper()
	s, ok := r.json(t)[key].(string)
	if !ok {
		t.Fatalf("body has no string %q: %s", key, r.body)
	}
	return s
}

// scenario is one row of an API table: a request and what must come back.
type scenario struct {
	name string
	request
	status   int
	contains []string          // fragments the body must contain
	excludes []string          // fragments the body must not contain
	headers  map[string]string // response headers that must have exactly this value
	// problem asks for an RFC 9457 body: problem+json with status and a
	// non-empty detail.
	problem bool
}

// run executes the scenarios in order as subtests; order matters where a
// table walks through a flow.
func (h *harness) run(t *testing.T, scenarios []scenario) {
	t.Helper()
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			t.Helper()
			res := h.do(t, sc.request)
			if res.status != sc.status {
				t.Fatalf("%s %s: status %d, want %d\n%s", sc.method, sc.path, res.status, sc.status, res.body)
			}
			for _, f := range sc.contains {
				if !strings.Contains(res.body, f) {
					t.Errorf("body lacks %q:\n%s", f, res.body)
				}
			}
			for _, f := range sc.excludes {
				if strings.Contains(res.body, f) {
					t.Errorf("body contains %q:\n%s", f, res.body)
				}
			}
			for k, v := range sc.headers {
				if got := res.header.Get(k); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
			if sc.problem {
				checkProblem(t, res)
			}
		})
	}
}

// checkProblem asserts res is an RFC 9457 problem body.
func checkProblem(t testing.TB, res response) {
	t.Helper()
	if ct := res.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("Content-Type = %q, want application/problem+json", ct)
	}
	var p struct {
		Status int    `json:"status"`
		Title  string `json:"title"`
		Detail string `json:"detail"`
	}
	if err := json.Unmarshal([]byte(res.body), &p); err != nil {
		t.Fatalf("problem body is not JSON: %v\n%s", err, res.body)
	}
	if p.Status != res.status || p.Title == "" || p.Detail == "" {
		t.Errorf("problem body = %+v for status %d, want status, title and detail", p, res.status)
	}
}

// errorLocations returns the locations named in a problem body's errors.
func errorLocations(t testing.TB, res response) []string {
	t.Helper()
	var p struct {
		Errors []struct {
			Location string `json:"location"`
		} `json:"errors"`
	}
	if err := json.Unmarshal([]byte(res.body), &p); err != nil {
		t.Fatalf("problem body is not JSON: %v\n%s", err, res.body)
	}
	var locs []string
	for _, e := range p.Errors {
		locs = append(locs, e.Location)
	}
	return locs
}

// account is a signed-in user.
type account struct {
	id, email, password string
	access, refresh     string
}

const testPassword = "correct horse battery"

// signUp registers email through the API and signs in.
func (h *harness) signUp(t testing.TB, email string) account {
	t.Helper()
	res := h.do(t, request{method: "POST", path: "/auth/register", body: map[string]string{"email": email, "password": testPassword}})
	if res.status != http.StatusCreated {
		t.Fatalf("register %s: %d %s", email, res.status, res.body)
	}
	a := account{id: res.str(t, "id"), email: email, password: testPassword}
	a.access, a.refresh = h.login(t, email, testPassword)
	return a
}

// signUpAdmin creates an admin (there is no API for the first one) and signs
// in through the API.
func (h *harness) signUpAdmin(t testing.TB, email string) account {
	t.Helper()
	u, err := h.auth.CreateUser(context.Background(), email, testPassword, "Admin", ferry.RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}
	a := account{id: u.ID, email: email, password: testPassword}
	a.access, a.refresh = h.login(t, email, testPassword)
	return a
}

// login signs in and returns the token pair.
func (h *harness) login(t testing.TB, email, password string) (access, refresh string) {
	t.Helper()
	res := h.do(t, request{method: "POST", path: "/auth/login", body: map[string]string{"email": email, "password": password}})
	if res.status != http.StatusOK {
		t.Fatalf("login %s: %d %s", email, res.status, res.body)
	}
	return res.str(t, "access_token"), res.str(t, "refresh_token")
}

// refresh spends a refresh token and returns the new pair.
func (h *harness) refresh(t testing.TB, token string) (access, refresh string) {
	t.Helper()
	res := h.do(t, request{method: "POST", path: "/auth/refresh", body: map[string]string{"refresh_token": token}})
	if res.status != http.StatusOK {
		t.Fatalf("refresh: %d %s", res.status, res.body)
	}
	return res.str(t, "access_token"), res.str(t, "refresh_token")
}

// newAPIKey creates a key with the credential and returns its id and secret.
func (h *harness) newAPIKey(t testing.TB, cred, name string) (id, secret string) {
	t.Helper()
	res := h.do(t, request{method: "POST", path: "/auth/api-keys", auth: cred, body: map[string]string{"name": name}})
	if res.status != http.StatusCreated {
		t.Fatalf("create API key: %d %s", res.status, res.body)
	}
	return res.str(t, "id"), res.str(t, "key")
}

// status returns the status of an authenticated GET /users/me.
func (h *harness) status(t testing.TB, cred string) int {
	t.Helper()
	return h.do(t, request{method: "GET", path: "/users/me", auth: cred}).status
}

// claims decodes an access token's payload without checking it.
func claims(t testing.TB, token string) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", token)
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a logger.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

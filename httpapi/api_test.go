package httpapi_test

import (
	"encoding/json"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
)

func TestHTTPBasics(t *testing.T) {
	eachEngine(t, options{}, func(t *testing.T, h *harness) {
		u := h.signUp(t, "alice@example.com")
		overMiB := `{"email":"big@example.com","password":"` + strings.Repeat("p", 1<<20) + `"}`
		h.run(t, []scenario{
			{name: "healthz", request: request{method: "GET", path: "/healthz"}, status: 200, contains: []string{`"status":"ok"`},
				headers: map[string]string{"Content-Type": "application/json"}},
			{name: "readyz", request: request{method: "GET", path: "/readyz"}, status: 200, contains: []string{`"status":"ready"`}},
			{name: "root is the web page", request: request{method: "GET", path: "/"}, status: 200,
				contains: []string{"<html", "/web/"}},
			{name: "docs", request: request{method: "GET", path: "/docs"}, status: 200, contains: []string{"<html", "openapi"}},
			{name: "unknown route is problem JSON", request: request{method: "GET", path: "/nope"}, status: 404, problem: true},
			{name: "unknown route under a known prefix", request: request{method: "GET", path: "/users/me/extra", auth: u.access}, status: 404, problem: true},
			{name: "wrong method is problem JSON with Allow", request: request{method: "PUT", path: "/users/me", auth: u.access}, status: 405, problem: true,
				headers: map[string]string{"Allow": "DELETE, GET, HEAD, PATCH"}},
			{name: "wrong method on a plain route", request: request{method: "POST", path: "/healthz"}, status: 405, problem: true,
				headers: map[string]string{"Allow": "GET, HEAD"}},
			{name: "body over 1 MiB on register", request: request{method: "POST", path: "/auth/register", body: overMiB}, status: 413, problem: true},
			{name: "body over 1 MiB on login", request: request{method: "POST", path: "/auth/login", body: overMiB}, status: 413, problem: true},
			{name: "body over 1 MiB when signed in", request: request{method: "PATCH", path: "/users/me", auth: u.access,
				body: `{"name":"` + strings.Repeat("n", 1<<20) + `"}`}, status: 413, problem: true},
			{name: "body just under 1 MiB is read (and judged on its content)", request: request{method: "POST", path: "/auth/register",
				body: `{"email":"big@example.com","password":"` + strings.Repeat("p", 1<<20-100) + `"}`}, status: 422},
			{name: "X-Request-ID is echoed", request: request{method: "GET", path: "/healthz", header: map[string]string{"X-Request-ID": "req-42.abc"}},
				status: 200, headers: map[string]string{"X-Request-ID": "req-42.abc"}},
			{name: "X-Request-ID is echoed on errors", request: request{method: "GET", path: "/nope", header: map[string]string{"X-Request-ID": "req-43"}},
				status: 404, headers: map[string]string{"X-Request-ID": "req-43"}},
		})

		generated := regexp.MustCompile(`^[0-9a-f]{24}$`)
		for _, tc := range []struct{ name, sent string }{
			{"absent", ""},
			{"with a space", "a b"},
			{"with a newline", "a\nb"},
			{"too long", strings.Repeat("r", 129)},
		} {
			t.Run("X-Request-ID "+tc.name+" is replaced", func(t *testing.T) {
				r := request{method: "GET", path: "/healthz"}
				if tc.sent != "" {
					r.header = map[string]string{"X-Request-ID": tc.sent}
				}
				if got := h.do(t, r).header.Get("X-Request-ID"); !generated.MatchString(got) {
					t.Errorf("X-Request-ID = %q, want a generated id", got)
				}
			})
		}
		t.Run("request ids differ", func(t *testing.T) {
			a := h.do(t, request{method: "GET", path: "/healthz"}).header.Get("X-Request-ID")
			b := h.do(t, request{method: "GET", path: "/healthz"}).header.Get("X-Request-ID")
			if a == b {
				t.Errorf("two requests got id %q", a)
			}
		})
	})
}

func TestOpenAPI(t *testing.T) {
	eachEngine(t, options{}, func(t *testing.T, h *harness) {
		res := h.do(t, request{method: "GET", path: "/openapi.json"})
		if res.status != http.StatusOK {
			t.Fatalf("status %d", res.status)
		}
		var doc struct {
			OpenAPI string `json:"openapi"`
			Paths   map[string]map[string]struct {
				OperationID string                `json:"operationId"`
				Summary     string                `json:"summary"`
				Security    []map[string][]string `json:"security"`
			} `json:"paths"`
			Components struct {
				SecuritySchemes map[string]any `json:"securitySchemes"`
			} `json:"components"`
		}
		if err := json.Unmarshal([]byte(res.body), &doc); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(doc.OpenAPI, "3.1") {
			t.Errorf("openapi %q, want 3.1", doc.OpenAPI)
		}
		want := map[string][]string{
			"/auth/register":      {"post"},
			"/auth/login":         {"post"},
			"/auth/refresh":       {"post"},
			"/auth/logout":        {"post"},
			"/auth/api-keys":      {"get", "post"},
			"/auth/api-keys/{id}": {"delete"},
			"/users/me":           {"delete", "get", "patch"},
			"/users":              {"get"},
			"/users/{id}":         {"delete", "get", "patch"},
		}
		public := map[string]bool{"/auth/register": true, "/auth/login": true, "/auth/refresh": true}
		for path, methods := range want {
			ops, ok := doc.Paths[path]
			if !ok {
				t.Errorf("path %s missing", path)
				continue
			}
			for _, m := range methods {
				op, ok := ops[m]
				if !ok {
					t.Errorf("%s %s missing", m, path)
					continue
				}
				if op.OperationID == "" || op.Summary == "" {
					t.Errorf("%s %s has no operationId or summary", m, path)
				}
				if secured := len(op.Security) > 0; secured == public[path] {
					t.Errorf("%s %s: security %v", m, path, op.Security)
				}
			}
		}
		for _, s := range []string{"bearer", "oauth2"} {
			if doc.Components.SecuritySchemes[s] == nil {
				t.Errorf("security scheme %s missing", s)
			}
		}
		if strings.Contains(res.body, "password_hash") || strings.Contains(res.body, "PasswordHash") {
			t.Error("the document exposes a password hash field")
		}
		if !slices.Contains(keys(doc.Paths["/auth/login"]), "post") || !strings.Contains(res.body, "application/x-www-form-urlencoded") {
			t.Error("login does not document the OAuth2 form")
		}
	})
}

func keys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

// TestLogsHaveNoSecrets runs every flow that handles a credential with the
// server logging at debug level, then looks for the credentials in the log.
func TestLogsHaveNoSecrets(t *testing.T) {
	eachEngine(t, options{}, func(t *testing.T, h *harness) {
		const password = "Log-Canary-Password-1"
		const newPassword = "Log-Canary-Password-2"
		const wrongPassword = "Log-Canary-Wrong-3"
		secrets := []string{password, newPassword, wrongPassword}
		steps := []request{
			{method: "POST", path: "/auth/register", body: map[string]string{"email": "alice@example.com", "password": password}},
			{method: "POST", path: "/auth/register", body: map[string]string{"email": "bad", "password": "Sh0rt!"}},
			{method: "POST", path: "/auth/login", body: map[string]string{"email": "alice@example.com", "password": wrongPassword}},
			{method: "POST", path: "/auth/login", body: map[string]string{"email": "nobody@example.com", "password": wrongPassword}},
			{method: "POST", path: "/auth/login", header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"},
				body: "username=alice%40example.com&password=" + password},
		}
		secrets = append(secrets, "Sh0rt!")
		for _, r := range steps {
			h.do(t, r)
		}
		access, refresh := h.login(t, "alice@example.com", password)
		access2, refresh2 := h.refresh(t, refresh)
		keyID, key := h.newAPIKey(t, access2, "k")
		parts := strings.Split(access, ".")
		secrets = append(secrets, access, refresh, access2, refresh2, key, parts[2], strings.Split(access2, ".")[2])
		for _, r := range []request{
			me(key),
			{method: "GET", path: "/users/me?api_key=" + key + "&password=" + password, auth: access2},
			me(parts[0] + "." + parts[1] + ".AAAA" + parts[2][4:]), // a tampered token
			me("fk_" + strings.Repeat("z", 43)),
			refreshWith(refresh), // reuse
			{method: "PATCH", path: "/users/me", auth: key, body: map[string]string{"password": newPassword, "current_password": wrongPassword}},
			{method: "PATCH", path: "/users/me", auth: key, body: map[string]string{"password": newPassword, "current_password": password}},
			{method: "DELETE", path: "/auth/api-keys/" + keyID, auth: key},
			me(key),
		} {
			h.do(t, r)
		}
		logs := h.logs.String()
		if n := strings.Count(logs, `"msg":"request"`); n < 15 {
			t.Fatalf("only %d request lines logged; is the log captured?\n%s", n, logs)
		}
		for _, s := range secrets {
			if strings.Contains(logs, s) {
				t.Errorf("the log contains the secret %q", s)
			}
		}
		// Hashes of secrets are not secrets, but a log has no use for them either.
		if strings.Contains(logs, "$argon2id$") {
			t.Error("the log contains a password hash")
		}
	})
}

// TestInternalErrors: a database that is gone is logged with the request
// id and its cause, and answered 503 with Retry-After, without the cause;
// readiness reports the database down. (TestPublicErrors has the rule for
// errors nobody classified: "internal error".)
func TestInternalErrors(t *testing.T) {
	eachEngine(t, options{}, func(t *testing.T, h *harness) {
		u := h.signUp(t, "alice@example.com")
		h.store.Close()
		h.run(t, []scenario{
			{name: "readyz", request: request{method: "GET", path: "/readyz"}, status: 503, problem: true},
			{name: "healthz", request: request{method: "GET", path: "/healthz"}, status: 200},
			{name: "register", request: request{method: "POST", path: "/auth/register", header: map[string]string{"X-Request-ID": "broken-1"},
				body: map[string]string{"email": "bob@example.com", "password": testPassword}},
				status: 503, problem: true, headers: map[string]string{"Retry-After": "5"}, excludes: []string{"sql", "closed"}},
			{name: "authenticate", request: request{method: "GET", path: "/users/me", header: map[string]string{"X-Request-ID": "broken-2"}, auth: u.access},
				status: 503, problem: true, headers: map[string]string{"Retry-After": "5"}, excludes: []string{"sql", "closed"}},
		})
		logs := h.logs.String()
		for _, id := range []string{"broken-1", "broken-2"} {
			if !regexp.MustCompile(`"level":"ERROR","msg":"[a-z ]+","request_id":"` + id + `","error":"[^"]*closed`).MatchString(logs) {
				t.Errorf("no error line with request id %s and its cause in the log:\n%s", id, logs)
			}
		}
	})
}

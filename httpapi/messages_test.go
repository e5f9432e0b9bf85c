package httpapi_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/auth"
	"github.com/ferryhq/ferry/chat"
	"github.com/ferryhq/ferry/store/storetest"
)

// shapedError is what a client reads from an error answer: its status,
// and its message in the shape the path answers in (RFC 9457's detail,
// OpenAI's error.message under /v1/, Ollama's error under /ollama/). The
// shape and Content-Type are checked on the way.
func shapedError(t *testing.T, path string, status int, header http.Header, body []byte) string {
	t.Helper()
	ct := header.Get("Content-Type")
	switch {
	case strings.HasPrefix(path, "/v1/"):
		var e struct {
			Error struct {
				Message string `json:"message"`
				Type    string `json:"type"`
			} `json:"error"`
		}
		if err := json.Unmarshal(body, &e); err != nil || ct != "application/json" || e.Error.Type == "" {
			t.Fatalf("%s: %d not in OpenAI's shape (%s): %s", path, status, ct, body)
		}
		return e.Error.Message
	case strings.HasPrefix(path, "/ollama/"):
		var e struct {
			Error string `json:"error"`
		}
		if err := json.Unmarshal(body, &e); err != nil || ct != "application/json" || e.Error == "" {
			t.Fatalf("%s: %d not in Ollama's shape (%s): %s", path, status, ct, body)
		}
		return e.Error
	}
	var p struct {
		Status int    `json:"status"`
		Detail string `json:"detail"`
	}
	if err := json.Unmarshal(body, &p); err != nil || ct != "application/problem+json" || p.Status != status {
		t.Fatalf("%s: %d not a problem (%s): %s", path, status, ct, body)
	}
	return p.Detail
}

// bodyCase is one request with a raw body and what must come back.
type bodyCase struct {
	name, path  string
	contentType string // "" sends none
	body        string
	chunked     bool // send without Content-Length
	status      int
	message     string // a fragment of the error message; "" for a success
}

// sendRaw posts c's body as it is, with the gateway's API key.
func (g *gateway) sendRaw(t *testing.T, c bodyCase) (int, http.Header, []byte) {
	t.Helper()
	var body io.Reader = strings.NewReader(c.body)
	if c.chunked {
		body = io.MultiReader(body) // hides the length: sent chunked
	}
	req, err := http.NewRequestWithContext(t.Context(), "POST", g.url+c.path, body)
	if err != nil {
		t.Fatal(err)
	}
	if c.contentType != "" {
		req.Header.Set("Content-Type", c.contentType)
	}
	req.Header.Set("Authorization", "Bearer "+g.key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

func (g *gateway) runBodyCases(t *testing.T, cases []bodyCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, header, body := g.sendRaw(t, c)
			if status != c.status {
				t.Fatalf("%s: status %d, want %d: %s", c.path, status, c.status, body)
			}
			if c.message == "" {
				return
			}
			if msg := shapedError(t, c.path, status, header, body); !strings.Contains(msg, c.message) {
				t.Errorf("%s: message %q, want it to say %q", c.path, msg, c.message)
			}
		})
	}
}

const (
	form = "application/x-www-form-urlencoded"
	// formMessage is how a 415 for a form body begins, for an operation
	// that reads JSON.
	formMessage = "send application/json; the body was sent as application/x-www-form-urlencoded"
)

// TestBodyRefusalsSayWhatToDo checks that a body Ferry cannot take is
// refused with what to send instead, in the error shape of each API: a
// form or another content type (415, "send application/json"), malformed
// JSON ("invalid JSON at byte N"), an empty or blank message (the same
// 400), a message over the length limit, and a body over
// FERRY_MAX_BODY_BYTES (413 naming the setting and the limit, whether or
// not the client said the length).
func TestBodyRefusalsSayWhatToDo(t *testing.T) {
	t.Parallel()
	for _, engine := range storetest.Engines(t) {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			g := newGateway(t, gatewayOptions{engine: engine, maxBody: 300_000})
			chat := `{"message": "hi", "model": "claude-sonnet-4-6"}`
			completion := `{"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}`
			big := strings.Repeat("a", 300_001)
			g.runBodyCases(t, []bodyCase{
				// Content types.
				{name: "form to /ai/chat", path: "/ai/chat", contentType: form, body: "message=hi", status: 415, message: formMessage},
				{name: "form to /ai/chat/stream", path: "/ai/chat/stream", contentType: form, body: "message=hi", status: 415, message: formMessage},
				{name: "form with JSON in it, as curl -d sends", path: "/ai/chat", contentType: form, body: chat, status: 415,
					message: "curl -d does without -H 'Content-Type: application/json'"},
				{name: "form to /auth/register", path: "/auth/register", contentType: form, body: "email=a%40example.com&password=long+enough", status: 415, message: formMessage},
				{name: "form to /conversations", path: "/conversations", contentType: form, body: "title=x", status: 415, message: formMessage},
				{name: "form to /v1", path: "/v1/chat/completions", contentType: form, body: "model=gpt-4o", status: 415, message: formMessage},
				{name: "text/plain", path: "/ai/chat", contentType: "text/plain", body: chat, status: 415,
					message: "send application/json; the body was sent as text/plain"},
				{name: "text/plain to login", path: "/auth/login", contentType: "text/plain", body: `{}`, status: 415,
					message: "send application/json or application/x-www-form-urlencoded; the body was sent as text/plain"},
				{name: "no Content-Type is read as JSON", path: "/ai/chat", body: chat, status: 200},
				{name: "JSON with a charset", path: "/ai/chat", contentType: "application/json; charset=utf-8", body: chat, status: 200},
				{name: "Ollama's API reads JSON whatever the type, as Ollama does", path: "/ollama/generate", contentType: form,
					body: `{"model": "llama3.2", "prompt": "hi", "stream": false}`, status: 200},

				// Malformed JSON: the byte counts from 1.
				{name: "trailing comma", path: "/ai/chat", contentType: "application/json", body: `{"message": "hi",}`, status: 400,
					message: "invalid JSON at byte 18: invalid character '}' looking for beginning of object key string"},
				{name: "cut short", path: "/ai/chat", contentType: "application/json", body: `{"message": "hi"`, status: 400,
					message: "invalid JSON at byte 16: the body ends before the JSON does"},
				{name: "several lines", path: "/ai/chat", contentType: "application/json", body: "{\n  \"message\": \"hi\"\n  \"model\": \"x\"\n}", status: 400,
					message: "invalid JSON at byte 23 (line 3, column 3): invalid character '\"' after object key:value pair"},
				{name: "column in characters", path: "/auth/register", contentType: "application/json", body: "{\n\"name\": \"Zoë\" }}", status: 400,
					message: "invalid JSON at byte 19 (line 2, column 16)"},
				{name: "malformed on /v1", path: "/v1/chat/completions", contentType: "application/json", body: `{"model": "gpt-4o", "messages": [}`, status: 400,
					message: "invalid JSON at byte 34: invalid character '}' looking for beginning of value"},
				{name: "malformed on /ollama", path: "/ollama/generate", contentType: "application/json", body: `{"model": "llama3.2", "prompt": hi}`, status: 400,
					message: "invalid JSON at byte 33: invalid character 'h' looking for beginning of value"},
				{name: "malformed on Ollama's own path", path: "/ollama/api/chat", contentType: "application/json", body: `{"model": "llama3.2"`, status: 400,
					message: "invalid JSON at byte 20: the body ends before the JSON does"},
				{name: "malformed on Ollama's show", path: "/ollama/api/show", contentType: "application/json", body: `{"model" "llama3.2"}`, status: 400,
					message: "invalid JSON at byte 10: invalid character '\"' after object key"},
				{name: "a form to Ollama is not JSON", path: "/ollama/generate", contentType: form, body: "prompt=hi", status: 400,
					message: "invalid JSON at byte 1: invalid character 'p' looking for beginning of value"},
				{name: "malformed login", path: "/auth/login", contentType: "application/json", body: `{"email": "a@example.com", "password": `, status: 400,
					message: "invalid JSON at byte 39: the body ends before the JSON does"},
				{name: "malformed login, bad character", path: "/auth/login", contentType: "application/json", body: `{"email" "a@example.com"}`, status: 400,
					message: "invalid JSON at byte 10: invalid character '\"' after object key"},

				// An empty and a blank message are one mistake.
				{name: "empty message", path: "/ai/chat", contentType: "application/json", body: `{"message": ""}`, status: 400,
					message: "message: must not be empty or only white space"},
				{name: "blank message", path: "/ai/chat", contentType: "application/json", body: `{"message": " \n\t "}`, status: 400,
					message: "message: must not be empty or only white space"},
				{name: "empty message, streaming", path: "/ai/chat/stream", contentType: "application/json", body: `{"message": ""}`, status: 400,
					message: "message: must not be empty or only white space"},
				{name: "blank message, streaming", path: "/ai/chat/stream", contentType: "application/json", body: `{"message": "   "}`, status: 400,
					message: "message: must not be empty or only white space"},
				{name: "message over the length limit", path: "/ai/chat", contentType: "application/json",
					body: `{"message": "` + strings.Repeat("a", 200_001) + `"}`, status: 400,
					message: "message: at most 200000 characters; this one has 200001"},

				// Bodies over FERRY_MAX_BODY_BYTES, with and without a
				// Content-Length.
				{name: "413 with a length", path: "/ai/chat", contentType: "application/json", body: big, status: 413,
					message: "the body is 300001 bytes; FERRY_MAX_BODY_BYTES is 300000"},
				{name: "413 chunked", path: "/ai/chat", contentType: "application/json", body: big, chunked: true, status: 413,
					message: "the body is too large: FERRY_MAX_BODY_BYTES is 300000 bytes"},
				{name: "413 on /v1 with a length", path: "/v1/chat/completions", contentType: "application/json", body: big, status: 413,
					message: "the body is 300001 bytes; FERRY_MAX_BODY_BYTES is 300000"},
				{name: "413 on /v1 chunked", path: "/v1/chat/completions", contentType: "application/json", body: big, chunked: true, status: 413,
					message: "the body is too large: FERRY_MAX_BODY_BYTES is 300000 bytes"},
				{name: "413 on /ollama with a length", path: "/ollama/generate", contentType: "application/json", body: big, status: 413,
					message: "the body is 300001 bytes; FERRY_MAX_BODY_BYTES is 300000"},
				{name: "413 on /ollama chunked", path: "/ollama/generate", contentType: "application/json", body: big, chunked: true, status: 413,
					message: "the body is too large: FERRY_MAX_BODY_BYTES is 300000 bytes"},
				{name: "control: a good completion", path: "/v1/chat/completions", contentType: "application/json", body: completion, status: 200},
			})
		})
	}
}

// TestExpiredTokenSaysRefresh checks that an access token that has
// expired is refused with what to do about it, in each API's error shape,
// while one the server did not sign says nothing of expiry.
func TestExpiredTokenSaysRefresh(t *testing.T) {
	eachEngine(t, options{}, func(t *testing.T, h *harness) {
		u := h.signUp(t, "alice@example.com")
		sid, _ := claims(t, u.access)["sid"].(string)
		// Issued 16 minutes ago with the 15-minute lifetime: past the
		// clock leeway too.
		old, err := auth.NewTokens(h.secret, auth.WithTokenClock(func() time.Time { return time.Now().Add(-16 * time.Minute) }))
		if err != nil {
			t.Fatal(err)
		}
		expired, _, err := old.Issue(u.id, sid)
		if err != nil {
			t.Fatal(err)
		}
		forger, _ := auth.NewTokens([]byte(strings.Repeat("k", 32)), auth.WithTokenClock(func() time.Time { return time.Now().Add(-16 * time.Minute) }))
		forged, _, _ := forger.Issue(u.id, sid)

		const refresh = "access token expired; get a new one from POST /auth/refresh"
		for _, path := range []string{"/users/me", "/ai/models", "/v1/models", "/ollama/tags"} {
			res := h.do(t, request{method: "GET", path: path, auth: expired})
			if res.status != 401 {
				t.Fatalf("%s: status %d, want 401: %s", path, res.status, res.body)
			}
			if msg := shapedError(t, path, res.status, res.header, []byte(res.body)); msg != refresh {
				t.Errorf("%s: message %q, want %q", path, msg, refresh)
			}
			res = h.do(t, request{method: "GET", path: path, auth: forged})
			if res.status != 401 || strings.Contains(res.body, "refresh") {
				t.Errorf("%s: a token signed by another key: %d %s", path, res.status, res.body)
			}
		}
	})
}

// TestREADMEStatesTheLimits keeps README's word on the limits a request
// meets in step with the code: the length of a chat message and the
// setting that bounds a body.
func TestREADMEStatesTheLimits(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := strings.Join(strings.Fields(string(b)), " ")
	for _, want := range []string{
		fmt.Sprintf("at most %d characters", chat.MaxMessageChars),
		"over `FERRY_MAX_BODY_BYTES` (1 MiB) is refused with 413 naming the setting",
		"415 `send application/json",
		"invalid JSON at byte",
	} {
		if !strings.Contains(readme, want) {
			t.Errorf("README does not say %q", want)
		}
	}
}

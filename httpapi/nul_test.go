package httpapi_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/llm/llmtest"
	"github.com/ferryhq/ferry/store/storetest"
)

// TestNULRefused checks that a NUL character anywhere a client can put one
// (a JSON string, a form, a path, a query) is refused with 422 in the
// endpoint's own error shape, naming the field, on both engines alike:
// PostgreSQL cannot store NUL in text and answered 500, SQLite stored it.
// Nothing is stored and nothing reaches the upstream.
func TestNULRefused(t *testing.T) {
	t.Parallel()
	for _, engine := range storetest.Engines(t) {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			g := newGateway(t, gatewayOptions{engine: engine})
			ctx := context.Background()
			if _, err := g.auth.CreateUser(ctx, "root@example.com", "password123", "Root", ferry.RoleAdmin); err != nil {
				t.Fatal(err)
			}
			root, err := g.auth.Login(ctx, "root@example.com", "password123", "127.0.0.1")
			if err != nil {
				t.Fatal(err)
			}
			resp := g.send(t, ctx, "POST", "/conversations", g.key, map[string]any{"title": "kept"})
			var conv map[string]any
			json.NewDecoder(resp.Body).Decode(&conv)
			convID, _ := conv["id"].(string)
			if resp.StatusCode != 201 || convID == "" {
				t.Fatalf("create conversation: %d %v", resp.StatusCode, conv)
			}

			const problem, openAI, ollama = "problem", "openai", "ollama"
			for _, tc := range []struct {
				name, method, path, cred, body string
				form                           bool
				loc                            string // the location a problem body names
				shape                          string
			}{
				{"register email", "POST", "/auth/register", "", `{"email":"nul\u0000@example.com","password":"password123"}`, false, "body.email", problem},
				{"register name", "POST", "/auth/register", "", `{"email":"new@example.com","password":"password123","name":"a\u0000b"}`, false, "body.name", problem},
				{"login email", "POST", "/auth/login", "", `{"email":"sdk@example.com\u0000","password":"password123"}`, false, "body.email", problem},
				{"login form", "POST", "/auth/login", "", `username=sdk%40example.com%00&password=password123`, true, "body.username", problem},
				{"name", "PATCH", "/users/me", g.key, `{"name":"a\u0000"}`, false, "body.name", problem},
				{"key name", "POST", "/auth/api-keys", g.key, `{"name":"k\u0000"}`, false, "body.name", problem},
				{"title", "POST", "/conversations", g.key, `{"title":"t\u0000"}`, false, "body.title", problem},
				{"conversation model", "POST", "/conversations", g.key, `{"model":"m\u0000"}`, false, "body.model", problem},
				{"new title", "PATCH", "/conversations/" + convID, g.key, `{"title":"t\u0000"}`, false, "body.title", problem},
				{"message", "POST", "/ai/chat", g.key, `{"message":"hi\u0000there"}`, false, "body.message", problem},
				{"message after escaped backslashes", "POST", "/ai/chat", g.key, `{"message":"a\\\u0000"}`, false, "body.message", problem},
				{"raw NUL byte", "POST", "/ai/chat", g.key, "{\"message\":\"hi\x00\"}", false, "body", problem},
				{"model", "POST", "/ai/chat", g.key, `{"message":"hi","model":"claude-sonnet-4-6\u0000"}`, false, "body.model", problem},
				{"streamed message", "POST", "/ai/chat/stream", g.key, `{"message":"hi\u0000"}`, false, "body.message", problem},
				{"OpenAI content", "POST", "/v1/chat/completions", g.key, `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"ok"},{"role":"user","content":"a\u0000"}]}`, false, "", openAI},
				{"Ollama prompt", "POST", "/ollama/generate", g.key, `{"prompt":"a\u0000"}`, false, "", ollama},
				{"conversation id", "GET", "/conversations/" + convID + "%00", g.key, "", false, "path.id", problem},
				{"key id", "DELETE", "/auth/api-keys/" + g.keyID + "%00", g.key, "", false, "path.id", problem},
				{"user id", "PATCH", "/users/" + g.userID + "%00", root.AccessToken, `{"name":"x"}`, false, "path.id", problem},
				{"query", "GET", "/users?email=sdk%00", root.AccessToken, "", false, "query.email", problem},
			} {
				t.Run(tc.name, func(t *testing.T) {
					var body io.Reader
					if tc.body != "" {
						body = strings.NewReader(tc.body)
					}
					req, _ := http.NewRequestWithContext(ctx, tc.method, g.url+tc.path, body)
					if tc.body != "" {
						req.Header.Set("Content-Type", "application/json")
						if tc.form {
							req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
						}
					}
					if tc.cred != "" {
						req.Header.Set("Authorization", "Bearer "+tc.cred)
					}
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						t.Fatal(err)
					}
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusUnprocessableEntity {
						t.Fatalf("status %d, want 422: %s", resp.StatusCode, b)
					}
					res := response{status: resp.StatusCode, header: resp.Header, body: string(b)}
					switch tc.shape {
					case problem:
						checkProblem(t, res)
						if locs := errorLocations(t, res); len(locs) != 1 || locs[0] != tc.loc {
							t.Errorf("error locations %v, want [%s]", locs, tc.loc)
						}
					case openAI:
						e := readOpenAIError(t, &http.Response{StatusCode: resp.StatusCode, Header: resp.Header, Body: io.NopCloser(strings.NewReader(string(b)))})
						if !strings.Contains(e.Error.Message, "messages[1].content") {
							t.Errorf("OpenAI error %+v does not name the field", e)
						}
					case ollama:
						var e map[string]any
						if json.Unmarshal(b, &e) != nil || !strings.Contains(e["error"].(string), "prompt") {
							t.Errorf("Ollama error %s does not name the field", b)
						}
					}
				})
			}

			// Nothing was stored, changed or sent upstream.
			if _, err := g.store.UserByEmail(ctx, "new@example.com"); ferry.ErrorCode(err) != ferry.NotFound {
				t.Errorf("a user was registered: %v", err)
			}
			if u, err := g.store.UserByID(ctx, g.userID); err != nil || u.Name != "" {
				t.Errorf("user is %+v (%v), want the name unchanged", u, err)
			}
			if keys, err := g.store.APIKeys(ctx, g.userID); err != nil || len(keys) != 1 {
				t.Errorf("%d API keys (%v), want the one", len(keys), err)
			}
			if convs, n, err := g.store.Conversations(ctx, g.userID, ferry.Page{Limit: 10}); err != nil || n != 1 || convs[0].Title != "kept" {
				t.Errorf("%d conversations (%v), want only the one titled \"kept\"", n, err)
			}
			if n := len(g.fake.Requests()); n != 0 {
				t.Errorf("the upstream got %d requests", n)
			}

			t.Run("an escaped backslash before u0000 is text", func(t *testing.T) {
				g.fake.SetScript(llmtest.Script{Deltas: []string{"ok"}})
				resp := g.send(t, ctx, "POST", "/ai/chat", g.key, `{"message":"print \\u0000 in C"}`)
				var out map[string]any
				json.NewDecoder(resp.Body).Decode(&out)
				if resp.StatusCode != 200 {
					t.Fatalf("status %d: %v", resp.StatusCode, out)
				}
				if !strings.Contains(string(g.fake.Last().Body), `print \\u0000 in C`) {
					t.Errorf("upstream got %s", g.fake.Last().Body)
				}
			})
		})
	}
}

// TestUpstreamNULDropped checks that NUL characters an upstream sends,
// in its text or its error message, are dropped before the answer is
// streamed or stored, so PostgreSQL stores the turn as SQLite does.
func TestUpstreamNULDropped(t *testing.T) {
	t.Parallel()
	for _, engine := range storetest.Engines(t) {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			e := &chatEnv{gateway: newGateway(t, gatewayOptions{engine: engine})}
			ctx := context.Background()
			for _, p := range providers {
				e.fake.SetScript(llmtest.Script{Deltas: []string{"a\x00b", "\x00", "c\x00"}})
				resp := e.post(t, ctx, "/ai/chat/stream", e.token, map[string]any{"message": "hi", "model": p.model})
				s := parseTurn(t, allEvents(t, resp.Body))
				if s.text != "abc" || s.err != nil {
					t.Errorf("%s: streamed %q, error %v; want \"abc\"", p.name, s.text, s.err)
				}
				m := e.storedAnswer(t, s.start["conversation_id"].(string))
				if m.Status != ferry.StatusComplete || m.Content != "abc" {
					t.Errorf("%s: stored %s %q, want complete \"abc\"", p.name, m.Status, m.Content)
				}

				resp = e.post(t, ctx, "/ai/chat", e.token, map[string]any{"message": "hi", "model": p.model})
				var out map[string]any
				json.NewDecoder(resp.Body).Decode(&out)
				if resp.StatusCode != 200 || out["text"] != "abc" {
					t.Errorf("%s: /ai/chat %d %v", p.name, resp.StatusCode, out)
				}

				e.fake.SetScript(llmtest.Script{Deltas: []string{"x", "y"}, Break: llmtest.ErrorEvent, BreakAfter: 1, ErrorMessage: "bad\x00news"})
				resp = e.post(t, ctx, "/ai/chat/stream", e.token, map[string]any{"message": "hi", "model": p.model})
				s = parseTurn(t, allEvents(t, resp.Body))
				if s.err == nil || strings.Contains(s.err["message"].(string), "\x00") || !strings.Contains(s.err["message"].(string), "badnews") {
					t.Errorf("%s: error event %v, want the message without NUL", p.name, s.err)
				}
				m = e.storedAnswer(t, s.start["conversation_id"].(string))
				if m.Status != ferry.StatusFailed || m.Content != "x" || !strings.Contains(m.Error, "badnews") {
					t.Errorf("%s: stored %s %q error %q, want failed \"x\" with the message", p.name, m.Status, m.Content, m.Error)
				}
			}
		})
	}
}

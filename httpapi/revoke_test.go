package httpapi_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/llm/llmtest"
	"github.com/ferryhq/ferry/store/storetest"
)

// TestRevokedUsersStreamsEnd checks that disabling or deleting a user ends
// the user's model calls at once: the stream gets an error event, then
// done, and the upstream request is cancelled, instead of the model
// writing on for someone who may no longer use it.
func TestRevokedUsersStreamsEnd(t *testing.T) {
	t.Parallel()
	for _, engine := range storetest.Engines(t) {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			g := newGateway(t, gatewayOptions{engine: engine})
			ctx := context.Background()
			if _, err := g.auth.CreateUser(ctx, "root@example.com", "password123", "", ferry.RoleAdmin); err != nil {
				t.Fatal(err)
			}
			pair, err := g.auth.Login(ctx, "root@example.com", "password123", "127.0.0.1")
			if err != nil {
				t.Fatal(err)
			}
			admin := pair.AccessToken
			for _, tc := range []struct {
				name   string
				revoke func(t *testing.T, userID, token string) *http.Response
			}{
				{"disabled by an admin", func(t *testing.T, userID, _ string) *http.Response {
					return g.send(t, ctx, "PATCH", "/users/"+userID, admin, map[string]any{"disabled": true})
				}},
				{"deleted by an admin", func(t *testing.T, userID, _ string) *http.Response {
					return g.send(t, ctx, "DELETE", "/users/"+userID, admin, nil)
				}},
				{"deleted by themselves", func(t *testing.T, _, token string) *http.Response {
					return g.send(t, ctx, "DELETE", "/users/me", token, nil)
				}},
			} {
				t.Run(tc.name, func(t *testing.T) {
					email := "u" + time.Now().Format("150405.000000000") + "@example.com"
					u, err := g.auth.CreateUser(ctx, email, "password123", "", ferry.RoleUser)
					if err != nil {
						t.Fatal(err)
					}
					pair, err := g.auth.Login(ctx, email, "password123", "127.0.0.1")
					if err != nil {
						t.Fatal(err)
					}
					// An answer that would take 20 s.
					g.fake.SetScript(llmtest.Script{Deltas: llmtest.Deltas(400), Delay: 50 * time.Millisecond})
					// Without the revocation the stream would run 20 s; the
					// test gives up on it after 10.
					sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
					defer cancel()
					resp := g.send(t, sctx, "POST", "/ai/chat/stream", pair.AccessToken, map[string]any{"message": "hi", "model": "claude-sonnet-4-6"})
					if resp.StatusCode != http.StatusOK {
						t.Fatalf("stream: status %d", resp.StatusCode)
					}
					start := time.Now()
					var evs []sseEvent
					revoked := false
					readEvents(t, resp.Body, func(ev sseEvent) bool {
						evs = append(evs, ev)
						if ev.data["text"] != nil && !revoked {
							revoked = true
							if r := tc.revoke(t, u.ID, pair.AccessToken); r.StatusCode >= 300 {
								t.Fatalf("revoking: status %d", r.StatusCode)
							}
						}
						return true
					})
					s := parseTurn(t, evs)
					if s.err == nil || s.err["code"] != string(ferry.Unauthorized) {
						t.Errorf("the stream ended with error %v, want an unauthorized error event", s.err)
					}
					if d := time.Since(start); d > 5*time.Second {
						t.Errorf("the stream ran %v after the user was revoked", d)
					}
					if !g.fake.WaitCancelled(5 * time.Second) {
						t.Error("the upstream request was not cancelled")
					}
				})
			}
		})
	}
}

package httpapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/auth"
)

// TestAdminUsage checks GET /admin/usage: the usage log summed per user,
// provider and model, cut by since and until, errors counted apart from
// cancelled calls, deleted users' calls kept under no user; an admin's
// only.
func TestAdminUsage(t *testing.T) {
	eachEngine(t, options{}, func(t *testing.T, h *harness) {
		admin := h.signUpAdmin(t, "admin@example.com")
		ann := h.signUp(t, "ann@example.com")
		bob := h.signUp(t, "bob@example.com")
		gone := h.signUp(t, "gone@example.com")
		day := time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)
		logged := func(user, provider, model string, in, out int, status ferry.MessageStatus, at time.Time) {
			t.Helper()
			u := &ferry.Usage{ID: auth.NewID(),
				UserID: user, Endpoint: "/ai/chat", Provider: provider, Model: model,
				InputTokens: in, OutputTokens: out, Status: string(status), CreatedAt: at}
			if err := h.store.LogUsage(context.Background(), u); err != nil {
				t.Fatal(err)
			}
		}
		logged(ann.id, "anthropic", "claude-sonnet-4-6", 10, 20, ferry.StatusComplete, day.Add(1*time.Hour))
		logged(ann.id, "anthropic", "claude-sonnet-4-6", 5, 0, ferry.StatusFailed, day.Add(2*time.Hour))
		logged(ann.id, "anthropic", "claude-sonnet-4-6", 7, 3, ferry.StatusCancelled, day.Add(3*time.Hour))
		logged(ann.id, "openai", "gpt-4o-mini", 1, 2, ferry.StatusComplete, day.Add(25*time.Hour))
		logged(bob.id, "anthropic", "claude-sonnet-4-6", 100, 200, ferry.StatusComplete, day.Add(-time.Hour))
		logged(gone.id, "ollama", "llama3.2", 4, 4, ferry.StatusComplete, day.Add(time.Hour))
		if err := h.auth.DeleteUser(context.Background(), gone.id); err != nil {
			t.Fatal(err)
		}

		type row struct {
			UserID       string `json:"user_id"`
			Email        string `json:"email"`
			Provider     string `json:"provider"`
			Model        string `json:"model"`
			Requests     int64  `json:"requests"`
			InputTokens  int64  `json:"input_tokens"`
			OutputTokens int64  `json:"output_tokens"`
			Errors       int64  `json:"errors"`
		}
		usage := func(query string) []row {
			t.Helper()
			res := h.do(t, request{method: "GET", path: "/admin/usage" + query, auth: admin.access})
			if res.status != http.StatusOK {
				t.Fatalf("/admin/usage%s: %d %s", query, res.status, res.body)
			}
			var body struct{ Items []row }
			if err := json.Unmarshal([]byte(res.body), &body); err != nil {
				t.Fatal(err)
			}
			return body.Items
		}
		annClaude := row{ann.id, ann.email, "anthropic", "claude-sonnet-4-6", 3, 22, 23, 1}
		annGPT := row{ann.id, ann.email, "openai", "gpt-4o-mini", 1, 1, 2, 0}
		bobClaude := row{bob.id, bob.email, "anthropic", "claude-sonnet-4-6", 1, 100, 200, 0}
		goneLlama := row{"", "", "ollama", "llama3.2", 1, 4, 4, 0}
		for _, tc := range []struct {
			query string
			want  []row
		}{
			{"", []row{goneLlama, annClaude, annGPT, bobClaude}},
			{"?since=2026-11-30", []row{goneLlama, annClaude, annGPT}},
			{"?since=2026-11-30&until=2026-12-01", []row{goneLlama, annClaude}},
			{"?until=2026-11-30T02:30:00Z", []row{goneLlama, {ann.id, ann.email, "anthropic", "claude-sonnet-4-6", 2, 15, 20, 1}, bobClaude}},
			{"?since=2026-11-30T02:00:00%2B00:00&until=2026-11-30T02:00:00.001Z", []row{{ann.id, ann.email, "anthropic", "claude-sonnet-4-6", 1, 5, 0, 1}}},
			{"?since=2027-01-01", []row{}},
		} {
			got := usage(tc.query)
			if len(got) != len(tc.want) {
				t.Errorf("%q: %+v, want %+v", tc.query, got, tc.want)
				continue
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("%q: row %d is %+v, want %+v", tc.query, i, got[i], tc.want[i])
				}
			}
		}
		h.run(t, []scenario{
			{name: "not for a user", request: request{method: "GET", path: "/admin/usage", auth: ann.access}, status: 403, problem: true},
			{name: "not without credentials", request: request{method: "GET", path: "/admin/usage"}, status: 401, problem: true},
			{name: "a bad since", request: request{method: "GET", path: "/admin/usage?since=yesterday", auth: admin.access}, status: 400,
				problem: true, contains: []string{"since"}},
			{name: "until before since", request: request{method: "GET", path: "/admin/usage?since=2026-12-02&until=2026-12-01", auth: admin.access},
				status: 400, problem: true, contains: []string{"until"}},
		})
	})
}

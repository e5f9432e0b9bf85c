package store_test

import (
	"context"
	"database/sql"
	"strconv"
	"testing"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/config"
	"github.com/ferryhq/ferry/store"
	"github.com/ferryhq/ferry/store/storetest"
)

// TestMigrationFixesStoredNames builds a database as migrations 1 to 4
// left it, with rows as Ferry wrote them then (bare model names, zeros in
// a user's message), and checks what the real Migrate makes of them:
// routed names, and NULL costs for user messages, which the writer also
// stores from then on.
func TestMigrationFixesStoredNames(t *testing.T) {
	for _, engine := range storetest.Engines(t) {
		t.Run(engine, func(t *testing.T) {
			ctx := context.Background()
			d := storetest.Database(t, engine)
			db := rawDB(t, d)
			oldSchema(t, d, db, 4)

			s := migrated(t, d)

			for id, want := range map[string]string{
				"c-bare":    "anthropic/claude-sonnet-4-6", // a bare name, routed to its answer's provider
				"c-default": "ollama/llama3.2",             // no name: the default, as its answer says
				"c-routed":  "ollama/llama3.2",             // already routed
				"c-empty":   "gpt-4o",                      // no answer says where it went
			} {
				c, err := s.Conversation(ctx, "u1", id)
				if err != nil {
					t.Fatal(err)
				}
				if c.Model != want {
					t.Errorf("conversation %s: model %q, want %q", id, c.Model, want)
				}
			}
			msgs, err := s.Messages(ctx, "c-bare")
			if err != nil {
				t.Fatal(err)
			}
			if len(msgs) != 2 {
				t.Fatalf("%d messages, want 2", len(msgs))
			}
			if a := msgs[1]; a.Model != "anthropic/claude-sonnet-4-6" || a.InputTokens != 5 || a.OutputTokens != 7 ||
				a.LatencyMS != 300 || a.FirstTokenMS != 40 {
				t.Errorf("answer after migration: %+v", a)
			}
			if got := costs(t, s, db, "m-bare-q"); got != "NULL NULL NULL NULL" {
				t.Errorf("user message costs after migration: %s, want NULL", got)
			}
			if got := costs(t, s, db, "m-bare-a"); got != "5 7 300 40" {
				t.Errorf("answer costs after migration: %s", got)
			}

			// From now on the writer stores a user's message without costs,
			// and an answer with them.
			q := &ferry.Message{ID: "m-new-q", ConversationID: "c-bare", Role: ferry.RoleUserMsg, Content: "again",
				Status: ferry.StatusComplete, InputTokens: 1}
			a := &ferry.Message{ID: "m-new-a", ConversationID: "c-bare", Role: ferry.RoleAssistant, Content: "",
				Model: "anthropic/claude-sonnet-4-6", Provider: "anthropic", Status: ferry.StatusStreaming}
			if err := s.Submit(store.InsertMessage(q), store.InsertMessage(a)).Wait(ctx); err != nil {
				t.Fatal(err)
			}
			if got := costs(t, s, db, "m-new-q"); got != "NULL NULL NULL NULL" {
				t.Errorf("new user message costs: %s, want NULL", got)
			}
			if got := costs(t, s, db, "m-new-a"); got != "0 0 0 0" {
				t.Errorf("new answer costs: %s, want zeros until it finishes", got)
			}
		})
	}
}

// oldSchema applies the migrations up to version last to the fresh
// database d, as the binary of their time did, and writes the rows of
// that time.
func oldSchema(t *testing.T, d config.Database, db *sql.DB, last int) {
	t.Helper()
	schemaUpTo(t, d, db, last)
	now := time.Now().UTC()
	at := func(n int) time.Time { return now.Add(time.Duration(n) * time.Millisecond) }
	exec(t, db, `INSERT INTO users (id, email, password_hash, created_at, updated_at) VALUES ('u1', 'a@example.com', 'x', $1, $1)`, now)
	for _, c := range []struct{ id, model string }{
		{"c-bare", "claude-sonnet-4-6"}, {"c-default", ""}, {"c-routed", "ollama/llama3.2"}, {"c-empty", "gpt-4o"},
	} {
		exec(t, db, `INSERT INTO conversations (id, user_id, title, model, created_at, updated_at) VALUES ($1, 'u1', 't', $2, $3, $3)`,
			c.id, c.model, now)
	}
	for i, m := range []struct{ id, conv, role, model, provider string }{
		{"m-bare-q", "c-bare", "user", "", ""},
		{"m-bare-a", "c-bare", "assistant", "claude-sonnet-4-6", "anthropic"},
		{"m-default-q", "c-default", "user", "", ""},
		{"m-default-a", "c-default", "assistant", "llama3.2", "ollama"},
		{"m-routed-q", "c-routed", "user", "", ""},
		{"m-routed-a", "c-routed", "assistant", "llama3.2", "ollama"},
	} {
		in, out, latency, first := 0, 0, 0, 0
		if m.role == "assistant" {
			in, out, latency, first = 5, 7, 300, 40
		}
		exec(t, db, `INSERT INTO messages (id, conversation_id, role, content, model, provider, input_tokens, output_tokens,
			stop_reason, status, error, latency_ms, first_token_ms, created_at, updated_at)
			VALUES ($1, $2, $3, 'text', $4, $5, $6, $7, '', 'complete', '', $8, $9, $10, $10)`,
			m.id, m.conv, m.role, m.model, m.provider, in, out, latency, first, at(i))
	}
}

func exec(t *testing.T, db *sql.DB, query string, args ...any) {
	t.Helper()
	if _, err := db.Exec(query, args...); err != nil {
		t.Fatalf("%v\n%s", err, query)
	}
}

// costs returns a message's stored token counts and timings as text,
// NULL for a NULL.
func costs(t *testing.T, s *store.Store, db *sql.DB, id string) string {
	t.Helper()
	if err := s.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	var v [4]sql.NullInt64
	err := db.QueryRow(`SELECT input_tokens, output_tokens, latency_ms, first_token_ms FROM messages WHERE id = $1`, id).
		Scan(&v[0], &v[1], &v[2], &v[3])
	if err != nil {
		t.Fatal(err)
	}
	out := ""
	for i, n := range v {
		if i > 0 {
			out += " "
		}
		if !n.Valid {
			out += "NULL"
			continue
		}
		out += strconv.FormatInt(n.Int64, 10)
	}
	return out
}

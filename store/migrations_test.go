package store_test

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/config"
	"github.com/ferryhq/ferry/store/storetest"
)

// TestUsageLogWithoutRowid builds a SQLite database as migration 13 left
// it, with usage entries, and checks what 0014 makes of it: the same
// entries, in a table without rowids, whose user still becomes NULL when
// the user is deleted and which the writer goes on appending to.
func TestUsageLogWithoutRowid(t *testing.T) {
	ctx := context.Background()
	d := storetest.Database(t, "sqlite")
	db := rawDB(t, d)
	schemaUpTo(t, d, db, 13)
	now := time.Now().UTC().Truncate(time.Millisecond)
	for _, u := range []string{"u1", "u2"} {
		exec(t, db, `INSERT INTO users (id, email, password_hash, created_at, updated_at) VALUES ($1, $2, 'x', $3, $3)`,
			u, u+"@example.com", now)
	}
	for i, e := range []struct {
		id, user string
		cached   bool
	}{{"l1", "u1", false}, {"l2", "u1", true}, {"l3", "u2", false}} {
		exec(t, db, `INSERT INTO usage_log (id, user_id, api_key_id, endpoint, model, provider, input_tokens, output_tokens,
			latency_ms, status, created_at, cached) VALUES ($1, $2, 'k1', 'chat', 'llama3.2', 'ollama', $3, 7, 300, 'complete', $4, $5)`,
			e.id, e.user, 10+i, now.Add(time.Duration(i)*time.Millisecond), e.cached)
	}

	s := migrated(t, d)

	got, err := s.UsageFor(ctx, "u1")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ID != "l1" || got[0].InputTokens != 10 || got[0].Cached || got[0].APIKeyID != "k1" ||
		!got[0].CreatedAt.Equal(now) || got[1].ID != "l2" || !got[1].Cached || got[1].InputTokens != 11 {
		t.Fatalf("u1's usage after the migration: %+v", got)
	}
	if _, err := db.Exec(`SELECT rowid FROM usage_log`); err == nil {
		t.Error("usage_log still has rowids")
	}
	var indexes int
	if err := db.QueryRow(`SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = 'usage_log'`).Scan(&indexes); err != nil {
		t.Fatal(err)
	}
	if indexes != 1 { // usage_log_user_created; the id's is the table itself
		t.Errorf("usage_log has %d indexes, want 1", indexes)
	}

	// The foreign key still holds: a deleted user's entries stay, without
	// their user.
	if err := s.DeleteUser(ctx, "u2"); err != nil {
		t.Fatal(err)
	}
	var orphans int
	if err := db.QueryRow(`SELECT COUNT(*) FROM usage_log WHERE id = 'l3' AND user_id IS NULL`).Scan(&orphans); err != nil {
		t.Fatal(err)
	}
	if orphans != 1 {
		t.Error("a deleted user's usage entry did not keep its row without its user")
	}

	// And the writer appends as before.
	if err := s.LogUsage(ctx, &ferry.Usage{ID: "l4", UserID: "u1", Endpoint: "chat", Status: "complete"}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.UsageFor(ctx, "u1"); err != nil || len(got) != 3 || got[2].ID != "l4" {
		t.Fatalf("u1's usage after a new entry: %+v, %v", got, err)
	}
}

// schemaUpTo applies d's engine's migrations up to version last to db,
// the fresh database d, recording each under its own version, as the
// real Migrate would have left it then.
func schemaUpTo(t *testing.T, d config.Database, db *sql.DB, last int) {
	t.Helper()
	ts := "TIMESTAMP"
	if d.Driver == "postgres" {
		ts = "TIMESTAMPTZ"
	}
	exec(t, db, `CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at `+ts+` NOT NULL)`)
	files, err := filepath.Glob(filepath.Join("migrations", d.Driver, "*.sql"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		num, name, _ := strings.Cut(strings.TrimSuffix(filepath.Base(f), ".sql"), "_")
		v, err := strconv.Atoi(num)
		if err != nil {
			t.Fatal(err)
		}
		if v > last {
			continue
		}
		body, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		exec(t, db, string(body))
		exec(t, db, `INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)`, v, name, time.Now().UTC())
	}
}

// TestAscendingIndexes: on SQLite, the indexes that list a user's
// conversations and jobs newest first are ascending (new entries append),
// and the listing reads conversations_user_updated backwards, without
// sorting, newest first.
func TestAscendingIndexes(t *testing.T) {
	ctx := context.Background()
	s, d := openDB(t, "sqlite")
	db := rawDB(t, d)
	for _, index := range []string{"conversations_user_updated", "chat_jobs_user"} {
		var desc int
		if err := db.QueryRow(`SELECT COALESCE(SUM("desc"), -1) FROM pragma_index_xinfo($1) WHERE key`, index).Scan(&desc); err != nil {
			t.Fatal(err)
		}
		if desc != 0 {
			t.Errorf("%s: %d descending columns (-1: no such index), want none", index, desc)
		}
	}
	rows, err := db.Query(`EXPLAIN QUERY PLAN SELECT id FROM conversations WHERE user_id = 'u1'
		ORDER BY updated_at DESC, id DESC LIMIT 10 OFFSET 0`)
	if err != nil {
		t.Fatal(err)
	}
	var plan []string
	for rows.Next() {
		var id, parent, notused int
		var detail string
		if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	rows.Close()
	if p := strings.Join(plan, "; "); !strings.Contains(p, "INDEX conversations_user_updated") || strings.Contains(p, "TEMP B-TREE") {
		t.Errorf("listing a user's conversations: plan %q, want conversations_user_updated without a sort", p)
	}

	now := time.Now().UTC()
	exec(t, db, `INSERT INTO users (id, email, password_hash, created_at, updated_at) VALUES ('u1', 'a@example.com', 'x', $1, $1)`, now)
	for i, id := range []string{"c-old", "c-new", "c-mid"} {
		at := now.Add(time.Duration([]int{0, 2, 1}[i]) * time.Second)
		exec(t, db, `INSERT INTO conversations (id, user_id, title, model, created_at, updated_at) VALUES ($1, 'u1', 't', '', $2, $2)`, id, at)
	}
	list, total, err := s.Conversations(ctx, "u1", ferry.Page{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range list {
		got = append(got, c.ID)
	}
	if total != 3 || strings.Join(got, ",") != "c-new,c-mid,c-old" {
		t.Errorf("conversations: %v of %d, want c-new,c-mid,c-old", got, total)
	}
}

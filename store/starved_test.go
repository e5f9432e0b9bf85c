package store

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
)

// A checkpointer whose own checkpoints never catch up (here it has no
// goroutine at all) leaves the writer to checkpoint after
// checkpointStarved commits, on the write connection, between two of
// them: the WAL then starts over.
func TestStarvedCheckpoints(t *testing.T) {
	ctx := context.Background()
	dsn := "file:" + filepath.Join(t.TempDir(), "t.db") + "?_pragma=journal_mode(WAL)&_pragma=wal_autocheckpoint(0)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, "CREATE TABLE t (v TEXT)"); err != nil {
		t.Fatal(err)
	}
	c := &checkpointer{write: db, poke: make(chan struct{}, 1)}
	for range checkpointStarved {
		if _, err := db.ExecContext(ctx, "INSERT INTO t VALUES ('x')"); err != nil {
			t.Fatal(err)
		}
		c.committed()
	}
	if c.behind.Load() != 0 || c.caught.Load() != 1 {
		t.Fatalf("after %d commits: %d behind, %d caught up; want the writer's own checkpoint", checkpointStarved, c.behind.Load(), c.caught.Load())
	}
	if _, err := db.ExecContext(ctx, "INSERT INTO t VALUES ('x')"); err != nil {
		t.Fatal(err)
	}
	// Read after the fact by one more checkpoint: the WAL's frames are a
	// commit's, not all of them.
	var busy, frames, copied int
	if err := db.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &frames, &copied); err != nil {
		t.Fatal(err)
	}
	if frames > 2 {
		t.Fatalf("%d frames in the WAL after the next commit, want it started over", frames)
	}
}

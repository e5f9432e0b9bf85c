package store_test

import (
	"os"
	"testing"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/store"
)

// TestSQLiteCheckpoints checks that SQLite's WAL is copied back by the
// store's checkpointer rather than by a commit, and that the WAL then
// starts over: a second run of commits as long as the first leaves its
// file as large as it was, where without a checkpoint it would double.
func TestSQLiteCheckpoints(t *testing.T) {
	s, d := openDB(t, "sqlite")
	newUser(t, s, "u1", "a@example.com")
	c := newConversation(t, s, "u1")
	commit := func(n int) {
		for range n {
			if err := s.Submit(store.InsertMessage(message(c.ID, ferry.RoleUserMsg, ferry.StatusComplete))).Wait(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	walSize := func() int64 {
		fi, err := os.Stat(d.DSN + "-wal")
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	caughtUp := func() {
		t.Helper()
		// Two, so that one began after the last commit.
		want := s.WriteStats().CaughtUp + 2
		for deadline := time.Now().Add(10 * time.Second); s.WriteStats().CaughtUp < want; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%d checkpoints caught up with the WAL in 10 s, want %d", s.WriteStats().CaughtUp, want)
			}
		}
	}

	caughtUp()
	commit(150)
	caughtUp()
	first := walSize()
	commit(150)
	if got := walSize(); got > first+first/4 {
		t.Fatalf("the WAL grew from %d to %d bytes over a second run of commits: it did not start over", first, got)
	}
	t.Logf("WAL %d bytes after 150 commits, twice", first)
}

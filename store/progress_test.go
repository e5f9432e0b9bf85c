package store_test

import (
	"testing"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/config"
	"github.com/ferryhq/ferry/store"
)

// staleIDs returns the ids of the streaming answers last written before
// before.
func staleIDs(t *testing.T, s *store.Store, before time.Time) []string {
	t.Helper()
	list, err := s.StaleAnswers(ctx, before, 100)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range list {
		ids = append(ids, m.ID)
	}
	return ids
}

// A streaming answer's text is saved as it grows, each save shows the
// stream alive, and only an answer left alone long enough is marked
// interrupted.
func TestStreamingProgress(t *testing.T) {
	eachDB(t, func(t *testing.T, s *store.Store, _ config.Database) {
		newUser(t, s, "u1", "a@example.com")
		c := newConversation(t, s, "u1")
		hourAgo := time.Now().UTC().Add(-time.Hour)
		answer := &ferry.Message{ID: id("m"), ConversationID: c.ID, Role: ferry.RoleAssistant, Status: ferry.StatusStreaming, CreatedAt: hourAgo}
		silent := &ferry.Message{ID: id("m"), ConversationID: c.ID, Role: ferry.RoleAssistant, Status: ferry.StatusStreaming, CreatedAt: hourAgo.Add(time.Second)}
		if err := s.Submit(store.InsertMessage(answer), store.InsertMessage(silent)).Wait(ctx); err != nil {
			t.Fatal(err)
		}
		halfHourAgo := time.Now().Add(-30 * time.Minute)
		if ids := staleIDs(t, s, halfHourAgo); len(ids) != 2 || ids[0] != answer.ID || ids[1] != silent.ID {
			t.Fatalf("stale answers %v, want both, oldest first", ids)
		}

		if err := s.Submit(store.SaveProgress(answer.ID, "Hel"), store.SaveProgress(answer.ID, "lo"), store.TouchMessages(silent.ID)).Wait(ctx); err != nil {
			t.Fatal(err)
		}
		list := mustMessages(t, s, c.ID)
		if list[0].Content != "Hello" || list[0].Status != ferry.StatusStreaming {
			t.Fatalf("after progress: %+v", list[0])
		}
		if ids := staleIDs(t, s, halfHourAgo); len(ids) != 0 {
			t.Fatalf("stale answers %v after saves, want none", ids)
		}

		// Interrupting one written since the cut-off leaves it streaming.
		done := *answer
		done.InputTokens, done.OutputTokens = 12, 2
		if err := s.Submit(store.InterruptMessage(&done, halfHourAgo)).Wait(ctx); err != nil {
			t.Fatal(err)
		}
		if got := mustMessages(t, s, c.ID)[0]; got.Status != ferry.StatusStreaming {
			t.Fatalf("a live answer was marked %s", got.Status)
		}
		now := time.Now().Add(time.Second)
		if err := s.Submit(store.InterruptMessage(&done, now)).Wait(ctx); err != nil {
			t.Fatal(err)
		}
		got := mustMessages(t, s, c.ID)[0]
		if got.Status != ferry.StatusInterrupted || got.Content != "Hello" || got.InputTokens != 12 || got.OutputTokens != 2 {
			t.Fatalf("interrupted answer: %+v", got)
		}
		// Neither a late save nor a second sweep touches it now.
		if err := s.Submit(store.SaveProgress(answer.ID, " world"), store.InterruptMessage(&ferry.Message{ID: answer.ID}, now)).Wait(ctx); err != nil {
			t.Fatal(err)
		}
		if got := mustMessages(t, s, c.ID)[0]; got.Content != "Hello" || got.OutputTokens != 2 {
			t.Fatalf("a finished answer changed: %+v", got)
		}
		if ids := staleIDs(t, s, now); len(ids) != 1 || ids[0] != silent.ID {
			t.Fatalf("stale answers %v, want only the silent one", ids)
		}
		// A save for a message that is gone fails nothing.
		if err := s.Submit(store.SaveProgress("no-such-message", "x"), store.TouchMessages("no-such-message")).Wait(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

// The usage of a call whose user was deleted while it ran is kept, with
// no user, instead of failing its foreign key.
func TestUsageOfDeletedUserIsKept(t *testing.T) {
	eachDB(t, func(t *testing.T, s *store.Store, d config.Database) {
		newUser(t, s, "u1", "a@example.com")
		kept := usage("u1")
		if err := s.DeleteUser(ctx, "u1"); err != nil {
			t.Fatal(err)
		}
		if err := s.Submit(store.InsertUsage(kept)).Wait(ctx); err != nil {
			t.Fatalf("usage of a deleted user: %v", err)
		}
		var n int
		if err := rawDB(t, d).QueryRow(`SELECT COUNT(*) FROM usage_log WHERE id = $1 AND user_id IS NULL`, kept.ID).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Fatal("the usage entry of a deleted user is not in the log with no user")
		}
		// A user who exists is still recorded as such.
		newUser(t, s, "u2", "b@example.com")
		if err := s.LogUsage(ctx, usage("u2")); err != nil {
			t.Fatal(err)
		}
		if n := len(mustUsage(t, s, "u2")); n != 1 {
			t.Fatalf("%d usage entries for u2, want 1", n)
		}
	})
}

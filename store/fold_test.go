package store

import (
	"testing"
	"time"

	"github.com/ferryhq/ferry"
)

func TestFoldTouches(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	at := func(us int) time.Time { return t0.Add(time.Duration(us) * time.Microsecond) }
	msg := func(id, conv string, us int) Op {
		return InsertMessage(&ferry.Message{ID: id, ConversationID: conv, Role: ferry.RoleUserMsg, CreatedAt: at(us)})
	}
	steps := func(ops ...Op) []step {
		var s []step
		for _, op := range ops {
			s = op.appendSteps(s)
		}
		return foldTouches(s)
	}
	kinds := func(s []step) []int {
		k := make([]int, len(s))
		for i, st := range s {
			k[i] = st.stmt
		}
		return k
	}
	same := func(a, b []int) bool {
		if len(a) != len(b) {
			return false
		}
		for i := range a {
			if a[i] != b[i] {
				return false
			}
		}
		return true
	}

	// A new conversation's turn: the conversation takes the answer's time
	// as its updated_at, and neither touch is run.
	s := steps(InsertConversation(&ferry.Conversation{ID: "c1", UserID: "u", CreatedAt: at(0), UpdatedAt: at(0)}),
		msg("m1", "c1", 0), msg("m2", "c1", 1))
	if want := []int{stmtInsertConversation, stmtInsertMessage, stmtInsertMessage}; !same(kinds(s), want) {
		t.Fatalf("new conversation: steps %v, want %v", kinds(s), want)
	}
	if got := s[0].args[5].(time.Time); !got.Equal(at(1)) {
		t.Errorf("new conversation: updated_at %v, want the answer's %v", got, at(1))
	}

	// An existing conversation: only the last touch is run, with its time.
	s = steps(msg("m1", "c1", 0), msg("m2", "c1", 1), msg("m3", "c2", 2))
	if want := []int{stmtInsertMessage, stmtInsertMessage, stmtTouchConversation, stmtInsertMessage, stmtTouchConversation}; !same(kinds(s), want) {
		t.Fatalf("existing conversations: steps %v, want %v", kinds(s), want)
	}
	if got := s[2].args[0].(time.Time); !got.Equal(at(1)) {
		t.Errorf("existing conversation: touched at %v, want %v", got, at(1))
	}

	// A finish between a conversation's insert and its touch sets
	// updated_at itself: the touch after it must still run.
	s = steps(InsertConversation(&ferry.Conversation{ID: "c1", UserID: "u", CreatedAt: at(0), UpdatedAt: at(0)}),
		FinishMessage(&ferry.Message{ID: "m0"}), msg("m1", "c1", 5))
	if want := []int{stmtInsertConversation, stmtFinishMessage, stmtTouchMessageConversation, stmtInsertMessage, stmtTouchConversation}; !same(kinds(s), want) {
		t.Fatalf("finish between: steps %v, want %v", kinds(s), want)
	}
	if got := s[0].args[5].(time.Time); !got.Equal(at(0)) {
		t.Errorf("finish between: the insert's updated_at became %v", got)
	}
}

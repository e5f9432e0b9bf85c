package chat

import (
	"strings"
	"testing"

	"github.com/ferryhq/ferry"
)

func msg(role ferry.MessageRole, content string, status ferry.MessageStatus) *ferry.Message {
	return &ferry.Message{Role: role, Content: content, Status: status}
}

func TestHistoryDropsOldestToFitBudget(t *testing.T) {
	long := strings.Repeat("word ", 40) // 200 ASCII characters: 50 tokens
	earlier := []*ferry.Message{
		msg(ferry.RoleUserMsg, "first "+long, ferry.StatusComplete),
		msg(ferry.RoleAssistant, "answer one "+long, ferry.StatusComplete),
		msg(ferry.RoleUserMsg, "second", ferry.StatusComplete),
		msg(ferry.RoleAssistant, "", ferry.StatusFailed),
		msg(ferry.RoleUserMsg, "third", ferry.StatusComplete),
		msg(ferry.RoleAssistant, "answer three", ferry.StatusCancelled),
	}
	for _, tc := range []struct {
		budget int
		want   []string // contents, oldest first
	}{
		{1000, []string{"first " + long, "answer one " + long, "second", "third", "answer three", "now"}},
		// Room for the newest few only: the oldest go first, and a history
		// never starts with an assistant message.
		{60, []string{"second", "third", "answer three", "now"}},
		{5, []string{"now"}},
	} {
		got := History(earlier, "now", tc.budget)
		var contents []string
		for _, m := range got {
			contents = append(contents, m.Text())
		}
		if strings.Join(contents, "|") != strings.Join(tc.want, "|") {
			t.Errorf("budget %d: got %q, want %q", tc.budget, contents, tc.want)
		}
		if got[0].Role != "user" || got[len(got)-1].Text() != "now" {
			t.Errorf("budget %d: history must start with a user message and end with the new one: %+v", tc.budget, got)
		}
	}
}

func TestEstimateTokens(t *testing.T) {
	for text, want := range map[string]int{"": 0, "abcd": 1, "abcde": 2, "中文": 2, "hi 中文": 3} {
		if got := EstimateTokens(text); got != want {
			t.Errorf("EstimateTokens(%q) = %d, want %d", text, got, want)
		}
	}
}

func TestTitle(t *testing.T) {
	for in, want := range map[string]string{
		"  hello   world \nsecond line": "hello world",
		strings.Repeat("word ", 20):     strings.TrimSpace(strings.Repeat("word ", 12)) + "…",
		strings.Repeat("字", 70):         strings.Repeat("字", 60) + "…",
	} {
		if got := Title(in); got != want {
			t.Errorf("Title(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestHistoryKeepsCutOffAnswers checks that an answer cut off before its
// end (by a restart, a crash, a failure, or still being written) is sent
// with the text it holds, so the model sees what it said and the user's
// messages around it do not follow each other; only an answer without
// text is left out.
func TestHistoryKeepsCutOffAnswers(t *testing.T) {
	earlier := []*ferry.Message{
		msg(ferry.RoleUserMsg, "q1", ferry.StatusComplete),
		msg(ferry.RoleAssistant, "half an answer", ferry.StatusInterrupted),
		msg(ferry.RoleUserMsg, "q2", ferry.StatusComplete),
		msg(ferry.RoleAssistant, "being written", ferry.StatusStreaming),
		msg(ferry.RoleUserMsg, "q3", ferry.StatusComplete),
		msg(ferry.RoleAssistant, "", ferry.StatusFailed),
		msg(ferry.RoleUserMsg, "q4", ferry.StatusComplete),
		msg(ferry.RoleAssistant, "cut off by an error", ferry.StatusFailed),
		msg(ferry.RoleUserMsg, "q5", ferry.StatusComplete),
		msg(ferry.RoleAssistant, "stopped", ferry.StatusCancelled),
	}
	var contents []string
	for _, m := range History(earlier, "now", 1000) {
		contents = append(contents, m.Role+":"+m.Text())
	}
	want := []string{"user:q1", "assistant:half an answer", "user:q2", "assistant:being written", "user:q3",
		"user:q4", "assistant:cut off by an error", "user:q5", "assistant:stopped", "user:now"}
	if strings.Join(contents, "|") != strings.Join(want, "|") {
		t.Errorf("got %q\nwant %q", contents, want)
	}
}

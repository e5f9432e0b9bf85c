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

package chat

import (
	"strings"
	"unicode/utf8"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/llm"
)

// EstimateTokens guesses how many tokens text is: four ASCII characters a
// token, and a token for each character of other scripts, which is close
// for English and Chinese alike. No tokenizer ships with Ferry (none can be
// downloaded at run time), and the budget only needs to be roughly right.
func EstimateTokens(text string) int {
	ascii, other := 0, 0
	for _, r := range text {
		if r < utf8.RuneSelf {
			ascii++
		} else {
			other++
		}
	}
	return (ascii+3)/4 + other
}

// History builds the messages to send for a turn: the earlier messages that
// fit in budget (estimated tokens), newest kept first, then the new message,
// which is always sent. An answer is sent with whatever text it holds,
// however it ended (cancelled, interrupted by a restart or crash, cut off
// by a failure, or still streaming), so that the model sees what it said
// and two user messages follow each other only where the answer between
// them holds no text. The history starts with a user message, as providers
// require.
func History(earlier []*ferry.Message, message string, budget int) []llm.Message {
	budget -= EstimateTokens(message)
	start := len(earlier)
	for i := len(earlier) - 1; i >= 0; i-- {
		m := earlier[i]
		if m.Content == "" {
			continue
		}
		cost := EstimateTokens(m.Content)
		if cost > budget {
			break
		}
		budget -= cost
		start = i
	}
	out := make([]llm.Message, 0, len(earlier)-start+1)
	for _, m := range earlier[start:] {
		if m.Content == "" || m.Role == ferry.RoleSystem {
			continue
		}
		if len(out) == 0 && m.Role != ferry.RoleUserMsg {
			continue
		}
		out = append(out, llm.TextMessage(string(m.Role), m.Content))
	}
	return append(out, llm.TextMessage(string(ferry.RoleUserMsg), message))
}

// Title makes a conversation title from its first message: the first line,
// cut at a word boundary to at most 60 characters.
func Title(message string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(message), "\n")
	line = strings.Join(strings.Fields(line), " ")
	const max = 60
	if utf8.RuneCountInString(line) <= max {
		return line
	}
	r := []rune(line)[:max]
	if i := strings.LastIndexByte(string(r), ' '); i > max/2 {
		return string(r)[:i] + "…"
	}
	return string(r) + "…"
}

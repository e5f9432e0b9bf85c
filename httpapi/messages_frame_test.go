package httpapi

import (
	"testing"

	"github.com/ferryhq/ferry/llm"
)

// TestMessagesDeltaFrameMatchesEncodingJSON checks the fast frame of a
// content_block_delta against encoding/json's, on text that needs every
// kind of escape.
func TestMessagesDeltaFrameMatchesEncodingJSON(t *testing.T) {
	for _, text := range []string{"", "plain", "第一行\n第二行", "\"quoted\" \\ back", "event: ping\ndata: {}\n\n",
		"tab\tcr\r\x00\x1f\x7f", "bad \xff utf8 \xc3", "line\u2028sep\u2029", "<html> & 'amp'", "emoji 🚀"} {
		var f sseFrames
		var cd contentBlockDelta
		cd.Type, cd.Delta.Type, cd.Delta.Text = "content_block_delta", "text_delta", text
		want := string(f.named(nil, "content_block_delta", cd))
		got := string((&messagesDialect{}).text(nil, llm.Delta{Text: text}, false))
		if got != want {
			t.Errorf("%q:\n got %q\nwant %q", text, got, want)
		}
	}
}

// BenchmarkMessagesDelta is what one streamed text delta costs in
// Anthropic's events, against OpenAI's chunks.
func BenchmarkMessagesDelta(b *testing.B) {
	d := llm.Delta{Text: "a delta of some twenty"}
	for _, tc := range []struct {
		name string
		d    dialect
	}{{"anthropic", &messagesDialect{id: "msg_1", model: "m"}}, {"openai", newChunkDialect(&completion{id: "chatcmpl-1", model: "m"})}} {
		b.Run(tc.name, func(b *testing.B) {
			buf := tc.d.text(nil, d, true)
			b.ReportAllocs()
			for b.Loop() {
				buf = tc.d.text(buf[:0], d, false)
			}
		})
	}
}

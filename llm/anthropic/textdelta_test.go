package anthropic

import (
	"encoding/json"
	"testing"
)

// TestTextDelta checks the hot path against the full decode, and that it
// leaves every other event and spelling to the full decode.
func TestTextDelta(t *testing.T) {
	for _, data := range []string{
		`{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}`,
		`{"type":"content_block_delta","index":12,"delta":{"type":"text_delta","text":"第一行\n\"二\" \ud83d\ude80"}}`,
		`{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":""}}` + "\n",
	} {
		var ev event
		if err := json.Unmarshal([]byte(data), &ev); err != nil {
			t.Fatal(err)
		}
		text, ok := textDelta([]byte(data))
		if !ok || text != ev.Delta.Text {
			t.Errorf("%s: got %q, %v; want %q", data, text, ok, ev.Delta.Text)
		}
	}
	for _, data := range []string{
		`{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\"a\""}}`,
		`{"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "spaced"}}`,
		`{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"x","extra":1}}`,
		`{"type":"content_block_delta","index":,"delta":{"type":"text_delta","text":"x"}}`,
		`{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":3}}`,
	} {
		if _, ok := textDelta([]byte(data)); ok {
			t.Errorf("%s: taken by the hot path", data)
		}
	}
}

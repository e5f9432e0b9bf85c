package anthropic

import (
	"encoding/json"
	"strings"
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

// TestFlatEvents holds the flat reading of an answer's own events (the
// ones every answer has, read with llm.WalkJSON) to what the full decode
// makes of them, event after event, as a stream reads them.
func TestFlatEvents(t *testing.T) {
	p := New(Config{APIKey: "k"})
	for _, events := range [][][2]string{
		{
			{"message_start", `{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-6","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"cache_creation_input_tokens":3,"cache_read_input_tokens":7,"output_tokens":1}}}`},
			{"content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`},
			{"content_block_stop", `{"type":"content_block_stop","index":0}`},
			{"message_delta", `{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}`},
			{"message_stop", `{"type":"message_stop"}`},
		},
		{
			{"message_start", `{"type":"message_start","message":{"model":"m\u00e9 \"q\"","usage":{"input_tokens":4,"output_tokens":0}}}`},
			{"message_delta", `{"type":"message_delta","delta":{"stop_reason":"max_tokens"},"usage":{"input_tokens":9,"cache_read_input_tokens":2,"output_tokens":0}}`},
			{"message_delta", `{"type":"message_delta","delta":{"stop_reason":null},"usage":null}`},
			{"message_stop", `{"type":"message_stop","extra":{"nested":[1,{"a":"b"}]}}`},
		},
		{
			{"message_start", `{"type":"message_start","message":{"usage":{}}}`},
			{"message_delta", `{"type":"message_delta","delta":{"stop_reason":"end_turn"}}`},
			{"message_delta", `{"type":"message_delta"}`},
			{"message_start", `{"type":"message_start","message":{"model":"again"},"usage":{"input_tokens":99}}`},
			{"message_delta", `{"type":"message_delta","message":{"usage":{"output_tokens":98}},"usage":{"output_tokens":5}}`},
			{"message_start", `{"type":"message_start"}`},
		},
	} {
		flat, full := answer{}, answer{}
		for _, ev := range events {
			errFlat := p.event(&flat, []byte(ev[0]), []byte(ev[1]), false, nil)
			// Unnamed, the event takes the full decode.
			errFull := p.event(&full, nil, []byte(ev[1]), false, nil)
			if (errFlat != nil) != (errFull != nil) {
				t.Fatalf("%s: flat %v, full %v", ev[1], errFlat, errFull)
			}
			if flat != full {
				t.Errorf("after %s:\nflat %+v\nfull %+v", ev[1], flat, full)
			}
		}
	}
	for _, bad := range []string{`{"type":"message_start","message":`, `{"type":"message_delta"}}`, `not json`} {
		if err := p.event(&answer{}, []byte("message_delta"), []byte(bad), false, nil); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
	// An event named as an answer's own that says it is an error is one.
	err := p.event(&answer{}, []byte("message_delta"), []byte(`{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`), false, nil)
	if err == nil || !strings.Contains(err.Error(), "Overloaded") {
		t.Errorf("error as message_delta: %v", err)
	}
}

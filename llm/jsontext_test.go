package llm_test

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/ferryhq/ferry/llm"
)

// TestCutJSONString checks the hot-path string reader against
// encoding/json on every kind of escape, and that it refuses what is not a
// whole valid string rather than guess.
func TestCutJSONString(t *testing.T) {
	for _, raw := range []string{
		`"plain"`, `""`, `"第一行\n第二行"`, `"\"q\" \\ \/ \b\f\r\t"`, `"\u00e9\u4e2d"`, `"\ud83d\ude80 rocket"`,
		`"lone \ud83d half"`, `"\u2028"`, `"emoji 🚀"`,
	} {
		var want string
		if err := json.Unmarshal([]byte(raw), &want); err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		got, rest, ok := llm.CutJSONString([]byte(raw + `}}`))
		if !ok || got != want || string(rest) != "}}" {
			t.Errorf("%s: got %q, rest %q, ok %v; want %q", raw, got, rest, ok, want)
		}
	}
	for _, bad := range []string{``, `plain`, `"unterminated`, `"bad \x escape"`, "\"raw\ncontrol\"", `"\u12"`, "\"\xff\""} {
		if _, _, ok := llm.CutJSONString([]byte(bad)); ok {
			t.Errorf("%q: ok, want refused", bad)
		}
	}
}

func TestWalkJSON(t *testing.T) {
	type leaf struct {
		path string
		v    any
	}
	walk := func(data string) ([]leaf, error) {
		var got []leaf
		err := llm.WalkJSON([]byte(data), func(path string, v json.Token) {
			got = append(got, leaf{path, v})
		})
		return got, err
	}
	got, err := walk(`{"type":"message_start","message":{"model":"m","content":[],"usage":{"input_tokens":12,"output_tokens":1}},` +
		`"choices":[{"delta":{"content":"a"},"finish_reason":null},{"delta":{"content":"b\u00e9"}}],"list":[[1,2],{"k":true}],"e":{}}`)
	if err != nil {
		t.Fatal(err)
	}
	want := []leaf{
		{"type", "message_start"}, {"message.model", "m"},
		{"message.usage.input_tokens", json.Number("12")}, {"message.usage.output_tokens", json.Number("1")},
		{"choices.0.delta.content", "a"}, {"choices.0.finish_reason", nil}, {"choices.1.delta.content", "bé"},
		{"list.0.0", json.Number("1")}, {"list.0.1", json.Number("2")}, {"list.1.k", true},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %v\nwant %v", got, want)
	}
	if got, err := walk(`"top"`); err != nil || !reflect.DeepEqual(got, []leaf{{"", "top"}}) {
		t.Errorf("a top-level string: %v, %v", got, err)
	}
	for _, bad := range []string{``, `{`, `{"a":}`, `{"a":1,}`, `[1 2]`, `{"a":1} {}`, `{"a":1}x`, `{1:2}`} {
		if _, err := walk(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

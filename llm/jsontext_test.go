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
	type leaf struct{ path, raw string }
	walk := func(data string) ([]leaf, error) {
		var got []leaf
		err := llm.WalkJSON([]byte(data), func(path, raw []byte) {
			got = append(got, leaf{string(path), string(raw)})
		})
		return got, err
	}
	got, err := walk(` {"type":"message_start","message":{"model":"m","content":[],"usage":{"input_tokens":12,"output_tokens":-1.5e+3}},` +
		"\n\t" + `"choices" : [ {"delta":{"content":"a\"b"},"finish_reason":null},{"delta":{"content":"b\u00e9"}}],"list":[[1,2],{"k":true},false],"e":{},"k\u00e9y":0} `)
	if err != nil {
		t.Fatal(err)
	}
	want := []leaf{
		{"type", `"message_start"`}, {"message.model", `"m"`},
		{"message.usage.input_tokens", "12"}, {"message.usage.output_tokens", "-1.5e+3"},
		{"choices.0.delta.content", `"a\"b"`}, {"choices.0.finish_reason", "null"}, {"choices.1.delta.content", `"b\u00e9"`},
		{"list.0.0", "1"}, {"list.0.1", "2"}, {"list.1.k", "true"}, {"list.2", "false"}, {"kéy", "0"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %v\nwant %v", got, want)
	}
	if got, err := walk(`"top"`); err != nil || !reflect.DeepEqual(got, []leaf{{"", `"top"`}}) {
		t.Errorf("a top-level string: %v, %v", got, err)
	}
	// Whatever encoding/json refuses, WalkJSON refuses.
	for _, bad := range []string{``, ` `, `{`, `{"a":}`, `{"a":1,}`, `[1 2]`, `[1,]`, `{"a":1} {}`, `{"a":1}x`, `{1:2}`, `{"a" 1}`,
		`{"a":[}`, `[}`, `{]`, `"\x"`, `"a`, "\"\x01\"", `01`, `1.`, `.5`, `-`, `1e`, `tru`, `nul`, `{"a":"\ud83d`, `"\u12"`, `"\u12zz"`} {
		if json.Valid([]byte(bad)) {
			t.Fatalf("%q is valid JSON", bad)
		}
		if _, err := walk(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	for _, good := range []string{`{}`, `[]`, `[[]]`, `{"a":{}}`, `0`, `-0.0e-0`, `"\ud83d\ude80"`, `null`, "\"\xff\""} {
		if _, err := walk(good); err != nil {
			t.Errorf("%q: %v", good, err)
		}
	}
}

// FuzzWalkJSON holds WalkJSON to encoding/json on what is JSON.
func FuzzWalkJSON(f *testing.F) {
	for _, s := range []string{`{"a":[1,{"b":"c"}],"d":null}`, `[true,false,-1.5e3,"x\n"]`, `{"a":}`, `"\ud83d"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := llm.WalkJSON([]byte(s), func(path, raw []byte) {
			if !json.Valid(raw) {
				t.Errorf("%q: leaf %q at %q is not JSON", s, raw, path)
			}
		})
		if valid := json.Valid([]byte(s)); valid != (err == nil) {
			t.Errorf("%q: encoding/json says valid %v, WalkJSON %v", s, valid, err)
		}
	})
}

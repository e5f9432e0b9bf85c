package llm_test

import (
	"encoding/json"
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

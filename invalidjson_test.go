package ferry

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// TestInvalidJSON checks where InvalidJSON says a body stopped being
// JSON, for json.Unmarshal's errors and a json.Decoder's, and that it
// leaves other errors alone.
func TestInvalidJSON(t *testing.T) {
	unmarshal := func(body string) error {
		var v any
		return json.Unmarshal([]byte(body), &v)
	}
	decode := func(body string) error {
		var v map[string]string
		return json.NewDecoder(strings.NewReader(body)).Decode(&v)
	}
	for _, tc := range []struct {
		name, body string
		decode     func(string) error
		want       string // "" for nil
	}{
		{"trailing comma", `{"a": 1,}`, unmarshal, "invalid JSON at byte 9: invalid character '}' looking for beginning of object key string"},
		{"inside a literal", `trxe`, unmarshal, "invalid JSON at byte 3: invalid character 'x' in literal true (expecting 'u')"},
		{"form body", `a=1`, unmarshal, "invalid JSON at byte 1: invalid character 'a' looking for beginning of value"},
		{"cut short", `{"a": 1`, unmarshal, "invalid JSON at byte 7: the body ends before the JSON does"},
		{"cut short, decoder", `{"a": "b"`, decode, "invalid JSON at byte 9: the body ends before the JSON does"},
		{"several lines", "{\n  \"a\": 1\n  \"b\": 2\n}", unmarshal, "invalid JSON at byte 14 (line 3, column 3): invalid character '\"' after object key:value pair"},
		{"columns count characters", "[\n\"é\" x]", unmarshal, "invalid JSON at byte 8 (line 2, column 5): invalid character 'x' after array element"},
		{"a type error is no syntax error", `{"a": 1}`, decode, ""},
		{"no error", `{}`, unmarshal, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.decode(tc.body)
			fe := InvalidJSON([]byte(tc.body), err)
			if tc.want == "" {
				if fe != nil {
					t.Errorf("InvalidJSON(%v) = %v, want nil", err, fe)
				}
				return
			}
			if fe == nil || fe.Code != Invalid || fe.Message != tc.want || !errors.Is(fe, err) {
				t.Errorf("InvalidJSON(%v) = %#v, want Invalid %q wrapping the cause", err, fe, tc.want)
			}
		})
	}
}

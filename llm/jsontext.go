package llm

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// CutJSONString reads the JSON string that b starts with (its opening
// quote first) and returns its value and what follows the closing quote.
// ok is false when b does not start with a whole, valid JSON string; the
// caller then decodes b in full. It lets a stream's hot path read the one
// field it needs from events of a known shape without a reflective decode.
func CutJSONString(b []byte) (s string, rest []byte, ok bool) {
	if len(b) == 0 || b[0] != '"' {
		return "", nil, false
	}
	// The common case: no escapes, so the value is the bytes as they are.
	for i := 1; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			if !utf8.Valid(b[1:i]) {
				return "", nil, false
			}
			return string(b[1:i]), b[i+1:], true
		case c == '\\' || c < 0x20:
			return cutEscaped(b)
		}
	}
	return "", nil, false
}

// cutEscaped is CutJSONString for a string with escapes.
func cutEscaped(b []byte) (string, []byte, bool) {
	out := make([]byte, 0, len(b))
	for i := 1; i < len(b); {
		c := b[i]
		switch {
		case c == '"':
			if !utf8.Valid(out) {
				return "", nil, false
			}
			return string(out), b[i+1:], true
		case c < 0x20:
			return "", nil, false
		case c != '\\':
			out = append(out, c)
			i++
			continue
		}
		if i+1 >= len(b) {
			return "", nil, false
		}
		switch b[i+1] {
		case '"', '\\', '/':
			out = append(out, b[i+1])
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := hex4(b[i+2:])
			if !ok {
				return "", nil, false
			}
			i += 6
			if utf16.IsSurrogate(r) {
				// A pair is two escapes; a lone half is U+FFFD, as
				// encoding/json decodes it.
				if r2, ok := hex4(b[min(i+2, len(b)):]); ok && bytes.HasPrefix(b[i:], []byte(`\u`)) {
					if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
						out = utf8.AppendRune(out, d)
						i += 6
						continue
					}
				}
				r = utf8.RuneError
			}
			out = utf8.AppendRune(out, r)
			continue
		default:
			return "", nil, false
		}
		i += 2
	}
	return "", nil, false
}

func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// WalkJSON reads the JSON value data token by token and calls fn with the
// path and the value of each string, number (a json.Number), bool or null
// (nil) in it. A path is the keys and array indexes from the top, joined
// by dots: "choices.0.delta.content". It returns the error of a malformed
// value. It is for an event of a known shape whose fields lie in nested
// objects: a reflective decode takes about a kilobyte of stack for each
// level of nesting, which a parked stream would keep, while this takes
// the same few hundred bytes at any depth.
func WalkJSON(data []byte, fn func(path string, v json.Token)) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	type level struct {
		object  bool
		wantKey bool // an object's next token is a key
		at      int  // len(path) of the container itself
		index   int  // an array's next element
	}
	var levels []level
	path := make([]byte, 0, 64)
	ended := false
	// element sets path to that of the next value in the innermost
	// container, if it is an array.
	element := func() {
		if n := len(levels); n > 0 && !levels[n-1].object {
			l := &levels[n-1]
			path = path[:l.at]
			if len(path) > 0 {
				path = append(path, '.')
			}
			path = strconv.AppendInt(path, int64(l.index), 10)
			l.index++
		}
	}
	// valueDone notes that a value in the innermost container has ended.
	valueDone := func() {
		if n := len(levels); n > 0 && levels[n-1].object {
			levels[n-1].wantKey = true
			path = path[:levels[n-1].at]
		}
	}
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			if !ended {
				return io.ErrUnexpectedEOF
			}
			return nil
		}
		if err != nil {
			return err
		}
		if ended {
			return errors.New("more than one JSON value")
		}
		if n := len(levels); n > 0 && levels[n-1].wantKey {
			if key, ok := tok.(string); ok {
				if len(path) > 0 {
					path = append(path, '.')
				}
				path = append(path, key...)
				levels[n-1].wantKey = false
				continue
			}
		}
		switch tok {
		case json.Delim('}'), json.Delim(']'):
			levels = levels[:len(levels)-1]
			valueDone()
		case json.Delim('{'):
			element()
			levels = append(levels, level{object: true, wantKey: true, at: len(path)})
		case json.Delim('['):
			element()
			levels = append(levels, level{at: len(path)})
		default:
			element()
			fn(string(path), tok)
			valueDone()
		}
		ended = len(levels) == 0
	}
}

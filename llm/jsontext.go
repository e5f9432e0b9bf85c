package llm

import (
	"bytes"
	"errors"
	"fmt"
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

// WalkJSON reads the JSON value data and calls fn with the path and the
// raw bytes of each string (quoted, escapes as sent), number, true, false
// or null in it. A path is the keys and array indexes from the top,
// joined by dots: "choices.0.delta.content"; fn must not keep it. A
// malformed value is an error, as for encoding/json. It is for an event of
// a known shape whose fields lie in nested objects: a reflective decode
// takes about a kilobyte of stack for each level of nesting, which a
// parked stream would keep, while this loop takes the same few hundred
// bytes at any depth, and allocates nothing for a shallow value.
func WalkJSON(data []byte, fn func(path, raw []byte)) error {
	type level struct {
		object  bool
		wantKey bool // an object's next token is a key
		at      int  // len(path) of the container itself
		index   int  // an array's next element
	}
	var levelBuf [8]level
	levels := levelBuf[:0]
	var pathBuf [128]byte
	path := pathBuf[:0]
	expectValue := true
	i := 0
	for {
		i = skipSpace(data, i)
		if !expectValue {
			// After a value: the end of the data, a comma or a close.
			n := len(levels)
			if n == 0 {
				if i != len(data) {
					return errors.New("invalid character after the top-level value")
				}
				return nil
			}
			top := &levels[n-1]
			closer := byte(']')
			if top.object {
				closer = '}'
			}
			switch {
			case i >= len(data):
				return io.ErrUnexpectedEOF
			case data[i] == ',':
				expectValue, top.wantKey = true, top.object
			case data[i] == closer:
				path = path[:top.at]
				levels = levels[:n-1]
			default:
				return errMalformed(data, i)
			}
			i++
			continue
		}
		if i >= len(data) {
			return io.ErrUnexpectedEOF
		}
		if n := len(levels); n > 0 {
			top := &levels[n-1]
			switch {
			case top.wantKey:
				key, rest, ok := cutKey(data[i:])
				if !ok {
					return errMalformed(data, i)
				}
				path = appendPath(path[:top.at], key...)
				i = skipSpace(data, len(data)-len(rest))
				if i >= len(data) || data[i] != ':' {
					return errMalformed(data, i)
				}
				i++
				top.wantKey = false
				continue
			case !top.object:
				path = strconv.AppendInt(appendPath(path[:top.at]), int64(top.index), 10)
				top.index++
			}
		}
		switch c := data[i]; c {
		case '{', '[':
			levels = append(levels, level{object: c == '{', wantKey: c == '{', at: len(path)})
			i = skipSpace(data, i+1)
			if i < len(data) && data[i] == c+2 { // '}' or ']': empty
				path = path[:levels[len(levels)-1].at]
				levels = levels[:len(levels)-1]
				i++
				expectValue = false
			}
		default:
			n, ok := scalarLen(data[i:])
			if !ok {
				return errMalformed(data, i)
			}
			fn(path, data[i:i+n])
			i += n
			expectValue = false
		}
	}
}

// appendPath appends a dot to a path that has a key already, then key.
func appendPath(path []byte, key ...byte) []byte {
	if len(path) > 0 {
		path = append(path, '.')
	}
	return append(path, key...)
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\t' || b[i] == '\r') {
		i++
	}
	return i
}

func errMalformed(b []byte, i int) error {
	if i >= len(b) {
		return io.ErrUnexpectedEOF
	}
	return fmt.Errorf("invalid character %q at offset %d", b[i], i)
}

// cutKey reads the object key b starts with: its bytes as they are when
// it has no escapes, else decoded.
func cutKey(b []byte) (key, rest []byte, ok bool) {
	n, escaped := stringLen(b)
	if n == 0 {
		return nil, nil, false
	}
	if !escaped {
		return b[1 : n-1], b[n:], true
	}
	if s, _, ok := CutJSONString(b[:n]); ok {
		return []byte(s), b[n:], true
	}
	return b[1 : n-1], b[n:], true // not UTF-8: no key Ferry reads
}

// stringLen returns the length of the JSON string b starts with, 0 when
// it is not a well-formed one, and whether it has escapes. As for
// encoding/json, bytes that are not UTF-8 are let through.
func stringLen(b []byte) (n int, escaped bool) {
	if len(b) == 0 || b[0] != '"' {
		return 0, false
	}
	for i := 1; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return i + 1, escaped
		case c < 0x20:
			return 0, false
		case c == '\\':
			escaped = true
			if i+1 >= len(b) {
				return 0, false
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i++
			case 'u':
				if _, ok := hex4(b[min(i+2, len(b)):]); !ok {
					return 0, false
				}
				i += 5
			default:
				return 0, false
			}
		}
	}
	return 0, false
}

// scalarLen returns the length of the string, number, true, false or null
// that b starts with; ok is false when it is not a well-formed one.
func scalarLen(b []byte) (n int, ok bool) {
	switch {
	case b[0] == '"':
		n, _ := stringLen(b)
		return n, n > 0
	case b[0] == '-' || b[0] >= '0' && b[0] <= '9':
		return numberLen(b)
	}
	for _, lit := range []string{"true", "false", "null"} {
		if bytes.HasPrefix(b, []byte(lit)) {
			return len(lit), true
		}
	}
	return 0, false
}

// numberLen is scalarLen for a number: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
func numberLen(b []byte) (int, bool) {
	i := 0
	digits := func() int {
		j := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		return i - j
	}
	if b[i] == '-' {
		i++
	}
	if i < len(b) && b[i] == '0' {
		i++
	} else if digits() == 0 {
		return 0, false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if digits() == 0 {
			return 0, false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if digits() == 0 {
			return 0, false
		}
	}
	return i, true
}

// JSONString is the string that raw, a value WalkJSON gave, holds; "" for
// anything else (null).
func JSONString(raw []byte) string {
	s, _, _ := CutJSONString(raw)
	return s
}

// JSONInt is the whole number that raw, a value WalkJSON gave, holds; 0
// for anything else (null, a fraction).
func JSONInt(raw []byte) int {
	n, err := strconv.Atoi(string(raw))
	if err != nil {
		return 0
	}
	return n
}

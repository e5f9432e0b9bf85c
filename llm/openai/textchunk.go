package openai

import (
	"bytes"

	"github.com/ferryhq/ferry/llm"
)

// textChunk reads a chunk that carries only a text delta, as OpenAI writes
// one, without a reflective decode (a stream is mostly these):
//
//	{"id":"chatcmpl-…","object":"chat.completion.chunk","created":1730000000,
//	"model":"gpt-4o-mini","system_fingerprint":"fp_…","choices":[{"index":0,
//	"delta":{"content":"…"},"logprobs":null,"finish_reason":null}],"usage":null}
//
// with its top-level fields in any order. model is the model the stream
// has named so far, and the chunk must name the same. ok is false for any
// other chunk or spelling (a role, a finish reason, usage, an error, a
// field it does not know, spaces between tokens), which Stream then decodes
// in full, so the hot path never reads a chunk differently.
func textChunk(data []byte, model string) (text string, ok bool) {
	rest, ok := bytes.CutPrefix(data, []byte("{"))
	if !ok || model == "" {
		return "", false
	}
	choices := false
	for first := true; ; first = false {
		if r, end := bytes.CutPrefix(rest, []byte("}")); end {
			return text, choices && len(bytes.TrimSpace(r)) == 0
		}
		if !first {
			if rest, ok = bytes.CutPrefix(rest, []byte(",")); !ok {
				return "", false
			}
		}
		key, r, ok := rawString(rest)
		if !ok {
			return "", false
		}
		if rest, ok = bytes.CutPrefix(r, []byte(":")); !ok {
			return "", false
		}
		switch string(key) {
		case "id", "object", "system_fingerprint", "service_tier", "obfuscation":
			if r, null := bytes.CutPrefix(rest, []byte("null")); null {
				rest = r
			} else {
				_, rest, ok = rawString(rest)
			}
		case "created":
			n := 0
			for n < len(rest) && '0' <= rest[n] && rest[n] <= '9' {
				n++
			}
			rest, ok = rest[n:], n > 0
		case "model":
			var m []byte
			m, rest, ok = rawString(rest)
			ok = ok && string(m) == model
		case "usage":
			rest, ok = bytes.CutPrefix(rest, []byte("null"))
		case "choices":
			if choices {
				return "", false
			}
			choices = true
			text, rest, ok = textChoice(rest)
		default:
			return "", false
		}
		if !ok {
			return "", false
		}
	}
}

// textChoice reads choices that are one text delta:
// [{"index":0,"delta":{"content":"…"},"logprobs":null,"finish_reason":null}],
// logprobs optional.
func textChoice(b []byte) (text string, rest []byte, ok bool) {
	if b, ok = bytes.CutPrefix(b, []byte(`[{"index":0,"delta":{"content":`)); !ok {
		return "", nil, false
	}
	if text, b, ok = llm.CutJSONString(b); !ok {
		return "", nil, false
	}
	if b, ok = bytes.CutPrefix(b, []byte("}")); !ok {
		return "", nil, false
	}
	b, _ = bytes.CutPrefix(b, []byte(`,"logprobs":null`))
	if b, ok = bytes.CutPrefix(b, []byte(`,"finish_reason":null}]`)); !ok {
		return "", nil, false
	}
	return text, b, true
}

// rawString cuts the JSON string b starts with and returns its bytes
// between the quotes, without copying them; ok is false for a string with
// an escape or a control character (which the full decode then reads).
func rawString(b []byte) (s, rest []byte, ok bool) {
	if len(b) == 0 || b[0] != '"' {
		return nil, nil, false
	}
	for i := 1; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return b[1:i], b[i+1:], true
		case c == '\\' || c < 0x20:
			return nil, nil, false
		}
	}
	return nil, nil, false
}

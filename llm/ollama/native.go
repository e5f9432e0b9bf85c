package ollama

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/llm"
)

// DefaultModel is the model the seed's /ollama/generate used when a request
// named none.
const DefaultModel = "llama3.2"

// Native is a request of Ollama's own API, for clients that speak it
// (/api/generate, /api/chat): its body goes upstream as the client sent
// it, with the seed's defaults filled in.
type Native struct {
	Path   string // "/api/generate" or "/api/chat"
	Model  string // the model the body names, DefaultModel when none
	Stream bool   // the answer is NDJSON (Ollama's default); false: one JSON object
	body   []byte
	fields map[string]json.RawMessage
}

// ParseNative checks a body of Ollama's /api/generate or /api/chat and
// fills the seed's defaults (model llama3.2, stream true); every other field
// is forwarded as the client sent it. Errors: Invalid.
func ParseNative(path string, raw []byte) (*Native, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil || fields == nil {
		return nil, ferry.Errorf(ferry.Invalid, "the body must be a JSON object")
	}
	n := &Native{Path: path, Model: DefaultModel, Stream: true, fields: fields}
	if v, ok := fields["model"]; ok && string(v) != "null" {
		var m string
		if err := json.Unmarshal(v, &m); err != nil {
			return nil, ferry.InvalidField("model", "must be a string")
		}
		if m = strings.TrimSpace(m); m != "" {
			n.Model = m
		}
	}
	if v, ok := fields["stream"]; ok && string(v) != "null" {
		if err := json.Unmarshal(v, &n.Stream); err != nil {
			return nil, ferry.InvalidField("stream", "must be true or false")
		}
	}
	fields["model"], _ = json.Marshal(n.Model)
	fields["stream"], _ = json.Marshal(n.Stream)
	var err error
	if n.body, err = json.Marshal(fields); err != nil {
		return nil, ferry.Errorf(ferry.Invalid, "the body must be a JSON object")
	}
	return n, nil
}

// Messages returns the request's text as messages (the system prompt,
// the prompt or the chat's messages), for estimating what it costs.
func (n *Native) Messages() (system string, msgs []llm.Message) {
	_ = json.Unmarshal(n.fields["system"], &system)
	var prompt string
	if json.Unmarshal(n.fields["prompt"], &prompt) == nil && prompt != "" {
		msgs = append(msgs, llm.TextMessage("user", prompt))
	}
	var chat []struct {
		Role    string `json:"role"`
		Content string `json:"content"`
	}
	if json.Unmarshal(n.fields["messages"], &chat) == nil {
		for _, m := range chat {
			msgs = append(msgs, llm.TextMessage(m.Role, m.Content))
		}
	}
	return system, msgs
}

// Forward sends n upstream and passes the answer's bytes to fn as they
// arrive, whole lines at a time, so a client sees Ollama's own NDJSON (or,
// with Stream false, its one JSON object). It returns the final Delta read
// off the done line: Done, the model, Ollama's token counts and
// done_reason; when the answer was cut off before it, Done is false and
// OutputTokens counts the lines passed on, about a token each. An error
// line is not passed on: it is returned as an Upstream error, as are the
// errors of Stream before the first byte.
func (p *Provider) Forward(ctx context.Context, n *Native, fn func(b []byte) error) (llm.Delta, error) {
	var final llm.Delta
	resp, err := p.send(ctx, http.MethodPost, n.Path, n.body)
	if err != nil {
		return final, err
	}
	defer resp.Body.Close()
	// A line of Ollama's stream is a token and some metadata, a few hundred
	// bytes; a larger buffer only costs memory per open stream.
	buf := make([]byte, 2<<10)
	var pending []byte // a line begun but not ended, when it spans reads
	t := tally{up: p.up}
	for {
		k, rerr := resp.Body.Read(buf)
		chunk := buf[:k]
		if len(pending) > 0 {
			pending = append(pending, chunk...)
			chunk = pending
		}
		if rerr == io.EOF {
			// A last line without a newline, as a non-streaming answer has.
			if err := t.lines(chunk, fn); err != nil {
				return t.final(), err
			}
			if !t.done && n.Stream && ctx.Err() == nil {
				return t.final(), p.up.Truncated()
			}
			return t.final(), nil
		}
		cut := bytes.LastIndexByte(chunk, '\n') + 1
		if err := t.lines(chunk[:cut], fn); err != nil {
			return t.final(), err
		}
		rest := chunk[cut:]
		if len(rest) > maxLine {
			return t.final(), p.up.EventError(errLineTooLong.Error(), errLineTooLong)
		}
		pending = append(pending[:0], rest...)
		if rerr != nil {
			if ctx.Err() != nil {
				return t.final(), llm.ContextError(ctx, p.Name())
			}
			return t.final(), p.up.TransportError(ctx, rerr)
		}
	}
}

// tally follows the lines passing through, for the usage log.
type tally struct {
	up    llm.Upstream
	count int // lines before the done line
	last  llm.Delta
	done  bool
}

func (t *tally) final() llm.Delta {
	if t.done {
		return t.last
	}
	return llm.Delta{Usage: llm.Usage{OutputTokens: t.count}}
}

// lines reads whole lines b and passes them to fn, all but an error line.
func (t *tally) lines(b []byte, fn func([]byte) error) error {
	if len(b) == 0 {
		return nil
	}
	// Most reads hold token lines only: count them and pass them on whole,
	// without looking at each line.
	if !bytes.Contains(b, []byte(`"error"`)) && !bytes.Contains(b, []byte(`"done":true`)) && !bytes.Contains(b, []byte(`"done": true`)) {
		t.count += bytes.Count(b, []byte{'\n'})
		if b[len(b)-1] != '\n' && len(bytes.TrimSpace(b[bytes.LastIndexByte(b, '\n')+1:])) > 0 {
			t.count++ // a last line without its newline, at the end of the body
		}
		return fn(b)
	}
	start := 0
	for start < len(b) {
		end := bytes.IndexByte(b[start:], '\n')
		if end < 0 {
			end = len(b)
		} else {
			end += start + 1
		}
		line := b[start:end]
		// Only the done line and an error line say anything the usage log
		// needs; decoding every token line would be most of the work.
		if bytes.Contains(line, []byte(`"error"`)) {
			var l chatLine
			if json.Unmarshal(bytes.TrimSpace(line), &l) == nil && l.Error != "" {
				if start > 0 {
					if err := fn(b[:start]); err != nil {
						return err
					}
				}
				return t.up.EventError(l.Error, errors.New(l.Error))
			}
		}
		if bytes.Contains(line, []byte(`"done":true`)) || bytes.Contains(line, []byte(`"done": true`)) {
			var l chatLine
			if json.Unmarshal(bytes.TrimSpace(line), &l) == nil && l.Done {
				t.done = true
				t.last = llm.Delta{Done: true, Model: l.Model, StopReason: l.DoneReason,
					Usage: llm.Usage{InputTokens: l.PromptEvalCount, OutputTokens: l.EvalCount}}
			}
		} else if len(bytes.TrimSpace(line)) > 0 {
			t.count++
		}
		start = end
	}
	if len(b) == 0 {
		return nil
	}
	return fn(b)
}

// Tags returns Ollama's model list (GET /api/tags) as Ollama wrote it, for
// clients of its own API that read more than the names.
func (p *Provider) Tags(ctx context.Context) (json.RawMessage, error) {
	resp, err := p.send(ctx, http.MethodGet, "/api/tags", nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxLine))
	if err != nil {
		return nil, p.up.TransportError(ctx, err)
	}
	if !json.Valid(raw) {
		return nil, p.up.EventError("sent a model list that is not JSON", nil)
	}
	return raw, nil
}

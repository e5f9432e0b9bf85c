package ollama

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/llm"
)

// DefaultModel is the model the seed's /ollama/generate used when a request
// named none.
const DefaultModel = "llama3.2"

// Native is a model call of Ollama's own API, for clients that speak it
// (/api/generate, /api/chat, /api/embed): its body goes upstream as the
// client sent it, with the seed's defaults filled in.
type Native struct {
	Path   string // "/api/generate", "/api/chat" or "/api/embed"
	Model  string // the model the body names, DefaultModel when none
	Stream bool   // the answer is NDJSON (Ollama's default); false: one JSON object
	body   []byte
	fields map[string]json.RawMessage
}

// PathEmbed is Ollama's embedding endpoint, whose answer is always one JSON
// object: it takes no "stream".
const PathEmbed = "/api/embed"

// ParseNative checks a body of Ollama's /api/generate, /api/chat or
// /api/embed and fills the seed's defaults (model llama3.2, and for the
// first two stream true); every other field is forwarded as the client
// sent it. Errors: Invalid.
func ParseNative(path string, raw []byte) (*Native, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil || fields == nil {
		if fe := ferry.InvalidJSON(raw, err); fe != nil {
			return nil, fe
		}
		return nil, ferry.Errorf(ferry.Invalid, "the body must be a JSON object")
	}
	n := &Native{Path: path, Model: DefaultModel, Stream: path != PathEmbed, fields: fields}
	if v, ok := fields["model"]; ok && string(v) != "null" {
		var m string
		if err := json.Unmarshal(v, &m); err != nil {
			return nil, ferry.InvalidField("model", "must be a string")
		}
		if m = strings.TrimSpace(m); m != "" {
			n.Model = m
		}
	}
	fields["model"], _ = json.Marshal(n.Model)
	if path != PathEmbed {
		if v, ok := fields["stream"]; ok && string(v) != "null" {
			if err := json.Unmarshal(v, &n.Stream); err != nil {
				return nil, ferry.InvalidField("stream", "must be true or false")
			}
		}
		fields["stream"], _ = json.Marshal(n.Stream)
	}
	var err error
	if n.body, err = json.Marshal(fields); err != nil {
		return nil, ferry.Errorf(ferry.Invalid, "the body must be a JSON object")
	}
	return n, nil
}

// Messages returns the request's text as messages (the system prompt,
// the prompt, the chat's messages or the texts to embed), for estimating
// what it costs.
func (n *Native) Messages() (system string, msgs []llm.Message) {
	_ = json.Unmarshal(n.fields["system"], &system)
	var prompt string
	if json.Unmarshal(n.fields["prompt"], &prompt) == nil && prompt != "" {
		msgs = append(msgs, llm.TextMessage("user", prompt))
	}
	// /api/embed's input is one text or a list of them.
	var inputs []string
	if json.Unmarshal(n.fields["input"], &inputs) != nil {
		var one string
		if json.Unmarshal(n.fields["input"], &one) == nil {
			inputs = []string{one}
		}
	}
	for _, in := range inputs {
		if in != "" {
			msgs = append(msgs, llm.TextMessage("user", in))
		}
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
// arrive, whole lines at a time, so a client sees Ollama's own NDJSON. It
// returns the final Delta read off the done line: Done, the model,
// Ollama's token counts and done_reason; when the answer was cut off
// before it, Done is false and OutputTokens counts the lines passed on,
// about a token each. An error line is not passed on: it is returned as an
// Upstream error, as are the errors of Stream before the first byte. An
// answer in one piece (Stream false, and /api/embed's) is passed on once
// it has all come, as one call of fn (see forwardWhole).
func (p *Provider) Forward(ctx context.Context, n *Native, fn func(b []byte) error) (llm.Delta, error) {
	var final llm.Delta
	resp, err := p.send(ctx, http.MethodPost, n.Path, n.body)
	if err != nil {
		return final, err
	}
	defer resp.Body.Close()
	if !n.Stream {
		return p.forwardWhole(ctx, resp.Body, fn)
	}
	// A line of Ollama's stream is a token and some metadata, a few hundred
	// bytes. While it waits for the next one, a stream holds only a buffer
	// of about a line (thousands may wait at once); when that fills with a
	// line unfinished, what has come since is read on at once with a large
	// pooled buffer, so that a burst leaves in few writes.
	var small [512]byte
	var pending []byte // a line begun but not ended, when it spans reads
	t := tally{up: p.up}
	for {
		k, rerr := resp.Body.Read(small[:])
		chunk := small[:k]
		var large *[]byte
		if rerr == nil && k == len(small) && small[k-1] != '\n' {
			large = largeBufs.Get().(*[]byte)
			b := append((*large)[:0], chunk...)
			m, err := resp.Body.Read(b[len(b):cap(b)])
			chunk, rerr = b[:len(b)+m], err
		}
		if len(pending) > 0 {
			pending = append(pending, chunk...)
			chunk = pending
		}
		if rerr == io.EOF {
			// A last line without a newline, as a non-streaming answer has.
			if err := t.lines(chunk, fn); err != nil {
				return t.final(), err
			}
			if !t.done && ctx.Err() == nil {
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
		if large != nil {
			largeBufs.Put(large) // fn copied what it kept; pending is a copy
		}
		if rerr != nil {
			if ctx.Err() != nil {
				return t.final(), llm.ContextError(ctx, p.Name())
			}
			return t.final(), p.up.TransportError(ctx, rerr)
		}
	}
}

// largeBufs hold what a stream reads past its small buffer, for as long as
// one burst takes: pooled, so that no waiting stream holds one.
var largeBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

// maxWhole bounds an answer in one piece. An embedding of a long list of
// texts is the largest: a thousand 1024-dimension vectors are about 20 MB.
const maxWhole = 32 << 20

// forwardWhole reads an answer in one piece, one JSON object, and passes
// it to fn once it has all come: a client can only read it whole, and so
// an answer cut short or an error in it is still answered with its own
// status rather than a 200. The Delta returned has Done set and Ollama's
// token counts (an embedding's prompt_eval_count is its input tokens).
// Errors: Upstream for an answer that is not JSON, too large or an
// {"error": …} object; those of TransportError for a broken connection.
func (p *Provider) forwardWhole(ctx context.Context, body io.Reader, fn func([]byte) error) (llm.Delta, error) {
	raw, err := io.ReadAll(io.LimitReader(body, maxWhole+1))
	if err != nil {
		return llm.Delta{}, p.up.TransportError(ctx, err)
	}
	if len(raw) > maxWhole {
		return llm.Delta{}, p.up.EventError(fmt.Sprintf("sent an answer longer than %d bytes", maxWhole), nil)
	}
	var l wholeAnswer
	if err := json.Unmarshal(raw, &l); err != nil {
		return llm.Delta{}, p.up.EventError("sent an answer that is not JSON", err)
	}
	if l.Error != "" {
		return llm.Delta{}, p.up.EventError(l.Error, errors.New(l.Error))
	}
	final := llm.Delta{Done: true, Model: l.Model, StopReason: l.DoneReason,
		Usage: llm.Usage{InputTokens: l.PromptEvalCount, OutputTokens: l.EvalCount}}
	return final, fn(raw)
}

// wholeAnswer is what the usage log needs of an answer in one piece:
// /api/generate's or /api/chat's done object, or /api/embed's answer.
type wholeAnswer struct {
	Model           string `json:"model"`
	DoneReason      string `json:"done_reason"`
	PromptEvalCount int    `json:"prompt_eval_count"`
	EvalCount       int    `json:"eval_count"`
	Error           string `json:"error"`
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
	// without looking at each line. Ollama ends a stream with its done line
	// or an error line, so only a read's last line can be either, and only
	// that one is looked at. Searching the whole read took about 3% of
	// Ferry's CPU on /ollama/generate (perf, 100 deltas).
	last := bytes.TrimSuffix(b, []byte{'\n'})
	last = last[bytes.LastIndexByte(last, '\n')+1:]
	if !bytes.Contains(last, []byte(`"error"`)) && !bytes.Contains(last, []byte(`"done":true`)) && !bytes.Contains(last, []byte(`"done": true`)) {
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

// lookups are the endpoints of Ollama's API that only read, with their
// methods: the ones besides model calls that Ferry's users may reach (see
// Lookup). Pulling, pushing, creating, copying and deleting models are
// not among them.
var lookups = map[string]string{
	"/api/tags":    http.MethodGet,  // the models pulled
	"/api/ps":      http.MethodGet,  // the models loaded in memory
	"/api/version": http.MethodGet,  // Ollama's version
	"/api/show":    http.MethodPost, // one model's details
}

// Lookup sends one of Ollama's requests that only read (GET /api/tags,
// /api/ps or /api/version, or POST /api/show with body) and returns the
// answer as Ollama wrote it, for clients of its own API. Errors: those of
// Stream before the first byte (Ollama's refusal, such as /api/show's of
// an unknown model, in its words), Upstream for an answer that is not
// JSON, and Internal for a path that is not a lookup.
func (p *Provider) Lookup(ctx context.Context, path string, body []byte) (json.RawMessage, error) {
	method, ok := lookups[path]
	if !ok {
		return nil, fmt.Errorf("ollama: %s is not a lookup", path)
	}
	if method == http.MethodGet {
		body = nil
	}
	resp, err := p.send(ctx, method, path, body)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxLine))
	if err != nil {
		return nil, p.up.TransportError(ctx, err)
	}
	if !json.Valid(raw) {
		return nil, p.up.EventError("sent an answer that is not JSON", nil)
	}
	return raw, nil
}

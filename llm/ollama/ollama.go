// Package ollama adapts Ollama's native chat API to llm.Provider. Ollama's
// own Go client lives inside the whole Ollama server module, so this
// package speaks the small HTTP API itself: POST /api/chat, which streams
// one JSON object per line, and GET /api/tags.
package ollama

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/llm"
)

// DefaultBaseURL is where Ollama listens unless told otherwise.
const DefaultBaseURL = "http://localhost:11434"

// maxLine bounds one line of a streamed answer. Lines carry a few tokens
// each; the bound only keeps a broken upstream from exhausting memory.
const maxLine = 8 << 20

// Config configures a Provider.
type Config struct {
	// BaseURL is Ollama's root (OLLAMA_BASE_URL); empty means
	// DefaultBaseURL.
	BaseURL string
	// HTTPClient makes the calls; nil means http.DefaultClient.
	HTTPClient *http.Client
}

// Provider streams chat turns from Ollama. It is safe for concurrent use.
type Provider struct {
	base string
	hc   *http.Client
	up   llm.Upstream
}

// New returns a Provider for cfg. It makes no call upstream.
func New(cfg Config) *Provider {
	base := strings.TrimRight(cfg.BaseURL, "/")
	if base == "" {
		base = DefaultBaseURL
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	return &Provider{base: base, hc: hc, up: llm.Upstream{Name: llm.Ollama, URLSetting: "OLLAMA_BASE_URL"}}
}

// Name returns "ollama".
func (p *Provider) Name() string { return llm.Ollama }

// Accepts reports that Ollama takes text only.
func (p *Provider) Accepts(k llm.PartKind) bool { return k == llm.PartText }

// Supports reports what Ollama's options take: temperature from 0 to 2 and
// penalties from -2 to 2 (the ranges of the OpenAI API, which Ollama's own
// /v1 serves), top_p, top_k, stop sequences, a seed, and JSON answers through
// format, with or without a schema. Ollama has no field for
// Sampling.User, which is left out.
func (p *Provider) Supports() llm.Support {
	return llm.Support{Temperature: llm.Range{Min: 0, Max: 2}, TopP: llm.Range{Min: 0, Max: 1}, Penalties: llm.Range{Min: -2, Max: 2},
		TopK: true, Stop: true, BlankStop: true, Seed: true, JSON: true, JSONSchema: true}
}

type chatMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type chatRequest struct {
	Model    string        `json:"model"`
	Messages []chatMessage `json:"messages"`
	Stream   bool          `json:"stream"`
	// Format is "json" for any JSON, or a JSON Schema the answer matches.
	Format  json.RawMessage `json:"format,omitempty"`
	Options *chatOptions    `json:"options,omitempty"`
}

// chatOptions are the model options Ferry sets; unset ones are left out,
// so that the model's own (its Modelfile's) apply.
type chatOptions struct {
	NumPredict       int      `json:"num_predict,omitempty"`
	Temperature      *float64 `json:"temperature,omitempty"`
	TopP             *float64 `json:"top_p,omitempty"`
	TopK             *int     `json:"top_k,omitempty"`
	Stop             []string `json:"stop,omitempty"`
	Seed             *int64   `json:"seed,omitempty"`
	PresencePenalty  *float64 `json:"presence_penalty,omitempty"`
	FrequencyPenalty *float64 `json:"frequency_penalty,omitempty"`
}

// newRequest maps req, whose Model is set, onto /api/chat: MaxTokens
// becomes num_predict, Sampling the options of the same names, and a
// Format the top-level format ("json", or the schema itself).
func newRequest(req llm.Request) chatRequest {
	body := chatRequest{Model: req.Model, Stream: true, Messages: make([]chatMessage, 0, len(req.Messages)+1)}
	if req.System != "" {
		body.Messages = append(body.Messages, chatMessage{Role: "system", Content: req.System})
	}
	for _, m := range req.Messages {
		body.Messages = append(body.Messages, chatMessage{Role: m.Role, Content: m.Text()})
	}
	sm := req.Sampling
	o := chatOptions{NumPredict: max(req.MaxTokens, 0), Temperature: sm.Temperature, TopP: sm.TopP, TopK: sm.TopK, Stop: sm.Stop, Seed: sm.Seed,
		PresencePenalty: sm.PresencePenalty, FrequencyPenalty: sm.FrequencyPenalty}
	if o.NumPredict > 0 || o.Temperature != nil || o.TopP != nil || o.TopK != nil || len(o.Stop) > 0 || o.Seed != nil || o.PresencePenalty != nil || o.FrequencyPenalty != nil {
		body.Options = &o
	}
	if f := sm.Format; f != nil {
		body.Format = json.RawMessage(`"json"`)
		if f.Schema != nil {
			body.Format = f.Schema
		}
	}
	return body
}

// chatLine is one line of a streamed /api/chat answer, or an error line.
type chatLine struct {
	Model           string      `json:"model"`
	Message         chatMessage `json:"message"`
	Done            bool        `json:"done"`
	DoneReason      string      `json:"done_reason"`
	PromptEvalCount int         `json:"prompt_eval_count"`
	EvalCount       int         `json:"eval_count"`
	Error           string      `json:"error"`
}

// Stream implements llm.Provider.Stream. An empty req.Model means the first
// model Ollama lists; see newRequest for the rest.
func (p *Provider) Stream(ctx context.Context, req llm.Request, fn func(llm.Delta) error) error {
	if req.Model == "" {
		m, err := p.firstModel(ctx)
		if err != nil {
			return err
		}
		req.Model = m
	}
	resp, err := p.do(ctx, http.MethodPost, "/api/chat", newRequest(req))
	if err != nil {
		return err
	}
	defer resp.Body.Close()

	// A 2 KB buffer fits the usual line; readLine grows past it
	// for the rare long one, so thousands of open streams stay cheap.
	r := bufio.NewReaderSize(resp.Body, 2<<10)
	for {
		line, readErr := readLine(r)
		if line = bytes.TrimSpace(line); len(line) > 0 {
			var ev chatLine
			if err := json.Unmarshal(line, &ev); err != nil {
				return p.up.EventError("sent a line that is not JSON", err)
			}
			if ev.Error != "" {
				return p.up.EventError(ev.Error, errors.New(ev.Error))
			}
			if ev.Message.Content != "" {
				if err := fn(llm.Delta{Text: ev.Message.Content, More: lineBuffered(r)}); err != nil {
					return err
				}
			}
			if ev.Done {
				return fn(llm.Delta{
					Done:       true,
					StopReason: ev.DoneReason,
					Usage:      llm.Usage{InputTokens: ev.PromptEvalCount, OutputTokens: ev.EvalCount},
					Model:      ev.Model,
				})
			}
		}
		switch {
		case readErr == io.EOF && ctx.Err() == nil:
			return p.up.Truncated()
		case errors.Is(readErr, errLineTooLong):
			return p.up.EventError(readErr.Error(), readErr)
		case readErr != nil:
			return p.up.TransportError(ctx, readErr)
		}
	}
}

// lineBuffered reports whether r holds a whole next line already, which
// will be read without waiting.
func lineBuffered(r *bufio.Reader) bool {
	b, _ := r.Peek(r.Buffered())
	return bytes.IndexByte(b, '\n') >= 0
}

var errLineTooLong = fmt.Errorf("sent a line longer than %d bytes", maxLine)

// readLine returns the next line of r, its newline included, however the
// line was split across reads. At the end of the stream it returns what is
// left, which may be a last line without a newline, with io.EOF. The line
// is only valid until the next call.
func readLine(r *bufio.Reader) ([]byte, error) {
	line, err := r.ReadSlice('\n')
	if err != bufio.ErrBufferFull {
		return line, err
	}
	// Longer than the buffer: collect the pieces. ReadSlice's slice is
	// overwritten by the next read, hence the copy.
	long := append([]byte(nil), line...)
	for err == bufio.ErrBufferFull {
		if len(long) > maxLine {
			return nil, errLineTooLong
		}
		line, err = r.ReadSlice('\n')
		long = append(long, line...)
	}
	return long, err
}

// Models implements llm.Provider.Models from GET /api/tags.
func (p *Provider) Models(ctx context.Context) ([]llm.Model, error) {
	resp, err := p.do(ctx, http.MethodGet, "/api/tags", nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var tags struct {
		Models []struct {
			Name string `json:"name"`
		} `json:"models"`
	}
	if err := p.up.DecodeJSON(ctx, resp.Body, maxLine, "a model list", &tags); err != nil {
		return nil, err
	}
	models := make([]llm.Model, len(tags.Models))
	for i, m := range tags.Models {
		models[i] = llm.Model{ID: llm.Ollama + "/" + m.Name, Provider: llm.Ollama, Name: m.Name}
	}
	return models, nil
}

func (p *Provider) firstModel(ctx context.Context) (string, error) {
	models, err := p.Models(ctx)
	if err != nil {
		return "", err
	}
	if len(models) == 0 {
		return "", ferry.Errorf(ferry.Invalid, "no model named, and Ollama has none pulled; pull one (ollama pull llama3.2) or set FERRY_DEFAULT_MODEL")
	}
	return models[0].Name, nil
}

// do sends a request with body as JSON and returns the response when its
// status is 200; otherwise the error llm.Provider promises.
func (p *Provider) do(ctx context.Context, method, path string, body any) (*http.Response, error) {
	var b []byte
	if body != nil {
		var err error
		if b, err = json.Marshal(body); err != nil {
			return nil, fmt.Errorf("ollama: encode request: %w", err)
		}
	}
	return p.send(ctx, method, path, b)
}

// send is do with the body already encoded (nil: none).
func (p *Provider) send(ctx context.Context, method, path string, body []byte) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, p.base+path, rd)
	if err != nil {
		return nil, &ferry.Error{Code: ferry.Internal, Message: "bad OLLAMA_BASE_URL", Err: err}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/x-ndjson, application/json")
	return p.up.Do(ctx, p.hc, req, func(raw []byte) string {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(raw, &e)
		return e.Error
	})
}

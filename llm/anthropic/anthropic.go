// Package anthropic adapts Anthropic's Messages API to llm.Provider. It
// speaks the small part of the HTTP API Ferry uses itself: POST
// /v1/messages, streamed as server-sent events, and GET /v1/models.
package anthropic

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/llm"
)

// DefaultBaseURL is Anthropic's own API root.
const DefaultBaseURL = "https://api.anthropic.com"

// DefaultMaxTokens is the answer length asked for when a request sets none:
// the API requires one, and a short default would cut long answers off.
const DefaultMaxTokens = 8192

// apiVersion is the Messages API version Ferry speaks.
const apiVersion = "2023-06-01"

// maxBody bounds a model list or an error body read whole.
const maxBody = 8 << 20

// Config configures a Provider.
type Config struct {
	APIKey string // ANTHROPIC_API_KEY
	// BaseURL is the API root (ANTHROPIC_BASE_URL); empty means
	// DefaultBaseURL.
	BaseURL string
	// HTTPClient makes the calls; nil means http.DefaultClient.
	HTTPClient *http.Client
}

// Provider streams chat turns from Anthropic. It is safe for concurrent use.
type Provider struct {
	key  string
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
	return &Provider{key: cfg.APIKey, base: base, hc: hc,
		up: llm.Upstream{Name: llm.Anthropic, KeySetting: "ANTHROPIC_API_KEY", URLSetting: "ANTHROPIC_BASE_URL"}}
}

// Name returns "anthropic".
func (p *Provider) Name() string { return llm.Anthropic }

// Accepts reports that Anthropic takes text and documents (PDFs).
func (p *Provider) Accepts(k llm.PartKind) bool { return k == llm.PartText || k == llm.PartDocument }

// Supports reports what the Messages API takes: temperature from 0 to 1,
// top_p, top_k, and stop sequences that are not whitespace only. It has no seed,
// no penalties and no JSON mode. Sampling.User becomes metadata.user_id.
func (p *Provider) Supports() llm.Support {
	return llm.Support{Temperature: llm.Range{Min: 0, Max: 1}, TopP: llm.Range{Min: 0, Max: 1}, TopK: true, Stop: true}
}

// messagesRequest is a Messages API request, streamed.
type messagesRequest struct {
	Model         string    `json:"model"`
	MaxTokens     int       `json:"max_tokens"`
	System        string    `json:"system,omitempty"`
	Messages      []message `json:"messages"`
	Stream        bool      `json:"stream"`
	Temperature   *float64  `json:"temperature,omitempty"`
	TopP          *float64  `json:"top_p,omitempty"`
	TopK          *int      `json:"top_k,omitempty"`
	StopSequences []string  `json:"stop_sequences,omitempty"`
	Metadata      *metadata `json:"metadata,omitempty"`
}

// metadata describes the request; user_id is an opaque id of the end user.
type metadata struct {
	UserID string `json:"user_id"`
}

type message struct {
	Role    string `json:"role"`
	Content []any  `json:"content"` // textBlock and documentBlock
}

type textBlock struct {
	Type string `json:"type"` // "text"
	Text string `json:"text"`
}

type documentBlock struct {
	Type   string `json:"type"` // "document"
	Source struct {
		Type      string `json:"type"` // "base64"
		MediaType string `json:"media_type"`
		Data      []byte `json:"data"` // encoding/json writes []byte as base64
	} `json:"source"`
	Title string `json:"title,omitempty"`
}

// newRequest maps req onto the Messages API. Of req.Sampling it sends what
// Supports names, under the API's own names (stop_sequences), and User as
// metadata.user_id; the rest is the caller's to refuse (Sampling.Check).
func newRequest(req *llm.Request) *messagesRequest {
	sm := req.Sampling
	body := &messagesRequest{Model: req.Model, MaxTokens: req.MaxTokens, Stream: true, Messages: make([]message, 0, len(req.Messages)),
		Temperature: sm.Temperature, TopP: sm.TopP, TopK: sm.TopK, StopSequences: sm.Stop}
	if sm.User != "" {
		body.Metadata = &metadata{UserID: sm.User}
	}
	if body.Model == "" {
		body.Model = llm.DefaultAnthropicModel
	}
	if body.MaxTokens <= 0 {
		body.MaxTokens = DefaultMaxTokens
	}
	var system []string
	if req.System != "" {
		system = append(system, req.System)
	}
	for _, m := range req.Messages {
		if m.Role == "system" {
			// The Messages API takes the system prompt beside the turns.
			system = append(system, m.Text())
			continue
		}
		role := "user"
		if m.Role == "assistant" {
			role = "assistant"
		}
		blocks := make([]any, 0, len(m.Parts))
		for _, part := range m.Parts {
			switch part.Kind {
			case llm.PartText:
				blocks = append(blocks, textBlock{Type: "text", Text: part.Text})
			case llm.PartDocument:
				d := documentBlock{Type: "document", Title: part.Document.Name}
				d.Source.Type, d.Source.MediaType, d.Source.Data = "base64", part.Document.MediaType, part.Document.Data
				blocks = append(blocks, d)
			}
		}
		body.Messages = append(body.Messages, message{Role: role, Content: blocks})
	}
	body.System = strings.Join(system, "\n\n")
	return body
}

// event is the part of a Messages stream event that Stream reads.
type event struct {
	// Type is the data's own "type", which the API keeps equal to the SSE
	// event name.
	Type string `json:"type"`
	// Message is set on message_start.
	Message struct {
		Model string `json:"model"`
		Usage usage  `json:"usage"`
	} `json:"message"`
	// Delta is a content_block_delta's (Type, Text) or a message_delta's
	// (StopReason).
	Delta struct {
		Type       string `json:"type"`
		Text       string `json:"text"`
		StopReason string `json:"stop_reason"`
	} `json:"delta"`
	// Usage is set on message_delta.
	Usage usage `json:"usage"`
	// Error is set on an error event.
	Error apiError `json:"error"`
}

type usage struct {
	InputTokens              int `json:"input_tokens"`
	CacheCreationInputTokens int `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int `json:"cache_read_input_tokens"`
	OutputTokens             int `json:"output_tokens"`
}

// apiError is the "error" of an error body or event:
// {"type": "error", "error": {"type": "overloaded_error", "message": …}}.
type apiError struct {
	Type    string `json:"type"`
	Message string `json:"message"`
}

// Stream implements llm.Provider.Stream. An empty req.Model means
// claude-sonnet-4-6; req.MaxTokens 0 means DefaultMaxTokens.
func (p *Provider) Stream(ctx context.Context, req llm.Request, fn func(llm.Delta) error) error {
	body, err := json.Marshal(newRequest(&req))
	if err != nil {
		return fmt.Errorf("anthropic: encode request: %w", err)
	}
	resp, err := p.send(ctx, http.MethodPost, "/v1/messages", body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return p.read(ctx, resp.Body, fn)
}

// answer is what a stream's events have said of the answer so far.
type answer struct {
	done                         llm.Delta
	input, cacheWrite, cacheRead int
	stopped                      bool
}

// read reads a Messages stream's events, calling fn with each text delta
// and, at the end, with the Done delta. Its frame is what a parked stream
// holds on its stack while the model thinks, so it keeps to text deltas
// and leaves every other event to p.event.
func (p *Provider) read(ctx context.Context, body io.Reader, fn func(llm.Delta) error) error {
	a := answer{done: llm.Delta{Done: true}}
	er := llm.NewEventReader(body)
	for {
		name, data, err := er.Next()
		if err != nil {
			if err == io.EOF {
				break
			}
			if errors.Is(err, llm.ErrEventTooLong) {
				return p.up.EventError("sent an event longer than Ferry reads", err)
			}
			return p.up.TransportError(ctx, err)
		}
		if string(name) == "ping" {
			continue
		}
		if text, ok := textDelta(data); ok {
			if text != "" {
				if err := fn(llm.Delta{Text: text, More: er.Buffered()}); err != nil {
					return err
				}
			}
			continue
		}
		if err := p.event(&a, name, data, er.Buffered(), fn); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return llm.ContextError(ctx, p.Name())
	}
	if !a.stopped {
		return p.up.Truncated()
	}
	// input_tokens leaves out the prompt tokens served from or written to
	// the cache; Ferry counts everything the model read.
	a.done.Usage.InputTokens = a.input + a.cacheWrite + a.cacheRead
	return fn(a.done)
}

// event decodes an event other than a plain text delta in full, and notes
// what it says in a; more is whether more of the stream is buffered.
func (p *Provider) event(a *answer, name, data []byte, more bool, fn func(llm.Delta) error) error {
	switch string(name) {
	case "message_start", "message_delta", "message_stop", "content_block_start", "content_block_stop":
		// The events of every answer are read flat (llm.WalkJSON), so
		// that reading them does not deepen a parked stream's stack.
		return p.flatEvent(a, string(name), data)
	}
	var ev event
	if err := json.Unmarshal(data, &ev); err != nil {
		return p.up.EventError("sent an event that is not JSON", err)
	}
	if string(name) == "error" || ev.Type == "error" {
		return p.up.EventError(ev.Error.Message, fmt.Errorf("anthropic: %s event: %s", ev.Error.Type, ev.Error.Message))
	}
	switch ev.Type {
	case "message_start":
		u := ev.Message.Usage
		a.done.Model = ev.Message.Model
		a.input, a.cacheWrite, a.cacheRead = u.InputTokens, u.CacheCreationInputTokens, u.CacheReadInputTokens
		a.done.Usage.OutputTokens = u.OutputTokens
	case "content_block_delta":
		if ev.Delta.Type == "text_delta" && ev.Delta.Text != "" {
			return fn(llm.Delta{Text: ev.Delta.Text, More: more})
		}
	case "message_delta":
		// Its usage counts are cumulative; a count it leaves out stays
		// as message_start gave it.
		a.done.StopReason = ev.Delta.StopReason
		if u := ev.Usage; u.OutputTokens > 0 {
			a.done.Usage.OutputTokens = u.OutputTokens
		}
		if u := ev.Usage; u.InputTokens > 0 {
			a.input, a.cacheWrite, a.cacheRead = u.InputTokens, u.CacheCreationInputTokens, u.CacheReadInputTokens
		}
	case "message_stop":
		// Read on to the end of the body, which follows at once, so
		// that the connection can be reused.
		a.stopped = true
	}
	return nil
}

// flatEvent is event for an answer's own events, named name, which carry
// no text: what they say is read with llm.WalkJSON into a, as event
// would decode it.
func (p *Provider) flatEvent(a *answer, name string, data []byte) error {
	var typ, model, stop string
	var u usage
	usageAt := []byte("message.usage.") // message_start's; message_delta's is "usage."
	if name == "message_delta" {
		usageAt = usageAt[len("message."):]
	}
	err := llm.WalkJSON(data, func(path, raw []byte) {
		switch string(path) {
		case "type":
			typ = llm.JSONString(raw)
		case "message.model":
			model = llm.JSONString(raw)
		case "delta.stop_reason":
			stop = llm.JSONString(raw)
		}
		if field, ok := bytes.CutPrefix(path, usageAt); ok {
			switch string(field) {
			case "input_tokens":
				u.InputTokens = llm.JSONInt(raw)
			case "cache_creation_input_tokens":
				u.CacheCreationInputTokens = llm.JSONInt(raw)
			case "cache_read_input_tokens":
				u.CacheReadInputTokens = llm.JSONInt(raw)
			case "output_tokens":
				u.OutputTokens = llm.JSONInt(raw)
			}
		}
	})
	if err != nil {
		return p.up.EventError("sent an event that is not JSON", err)
	}
	if typ == "error" {
		// Not what its name says: read as any other event.
		return p.event(a, []byte("error"), data, false, nil)
	}
	switch name {
	case "message_start":
		a.done.Model = model
		a.input, a.cacheWrite, a.cacheRead = u.InputTokens, u.CacheCreationInputTokens, u.CacheReadInputTokens
		a.done.Usage.OutputTokens = u.OutputTokens
	case "message_delta":
		// Its usage counts are cumulative; a count it leaves out stays
		// as message_start gave it.
		a.done.StopReason = stop
		if u.OutputTokens > 0 {
			a.done.Usage.OutputTokens = u.OutputTokens
		}
		if u.InputTokens > 0 {
			a.input, a.cacheWrite, a.cacheRead = u.InputTokens, u.CacheCreationInputTokens, u.CacheReadInputTokens
		}
	case "message_stop":
		a.stopped = true
	}
	return nil
}

// Models implements llm.Provider.Models from the Models API, page by page.
func (p *Provider) Models(ctx context.Context) ([]llm.Model, error) {
	var models []llm.Model
	q := url.Values{"limit": {"1000"}}
	for {
		page, err := p.modelPage(ctx, q)
		if err != nil {
			return nil, err
		}
		for _, m := range page.Data {
			models = append(models, llm.Model{ID: llm.Anthropic + "/" + m.ID, Provider: llm.Anthropic, Name: m.ID})
		}
		if !page.HasMore || page.LastID == "" || len(page.Data) == 0 {
			return models, nil
		}
		q.Set("after_id", page.LastID)
	}
}

type modelPage struct {
	Data []struct {
		ID string `json:"id"`
	} `json:"data"`
	HasMore bool   `json:"has_more"`
	LastID  string `json:"last_id"`
}

func (p *Provider) modelPage(ctx context.Context, q url.Values) (*modelPage, error) {
	resp, err := p.send(ctx, http.MethodGet, "/v1/models?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var page modelPage
	if err := p.up.DecodeJSON(ctx, resp.Body, maxBody, "a model list", &page); err != nil {
		return nil, err
	}
	return &page, nil
}

// send makes a request with the API's headers and body as JSON (nil: none),
// and returns the response when its status is 2xx; otherwise the error
// llm.Provider promises.
func (p *Provider) send(ctx context.Context, method, path string, body []byte) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, p.base+path, rd)
	if err != nil {
		return nil, &ferry.Error{Code: ferry.Internal, Message: "bad ANTHROPIC_BASE_URL", Err: err}
	}
	req.Header.Set("X-Api-Key", p.key)
	req.Header.Set("Anthropic-Version", apiVersion)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "text/event-stream")
	} else {
		req.Header.Set("Accept", "application/json")
	}
	return p.up.Do(ctx, p.hc, req, func(raw []byte) string {
		var e struct {
			Error apiError `json:"error"`
		}
		_ = json.Unmarshal(raw, &e)
		return e.Error.Message
	})
}

// textDelta reads a text delta written as the API writes one,
// {"type":"content_block_delta","index":N,"delta":{"type":"text_delta","text":"…"}},
// without a reflective decode: a stream is mostly these. ok is false for
// any other event, or any other spelling, which Stream then decodes in
// full.
func textDelta(data []byte) (text string, ok bool) {
	rest, ok := bytes.CutPrefix(data, []byte(`{"type":"content_block_delta","index":`))
	if !ok {
		return "", false
	}
	i := 0
	for i < len(rest) && '0' <= rest[i] && rest[i] <= '9' {
		i++
	}
	if rest, ok = bytes.CutPrefix(rest[i:], []byte(`,"delta":{"type":"text_delta","text":`)); i == 0 || !ok {
		return "", false
	}
	text, rest, ok = llm.CutJSONString(rest)
	if !ok || string(bytes.TrimSpace(rest)) != "}}" {
		return "", false
	}
	return text, true
}

// Package openai adapts the Chat Completions API to llm.Provider. It serves
// OpenAI itself and the servers that speak its API: vLLM, llama.cpp, LM
// Studio, Ollama's /v1. It speaks the small part of the HTTP API Ferry uses
// itself: POST /chat/completions, streamed as server-sent events, and GET
// /models.
package openai

import (
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

// DefaultBaseURL is OpenAI's own API root.
const DefaultBaseURL = "https://api.openai.com/v1"

// maxBody bounds a model list or an error body read whole.
const maxBody = 8 << 20

// Config configures a Provider.
type Config struct {
	// APIKey is OPENAI_API_KEY; local servers often need none, and without
	// one no Authorization header is sent.
	APIKey string
	// BaseURL is the API root including /v1 (OPENAI_BASE_URL); empty means
	// DefaultBaseURL.
	BaseURL string
	// HTTPClient makes the calls; nil means http.DefaultClient.
	HTTPClient *http.Client
}

// Provider streams chat turns from an OpenAI-compatible server. It is safe
// for concurrent use.
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
		up: llm.Upstream{Name: llm.OpenAI, KeySetting: "OPENAI_API_KEY", URLSetting: "OPENAI_BASE_URL"}}
}

// Name returns "openai".
func (p *Provider) Name() string { return llm.OpenAI }

// Accepts reports that Chat Completions servers take text only here.
func (p *Provider) Accepts(k llm.PartKind) bool { return k == llm.PartText }

// Supports reports that every sampling parameter is the API's own: each is
// sent as it is, in the ranges OpenAI's API reference gives, and so is
// every Extra field.
func (p *Provider) Supports() llm.Support {
	return llm.Support{Temperature: llm.Range{Min: 0, Max: 2}, TopP: llm.Range{Min: 0, Max: 1}, Penalties: llm.Range{Min: -2, Max: 2},
		Stop: true, BlankStop: true, Seed: true, JSON: true, JSONSchema: true, Extra: true}
}

// chatRequest is a Chat Completions request, streamed with usage.
type chatRequest struct {
	Model         string        `json:"model"`
	Messages      []chatMessage `json:"messages"`
	Stream        bool          `json:"stream"`
	StreamOptions struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	MaxTokens           int             `json:"max_tokens,omitempty"`
	MaxCompletionTokens int             `json:"max_completion_tokens,omitempty"`
	Temperature         *float64        `json:"temperature,omitempty"`
	TopP                *float64        `json:"top_p,omitempty"`
	Stop                []string        `json:"stop,omitempty"`
	Seed                *int64          `json:"seed,omitempty"`
	PresencePenalty     *float64        `json:"presence_penalty,omitempty"`
	FrequencyPenalty    *float64        `json:"frequency_penalty,omitempty"`
	ResponseFormat      *responseFormat `json:"response_format,omitempty"`
	User                string          `json:"user,omitempty"`
}

// reserved are the fields newRequest may set, which an Extra field of the
// same name does not repeat.
var reserved = map[string]bool{
	"model": true, "messages": true, "stream": true, "stream_options": true, "max_tokens": true, "max_completion_tokens": true,
	"temperature": true, "top_p": true, "stop": true, "seed": true, "presence_penalty": true, "frequency_penalty": true,
	"response_format": true, "user": true,
}

// responseFormat is {"type": "json_object"} or {"type": "json_schema",
// "json_schema": {…}}.
type responseFormat struct {
	Type       string      `json:"type"`
	JSONSchema *jsonSchema `json:"json_schema,omitempty"`
}

type jsonSchema struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Schema      json.RawMessage `json:"schema,omitempty"`
	Strict      *bool           `json:"strict,omitempty"`
}

type chatMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// newRequest maps req onto the Chat Completions API, req.Sampling included
// under its own names (Extra aside: see encode).
func newRequest(req *llm.Request) *chatRequest {
	sm := req.Sampling
	body := &chatRequest{Model: req.Model, Stream: true, Messages: make([]chatMessage, 0, len(req.Messages)+1),
		Temperature: sm.Temperature, TopP: sm.TopP, Stop: sm.Stop, Seed: sm.Seed,
		PresencePenalty: sm.PresencePenalty, FrequencyPenalty: sm.FrequencyPenalty, User: sm.User}
	if f := sm.Format; f != nil {
		body.ResponseFormat = &responseFormat{Type: "json_object"}
		if f.Schema != nil {
			body.ResponseFormat = &responseFormat{Type: "json_schema",
				JSONSchema: &jsonSchema{Name: f.Name, Description: f.Description, Schema: f.Schema, Strict: f.Strict}}
		}
	}
	body.StreamOptions.IncludeUsage = true
	if req.System != "" {
		body.Messages = append(body.Messages, chatMessage{Role: "system", Content: req.System})
	}
	for _, m := range req.Messages {
		role := "user"
		if m.Role == "assistant" || m.Role == "system" {
			role = m.Role
		}
		body.Messages = append(body.Messages, chatMessage{Role: role, Content: m.Text()})
	}
	if req.MaxTokens > 0 {
		// OpenAI's reasoning models take only max_completion_tokens; the
		// compatible servers know max_tokens better.
		if isReasoningModel(req.Model) {
			body.MaxCompletionTokens = req.MaxTokens
		} else {
			body.MaxTokens = req.MaxTokens
		}
	}
	return body
}

// encode returns the request body for req: newRequest's, followed by the
// fields of req.Sampling.Extra as the client sent them, those newRequest
// sets aside.
func encode(req *llm.Request) ([]byte, error) {
	body, err := json.Marshal(newRequest(req))
	if err != nil || len(req.Sampling.Extra) == 0 {
		return body, err
	}
	body = body[:len(body)-1] // the closing brace
	for _, f := range req.Sampling.Extra {
		if reserved[f.Name] {
			continue
		}
		if !json.Valid(f.Value) {
			return nil, fmt.Errorf("field %q: not JSON", f.Name)
		}
		name, err := json.Marshal(f.Name)
		if err != nil {
			return nil, err
		}
		body = append(append(append(append(body, ','), name...), ':'), f.Value...)
	}
	return append(body, '}'), nil
}

func isReasoningModel(model string) bool {
	for _, prefix := range []string{"o1", "o3", "o4", "gpt-5"} {
		if strings.HasPrefix(model, prefix) {
			return true
		}
	}
	return false
}

// Stream implements llm.Provider.Stream. An empty req.Model means the first
// model the server lists.
func (p *Provider) Stream(ctx context.Context, req llm.Request, fn func(llm.Delta) error) error {
	if req.Model == "" {
		m, err := p.firstModel(ctx)
		if err != nil {
			return err
		}
		req.Model = m
	}
	body, err := encode(&req)
	if err != nil {
		return fmt.Errorf("openai: encode request: %w", err)
	}
	resp, err := p.send(ctx, http.MethodPost, "/chat/completions", body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()

	a := answer{done: llm.Delta{Done: true}}
	ended := false
	er := llm.NewEventReader(resp.Body)
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
		// Read on past [DONE] to the end of the body, which follows at
		// once, so that the connection can be reused.
		if ended || bytes.HasPrefix(data, []byte("[DONE]")) {
			ended = true
			continue
		}
		if string(name) == "error" {
			return p.up.EventError(eventMessage(data), fmt.Errorf("openai: error event: %s", data))
		}
		if text, ok := textChunk(data, a.done.Model); ok {
			if text != "" {
				if err := fn(llm.Delta{Text: text, More: er.Buffered()}); err != nil {
					return err
				}
			}
			continue
		}
		if err := p.chunk(&a, data, er.Buffered(), fn); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return llm.ContextError(ctx, p.Name())
	}
	if !a.finished {
		return p.up.Truncated()
	}
	return fn(a.done)
}

// answer is what a stream's chunks have said of the answer so far.
type answer struct {
	done     llm.Delta
	finished bool
}

// chunk reads a chunk that is more than text into a, and calls fn with
// its text; more is whether more of the stream is buffered. Chunks are
// read flat (llm.WalkJSON), so that reading the first and last of every
// answer does not deepen a parked stream's stack; in one that names an
// error, the error is read first.
func (p *Provider) chunk(a *answer, data []byte, more bool, fn func(llm.Delta) error) error {
	if bytes.Contains(data, []byte(`"error"`)) {
		var c struct {
			Error json.RawMessage `json:"error"`
		}
		if err := json.Unmarshal(data, &c); err != nil {
			return p.up.EventError("sent an event that is not JSON", err)
		}
		if len(c.Error) > 0 && string(c.Error) != "null" {
			return p.up.EventError(eventMessage(data), fmt.Errorf("openai: error event: %s", data))
		}
	}
	var text, model, finish string
	var prompt, completion int
	err := llm.WalkJSON(data, func(path, raw []byte) {
		switch string(path) {
		case "model":
			model = llm.JSONString(raw)
		case "choices.0.delta.content":
			text = llm.JSONString(raw)
		case "choices.0.finish_reason":
			finish = llm.JSONString(raw)
		case "usage.prompt_tokens":
			prompt = llm.JSONInt(raw)
		case "usage.completion_tokens":
			completion = llm.JSONInt(raw)
		}
	})
	if err != nil {
		return p.up.EventError("sent an event that is not JSON", err)
	}
	if model != "" {
		a.done.Model = model
	}
	// With include_usage the last chunk has no choices, only usage;
	// the others carry "usage": null.
	if prompt > 0 || completion > 0 {
		a.done.Usage = llm.Usage{InputTokens: prompt, OutputTokens: completion}
	}
	if text != "" {
		if err := fn(llm.Delta{Text: text, More: more}); err != nil {
			return err
		}
	}
	if finish != "" {
		a.done.StopReason, a.finished = finish, true
	}
	return nil
}

// eventMessage reads the message of an error event or body, which servers
// send as {"error": {"message": …}} or, some, {"error": "…"}.
func eventMessage(data []byte) string {
	var ev struct {
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal(data, &ev) != nil {
		return ""
	}
	var obj struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(ev.Error, &obj) == nil && obj.Message != "" {
		return obj.Message
	}
	var s string
	_ = json.Unmarshal(ev.Error, &s)
	return s
}

// Models implements llm.Provider.Models from GET /models.
func (p *Provider) Models(ctx context.Context) ([]llm.Model, error) {
	resp, err := p.send(ctx, http.MethodGet, "/models", nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var list struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if err := p.up.DecodeJSON(ctx, resp.Body, maxBody, "a model list", &list); err != nil {
		return nil, err
	}
	models := make([]llm.Model, len(list.Data))
	for i, m := range list.Data {
		models[i] = llm.Model{ID: llm.OpenAI + "/" + m.ID, Provider: llm.OpenAI, Name: m.ID}
	}
	return models, nil
}

func (p *Provider) firstModel(ctx context.Context) (string, error) {
	models, err := p.Models(ctx)
	if err != nil {
		return "", err
	}
	if len(models) == 0 {
		return "", ferry.Errorf(ferry.Invalid, "no model named, and the server at OPENAI_BASE_URL lists none; set FERRY_DEFAULT_MODEL")
	}
	return models[0].Name, nil
}

// send makes a request with the key, when there is one, and body as JSON
// (nil: none), and returns the response when its status is 2xx; otherwise
// the error llm.Provider promises.
func (p *Provider) send(ctx context.Context, method, path string, body []byte) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, p.base+path, rd)
	if err != nil {
		return nil, &ferry.Error{Code: ferry.Internal, Message: "bad OPENAI_BASE_URL", Err: err}
	}
	if p.key != "" {
		req.Header.Set("Authorization", "Bearer "+p.key)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "text/event-stream")
	} else {
		req.Header.Set("Accept", "application/json")
	}
	return p.up.Do(ctx, p.hc, req, eventMessage)
}

// Package openai adapts the Chat Completions API to llm.Provider, on the
// official Go SDK. It serves OpenAI itself and the servers that speak its
// API: vLLM, llama.cpp, LM Studio, Ollama's /v1.
package openai

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	sdk "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/packages/ssestream"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/llm"
)

// DefaultBaseURL is OpenAI's own API root.
const DefaultBaseURL = "https://api.openai.com/v1"

// Config configures a Provider.
type Config struct {
	// APIKey is OPENAI_API_KEY; local servers often need none.
	APIKey string
	// BaseURL is the API root including /v1 (OPENAI_BASE_URL); empty means
	// DefaultBaseURL.
	BaseURL string
	// HTTPClient makes the calls; nil means the SDK's default client.
	HTTPClient *http.Client
}

// Provider streams chat turns from an OpenAI-compatible server. It is safe
// for concurrent use.
type Provider struct {
	client sdk.Client
	up     llm.Upstream
}

// New returns a Provider for cfg. It makes no call upstream.
func New(cfg Config) *Provider {
	if cfg.BaseURL == "" {
		cfg.BaseURL = DefaultBaseURL
	}
	opts := []option.RequestOption{
		// Set even when empty, so that an OPENAI_* variable the SDK reads
		// from the environment cannot override Ferry's Config.
		option.WithBaseURL(cfg.BaseURL),
		option.WithAPIKey(cfg.APIKey),
		// The SDK's generic Post, which Stream uses, falls back to the
		// admin key when the API key is empty; NewStreaming never sent it,
		// and no OPENAI_ADMIN_KEY in the environment should reach a local
		// server.
		option.WithAdminAPIKey(""),
		// llm.WithRetry retries every provider alike, and only while no
		// text has reached the caller.
		option.WithMaxRetries(0),
	}
	if cfg.HTTPClient != nil {
		opts = append(opts, option.WithHTTPClient(cfg.HTTPClient))
	}
	return &Provider{
		client: sdk.NewClient(opts...),
		up:     llm.Upstream{Name: llm.OpenAI, KeySetting: "OPENAI_API_KEY", URLSetting: "OPENAI_BASE_URL"},
	}
}

// Name returns "openai".
func (p *Provider) Name() string { return llm.OpenAI }

// Accepts reports that Chat Completions servers take text only here.
func (p *Provider) Accepts(k llm.PartKind) bool { return k == llm.PartText }

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
	stream := p.newStream(ctx, req)
	defer stream.Close()

	done := llm.Delta{Done: true}
	finished := false
	for stream.Next() {
		chunk := stream.Current()
		if chunk.Model != "" {
			done.Model = chunk.Model
		}
		// With include_usage the last chunk has no choices, only usage;
		// the others carry "usage": null.
		if u := chunk.Usage; u.PromptTokens > 0 || u.CompletionTokens > 0 {
			done.Usage = llm.Usage{InputTokens: u.PromptTokens, OutputTokens: u.CompletionTokens}
		}
		if len(chunk.Choices) == 0 {
			continue
		}
		c := chunk.Choices[0]
		if c.Delta.Content != "" {
			if err := fn(llm.Delta{Text: c.Delta.Content}); err != nil {
				return err
			}
		}
		if c.FinishReason != "" {
			done.StopReason, finished = c.FinishReason, true
		}
	}
	if err := stream.Err(); err != nil {
		return p.mapError(ctx, err)
	}
	if ctx.Err() != nil {
		return llm.ContextError(ctx, p.Name())
	}
	if !finished {
		return p.up.Truncated()
	}
	return fn(done)
}

// chunk is the part of a chat.completion.chunk that Stream reads. The SDK's
// ChatCompletionChunk decodes every field the API defines through the SDK's
// own reflective decoder, which cost ~19 µs a chunk and dominated Ferry's CPU
// while streaming; encoding/json into this takes a small fraction of that.
type chunk struct {
	Model   string `json:"model"`
	Choices []struct {
		Delta struct {
			Content string `json:"content"`
		} `json:"delta"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Usage struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
	} `json:"usage"`
}

// newStream sends the request as Chat.Completions.NewStreaming does, through
// the SDK's own request path (auth, base URL, HTTP errors as *sdk.Error), but
// decodes the events into chunk. The SDK's Stream decodes a type without an
// UnmarshalJSON method with encoding/json, and still turns an in-stream
// {"error": …} event into the *ssestream.StreamError that mapError reads.
func (p *Provider) newStream(ctx context.Context, req llm.Request) *ssestream.Stream[chunk] {
	var resp *http.Response
	err := p.client.Post(ctx, "chat/completions", params(req), &resp, option.WithJSONSet("stream", true))
	return ssestream.NewStream[chunk](ssestream.NewDecoder(resp), err)
}

func params(req llm.Request) sdk.ChatCompletionNewParams {
	msgs := make([]sdk.ChatCompletionMessageParamUnion, 0, len(req.Messages)+1)
	if req.System != "" {
		msgs = append(msgs, sdk.SystemMessage(req.System))
	}
	for _, m := range req.Messages {
		switch m.Role {
		case "assistant":
			msgs = append(msgs, sdk.AssistantMessage(m.Text()))
		case "system":
			msgs = append(msgs, sdk.SystemMessage(m.Text()))
		default:
			msgs = append(msgs, sdk.UserMessage(m.Text()))
		}
	}
	p := sdk.ChatCompletionNewParams{
		Model:         req.Model,
		Messages:      msgs,
		StreamOptions: sdk.ChatCompletionStreamOptionsParam{IncludeUsage: sdk.Bool(true)},
	}
	if req.MaxTokens > 0 {
		// OpenAI's reasoning models take only max_completion_tokens; the
		// compatible servers know max_tokens better.
		if isReasoningModel(req.Model) {
			p.MaxCompletionTokens = sdk.Int(int64(req.MaxTokens))
		} else {
			p.MaxTokens = sdk.Int(int64(req.MaxTokens))
		}
	}
	return p
}

func isReasoningModel(model string) bool {
	for _, prefix := range []string{"o1", "o3", "o4", "gpt-5"} {
		if strings.HasPrefix(model, prefix) {
			return true
		}
	}
	return false
}

// Models implements llm.Provider.Models from GET /models.
func (p *Provider) Models(ctx context.Context) ([]llm.Model, error) {
	pager := p.client.Models.ListAutoPaging(ctx)
	var models []llm.Model
	for pager.Next() {
		id := pager.Current().ID
		models = append(models, llm.Model{ID: llm.OpenAI + "/" + id, Provider: llm.OpenAI, Name: id})
	}
	if err := pager.Err(); err != nil {
		return nil, p.mapError(ctx, err)
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

// mapError turns what the SDK returned into the errors llm.Provider
// promises.
func (p *Provider) mapError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return llm.ContextError(ctx, p.Name())
	}
	var apiErr *sdk.Error
	if errors.As(err, &apiErr) {
		var header http.Header
		if apiErr.Response != nil {
			header = apiErr.Response.Header
		}
		return p.up.HTTPError(apiErr.StatusCode, header, apiErr.Message, err)
	}
	var streamErr *ssestream.StreamError
	if errors.As(err, &streamErr) {
		return p.up.EventError(eventMessage(streamErr.Event.Data), err)
	}
	return p.up.TransportError(ctx, err)
}

// eventMessage reads the message of an in-stream error event, which servers
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

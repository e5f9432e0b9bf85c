// Package anthropic adapts Anthropic's Messages API to llm.Provider, on the
// official Go SDK.
package anthropic

import (
	"context"
	"errors"
	"net/http"
	"strings"

	sdk "github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/anthropics/anthropic-sdk-go/v2/packages/ssestream"

	"github.com/ferryhq/ferry/llm"
)

// DefaultMaxTokens is the answer length asked for when a request sets none:
// the API requires one, and a short default would cut long answers off.
const DefaultMaxTokens = 8192

// Config configures a Provider.
type Config struct {
	APIKey string // ANTHROPIC_API_KEY
	// BaseURL is the API root (ANTHROPIC_BASE_URL); empty means
	// https://api.anthropic.com.
	BaseURL string
	// HTTPClient makes the calls; nil means the SDK's default client.
	HTTPClient *http.Client
}

// Provider streams chat turns from Anthropic. It is safe for concurrent use.
type Provider struct {
	client sdk.Client
	up     llm.Upstream
}

// New returns a Provider for cfg. It makes no call upstream.
func New(cfg Config) *Provider {
	opts := []option.RequestOption{
		// Ferry's Config is the only source of settings; the SDK would
		// otherwise also read ANTHROPIC_* variables and profiles.
		option.WithoutEnvironmentDefaults(),
		option.WithAPIKey(cfg.APIKey),
		// llm.WithRetry retries every provider alike, and only while no
		// text has reached the caller.
		option.WithMaxRetries(0),
	}
	if cfg.BaseURL != "" {
		opts = append(opts, option.WithBaseURL(cfg.BaseURL))
	}
	if cfg.HTTPClient != nil {
		opts = append(opts, option.WithHTTPClient(cfg.HTTPClient))
	}
	return &Provider{
		client: sdk.NewClient(opts...),
		up:     llm.Upstream{Name: llm.Anthropic, KeySetting: "ANTHROPIC_API_KEY", URLSetting: "ANTHROPIC_BASE_URL"},
	}
}

// Name returns "anthropic".
func (p *Provider) Name() string { return llm.Anthropic }

// Accepts reports that Anthropic takes text and documents (PDFs).
func (p *Provider) Accepts(k llm.PartKind) bool { return k == llm.PartText || k == llm.PartDocument }

// Stream implements llm.Provider.Stream. An empty req.Model means
// claude-sonnet-4-6; req.MaxTokens 0 means DefaultMaxTokens.
func (p *Provider) Stream(ctx context.Context, req llm.Request, fn func(llm.Delta) error) error {
	stream := p.newStream(ctx, req)
	defer stream.Close()

	done := llm.Delta{Done: true}
	var input, cacheWrite, cacheRead int64
	stopped := false
	for stream.Next() {
		ev := stream.Current()
		switch ev.Type {
		case "message_start":
			u := ev.Message.Usage
			done.Model = ev.Message.Model
			input, cacheWrite, cacheRead = u.InputTokens, u.CacheCreationInputTokens, u.CacheReadInputTokens
			done.Usage.OutputTokens = int(u.OutputTokens)
		case "content_block_delta":
			if ev.Delta.Type == "text_delta" && ev.Delta.Text != "" {
				if err := fn(llm.Delta{Text: ev.Delta.Text}); err != nil {
					return err
				}
			}
		case "message_delta":
			// Its usage counts are cumulative; a count it leaves out stays
			// as message_start gave it.
			done.StopReason = ev.Delta.StopReason
			if u := ev.Usage; u.OutputTokens > 0 {
				done.Usage.OutputTokens = int(u.OutputTokens)
			}
			if u := ev.Usage; u.InputTokens > 0 {
				input, cacheWrite, cacheRead = u.InputTokens, u.CacheCreationInputTokens, u.CacheReadInputTokens
			}
		case "message_stop":
			stopped = true
		}
	}
	if err := stream.Err(); err != nil {
		return p.mapError(ctx, err)
	}
	if ctx.Err() != nil {
		return llm.ContextError(ctx, p.Name())
	}
	if !stopped {
		return p.up.Truncated()
	}
	// input_tokens leaves out the prompt tokens served from or written to
	// the cache; Ferry counts everything the model read.
	done.Usage.InputTokens = int(input + cacheWrite + cacheRead)
	return fn(done)
}

// event is the part of a Messages stream event that Stream reads. The SDK's
// MessageStreamEventUnion decodes every field of every event type through
// the SDK's own reflective decoder, which cost ~9 µs an event and dominated
// Ferry's CPU while streaming; encoding/json into this takes a fraction.
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
}

type usage struct {
	InputTokens              int64 `json:"input_tokens"`
	CacheCreationInputTokens int64 `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int64 `json:"cache_read_input_tokens"`
	OutputTokens             int64 `json:"output_tokens"`
}

// newStream sends the request as Messages.NewStreaming does, through the
// SDK's own request path (auth and version headers, base URL, HTTP errors as
// *sdk.Error), but decodes the events into event. The SDK's Stream decodes a
// type without an UnmarshalJSON method with encoding/json, skips pings, and
// still turns an "event: error" into the *sdk.Error that mapError reads.
// What NewStreaming adds besides, OpenTelemetry span attributes and
// per-request workspace headers, Ferry does not use.
func (p *Provider) newStream(ctx context.Context, req llm.Request) *ssestream.Stream[event] {
	var resp *http.Response
	err := p.client.Post(ctx, "v1/messages", params(req), &resp, option.WithJSONSet("stream", true))
	return ssestream.NewStream[event](ssestream.NewDecoder(resp), err)
}

func params(req llm.Request) sdk.MessageNewParams {
	model := req.Model
	if model == "" {
		model = llm.DefaultAnthropicModel
	}
	maxTokens := int64(req.MaxTokens)
	if maxTokens <= 0 {
		maxTokens = DefaultMaxTokens
	}
	system := []string{}
	if req.System != "" {
		system = append(system, req.System)
	}
	msgs := make([]sdk.MessageParam, 0, len(req.Messages))
	for _, m := range req.Messages {
		switch m.Role {
		case "assistant":
			msgs = append(msgs, sdk.NewAssistantMessage(sdk.NewTextBlock(m.Text())))
		case "system":
			// The Messages API takes the system prompt beside the turns.
			system = append(system, m.Text())
		default:
			msgs = append(msgs, sdk.NewUserMessage(sdk.NewTextBlock(m.Text())))
		}
	}
	p := sdk.MessageNewParams{Model: model, MaxTokens: maxTokens, Messages: msgs}
	if len(system) > 0 {
		p.System = []sdk.TextBlockParam{{Text: strings.Join(system, "\n\n")}}
	}
	return p
}

// Models implements llm.Provider.Models from the Models API.
func (p *Provider) Models(ctx context.Context) ([]llm.Model, error) {
	pager := p.client.Models.ListAutoPaging(ctx, sdk.ModelListParams{Limit: sdk.Int(1000)})
	var models []llm.Model
	for pager.Next() {
		id := pager.Current().ID
		models = append(models, llm.Model{ID: llm.Anthropic + "/" + id, Provider: llm.Anthropic, Name: id})
	}
	if err := pager.Err(); err != nil {
		return nil, p.mapError(ctx, err)
	}
	return models, nil
}

// mapError turns what the SDK returned into the errors llm.Provider
// promises.
func (p *Provider) mapError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return llm.ContextError(ctx, p.Name())
	}
	var apiErr *sdk.Error
	if !errors.As(err, &apiErr) {
		return p.up.TransportError(ctx, err)
	}
	if apiErr.StatusCode < 400 {
		// An "event: error" in a stream that began with 200 OK.
		return p.up.EventError(apiErr.Message, err)
	}
	var header http.Header
	if apiErr.Response != nil {
		header = apiErr.Response.Header
	}
	return p.up.HTTPError(apiErr.StatusCode, header, apiErr.Message, err)
}

package compat_test

import (
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"

	"github.com/ferryhq/ferry/llm/llmtest"
	"github.com/ferryhq/ferry/store/storetest"
)

// anthropicClient is Anthropic's official client pointed at ferry with
// the user's API key, without retries so that each call is one request,
// and with nothing read from the environment (no ANTHROPIC_* setting of a
// developer's leaks in). The SDK sends its API key as a bearer token; with
// xAPIKey it is sent in x-api-key instead, as Anthropic's other SDKs and
// the tools built on them send it.
func (g *gateway) anthropicClient(xAPIKey bool, opts ...option.RequestOption) *anthropic.Client {
	base := []option.RequestOption{option.WithoutEnvironmentDefaults(), option.WithBaseURL(g.url), option.WithMaxRetries(0)}
	if xAPIKey {
		base = append(base, option.WithHeader("X-Api-Key", g.key))
	} else {
		base = append(base, option.WithAPIKey(g.key))
	}
	c := anthropic.NewClient(append(base, opts...)...)
	return &c
}

// TestAnthropicSDKStreamPerProvider streams through /v1/messages with the
// SDK's accumulator to each provider on each engine.
func TestAnthropicSDKStreamPerProvider(t *testing.T) {
	t.Parallel()
	for _, rt := range routes {
		t.Run(rt.provider, func(t *testing.T) {
			t.Parallel()
			for _, engine := range storetest.Engines(t) {
				t.Run(engine, func(t *testing.T) {
					g := newGateway(t, gatewayOptions{engine: engine})
					g.fake.SetScript(llmtest.Script{Deltas: tricky, InputTokens: 7, OutputTokens: 9})
					client := g.anthropicClient(true)
					stream := client.Messages.NewStreaming(t.Context(), anthropic.MessageNewParams{
						Model:     anthropic.Model(rt.model),
						MaxTokens: 321,
						System:    []anthropic.TextBlockParam{{Text: "be brief"}},
						Messages: []anthropic.MessageParam{
							anthropic.NewUserMessage(anthropic.NewTextBlock("hi")),
							anthropic.NewAssistantMessage(anthropic.NewTextBlock("hello")),
							anthropic.NewUserMessage(anthropic.NewTextBlock("say 你好")),
						},
						StopSequences: []string{"END"},
						Metadata:      anthropic.MetadataParam{UserID: anthropic.String("someone")},
					}, option.WithJSONSet("temperature", 0.2))
					defer stream.Close()
					var msg anthropic.Message
					events := 0
					for stream.Next() {
						if err := msg.Accumulate(stream.Current()); err != nil {
							t.Fatalf("accumulate: %v", err)
						}
						events++
					}
					if err := stream.Err(); err != nil {
						t.Fatalf("stream: %v", err)
					}
					if len(msg.Content) != 1 || msg.Content[0].Type != "text" || msg.Content[0].Text != strings.Join(tricky, "") {
						t.Errorf("content = %s", msg.RawJSON())
					}
					if !strings.HasPrefix(msg.ID, "msg_") || string(msg.Model) != rt.model || msg.StopReason != anthropic.StopReasonEndTurn {
						t.Errorf("message id %q model %q stop %q", msg.ID, msg.Model, msg.StopReason)
					}
					if msg.Usage.InputTokens != 7 || msg.Usage.OutputTokens != 9 {
						t.Errorf("usage = %s, want 7 in, 9 out", msg.Usage.RawJSON())
					}
					// message_start, content_block_start, a delta per piece,
					// content_block_stop, message_delta, message_stop: the SDK
					// skips the ping.
					if want := 5 + len(tricky); events != want {
						t.Errorf("%d events, want %d", events, want)
					}

					up := g.fake.Last()
					if up.Path != rt.path {
						t.Errorf("upstream path = %s, want %s", up.Path, rt.path)
					}
					for _, want := range []string{"be brief", "hello", "say 你好", "321", "0.2", "END"} {
						if !strings.Contains(string(up.Body), want) {
							t.Errorf("upstream body lacks %q: %s", want, up.Body)
						}
					}
					u := g.usage(t, 1)[0]
					if u.Endpoint != "/v1/messages" || u.Provider != rt.provider || u.APIKeyID != g.keyID ||
						u.InputTokens != 7 || u.OutputTokens != 9 || u.Status != "complete" {
						t.Errorf("usage log entry = %+v", u)
					}
				})
			}
		})
	}
}

// TestAnthropicSDKNonStreaming answers in one Message, with the key sent
// as the SDK sends it (a bearer token), and counts tokens.
func TestAnthropicSDKNonStreaming(t *testing.T) {
	t.Parallel()
	g := newGateway(t, gatewayOptions{})
	g.fake.SetScript(llmtest.Script{Deltas: tricky, InputTokens: 3, OutputTokens: 4, StopReason: "length"})
	client := g.anthropicClient(false)
	msg, err := client.Messages.New(t.Context(), anthropic.MessageNewParams{
		Model:     "ollama/llama3.2",
		MaxTokens: 50,
		Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hi"))},
	})
	if err != nil {
		t.Fatal(err)
	}
	if msg.Type != "message" || msg.Role != "assistant" || len(msg.Content) != 1 || msg.Content[0].Text != strings.Join(tricky, "") ||
		msg.StopReason != anthropic.StopReasonMaxTokens || msg.Usage.InputTokens != 3 || msg.Usage.OutputTokens != 4 {
		t.Errorf("message = %s", msg.RawJSON())
	}

	before := len(g.fake.Requests())
	count, err := client.Messages.CountTokens(t.Context(), anthropic.MessageCountTokensParams{
		Model:    "claude-sonnet-4-6",
		System:   anthropic.MessageCountTokensParamsSystemUnion{OfString: anthropic.String("be brief")},
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(strings.Repeat("word ", 100)))},
	})
	if err != nil {
		t.Fatal(err)
	}
	if count.InputTokens < 100 || count.InputTokens > 200 {
		t.Errorf("count_tokens = %d, want about 127", count.InputTokens)
	}
	if n := len(g.fake.Requests()) - before; n != 0 {
		t.Errorf("count_tokens sent %d requests upstream, want none", n)
	}
}

// TestAnthropicSDKDocument sends a PDF as a document block: an Anthropic
// model gets the file itself.
func TestAnthropicSDKDocument(t *testing.T) {
	t.Parallel()
	g := newGateway(t, gatewayOptions{only: []string{"anthropic"}})
	g.fake.SetScript(llmtest.Script{Deltas: []string{"a summary"}})
	pdf := []byte("%PDF-1.4\n% a stand-in: Anthropic's fake checks only the encoding\n%%EOF\n")
	client := g.anthropicClient(true)
	msg, err := client.Messages.New(t.Context(), anthropic.MessageNewParams{
		Model:     "claude-sonnet-4-6",
		MaxTokens: 100,
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(
			anthropic.NewDocumentBlock(anthropic.Base64PDFSourceParam{Data: base64.StdEncoding.EncodeToString(pdf)}),
			anthropic.NewTextBlock("summarise"))},
	})
	if err != nil {
		t.Fatal(err)
	}
	if msg.Content[0].Text != "a summary" {
		t.Errorf("message = %s", msg.RawJSON())
	}
	docs := g.fake.Last().Documents()
	if len(docs) != 1 || string(docs[0].Data) != string(pdf) || docs[0].MediaType != "application/pdf" {
		t.Errorf("the fake got %d documents, want the PDF", len(docs))
	}
}

// TestAnthropicSDKSeesErrors checks that Ferry's errors surface as the
// SDK's *anthropic.Error with the status and Anthropic's error type.
func TestAnthropicSDKSeesErrors(t *testing.T) {
	t.Parallel()
	g := newGateway(t, gatewayOptions{only: []string{"anthropic"}})
	params := anthropic.MessageNewParams{Model: "claude-sonnet-4-6", MaxTokens: 10,
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hi"))}}
	apiError := func(t *testing.T, err error, status int, typ, message string) {
		t.Helper()
		var ae *anthropic.Error
		if !errors.As(err, &ae) {
			t.Fatalf("error %v (%T), want *anthropic.Error", err, err)
		}
		if ae.StatusCode != status || string(ae.Type()) != typ || !strings.Contains(ae.Message, message) {
			t.Errorf("error %d %s %q, want %d %s %q", ae.StatusCode, ae.Type(), ae.Message, status, typ, message)
		}
	}

	t.Run("bad key", func(t *testing.T) {
		client := anthropic.NewClient(option.WithoutEnvironmentDefaults(), option.WithBaseURL(g.url), option.WithMaxRetries(0),
			option.WithAPIKey("fk_not-a-key"))
		_, err := client.Messages.New(t.Context(), params)
		apiError(t, err, http.StatusUnauthorized, "authentication_error", "")
	})
	t.Run("unconfigured provider", func(t *testing.T) {
		p := params
		p.Model = "gpt-4o"
		_, err := g.anthropicClient(true).Messages.New(t.Context(), p)
		apiError(t, err, http.StatusBadRequest, "invalid_request_error", "OPENAI_API_KEY")
	})
	t.Run("tools", func(t *testing.T) {
		p := params
		p.Tools = []anthropic.ToolUnionParam{{OfTool: &anthropic.ToolParam{Name: "get_weather",
			InputSchema: anthropic.ToolInputSchemaParam{Properties: map[string]any{}}}}}
		_, err := g.anthropicClient(true).Messages.New(t.Context(), p)
		apiError(t, err, http.StatusBadRequest, "invalid_request_error", "tools: tool use is not supported yet")
	})
	t.Run("upstream rate limit", func(t *testing.T) {
		g.fake.SetScript(llmtest.Script{FailFirst: 10, FailStatus: 429, FailHeader: http.Header{"Retry-After": {"3"}}})
		stream := g.anthropicClient(true).Messages.NewStreaming(t.Context(), params)
		defer stream.Close()
		for stream.Next() {
		}
		apiError(t, stream.Err(), http.StatusTooManyRequests, "rate_limit_error", "anthropic is rate limiting")
	})
	t.Run("upstream overloaded", func(t *testing.T) {
		g.fake.SetScript(llmtest.Script{FailFirst: 10, FailStatus: 529})
		_, err := g.anthropicClient(true).Messages.New(t.Context(), params)
		apiError(t, err, http.StatusServiceUnavailable, "overloaded_error", "anthropic is unavailable")
	})
	t.Run("error event mid-stream", func(t *testing.T) {
		g.fake.SetScript(llmtest.Script{Deltas: []string{"a", "b"}, Break: llmtest.ErrorEvent, BreakAfter: 1})
		stream := g.anthropicClient(true).Messages.NewStreaming(t.Context(), params)
		defer stream.Close()
		var text strings.Builder
		for stream.Next() {
			if ev := stream.Current(); ev.Type == "content_block_delta" {
				text.WriteString(ev.Delta.Text)
			}
		}
		if stream.Err() == nil || text.String() != "a" {
			t.Errorf("stream error %v after %q, want an error after the first delta", stream.Err(), text.String())
		}
	})
}

package compat_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	sdk "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"

	"github.com/ferryhq/ferry/llm/llmtest"
	"github.com/ferryhq/ferry/store/storetest"
)

// client is OpenAI's official client pointed at ferry's /v1 with the
// user's API key, without retries so that each call is one request.
func (g *gateway) client(opts ...option.RequestOption) *sdk.Client {
	c := sdk.NewClient(append([]option.RequestOption{
		option.WithBaseURL(g.url + "/v1"), option.WithAPIKey(g.key), option.WithMaxRetries(0),
	}, opts...)...)
	return &c
}

// tricky is text that JSON and SSE framing get wrong: newlines, quotes,
// backslashes, Chinese, a line that looks like an event, emoji.
var tricky = []string{"第一行\n", "\"引号\" and 'single'", "\\ 中文", "\n\n", "data: [DONE]\n", " <&> ", "emoji 🙂", "\r\n end"}

var routes = []struct {
	provider, model, path string
}{
	{"anthropic", "anthropic/claude-sonnet-4-6", "/v1/messages"},
	{"openai", "gpt-4o-mini", "/v1/chat/completions"},
	{"ollama", "ollama/llama3.2", "/api/chat"},
}

func TestOpenAIStreamPerProvider(t *testing.T) {
	t.Parallel()
	for _, rt := range routes {
		t.Run(rt.provider, func(t *testing.T) {
			t.Parallel()
			for _, engine := range storetest.Engines(t) {
				t.Run(engine, func(t *testing.T) {
					g := newGateway(t, gatewayOptions{engine: engine})
					g.fake.SetScript(llmtest.Script{Deltas: tricky, InputTokens: 7, OutputTokens: 9})
					stream := g.client().Chat.Completions.NewStreaming(t.Context(), sdk.ChatCompletionNewParams{
						Model:               sdk.ChatModel(rt.model),
						Messages:            []sdk.ChatCompletionMessageParamUnion{sdk.SystemMessage("be brief"), sdk.UserMessage("say 你好")},
						StreamOptions:       sdk.ChatCompletionStreamOptionsParam{IncludeUsage: sdk.Bool(true)},
						MaxCompletionTokens: sdk.Int(321),
						Temperature:         sdk.Float(0.2),
						User:                sdk.String("someone"),
					})
					defer stream.Close()
					var acc sdk.ChatCompletionAccumulator
					var text strings.Builder
					for stream.Next() {
						chunk := stream.Current()
						acc.AddChunk(chunk)
						if !strings.HasPrefix(chunk.ID, "chatcmpl-") || chunk.Object != "chat.completion.chunk" || chunk.Model != rt.model {
							t.Errorf("chunk id %q object %q model %q", chunk.ID, chunk.Object, chunk.Model)
						}
						if len(chunk.Choices) > 0 {
							text.WriteString(chunk.Choices[0].Delta.Content)
						}
					}
					if err := stream.Err(); err != nil {
						t.Fatalf("stream: %v", err)
					}
					if want := strings.Join(tricky, ""); text.String() != want {
						t.Errorf("text = %q, want %q", text.String(), want)
					}
					if u := acc.Usage; u.PromptTokens != 7 || u.CompletionTokens != 9 || u.TotalTokens != 16 {
						t.Errorf("usage = %+v, want 7 + 9 = 16", u)
					}
					if len(acc.Choices) != 1 || acc.Choices[0].FinishReason != "stop" {
						t.Errorf("choices = %+v, want one that stopped", acc.Choices)
					}

					up := g.fake.Last()
					if up.Path != rt.path {
						t.Errorf("upstream path = %s, want %s", up.Path, rt.path)
					}
					for _, want := range []string{"be brief", "say 你好", "321"} {
						if !strings.Contains(string(up.Body), want) {
							t.Errorf("upstream body lacks %q: %s", want, up.Body)
						}
					}
					u := g.usage(t, 1)[0]
					if u.Endpoint != "/v1/chat/completions" || u.Provider != rt.provider || u.APIKeyID != g.keyID ||
						u.InputTokens != 7 || u.OutputTokens != 9 || u.Status != "complete" || u.Model == "" {
						t.Errorf("usage log entry = %+v", u)
					}
				})
			}
		})
	}
}

func TestOpenAINonStreamingPerProvider(t *testing.T) {
	t.Parallel()
	for _, rt := range routes {
		t.Run(rt.provider, func(t *testing.T) {
			t.Parallel()
			g := newGateway(t, gatewayOptions{})
			g.fake.SetScript(llmtest.Script{Deltas: tricky, InputTokens: 3, OutputTokens: 4, StopReason: map[string]string{
				"anthropic": "max_tokens", "openai": "length", "ollama": "length"}[rt.provider]})
			// An access token works as well as an API key.
			res, err := g.client(option.WithAPIKey(g.token)).Chat.Completions.New(t.Context(), sdk.ChatCompletionNewParams{
				Model:     sdk.ChatModel(rt.model),
				Messages:  []sdk.ChatCompletionMessageParamUnion{sdk.DeveloperMessage("be brief"), sdk.UserMessage("hi"), sdk.AssistantMessage("ok"), sdk.UserMessage("more")},
				MaxTokens: sdk.Int(50),
			})
			if err != nil {
				t.Fatal(err)
			}
			if res.Object != "chat.completion" || !strings.HasPrefix(res.ID, "chatcmpl-") || res.Model != rt.model || len(res.Choices) != 1 {
				t.Fatalf("completion = %s", res.RawJSON())
			}
			c := res.Choices[0]
			if c.Message.Role != "assistant" || c.Message.Content != strings.Join(tricky, "") || c.FinishReason != "length" {
				t.Errorf("choice = %s", c.RawJSON())
			}
			if res.Usage.PromptTokens != 3 || res.Usage.CompletionTokens != 4 || res.Usage.TotalTokens != 7 {
				t.Errorf("usage = %s", res.Usage.RawJSON())
			}
			if u := g.usage(t, 1)[0]; u.APIKeyID != "" || u.Status != "complete" || u.OutputTokens != 4 {
				t.Errorf("usage log entry = %+v, want one without an API key", u)
			}
		})
	}
}

// TestOpenAIClientSeesErrors checks the errors through the official client.
func TestOpenAIClientSeesErrors(t *testing.T) {
	t.Parallel()
	g := newGateway(t, gatewayOptions{only: []string{"ollama"}})
	params := sdk.ChatCompletionNewParams{Model: "gpt-4o", Messages: []sdk.ChatCompletionMessageParamUnion{sdk.UserMessage("hi")}}

	var apiErr *sdk.Error
	_, err := g.client(option.WithAPIKey("fk_wrong")).Chat.Completions.New(t.Context(), params)
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 401 || apiErr.Type != "authentication_error" || apiErr.Message == "" {
		t.Errorf("bad key: %v (%+v)", err, apiErr)
	}
	stream := g.client(option.WithAPIKey("fk_wrong")).Chat.Completions.NewStreaming(t.Context(), params)
	for stream.Next() {
		t.Error("a chunk for a bad key")
	}
	if !errors.As(stream.Err(), &apiErr) || apiErr.StatusCode != 401 {
		t.Errorf("bad key, streaming: %v", stream.Err())
	}
	stream.Close()

	_, err = g.client().Chat.Completions.New(t.Context(), params)
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 400 || !strings.Contains(apiErr.Message, "OPENAI_API_KEY") || apiErr.Code != "invalid" {
		t.Errorf("unconfigured model: %v (%s)", err, apiErr.RawJSON())
	}
	stream = g.client().Chat.Completions.NewStreaming(t.Context(), params)
	for stream.Next() {
		t.Error("a chunk for an unconfigured model")
	}
	if !errors.As(stream.Err(), &apiErr) || apiErr.StatusCode != 400 {
		t.Errorf("unconfigured model, streaming: %v", stream.Err())
	}
	stream.Close()
}

func TestOpenAIErrorMidStream(t *testing.T) {
	t.Parallel()
	g := newGateway(t, gatewayOptions{})
	g.fake.SetScript(llmtest.Script{Deltas: llmtest.Deltas(10), Break: llmtest.ErrorEvent, BreakAfter: 3, ErrorMessage: "Overloaded right now"})
	stream := g.client().Chat.Completions.NewStreaming(t.Context(), sdk.ChatCompletionNewParams{
		Model: "claude-sonnet-4-6", Messages: []sdk.ChatCompletionMessageParamUnion{sdk.UserMessage("hi")}})
	var text strings.Builder
	for stream.Next() {
		if c := stream.Current(); len(c.Choices) > 0 {
			text.WriteString(c.Choices[0].Delta.Content)
		}
	}
	if want := strings.Join(llmtest.Deltas(3), ""); text.String() != want {
		t.Errorf("text before the error = %q, want %q", text.String(), want)
	}
	if err := stream.Err(); err == nil || !strings.Contains(err.Error(), "Overloaded right now") {
		t.Errorf("stream error = %v, want the upstream's", err)
	}
	stream.Close()
	if u := g.usage(t, 1)[0]; u.Status != "failed" || u.OutputTokens == 0 {
		t.Errorf("usage log entry = %+v, want failed with estimated tokens", u)
	}
}

func TestOpenAIClientDisconnectCancelsUpstream(t *testing.T) {
	t.Parallel()
	for _, rt := range routes {
		t.Run(rt.provider, func(t *testing.T) {
			t.Parallel()
			g := newGateway(t, gatewayOptions{})
			// The upstream falls silent after two deltas, so that nothing but
			// the request's context can tell it the client left.
			g.fake.SetScript(llmtest.Script{Deltas: llmtest.Deltas(500), Break: llmtest.Hang, BreakAfter: 2})
			ctx, cancel := context.WithCancel(t.Context())
			stream := g.client().Chat.Completions.NewStreaming(ctx, sdk.ChatCompletionNewParams{
				Model: sdk.ChatModel(rt.model), Messages: []sdk.ChatCompletionMessageParamUnion{sdk.UserMessage("hi")}})
			for stream.Next() {
				if c := stream.Current(); len(c.Choices) > 0 && c.Choices[0].Delta.Content != "" {
					break
				}
			}
			cancel()
			stream.Close()
			up := g.fake.Last()
			select {
			case <-up.Done():
			case <-time.After(5 * time.Second):
				t.Fatal("the upstream request did not end after the client left")
			}
			if !up.Cancelled() {
				t.Error("the upstream request was not cancelled")
			}
			if n := up.DeltasSent(); n >= 500 {
				t.Errorf("upstream sent all %d deltas", n)
			}
			if u := g.usage(t, 1)[0]; u.Status != "cancelled" {
				t.Errorf("usage status = %q, want cancelled", u.Status)
			}
		})
	}
}

func TestOpenAIModels(t *testing.T) {
	t.Parallel()
	g := newGateway(t, gatewayOptions{})
	page, err := g.client().Models.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	owners := map[string]string{}
	for _, m := range page.Data {
		if m.Object != "model" {
			t.Errorf("model %s object %q", m.ID, m.Object)
		}
		owners[m.ID] = m.OwnedBy
	}
	for id, owner := range map[string]string{"anthropic/claude-sonnet-4-6": "anthropic", "openai/gpt-4o-mini": "openai", "ollama/llama3.2:latest": "ollama"} {
		if owners[id] != owner {
			t.Errorf("model %s owned by %q, want %q (all: %v)", id, owners[id], owner, owners)
		}
	}
	if resp := g.send(t, "GET", "/v1/models", ""); resp.StatusCode != 401 {
		t.Errorf("unauthenticated: status %d", resp.StatusCode)
	}
}

// TestOpenAIClientSamplingReachesUpstream checks that the SDK's sampling
// parameters reach each provider under its own names, and that what Ferry
// cannot honour (tools; a seed for Anthropic) comes back as an SDK error
// whose message and param name the parameter.
func TestOpenAIClientSamplingReachesUpstream(t *testing.T) {
	t.Parallel()
	g := newGateway(t, gatewayOptions{})
	g.fake.SetScript(llmtest.Script{Deltas: []string{"ok"}})
	want := map[string]map[string]string{
		"anthropic": {"temperature": `0`, "top_p": `0.5`, "stop_sequences": `["END"]`, "metadata": `{"user_id":"someone"}`},
		"openai":    {"temperature": `0`, "top_p": `0.5`, "stop": `["END"]`, "user": `"someone"`, "seed": `7`, "presence_penalty": `0.5`},
		"ollama":    {"options": `{"temperature":0,"top_p":0.5,"stop":["END"],"seed":7,"presence_penalty":0.5}`},
	}
	for _, rt := range routes {
		params := sdk.ChatCompletionNewParams{
			Model:       sdk.ChatModel(rt.model),
			Messages:    []sdk.ChatCompletionMessageParamUnion{sdk.UserMessage("hi")},
			Temperature: sdk.Float(0),
			TopP:        sdk.Float(0.5),
			Stop:        sdk.ChatCompletionNewParamsStopUnion{OfString: sdk.String("END")},
			User:        sdk.String("someone"),
		}
		if rt.provider != "anthropic" {
			params.Seed, params.PresencePenalty = sdk.Int(7), sdk.Float(0.5)
		}
		if _, err := g.client().Chat.Completions.New(t.Context(), params); err != nil {
			t.Fatalf("%s: %v", rt.provider, err)
		}
		var got map[string]json.RawMessage
		if err := g.fake.Last().JSON(&got); err != nil {
			t.Fatal(err)
		}
		for k, v := range want[rt.provider] {
			if string(got[k]) != v {
				t.Errorf("%s: upstream %s = %s, want %s", rt.provider, k, got[k], v)
			}
		}
	}

	var apiErr *sdk.Error
	before := len(g.fake.Requests())
	_, err := g.client().Chat.Completions.New(t.Context(), sdk.ChatCompletionNewParams{
		Model:    "gpt-4o-mini",
		Messages: []sdk.ChatCompletionMessageParamUnion{sdk.UserMessage("what time is it?")},
		Tools:    []sdk.ChatCompletionToolUnionParam{sdk.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{Name: "now"})},
	})
	// The SDK's Error() gives only the status; its Message is Ferry's.
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 400 || apiErr.Param != "tools" ||
		!strings.HasPrefix(apiErr.Message, "tools: ") || !strings.Contains(apiErr.Message, "not supported") {
		t.Errorf("tools: %v (%+v)", err, apiErr)
	}
	stream := g.client().Chat.Completions.NewStreaming(t.Context(), sdk.ChatCompletionNewParams{
		Model:    "anthropic/claude-sonnet-4-6",
		Messages: []sdk.ChatCompletionMessageParamUnion{sdk.UserMessage("hi")},
		Seed:     sdk.Int(7),
	})
	for stream.Next() {
		t.Error("a chunk for a seed Anthropic cannot honour")
	}
	if !errors.As(stream.Err(), &apiErr) || apiErr.StatusCode != 400 || apiErr.Param != "seed" || !strings.Contains(apiErr.Message, "anthropic") {
		t.Errorf("seed for Anthropic, streaming: %v", stream.Err())
	}
	stream.Close()
	if n := len(g.fake.Requests()) - before; n != 0 {
		t.Errorf("%d refused requests reached the upstream", n)
	}
}

// TestOpenAIClientUnknownRoute checks that a /v1 route Ferry does not
// serve answers in OpenAI's error shape, so that the SDK shows why.
func TestOpenAIClientUnknownRoute(t *testing.T) {
	t.Parallel()
	g := newGateway(t, gatewayOptions{only: []string{"ollama"}})
	_, err := g.client().Embeddings.New(t.Context(), sdk.EmbeddingNewParams{
		Model: "text-embedding-3-small", Input: sdk.EmbeddingNewParamsInputUnion{OfString: sdk.String("hi")}})
	var apiErr *sdk.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 404 || !strings.Contains(apiErr.Message, "/v1/embeddings") {
		t.Errorf("embeddings: %v", err)
	}
}

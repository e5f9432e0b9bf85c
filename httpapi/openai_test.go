package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net/http"
	"strings"
	"testing"
	"time"

	sdk "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/llm/llmtest"
	"github.com/ferryhq/ferry/store/storetest"
)

// client is OpenAI's official client pointed at Ferry, without retries so
// that each call is one request.
func (g *gateway) client(opts ...option.RequestOption) *sdk.Client {
	c := sdk.NewClient(append([]option.RequestOption{
		option.WithBaseURL(g.url + "/v1"), option.WithAPIKey(g.key), option.WithMaxRetries(0),
	}, opts...)...)
	return &c
}

// send makes a raw request with the bearer credential (none when empty);
// body is sent as is when a string, else as JSON.
func (g *gateway) send(t *testing.T, ctx context.Context, method, path, cred string, body any) *http.Response {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = strings.NewReader(string(j))
	}
	req, err := http.NewRequestWithContext(ctx, method, g.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if cred != "" {
		req.Header.Set("Authorization", "Bearer "+cred)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// usage waits until the usage log holds n entries for the user (they are
// written as a call ends, which for a client that left is after it left)
// and returns them.
func (g *gateway) usage(t *testing.T, n int) []*ferry.Usage {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		list, err := g.store.UsageFor(context.Background(), g.userID)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) >= n {
			if len(list) > n {
				t.Fatalf("usage log has %d entries, want %d", len(list), n)
			}
			return list
		}
		if time.Now().After(deadline) {
			t.Fatalf("usage log has %d entries after 5s, want %d", len(list), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
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

// TestOpenAIRequestShapes sends what other clients send: content as arrays
// of text parts, developer messages, nulls and fields Ferry ignores.
func TestOpenAIRequestShapes(t *testing.T) {
	t.Parallel()
	g := newGateway(t, gatewayOptions{only: []string{"anthropic"}})
	g.fake.SetScript(llmtest.Script{Deltas: []string{"ok"}})
	resp := g.send(t, t.Context(), "POST", "/v1/chat/completions", g.key, `{
		"model": "claude-haiku-4-5",
		"messages": [
			{"role": "system", "content": "rule one"},
			{"role": "developer", "content": [{"type": "text", "text": "rule two"}]},
			{"role": "user", "content": [{"type": "text", "text": "part one"}, {"type": "text", "text": "part two"}], "name": "me"},
			{"role": "assistant", "content": null, "refusal": null},
			{"role": "user", "content": "again"}
		],
		"temperature": 0.7, "top_p": 1, "n": 1, "user": "u", "seed": 1, "stop": null, "max_tokens": null,
		"stream": false, "stream_options": null, "presence_penalty": 0, "logit_bias": {}, "metadata": {"a": "b"}
	}`)
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	var up struct {
		System   any `json:"system"`
		Messages []struct {
			Role    string          `json:"role"`
			Content json.RawMessage `json:"content"`
		} `json:"messages"`
	}
	if err := g.fake.Last().JSON(&up); err != nil {
		t.Fatal(err)
	}
	sent := string(g.fake.Last().Body)
	for _, want := range []string{"rule one", "rule two", `part one\npart two`, "again"} {
		if !strings.Contains(sent, want) {
			t.Errorf("upstream body lacks %q: %s", want, sent)
		}
	}
	// System and developer messages are the system prompt; an assistant
	// message without text is left out.
	if len(up.Messages) != 2 {
		t.Errorf("upstream got %d messages, want 2: %s", len(up.Messages), sent)
	}
}

// openAIError is an error body in OpenAI's shape.
type openAIError struct {
	Error *struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    *string `json:"code"`
	} `json:"error"`
}

func readOpenAIError(t *testing.T, resp *http.Response) openAIError {
	t.Helper()
	body, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var e openAIError
	if err := json.Unmarshal(body, &e); err != nil || e.Error == nil || e.Error.Message == "" || e.Error.Type == "" {
		t.Fatalf("not an OpenAI error body: %s", body)
	}
	var raw map[string]map[string]any
	json.Unmarshal(body, &raw)
	for _, k := range []string{"message", "type", "param", "code"} {
		if _, ok := raw["error"][k]; !ok {
			t.Errorf("error body lacks %q: %s", k, body)
		}
	}
	return e
}

// TestOpenAIErrorsBeforeStream checks that every refusal on /v1 (huma's
// own, authentication's, the handler's and the upstream's) reaches the
// client with its status in OpenAI's error shape, streaming or not.
func TestOpenAIErrorsBeforeStream(t *testing.T) {
	t.Parallel()
	g := newGateway(t, gatewayOptions{only: []string{"openai", "ollama"}, maxBody: 4096})
	msgs := []map[string]any{{"role": "user", "content": "hi"}}
	for _, sc := range []struct {
		name   string
		cred   string
		script *llmtest.Script
		body   any
		status int
		typ    string
		param  string
		says   string
		header map[string]string
	}{
		{name: "no credential", body: map[string]any{"model": "gpt-4o-mini", "messages": msgs},
			status: 401, typ: "authentication_error", says: "bearer"},
		{name: "bad API key", cred: "fk_not_a_key", body: map[string]any{"model": "gpt-4o-mini", "messages": msgs},
			status: 401, typ: "authentication_error"},
		{name: "unconfigured provider", cred: g.key, body: map[string]any{"model": "claude-sonnet-4-6", "messages": msgs},
			status: 400, typ: "invalid_request_error", says: "ANTHROPIC_API_KEY"},
		{name: "unconfigured provider prefix", cred: g.key, body: map[string]any{"model": "anthropic/claude-sonnet-4-6", "messages": msgs},
			status: 400, typ: "invalid_request_error", says: "ANTHROPIC_API_KEY"},
		{name: "role unknown", cred: g.key, body: map[string]any{"model": "gpt-4o-mini", "messages": []map[string]any{{"role": "tool", "content": "x"}}},
			status: 422, typ: "invalid_request_error", param: "messages[0].role", says: "role"},
		{name: "no messages", cred: g.key, body: map[string]any{"model": "gpt-4o-mini", "messages": []any{}},
			status: 422, typ: "invalid_request_error", param: "messages"},
		{name: "system only", cred: g.key, body: map[string]any{"model": "gpt-4o-mini", "messages": []map[string]any{{"role": "system", "content": "x"}}},
			status: 400, typ: "invalid_request_error", param: "messages"},
		{name: "two choices", cred: g.key, body: map[string]any{"model": "gpt-4o-mini", "messages": msgs, "n": 2},
			status: 422, typ: "invalid_request_error", param: "n"},
		{name: "image part", cred: g.key, body: map[string]any{"model": "gpt-4o-mini", "messages": []map[string]any{{"role": "user",
			"content": []map[string]any{{"type": "image_url", "image_url": map[string]string{"url": "http://x/y.png"}}}}}},
			status: 400, typ: "invalid_request_error", param: "messages[0].content", says: "image_url"},
		{name: "malformed JSON", cred: g.key, body: `{"model": "gpt-4o-mini", "messages": [`, status: 400, typ: "invalid_request_error"},
		{name: "body too large", cred: g.key, body: map[string]any{"model": "gpt-4o-mini", "messages": []map[string]any{{"role": "user", "content": strings.Repeat("a", 5000)}}},
			status: 413, typ: "invalid_request_error"},
		{name: "upstream rejects Ferry's key", cred: g.key, script: &llmtest.Script{APIKey: "sk-other"},
			body: map[string]any{"model": "gpt-4o-mini", "messages": msgs}, status: 502, typ: "server_error", says: "OPENAI_API_KEY"},
		{name: "upstream rate limited", cred: g.key, script: &llmtest.Script{FailFirst: 10, FailStatus: 429, FailHeader: http.Header{"Retry-After": {"7"}}},
			body: map[string]any{"model": "gpt-4o-mini", "messages": msgs}, status: 429, typ: "rate_limit_error", header: map[string]string{"Retry-After": "7"}},
		{name: "upstream down", cred: g.key, script: &llmtest.Script{FailFirst: 10, FailStatus: 503},
			body: map[string]any{"model": "ollama/llama3.2", "messages": msgs}, status: 503, typ: "server_error"},
	} {
		for _, stream := range []bool{false, true} {
			name := sc.name
			if stream {
				name += " streaming"
			}
			t.Run(name, func(t *testing.T) {
				if sc.script != nil {
					g.fake.SetScript(*sc.script)
				} else {
					g.fake.SetScript(llmtest.Script{})
				}
				body := sc.body
				if m, ok := body.(map[string]any); ok {
					m = maps.Clone(m)
					m["stream"] = stream
					body = m
				}
				resp := g.send(t, t.Context(), "POST", "/v1/chat/completions", sc.cred, body)
				if resp.StatusCode != sc.status {
					b, _ := io.ReadAll(resp.Body)
					t.Fatalf("status %d, want %d: %s", resp.StatusCode, sc.status, b)
				}
				for k, v := range sc.header {
					if got := resp.Header.Get(k); got != v {
						t.Errorf("header %s = %q, want %q", k, got, v)
					}
				}
				e := readOpenAIError(t, resp)
				if e.Error.Type != sc.typ {
					t.Errorf("type = %q, want %q (%s)", e.Error.Type, sc.typ, e.Error.Message)
				}
				if sc.param != "" && (e.Error.Param == nil || *e.Error.Param != sc.param) {
					t.Errorf("param = %v, want %q (%s)", e.Error.Param, sc.param, e.Error.Message)
				}
				if !strings.Contains(strings.ToLower(e.Error.Message), strings.ToLower(sc.says)) {
					t.Errorf("message %q does not say %q", e.Error.Message, sc.says)
				}
			})
		}
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

func TestOpenAITimeoutBeforeFirstDelta(t *testing.T) {
	t.Parallel()
	g := newGateway(t, gatewayOptions{timeout: 200 * time.Millisecond})
	g.fake.SetScript(llmtest.Script{Break: llmtest.Hang})
	resp := g.send(t, t.Context(), "POST", "/v1/chat/completions", g.key,
		map[string]any{"model": "claude-sonnet-4-6", "stream": true, "messages": []map[string]any{{"role": "user", "content": "hi"}}})
	if resp.StatusCode != http.StatusGatewayTimeout {
		t.Fatalf("status %d, want 504", resp.StatusCode)
	}
	if e := readOpenAIError(t, resp); e.Error.Type != "server_error" {
		t.Errorf("type = %q", e.Error.Type)
	}
	if u := g.usage(t, 1)[0]; u.Status != "failed" {
		t.Errorf("usage status = %q, want failed", u.Status)
	}
}

// sseData reads an event stream's data lines, the way OpenAI's SDKs do.
func sseData(t *testing.T, r io.Reader) []string {
	t.Helper()
	var data []string
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if line, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			data = append(data, line)
		}
	}
	return data
}

// TestOpenAIStreamWire checks the bytes the SDK hides: the role chunk
// first, finish_reason null until the last choice chunk, the usage chunk
// with no choices, then [DONE].
func TestOpenAIStreamWire(t *testing.T) {
	t.Parallel()
	g := newGateway(t, gatewayOptions{})
	g.fake.SetScript(llmtest.Script{Deltas: []string{"a", "b"}, InputTokens: 1, OutputTokens: 2})
	resp := g.send(t, t.Context(), "POST", "/v1/chat/completions", g.key, map[string]any{"model": "claude-sonnet-4-6", "stream": true,
		"stream_options": map[string]any{"include_usage": true}, "messages": []map[string]any{{"role": "user", "content": "hi"}}})
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("status %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	data := sseData(t, resp.Body)
	if len(data) != 6 || data[5] != "[DONE]" {
		t.Fatalf("data lines = %q, want role, a, b, finish, usage, [DONE]", data)
	}
	var chunks []map[string]any
	for _, d := range data[:5] {
		var c map[string]any
		if err := json.Unmarshal([]byte(d), &c); err != nil {
			t.Fatalf("chunk is not JSON: %q", d)
		}
		chunks = append(chunks, c)
	}
	choice := func(i int) map[string]any { return chunks[i]["choices"].([]any)[0].(map[string]any) }
	if d := choice(0)["delta"].(map[string]any); d["role"] != "assistant" || d["content"] != "" || choice(0)["finish_reason"] != nil {
		t.Errorf("first chunk = %v", chunks[0])
	}
	if choice(1)["delta"].(map[string]any)["content"] != "a" || choice(2)["delta"].(map[string]any)["content"] != "b" || choice(2)["finish_reason"] != nil {
		t.Errorf("content chunks = %v %v", chunks[1], chunks[2])
	}
	if choice(3)["finish_reason"] != "stop" || len(choice(3)["delta"].(map[string]any)) != 0 {
		t.Errorf("finish chunk = %v", chunks[3])
	}
	if cs := chunks[4]["choices"].([]any); len(cs) != 0 || chunks[4]["usage"].(map[string]any)["total_tokens"] != 3.0 {
		t.Errorf("usage chunk = %v", chunks[4])
	}
	if chunks[0]["id"] != chunks[4]["id"] || chunks[0]["created"] != chunks[4]["created"] {
		t.Errorf("chunks differ in id or created")
	}

	// Without include_usage there is no usage chunk.
	resp = g.send(t, t.Context(), "POST", "/v1/chat/completions", g.key, map[string]any{"model": "claude-sonnet-4-6", "stream": true,
		"messages": []map[string]any{{"role": "user", "content": "hi"}}})
	if data := sseData(t, resp.Body); len(data) != 5 || strings.Contains(strings.Join(data, ""), "usage") {
		t.Errorf("data lines without include_usage = %q", data)
	}
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

	// On the wire: the error event, then [DONE].
	g.fake.SetScript(llmtest.Script{Deltas: llmtest.Deltas(10), Break: llmtest.ErrorEvent, BreakAfter: 3})
	resp := g.send(t, t.Context(), "POST", "/v1/chat/completions", g.key, map[string]any{"model": "claude-sonnet-4-6", "stream": true,
		"messages": []map[string]any{{"role": "user", "content": "hi"}}})
	data := sseData(t, resp.Body)
	if n := len(data); n < 2 || data[n-1] != "[DONE]" || !strings.HasPrefix(data[n-2], `{"error":{`) {
		t.Fatalf("stream does not end with an error event and [DONE]: %q", data)
	}
	var e openAIError
	if err := json.Unmarshal([]byte(data[len(data)-2]), &e); err != nil || e.Error.Type != "server_error" || e.Error.Code == nil || *e.Error.Code != "upstream" {
		t.Errorf("error event = %s", data[len(data)-2])
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
	resp := g.send(t, t.Context(), "GET", "/v1/models", "", nil)
	if resp.StatusCode != 401 {
		t.Fatalf("unauthenticated: status %d", resp.StatusCode)
	}
	readOpenAIError(t, resp)
}

// TestErrorShapesStayApart checks that OpenAI's error shape is kept to /v1:
// the rest of the API still answers RFC 9457 problems.
func TestErrorShapesStayApart(t *testing.T) {
	t.Parallel()
	g := newGateway(t, gatewayOptions{})
	for _, path := range []string{"/ai/models", "/ollama/tags"} {
		resp := g.send(t, t.Context(), "GET", path, "", nil)
		if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 401 || ct != "application/problem+json" {
			t.Errorf("%s: status %d, Content-Type %q; want a 401 problem", path, resp.StatusCode, ct)
		}
	}
}

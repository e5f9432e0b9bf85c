package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/llm/llmtest"
)

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

// TestOpenAIRequestShapes sends what other clients send: content as arrays
// of text parts, developer messages, nulls, parameters at values that ask
// for nothing, and fields that change nothing in the answer (which
// Anthropic goes without).
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
		"temperature": 0.7, "top_p": 1, "n": 1, "user": "u", "seed": null, "stop": null, "max_tokens": null,
		"stream": false, "stream_options": null, "presence_penalty": 0, "logit_bias": {}, "metadata": {"a": "b"},
		"tools": null, "tool_choice": "none", "logprobs": false, "response_format": {"type": "text"}
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
			status: 400, typ: "invalid_request_error", param: "n", says: "one choice"},
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

// TestOpenAIErrorMidStream checks the bytes of a stream that fails after
// text: the error event, then [DONE]. compat checks it through openai-go.
func TestOpenAIErrorMidStream(t *testing.T) {
	t.Parallel()
	g := newGateway(t, gatewayOptions{})
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

// TestOpenAIModels checks that the model list needs a credential; compat
// reads it through openai-go.
func TestOpenAIModels(t *testing.T) {
	t.Parallel()
	g := newGateway(t, gatewayOptions{})
	resp := g.send(t, t.Context(), "GET", "/v1/models", "", nil)
	if resp.StatusCode != 401 {
		t.Fatalf("unauthenticated: status %d", resp.StatusCode)
	}
	readOpenAIError(t, resp)
}

// TestErrorShapesStayApart checks that each wire keeps its own error
// shape: OpenAI's under /v1, Ollama's under /ollama, and RFC 9457 problems
// for the rest of the API, for a missing credential and an unknown route.
func TestErrorShapesStayApart(t *testing.T) {
	t.Parallel()
	g := newGateway(t, gatewayOptions{})
	for _, tc := range []struct {
		path, contentType, field string
		status                   int
	}{
		{"/ai/models", "application/problem+json", "detail", 401},
		{"/ollama/tags", "application/json", "error", 401},
		{"/v1/models", "application/json", "error", 401},
		{"/ai/nowhere", "application/problem+json", "detail", 404},
		{"/ollama/api/nowhere", "application/json", "error", 404},
		{"/v1/nowhere", "application/json", "error", 404},
	} {
		resp := g.send(t, t.Context(), "GET", tc.path, "", nil)
		var body map[string]any
		json.NewDecoder(resp.Body).Decode(&body)
		if ct := resp.Header.Get("Content-Type"); resp.StatusCode != tc.status || ct != tc.contentType || body[tc.field] == nil {
			t.Errorf("%s: status %d, Content-Type %q, body %v; want %d, %s with %q", tc.path, resp.StatusCode, ct, body, tc.status, tc.contentType, tc.field)
		}
	}
}

package httpapi_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/ferryhq/ferry/llm/llmtest"
)

// wire returns the value at path ("options.temperature") in the JSON
// object body, compacted, and whether it is there.
func wire(t *testing.T, body []byte, path string) (string, bool) {
	t.Helper()
	v := json.RawMessage(body)
	for _, key := range strings.Split(path, ".") {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(v, &obj); err != nil {
			return "", false
		}
		next, ok := obj[key]
		if !ok {
			return "", false
		}
		v = next
	}
	var b bytes.Buffer
	if err := json.Compact(&b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return b.String(), true
}

// samplingModels are the model names that route to each provider.
var samplingModels = map[string]string{
	"anthropic": "anthropic/claude-haiku-4-5",
	"openai":    "gpt-4o-mini",
	"ollama":    "ollama/llama3.2",
}

// TestOpenAIParametersReachUpstream sends each sampling parameter to
// /v1/chat/completions for each provider and checks what the upstream
// received, under the provider's own field names; and that a parameter
// that asks for nothing (a penalty of 0, text format, inert fields where
// the provider has no such field) is accepted and left out.
func TestOpenAIParametersReachUpstream(t *testing.T) {
	t.Parallel()
	g := newGateway(t, gatewayOptions{})
	g.fake.SetScript(llmtest.Script{Deltas: []string{"ok"}})
	schema := map[string]any{"type": "json_schema", "json_schema": map[string]any{"name": "answer", "strict": true,
		"schema": map[string]any{"type": "object", "properties": map[string]any{"a": map[string]any{"type": "string"}}}}}
	for _, tc := range []struct {
		provider string
		params   map[string]any
		want     map[string]string // wire path: compact JSON
		absent   []string          // wire paths that must not be sent
	}{
		{"anthropic", map[string]any{"temperature": 0}, map[string]string{"temperature": `0`}, nil},
		{"anthropic", map[string]any{"temperature": 0.7, "top_p": 0.5}, map[string]string{"temperature": `0.7`, "top_p": `0.5`}, nil},
		{"anthropic", map[string]any{"stop": "END"}, map[string]string{"stop_sequences": `["END"]`}, []string{"stop"}},
		{"anthropic", map[string]any{"stop": []string{"END", "\n\nHuman:"}}, map[string]string{"stop_sequences": `["END","\n\nHuman:"]`}, nil},
		{"anthropic", map[string]any{"user": "user-7"}, map[string]string{"metadata": `{"user_id":"user-7"}`}, []string{"user"}},
		{"anthropic", map[string]any{"presence_penalty": 0, "frequency_penalty": 0, "response_format": map[string]any{"type": "text"},
			"metadata": map[string]any{"a": "b"}, "store": false, "service_tier": "auto", "parallel_tool_calls": true, "n": 1, "logprobs": false,
			"tools": []any{}, "tool_choice": "none", "modalities": []string{"text"}, "logit_bias": map[string]any{}, "seed": nil},
			nil, []string{"presence_penalty", "frequency_penalty", "response_format", "store", "service_tier", "parallel_tool_calls",
				"n", "logprobs", "tools", "tool_choice", "modalities", "logit_bias", "seed", "metadata"}},

		{"openai", map[string]any{"temperature": 0}, map[string]string{"temperature": `0`}, nil},
		{"openai", map[string]any{"temperature": 1.3, "top_p": 0.9}, map[string]string{"temperature": `1.3`, "top_p": `0.9`}, nil},
		{"openai", map[string]any{"stop": "\n"}, map[string]string{"stop": `["\n"]`}, nil},
		{"openai", map[string]any{"seed": 7, "user": "user-7"}, map[string]string{"seed": `7`, "user": `"user-7"`}, nil},
		{"openai", map[string]any{"presence_penalty": -1, "frequency_penalty": 1.5}, map[string]string{"presence_penalty": `-1`, "frequency_penalty": `1.5`}, nil},
		{"openai", map[string]any{"response_format": map[string]any{"type": "json_object"}}, map[string]string{"response_format": `{"type":"json_object"}`}, nil},
		{"openai", map[string]any{"response_format": schema}, map[string]string{"response_format.type": `"json_schema"`,
			"response_format.json_schema.name": `"answer"`, "response_format.json_schema.strict": `true`,
			"response_format.json_schema.schema": `{"properties":{"a":{"type":"string"}},"type":"object"}`}, nil},
		{"openai", map[string]any{"logit_bias": map[string]int{"50256": -100}, "reasoning_effort": "low", "metadata": map[string]string{"a": "b"},
			"service_tier": "flex", "top_k": 40}, map[string]string{"logit_bias": `{"50256":-100}`, "reasoning_effort": `"low"`,
			"metadata": `{"a":"b"}`, "service_tier": `"flex"`, "top_k": `40`}, nil},
		{"openai", map[string]any{"tool_choice": "none", "n": 1}, nil, []string{"tool_choice", "n"}},

		{"ollama", map[string]any{"temperature": 0}, map[string]string{"options.temperature": `0`}, []string{"temperature"}},
		{"ollama", map[string]any{"temperature": 1.2, "top_p": 0.9, "seed": 42, "max_tokens": 20},
			map[string]string{"options.temperature": `1.2`, "options.top_p": `0.9`, "options.seed": `42`, "options.num_predict": `20`}, nil},
		{"ollama", map[string]any{"stop": []string{"\n", "END"}}, map[string]string{"options.stop": `["\n","END"]`}, []string{"stop"}},
		{"ollama", map[string]any{"presence_penalty": 0.5, "frequency_penalty": -0.5},
			map[string]string{"options.presence_penalty": `0.5`, "options.frequency_penalty": `-0.5`}, nil},
		{"ollama", map[string]any{"response_format": map[string]any{"type": "json_object"}}, map[string]string{"format": `"json"`}, []string{"response_format"}},
		{"ollama", map[string]any{"response_format": schema},
			map[string]string{"format": `{"properties":{"a":{"type":"string"}},"type":"object"}`}, nil},
		{"ollama", map[string]any{"user": "user-7", "metadata": map[string]string{"a": "b"}, "store": true}, nil,
			[]string{"user", "metadata", "store", "options"}},
	} {
		for _, stream := range []bool{false, true} {
			body := map[string]any{"model": samplingModels[tc.provider], "stream": stream, "messages": []map[string]any{{"role": "user", "content": "hi"}}}
			for k, v := range tc.params {
				body[k] = v
			}
			resp := g.send(t, t.Context(), "POST", "/v1/chat/completions", g.key, body)
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK {
				t.Errorf("%s %v (stream %v): status %d: %s", tc.provider, tc.params, stream, resp.StatusCode, b)
				continue
			}
			up := g.fake.Last()
			for path, want := range tc.want {
				if got, ok := wire(t, up.Body, path); got != want {
					t.Errorf("%s %v (stream %v): upstream %s = %s (sent: %v), want %s; body %s", tc.provider, tc.params, stream, path, got, ok, want, up.Body)
				}
			}
			for _, path := range tc.absent {
				if got, ok := wire(t, up.Body, path); ok {
					t.Errorf("%s %v (stream %v): upstream got %s = %s; body %s", tc.provider, tc.params, stream, path, got, up.Body)
				}
			}
		}
	}
}

// TestOpenAIParametersRefused checks that what Ferry or the routed
// provider cannot honour is a 400 in OpenAI's shape whose param names it,
// before anything reaches the upstream, streaming or not.
func TestOpenAIParametersRefused(t *testing.T) {
	t.Parallel()
	g := newGateway(t, gatewayOptions{})
	tool := map[string]any{"type": "function", "function": map[string]any{"name": "now", "parameters": map[string]any{"type": "object"}}}
	for _, tc := range []struct {
		provider string
		params   map[string]any
		param    string
		says     string
	}{
		{"anthropic", map[string]any{"seed": 1}, "seed", "anthropic models do not support it"},
		{"anthropic", map[string]any{"presence_penalty": 0.5}, "presence_penalty", "anthropic"},
		{"anthropic", map[string]any{"frequency_penalty": -1}, "frequency_penalty", "anthropic"},
		{"anthropic", map[string]any{"temperature": 1.5}, "temperature", "between 0 and 1 for anthropic"},
		{"anthropic", map[string]any{"top_p": 1.1}, "top_p", "between 0 and 1"},
		{"anthropic", map[string]any{"stop": []string{"END", "\n"}}, "stop", "whitespace only"},
		{"anthropic", map[string]any{"response_format": map[string]any{"type": "json_object"}}, "response_format", "json_object"},
		{"anthropic", map[string]any{"response_format": map[string]any{"type": "json_schema",
			"json_schema": map[string]any{"name": "a", "schema": map[string]any{"type": "object"}}}}, "response_format", "json_schema"},
		{"anthropic", map[string]any{"logit_bias": map[string]int{"1": 5}}, "logit_bias", "anthropic models do not support it"},
		{"anthropic", map[string]any{"top_k": 40}, "top_k", "anthropic"},
		{"ollama", map[string]any{"logit_bias": map[string]int{"1": 5}}, "logit_bias", "ollama models do not support it"},
		{"ollama", map[string]any{"reasoning_effort": "low"}, "reasoning_effort", "ollama"},
		{"ollama", map[string]any{"temperature": 2.5}, "temperature", "between 0 and 2 for ollama"},
		{"openai", map[string]any{"temperature": 2.5}, "temperature", "between 0 and 2 for openai"},
		{"openai", map[string]any{"temperature": -1}, "temperature", "between 0 and 2"},
		{"openai", map[string]any{"top_p": 1.5}, "top_p", "between 0 and 1"},
		{"openai", map[string]any{"presence_penalty": 3}, "presence_penalty", "between -2 and 2"},
		{"openai", map[string]any{"frequency_penalty": -2.5}, "frequency_penalty", "between -2 and 2"},
		{"openai", map[string]any{"tools": []any{tool}}, "tools", "tool calls are not supported"},
		{"openai", map[string]any{"tool_choice": "auto"}, "tool_choice", "tool calls"},
		{"openai", map[string]any{"functions": []any{tool["function"]}}, "functions", "function calls"},
		{"openai", map[string]any{"function_call": "auto"}, "function_call", "function calls"},
		{"ollama", map[string]any{"tools": []any{tool}}, "tools", "tool calls are not supported"},
		{"anthropic", map[string]any{"tools": []any{tool}, "tool_choice": "auto"}, "tools", "tool calls"},
		{"openai", map[string]any{"n": 2}, "n", "one choice"},
		{"openai", map[string]any{"n": 0}, "n", "one choice"},
		{"openai", map[string]any{"logprobs": true}, "logprobs", "not supported"},
		{"openai", map[string]any{"top_logprobs": 3}, "top_logprobs", "not supported"},
		{"openai", map[string]any{"audio": map[string]any{"voice": "alloy", "format": "wav"}}, "audio", "text only"},
		{"openai", map[string]any{"modalities": []string{"text", "audio"}}, "modalities", "text only"},
		{"openai", map[string]any{"stop": []string{"a", "b", "c", "d", "e"}}, "stop", "at most 4"},
		{"openai", map[string]any{"stop": ""}, "stop", "must not be empty"},
		{"openai", map[string]any{"response_format": map[string]any{"type": "json_schema"}}, "response_format.json_schema", "required"},
	} {
		for _, stream := range []bool{false, true} {
			body := map[string]any{"model": samplingModels[tc.provider], "stream": stream, "messages": []map[string]any{{"role": "user", "content": "hi"}}}
			for k, v := range tc.params {
				body[k] = v
			}
			before := len(g.fake.Requests())
			resp := g.send(t, t.Context(), "POST", "/v1/chat/completions", g.key, body)
			if resp.StatusCode != http.StatusBadRequest {
				b, _ := io.ReadAll(resp.Body)
				t.Errorf("%s %v (stream %v): status %d, want 400: %s", tc.provider, tc.params, stream, resp.StatusCode, b)
				continue
			}
			e := readOpenAIError(t, resp)
			if e.Error.Type != "invalid_request_error" || e.Error.Param == nil || *e.Error.Param != tc.param ||
				!strings.HasPrefix(e.Error.Message, tc.param+": ") || !strings.Contains(e.Error.Message, tc.says) {
				t.Errorf("%s %v (stream %v): error %+v (param %v), want param %q saying %q", tc.provider, tc.params, stream, *e.Error, e.Error.Param, tc.param, tc.says)
			}
			if n := len(g.fake.Requests()); n != before {
				t.Errorf("%s %v (stream %v): %d requests reached the upstream", tc.provider, tc.params, stream, n-before)
			}
		}
	}
}

// TestChatSamplingReachesUpstream checks that /ai/chat and
// /ai/chat/stream pass temperature and top_p to each provider under its
// own names; that a value the provider cannot take is a 400 naming the
// field, before anything reaches it; and that one outside the schema's
// range fails validation.
func TestChatSamplingReachesUpstream(t *testing.T) {
	t.Parallel()
	g := newGateway(t, gatewayOptions{})
	g.fake.SetScript(llmtest.Script{Deltas: []string{"ok"}})
	for provider, paths := range map[string][2]string{
		"anthropic": {"temperature", "top_p"},
		"openai":    {"temperature", "top_p"},
		"ollama":    {"options.temperature", "options.top_p"},
	} {
		for _, endpoint := range []string{"/ai/chat", "/ai/chat/stream"} {
			resp := g.send(t, t.Context(), "POST", endpoint, g.token,
				map[string]any{"message": "hi", "model": samplingModels[provider], "temperature": 0, "top_p": 0.25})
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%s %s: status %d: %s", provider, endpoint, resp.StatusCode, b)
			}
			up := g.fake.Last().Body
			if got, _ := wire(t, up, paths[0]); got != "0" {
				t.Errorf("%s %s: upstream %s = %q, want 0; body %s", provider, endpoint, paths[0], got, up)
			}
			if got, _ := wire(t, up, paths[1]); got != "0.25" {
				t.Errorf("%s %s: upstream %s = %q, want 0.25; body %s", provider, endpoint, paths[1], got, up)
			}
		}
	}

	// Without them, the upstream's defaults apply.
	resp := g.send(t, t.Context(), "POST", "/ai/chat", g.token, map[string]any{"message": "hi", "model": samplingModels["anthropic"]})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	for _, path := range []string{"temperature", "top_p"} {
		if got, ok := wire(t, g.fake.Last().Body, path); ok {
			t.Errorf("unset %s sent as %s", path, got)
		}
	}

	for _, tc := range []struct {
		body   map[string]any
		status int
		field  string
		says   string
	}{
		{map[string]any{"message": "hi", "model": samplingModels["anthropic"], "temperature": 1.5}, 400, "temperature", "between 0 and 1 for anthropic"},
		{map[string]any{"message": "hi", "model": samplingModels["openai"], "temperature": 2.5}, 422, "body.temperature", ""},
		{map[string]any{"message": "hi", "model": samplingModels["ollama"], "top_p": -0.5}, 422, "body.top_p", ""},
	} {
		for _, endpoint := range []string{"/ai/chat", "/ai/chat/stream"} {
			before := len(g.fake.Requests())
			resp := g.send(t, t.Context(), "POST", endpoint, g.token, tc.body)
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status || !strings.Contains(string(b), tc.field) || !strings.Contains(string(b), tc.says) {
				t.Errorf("%s %v: %d %s, want %d naming %s", endpoint, tc.body, resp.StatusCode, b, tc.status, tc.field)
			}
			if n := len(g.fake.Requests()); n != before {
				t.Errorf("%s %v: %d requests reached the upstream", endpoint, tc.body, n-before)
			}
		}
	}
}

// TestSamplingDocumented checks that the OpenAPI document describes the
// sampling parameters of /ai/chat, with their ranges, and of
// /v1/chat/completions.
func TestSamplingDocumented(t *testing.T) {
	t.Parallel()
	g := newGateway(t, gatewayOptions{})
	resp := g.send(t, t.Context(), "GET", "/openapi.json", "", nil)
	var doc struct {
		Components struct {
			Schemas map[string]struct {
				Properties map[string]struct {
					Type        json.RawMessage `json:"type"`
					Minimum     *float64        `json:"minimum"`
					Maximum     *float64        `json:"maximum"`
					Description string          `json:"description"`
					Ref         string          `json:"$ref"`
				} `json:"properties"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	chat := doc.Components.Schemas["ChatBody"].Properties
	for name, limits := range map[string][2]float64{"temperature": {0, 2}, "top_p": {0, 1}} {
		p, ok := chat[name]
		if !ok || string(p.Type) != `"number"` || p.Minimum == nil || *p.Minimum != limits[0] || p.Maximum == nil || *p.Maximum != limits[1] || p.Description == "" {
			t.Errorf("ChatBody.%s = %+v, want a documented number from %v to %v", name, p, limits[0], limits[1])
		}
	}
	completion := doc.Components.Schemas["CompletionRequest"].Properties
	for _, name := range []string{"temperature", "top_p", "stop", "seed", "presence_penalty", "frequency_penalty", "response_format", "user", "n", "logprobs"} {
		if p, ok := completion[name]; !ok || (p.Description == "" && p.Ref == "") {
			t.Errorf("CompletionRequest.%s is not documented: %+v", name, p)
		}
	}
}

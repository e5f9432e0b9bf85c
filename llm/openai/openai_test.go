package openai_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/llm"
	"github.com/ferryhq/ferry/llm/llmtest"
	"github.com/ferryhq/ferry/llm/openai"
)

func TestConformance(t *testing.T) {
	llmtest.RunConformance(t, llmtest.Adapter{
		Name: llm.OpenAI,
		New: func(s *llmtest.Server, hc *http.Client, apiKey string) llm.Provider {
			return openai.New(openai.Config{APIKey: apiKey, BaseURL: s.OpenAIURL(), HTTPClient: hc})
		},
		Model:          "gpt-4o-mini",
		DefaultModel:   llmtest.DefaultModels(llm.OpenAI)[0],
		StopReason:     "stop",
		OverloadStatus: 503,
		Setting:        "OPENAI_API_KEY",
	})
}

func discard(llm.Delta) error { return nil }

// TestRequest checks the request on the wire: a bearer credential only when
// there is a key (and never one from the environment), usage asked for, and
// the token limit under the name the model takes.
func TestRequest(t *testing.T) {
	t.Setenv("OPENAI_API_KEY", "sk-from-env")
	t.Setenv("OPENAI_ADMIN_KEY", "sk-admin-secret")
	s := llmtest.Start(t)
	type body struct {
		Model               string `json:"model"`
		Stream              bool   `json:"stream"`
		MaxTokens           *int   `json:"max_tokens"`
		MaxCompletionTokens *int   `json:"max_completion_tokens"`
		StreamOptions       struct {
			IncludeUsage bool `json:"include_usage"`
		} `json:"stream_options"`
		Messages []struct{ Role, Content string } `json:"messages"`
	}
	for _, tc := range []struct {
		key, model, auth string
		maxTokens        int
		want             func(b body) bool
	}{
		{"", "gpt-4o-mini", "", 0, func(b body) bool { return b.MaxTokens == nil && b.MaxCompletionTokens == nil }},
		{"sk-x", "gpt-4o-mini", "REDACTED", 50, func(b body) bool { return *b.MaxTokens == 50 && b.MaxCompletionTokens == nil }},
		{"sk-x", "o3-mini", "REDACTED", 50, func(b body) bool { return b.MaxTokens == nil && *b.MaxCompletionTokens == 50 }},
	} {
		p := openai.New(openai.Config{APIKey: tc.key, BaseURL: s.OpenAIURL() + "/"})
		req := llm.Request{Model: tc.model, System: "be brief", MaxTokens: tc.maxTokens,
			Messages: []llm.Message{llm.TextMessage("user", "hi"), llm.TextMessage("assistant", "ok"), llm.TextMessage("tool", "more")}}
		if err := p.Stream(t.Context(), req, discard); err != nil {
			t.Fatal(err)
		}
		up := s.Last()
		if got := up.Header.Get("Authorization"); got != tc.auth {
			t.Errorf("key %q: Authorization = %q, want %q", tc.key, got, tc.auth)
		}
		var b body
		if err := up.JSON(&b); err != nil {
			t.Fatal(err)
		}
		roles := ""
		for _, m := range b.Messages {
			roles += m.Role + " "
		}
		if b.Model != tc.model || !b.Stream || !b.StreamOptions.IncludeUsage || !tc.want(b) || roles != "system user assistant user " {
			t.Errorf("model %s: body %s", tc.model, up.Body)
		}
	}
}

// TestRequestSampling checks the sampling parameters on the wire as the
// Chat Completions API names them, a temperature of 0 included; Extra
// fields as the client sent them, without repeating one Ferry sets; and
// none of them when none is set.
func TestRequestSampling(t *testing.T) {
	s := llmtest.Start(t)
	p := openai.New(openai.Config{APIKey: "sk-x", BaseURL: s.OpenAIURL()})
	temp, topP, presence, frequency, seed, strict := 0.0, 0.9, -1.5, 2.0, int64(-42), true
	req := llm.Request{Model: "gpt-4o-mini", Messages: []llm.Message{llm.TextMessage("user", "hi")},
		Sampling: llm.Sampling{Temperature: &temp, TopP: &topP, Stop: []string{"\n", "END"}, Seed: &seed,
			PresencePenalty: &presence, FrequencyPenalty: &frequency, User: "user-7",
			Format: &llm.Format{Name: "answer", Schema: json.RawMessage(`{"type": "object"}`), Strict: &strict},
			Extra: []llm.Field{
				{Name: "logit_bias", Value: json.RawMessage(`{"50256": -100}`)},
				{Name: "temperature", Value: json.RawMessage(`5`)},
				{Name: "store", Value: json.RawMessage(`false`), Inert: true},
			}}}
	if err := p.Stream(t.Context(), req, discard); err != nil {
		t.Fatal(err)
	}
	up := s.Last()
	if !json.Valid(up.Body) || strings.Count(string(up.Body), `"temperature"`) != 1 {
		t.Fatalf("body = %s", up.Body)
	}
	fields := topLevel(t, up)
	for k, want := range map[string]string{
		"temperature":       `0`,
		"top_p":             `0.9`,
		"stop":              `["\n","END"]`,
		"seed":              `-42`,
		"presence_penalty":  `-1.5`,
		"frequency_penalty": `2`,
		"user":              `"user-7"`,
		"response_format":   `{"type":"json_schema","json_schema":{"name":"answer","schema":{"type":"object"},"strict":true}}`,
		"logit_bias":        `{"50256": -100}`, // as the client wrote it
		"store":             `false`,
	} {
		if got := string(fields[k]); got != want {
			t.Errorf("%s = %s, want %s", k, got, want)
		}
	}

	req.Sampling = llm.Sampling{Format: &llm.Format{}}
	if err := p.Stream(t.Context(), req, discard); err != nil {
		t.Fatal(err)
	}
	fields = topLevel(t, s.Last())
	if got := string(fields["response_format"]); got != `{"type":"json_object"}` {
		t.Errorf("response_format = %s, want json_object", got)
	}
	req.Sampling = llm.Sampling{}
	if err := p.Stream(t.Context(), req, discard); err != nil {
		t.Fatal(err)
	}
	for k := range topLevel(t, s.Last()) {
		if k != "model" && k != "messages" && k != "stream" && k != "stream_options" {
			t.Errorf("unset sampling sent %s: %s", k, s.Last().Body)
		}
	}
}

// topLevel returns the fields of r's JSON body.
func topLevel(t *testing.T, r *llmtest.Request) map[string]json.RawMessage {
	t.Helper()
	var fields map[string]json.RawMessage
	if err := r.JSON(&fields); err != nil {
		t.Fatal(err)
	}
	return fields
}

// serve answers every request with status and body.
func serve(t *testing.T, status int, body string) *openai.Provider {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return openai.New(openai.Config{BaseURL: srv.URL, HTTPClient: srv.Client()})
}

func TestStreamErrors(t *testing.T) {
	const text = "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n"
	for _, tc := range []struct {
		name   string
		status int
		body   string
		code   ferry.Code
		says   string
	}{
		{"no finish_reason", 200, text + "data: [DONE]\n\n", ferry.Upstream, "without finishing"},
		{"error object", 200, text + "data: {\"error\":{\"message\":\"model crashed\",\"type\":\"server_error\"}}\n\n", ferry.Upstream, "model crashed"},
		{"error string", 200, text + "data: {\"error\":\"out of memory\"}\n\n", ferry.Upstream, "out of memory"},
		{"named error event", 200, text + "event: error\ndata: {\"error\":{\"message\":\"bad\"}}\n\n", ferry.Upstream, "bad"},
		{"not JSON", 200, "data: {oops\n\n", ferry.Upstream, "not JSON"},
		{"HTTP error", 401, `{"error":{"message":"Incorrect API key","type":"invalid_request_error"}}`, ferry.Upstream, "OPENAI_API_KEY"},
		{"HTTP error, string", 429, `{"error":"slow down"}`, ferry.RateLimited, "slow down"},
		{"HTTP error, not JSON", 502, "Bad Gateway from nginx", ferry.Unavailable, "Bad Gateway from nginx"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := serve(t, tc.status, tc.body).Stream(t.Context(), llm.Request{Model: "m"}, discard)
			var fe *ferry.Error
			if !errors.As(err, &fe) || fe.Code != tc.code || !strings.Contains(fe.Message, tc.says) {
				t.Errorf("err = %v, want %s saying %q", err, tc.code, tc.says)
			}
		})
	}
}

func TestNoModelListed(t *testing.T) {
	p := serve(t, 200, `{"object":"list","data":[]}`)
	err := p.Stream(t.Context(), llm.Request{}, discard)
	var fe *ferry.Error
	if !errors.As(err, &fe) || fe.Code != ferry.Invalid || !strings.Contains(fe.Message, "FERRY_DEFAULT_MODEL") {
		t.Errorf("err = %v, want Invalid naming FERRY_DEFAULT_MODEL", err)
	}
}

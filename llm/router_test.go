package llm_test

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/llm"
	"github.com/ferryhq/ferry/llm/anthropic"
	"github.com/ferryhq/ferry/llm/llmtest"
	"github.com/ferryhq/ferry/llm/ollama"
	"github.com/ferryhq/ferry/llm/openai"
)

func providers(names ...string) []llm.Provider {
	ps := make([]llm.Provider, len(names))
	for i, n := range names {
		ps[i] = &scripted{name: n, models: []llm.Model{{ID: n + "/m", Provider: n, Name: "m"}}}
	}
	return ps
}

func TestResolve(t *testing.T) {
	all := providers(llm.Anthropic, llm.OpenAI, llm.Ollama)
	for _, tc := range []struct {
		name         string
		providers    []llm.Provider
		defaultModel string
		model        string
		wantProvider string
		wantModel    string
	}{
		{"prefix anthropic", all, "", "anthropic/claude-sonnet-4-6", llm.Anthropic, "claude-sonnet-4-6"},
		{"prefix openai", all, "", "openai/gpt-4o-mini", llm.OpenAI, "gpt-4o-mini"},
		{"prefix ollama", all, "", "ollama/llama3.2", llm.Ollama, "llama3.2"},
		{"prefix keeps slashes", all, "", "openai/meta-llama/Llama-3.1-8B-Instruct", llm.OpenAI, "meta-llama/Llama-3.1-8B-Instruct"},
		{"prefix overrides name rules", all, "", "ollama/gpt-oss:20b", llm.Ollama, "gpt-oss:20b"},
		{"claude", all, "", "claude-opus-4-1", llm.Anthropic, "claude-opus-4-1"},
		{"gpt", all, "", "gpt-4o", llm.OpenAI, "gpt-4o"},
		{"chatgpt", all, "", "chatgpt-4o-latest", llm.OpenAI, "chatgpt-4o-latest"},
		{"o1", all, "", "o1", llm.OpenAI, "o1"},
		{"o3-mini", all, "", "o3-mini", llm.OpenAI, "o3-mini"},
		{"o4-mini", all, "", "o4-mini", llm.OpenAI, "o4-mini"},
		{"ollama tag", all, "", "mymodel:7b", llm.Ollama, "mymodel:7b"},
		{"ollama family", all, "", "llama3.2", llm.Ollama, "llama3.2"},
		{"ollama family qwen", all, "", "qwen2.5", llm.Ollama, "qwen2.5"},
		{"family without ollama goes to default", providers(llm.OpenAI), "", "llama3.2", llm.OpenAI, "llama3.2"},
		{"unknown goes to default provider", all, "ollama/llama3.2", "my-finetune", llm.Ollama, "my-finetune"},
		{"unknown with slash goes to default", providers(llm.Anthropic, llm.OpenAI), "openai/gpt-4o", "org/model", llm.OpenAI, "org/model"},
		{"unknown prefix is part of the name", all, "", "google/gemma", llm.Anthropic, "google/gemma"},
		{"empty: configured default", all, "ollama/qwen2.5:7b", "", llm.Ollama, "qwen2.5:7b"},
		{"empty: bare configured default", all, "gpt-4o", "", llm.OpenAI, "gpt-4o"},
		{"empty: anthropic default", all, "", "", llm.Anthropic, "claude-sonnet-4-6"},
		{"empty: openai lists", providers(llm.OpenAI, llm.Ollama), "", "", llm.OpenAI, ""},
		{"empty: ollama lists", providers(llm.Ollama), "", "", llm.Ollama, ""},
		{"spaces trimmed", all, "", "  gpt-4o ", llm.OpenAI, "gpt-4o"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := llm.NewRouter(tc.defaultModel, tc.providers...)
			if err != nil {
				t.Fatalf("NewRouter: %v", err)
			}
			p, model, err := r.Resolve(tc.model)
			if err != nil {
				t.Fatalf("Resolve(%q): %v", tc.model, err)
			}
			if p.Name() != tc.wantProvider || model != tc.wantModel {
				t.Errorf("Resolve(%q) = %s, %q; want %s, %q", tc.model, p.Name(), model, tc.wantProvider, tc.wantModel)
			}
		})
	}
}

func TestResolveNotConfigured(t *testing.T) {
	for _, tc := range []struct {
		providers []llm.Provider
		model     string
		setting   string
	}{
		{providers(llm.Ollama), "claude-sonnet-4-6", "ANTHROPIC_API_KEY"},
		{providers(llm.Ollama), "anthropic/claude-sonnet-4-6", "ANTHROPIC_API_KEY"},
		{providers(llm.Anthropic), "gpt-4o-mini", "OPENAI_API_KEY or OPENAI_BASE_URL"},
		{providers(llm.Anthropic), "openai/anything", "OPENAI_API_KEY or OPENAI_BASE_URL"},
		{providers(llm.Anthropic), "ollama/llama3.2", "OLLAMA_BASE_URL"},
		{nil, "anything", "ANTHROPIC_API_KEY, OPENAI_API_KEY or OPENAI_BASE_URL, or OLLAMA_BASE_URL"},
		{nil, "", "ANTHROPIC_API_KEY"},
	} {
		r, err := llm.NewRouter("", tc.providers...)
		if err != nil {
			t.Fatalf("NewRouter: %v", err)
		}
		_, _, err = r.Resolve(tc.model)
		var fe *ferry.Error
		if !errors.As(err, &fe) || fe.Code != ferry.Invalid || !strings.Contains(fe.Message, tc.setting) {
			t.Errorf("Resolve(%q) = %v, want Invalid naming %s", tc.model, err, tc.setting)
		}
	}
}

func TestResolveEmptyNameAfterPrefix(t *testing.T) {
	r, _ := llm.NewRouter("", providers(llm.OpenAI)...)
	if _, _, err := r.Resolve("openai/"); ferry.ErrorCode(err) != ferry.Invalid {
		t.Errorf("Resolve(openai/) = %v, want Invalid", err)
	}
}

func TestNewRouterRejectsUnconfiguredDefault(t *testing.T) {
	_, err := llm.NewRouter("claude-sonnet-4-6", providers(llm.Ollama)...)
	var fe *ferry.Error
	if !errors.As(err, &fe) || fe.Code != ferry.Invalid ||
		!strings.Contains(fe.Message, "FERRY_DEFAULT_MODEL") || !strings.Contains(fe.Message, "ANTHROPIC_API_KEY") {
		t.Errorf("NewRouter = %v, want Invalid naming FERRY_DEFAULT_MODEL and ANTHROPIC_API_KEY", err)
	}
}

func TestRouterModelsSkipsFailingProvider(t *testing.T) {
	ps := providers(llm.Ollama, llm.Anthropic, llm.OpenAI)
	ps[2].(*scripted).errs = []error{overloaded}
	r, _ := llm.NewRouter("", ps...)
	models, err := r.Models(t.Context())
	if err != nil {
		t.Fatalf("Models: %v", err)
	}
	var ids []string
	for _, m := range models {
		ids = append(ids, m.ID)
	}
	if want := []string{"anthropic/m", "ollama/m"}; !slices.Equal(ids, want) {
		t.Errorf("Models = %v, want %v", ids, want)
	}
}

func TestRouterModelsAllFailing(t *testing.T) {
	ps := providers(llm.Ollama)
	ps[0].(*scripted).errs = []error{overloaded}
	r, _ := llm.NewRouter("", ps...)
	if _, err := r.Models(t.Context()); ferry.ErrorCode(err) != ferry.Unavailable {
		t.Errorf("Models = %v, want the provider's Unavailable", err)
	}
}

// TestRouterEndToEnd routes names to the real adapters, each against the
// fake, and streams through the one it picked.
func TestRouterEndToEnd(t *testing.T) {
	s := llmtest.Start(t)
	s.SetScript(llmtest.Script{Deltas: []string{"第一行\n", "\"引号\"", "\\ 中文"}})
	hc := &http.Client{}
	r, err := llm.NewRouter("",
		llm.WithRetry(anthropic.New(anthropic.Config{APIKey: "k", BaseURL: s.AnthropicURL(), HTTPClient: hc}), llm.RetryPolicy{}),
		llm.WithRetry(openai.New(openai.Config{BaseURL: s.OpenAIURL(), HTTPClient: hc}), llm.RetryPolicy{}),
		llm.WithRetry(ollama.New(ollama.Config{BaseURL: s.OllamaURL(), HTTPClient: hc}), llm.RetryPolicy{}),
	)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ model, path, upstreamModel string }{
		{"", "/v1/messages", "claude-sonnet-4-6"},
		{"claude-haiku-4-5", "/v1/messages", "claude-haiku-4-5"},
		{"gpt-4o-mini", "/v1/chat/completions", "gpt-4o-mini"},
		{"llama3.2", "/api/chat", "llama3.2"},
		{"ollama/qwen2.5:7b", "/api/chat", "qwen2.5:7b"},
	} {
		p, name, err := r.Resolve(tc.model)
		if err != nil {
			t.Fatalf("Resolve(%q): %v", tc.model, err)
		}
		var text strings.Builder
		var done llm.Delta
		err = p.Stream(t.Context(), llm.Request{Model: name, Messages: []llm.Message{llm.TextMessage("user", "hi")}}, func(d llm.Delta) error {
			text.WriteString(d.Text)
			if d.Done {
				done = d
			}
			return nil
		})
		if err != nil {
			t.Fatalf("%q: Stream: %v", tc.model, err)
		}
		last := s.Last()
		if last.Path != tc.path || done.Model != tc.upstreamModel || text.String() != "第一行\n\"引号\"\\ 中文" {
			t.Errorf("%q: went to %s for %q, got %q; want %s for %q", tc.model, last.Path, done.Model, text.String(), tc.path, tc.upstreamModel)
		}
	}

	models, err := r.Models(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if n := len(llmtest.DefaultModels(llm.Anthropic)) + len(llmtest.DefaultModels(llm.OpenAI)) + len(llmtest.DefaultModels(llm.Ollama)); len(models) != n {
		t.Errorf("Models listed %d, want %d", len(models), n)
	}
}

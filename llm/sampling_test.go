package llm_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/llm"
	"github.com/ferryhq/ferry/llm/anthropic"
	"github.com/ferryhq/ferry/llm/ollama"
	"github.com/ferryhq/ferry/llm/openai"
)

func ptr[T any](v T) *T { return &v }

// TestSamplingCheck checks what each shipped provider refuses, and that
// the error names the parameter and says what the provider takes.
func TestSamplingCheck(t *testing.T) {
	supports := map[string]llm.Support{
		llm.Anthropic: anthropic.New(anthropic.Config{}).Supports(),
		llm.OpenAI:    openai.New(openai.Config{}).Supports(),
		llm.Ollama:    ollama.New(ollama.Config{}).Supports(),
	}
	schema := &llm.Format{Name: "answer", Schema: json.RawMessage(`{"type":"object"}`)}
	logitBias := llm.Field{Name: "logit_bias", Value: json.RawMessage(`{"50256":-100}`)}
	store := llm.Field{Name: "store", Value: json.RawMessage(`true`), Inert: true}
	for _, tc := range []struct {
		name     string
		provider string
		s        llm.Sampling
		param    string // "": accepted
		says     string
	}{
		{"nothing set", llm.Anthropic, llm.Sampling{}, "", ""},
		{"everything Anthropic takes", llm.Anthropic, llm.Sampling{Temperature: ptr(1.0), TopP: ptr(0.0), Stop: []string{"END", " x "},
			User: "u1", PresencePenalty: ptr(0.0), FrequencyPenalty: ptr(0.0), Extra: []llm.Field{store}}, "", ""},
		{"Anthropic temperature above 1", llm.Anthropic, llm.Sampling{Temperature: ptr(1.5)}, "temperature", "between 0 and 1 for anthropic"},
		{"Anthropic temperature below 0", llm.Anthropic, llm.Sampling{Temperature: ptr(-0.1)}, "temperature", "between 0 and 1"},
		{"Anthropic top_p above 1", llm.Anthropic, llm.Sampling{TopP: ptr(1.01)}, "top_p", "between 0 and 1"},
		{"Anthropic seed", llm.Anthropic, llm.Sampling{Seed: ptr[int64](7)}, "seed", "anthropic models do not support it"},
		{"Anthropic presence penalty", llm.Anthropic, llm.Sampling{PresencePenalty: ptr(0.5)}, "presence_penalty", "do not support"},
		{"Anthropic frequency penalty", llm.Anthropic, llm.Sampling{FrequencyPenalty: ptr(-1.0)}, "frequency_penalty", "do not support"},
		{"Anthropic newline stop", llm.Anthropic, llm.Sampling{Stop: []string{"END", "\n"}}, "stop", "whitespace only"},
		{"Anthropic JSON mode", llm.Anthropic, llm.Sampling{Format: &llm.Format{}}, "response_format", "json_object"},
		{"Anthropic JSON schema", llm.Anthropic, llm.Sampling{Format: schema}, "response_format", "json_schema"},
		{"Anthropic extra field", llm.Anthropic, llm.Sampling{Extra: []llm.Field{store, logitBias}}, "logit_bias", "do not support"},
		{"everything OpenAI takes", llm.OpenAI, llm.Sampling{Temperature: ptr(2.0), TopP: ptr(1.0), Stop: []string{"\n"}, Seed: ptr[int64](-3),
			PresencePenalty: ptr(-2.0), FrequencyPenalty: ptr(2.0), Format: schema, User: "u", Extra: []llm.Field{logitBias, store}}, "", ""},
		{"OpenAI temperature above 2", llm.OpenAI, llm.Sampling{Temperature: ptr(2.5)}, "temperature", "between 0 and 2 for openai"},
		{"OpenAI penalty below -2", llm.OpenAI, llm.Sampling{FrequencyPenalty: ptr(-2.5)}, "frequency_penalty", "between -2 and 2"},
		{"everything Ollama takes", llm.Ollama, llm.Sampling{Temperature: ptr(0.0), TopP: ptr(0.9), Stop: []string{"\n\n"}, Seed: ptr[int64](42),
			PresencePenalty: ptr(1.5), FrequencyPenalty: ptr(0.5), Format: &llm.Format{}, User: "u", Extra: []llm.Field{store}}, "", ""},
		{"Ollama JSON schema", llm.Ollama, llm.Sampling{Format: schema}, "", ""},
		{"Ollama extra field", llm.Ollama, llm.Sampling{Extra: []llm.Field{logitBias}}, "logit_bias", "ollama models do not support it"},
		{"Ollama top_p above 1", llm.Ollama, llm.Sampling{TopP: ptr(2.0)}, "top_p", "between 0 and 1 for ollama"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.s.Check(tc.provider, supports[tc.provider])
			if tc.param == "" {
				if err != nil {
					t.Fatalf("Check = %v, want nil", err)
				}
				return
			}
			var fe *ferry.Error
			if !errors.As(err, &fe) || fe.Code != ferry.Invalid {
				t.Fatalf("Check = %v, want an Invalid *ferry.Error", err)
			}
			if _, ok := fe.Fields[tc.param]; !ok || len(fe.Fields) != 1 {
				t.Errorf("fields = %v, want %q", fe.Fields, tc.param)
			}
			if !strings.HasPrefix(fe.Message, tc.param+": ") || !strings.Contains(fe.Message, tc.says) {
				t.Errorf("message %q does not name %q and say %q", fe.Message, tc.param, tc.says)
			}
		})
	}
}

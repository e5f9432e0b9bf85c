package anthropic_test

import (
	"net/http"
	"testing"

	"github.com/ferryhq/ferry/llm"
	"github.com/ferryhq/ferry/llm/anthropic"
	"github.com/ferryhq/ferry/llm/llmtest"
)

func TestConformance(t *testing.T) {
	llmtest.RunConformance(t, llmtest.Adapter{
		Name: llm.Anthropic,
		New: func(s *llmtest.Server, hc *http.Client, apiKey string) llm.Provider {
			return anthropic.New(anthropic.Config{APIKey: apiKey, BaseURL: s.AnthropicURL(), HTTPClient: hc})
		},
		Model:          "claude-haiku-4-5",
		DefaultModel:   "claude-sonnet-4-6",
		StopReason:     "end_turn",
		OverloadStatus: 529,
		Setting:        "ANTHROPIC_API_KEY",
	})
}

package openai_test

import (
	"net/http"
	"testing"

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

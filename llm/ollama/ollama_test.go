package ollama_test

import (
	"net/http"
	"testing"

	"github.com/ferryhq/ferry/llm"
	"github.com/ferryhq/ferry/llm/llmtest"
	"github.com/ferryhq/ferry/llm/ollama"
)

func TestConformance(t *testing.T) {
	llmtest.RunConformance(t, llmtest.Adapter{
		Name: llm.Ollama,
		New: func(s *llmtest.Server, hc *http.Client, _ string) llm.Provider {
			return ollama.New(ollama.Config{BaseURL: s.OllamaURL(), HTTPClient: hc})
		},
		Model:          "llama3.2:latest",
		DefaultModel:   llmtest.DefaultModels(llm.Ollama)[0],
		StopReason:     "stop",
		OverloadStatus: 503,
		Setting:        "OLLAMA_BASE_URL",
	})
}

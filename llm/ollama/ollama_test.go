package ollama_test

import (
	"encoding/json"
	"net/http"
	"strings"
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

func discard(llm.Delta) error { return nil }

// TestRequestSampling checks the sampling parameters on the wire as
// Ollama's native API takes them: under options, a temperature of 0
// included, with num_predict; format "json" or the schema itself; no user,
// which Ollama has no field for; and no options when none is set.
func TestRequestSampling(t *testing.T) {
	s := llmtest.Start(t)
	p := ollama.New(ollama.Config{BaseURL: s.OllamaURL()})
	temp, topP, presence, frequency, seed := 0.0, 0.9, 1.5, -0.5, int64(42)
	req := llm.Request{Model: "llama3.2", MaxTokens: 64, Messages: []llm.Message{llm.TextMessage("user", "hi")},
		Sampling: llm.Sampling{Temperature: &temp, TopP: &topP, Stop: []string{"\n\n", "END"}, Seed: &seed,
			PresencePenalty: &presence, FrequencyPenalty: &frequency, User: "user-7",
			Format: &llm.Format{Name: "answer", Schema: json.RawMessage(`{"type":"object","required":["a"]}`)}}}
	if err := p.Stream(t.Context(), req, discard); err != nil {
		t.Fatal(err)
	}
	var body struct {
		Format  json.RawMessage            `json:"format"`
		Options map[string]json.RawMessage `json:"options"`
	}
	if err := s.Last().JSON(&body); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"num_predict": `64`, "temperature": `0`, "top_p": `0.9`, "stop": `["\n\n","END"]`, "seed": `42`,
		"presence_penalty": `1.5`, "frequency_penalty": `-0.5`}
	for k, v := range want {
		if got := string(body.Options[k]); got != v {
			t.Errorf("options.%s = %s, want %s", k, got, v)
		}
	}
	if len(body.Options) != len(want) {
		t.Errorf("options = %v, want only %v", body.Options, want)
	}
	if string(body.Format) != `{"type":"object","required":["a"]}` {
		t.Errorf("format = %s, want the schema", body.Format)
	}
	if strings.Contains(string(s.Last().Body), "user-7") {
		t.Errorf("body holds the user: %s", s.Last().Body)
	}

	req.MaxTokens, req.Sampling = 0, llm.Sampling{Format: &llm.Format{}}
	if err := p.Stream(t.Context(), req, discard); err != nil {
		t.Fatal(err)
	}
	var fields map[string]json.RawMessage
	if err := s.Last().JSON(&fields); err != nil {
		t.Fatal(err)
	}
	if string(fields["format"]) != `"json"` || fields["options"] != nil {
		t.Errorf("JSON mode without options: body %s", s.Last().Body)
	}
}

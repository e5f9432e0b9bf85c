package ollama_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

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

// TestForwardPassesBytesWhole: Forward passes Ollama's stream on byte for
// byte, whatever the lengths of its lines and of the reads that bring them
// (lines shorter and longer than the buffers, split anywhere), and reads
// the done line's counts.
func TestForwardPassesBytesWhole(t *testing.T) {
	var want strings.Builder
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := range 300 {
		pad := strings.Repeat("x", rnd.IntN(1500))
		fmt.Fprintf(&want, `{"model":"llama3.2","response":"tok%d %s","done":false}`+"\n", i, pad)
	}
	want.WriteString(`{"model":"llama3.2","response":"","done":true,"done_reason":"stop","prompt_eval_count":7,"eval_count":300}` + "\n")
	body := want.String()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		rc := http.NewResponseController(w)
		for rest := body; len(rest) > 0; {
			n := min(len(rest), 1+rnd.IntN(3000))
			w.Write([]byte(rest[:n]))
			rc.Flush()
			rest = rest[n:]
			if rnd.IntN(4) == 0 {
				time.Sleep(time.Millisecond) // some writes arrive alone
			}
		}
	}))
	defer srv.Close()
	p := ollama.New(ollama.Config{BaseURL: srv.URL})
	n, err := ollama.ParseNative("/api/generate", []byte(`{"model":"llama3.2","prompt":"hi"}`))
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	final, err := p.Forward(context.Background(), n, func(b []byte) error {
		if len(b) == 0 || b[len(b)-1] != '\n' {
			t.Errorf("passed on a piece that does not end a line: %.60q…", b)
		}
		got.Write(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.String() != body {
		t.Errorf("passed on %d bytes, want the %d sent, unchanged", got.Len(), len(body))
	}
	if !final.Done || final.Usage.InputTokens != 7 || final.Usage.OutputTokens != 300 || final.StopReason != "stop" {
		t.Errorf("final %+v", final)
	}
}

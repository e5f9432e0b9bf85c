package llmtest_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryhq/ferry/llm"
	"github.com/ferryhq/ferry/llm/llmtest"
	"github.com/ferryhq/ferry/llm/ollama"
)

func post(t *testing.T, url, body string, header map[string]string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestOllamaGenerate(t *testing.T) {
	s := llmtest.Start(t)
	s.SetScript(llmtest.Script{Deltas: []string{"a", "b"}, InputTokens: 5})
	_, body := post(t, s.OllamaURL()+"/api/generate", `{"model":"llama3.2","prompt":"hi"}`, nil)
	lines := strings.Split(strings.TrimSpace(body), "\n")
	if len(lines) != 3 {
		t.Fatalf("got %d lines, want 2 deltas and the final: %s", len(lines), body)
	}
	var last struct {
		Response        string `json:"response"`
		Done            bool   `json:"done"`
		PromptEvalCount int    `json:"prompt_eval_count"`
		EvalCount       int    `json:"eval_count"`
	}
	if err := json.Unmarshal([]byte(lines[2]), &last); err != nil || !last.Done || last.PromptEvalCount != 5 || last.EvalCount != 2 {
		t.Errorf("final line %s: %+v %v", lines[2], last, err)
	}
}

func TestNonStreaming(t *testing.T) {
	s := llmtest.Start(t)
	s.SetScript(llmtest.Script{Deltas: []string{"Hello, ", "世界"}})
	for _, tc := range []struct{ path, body, want string }{
		{"/v1/messages", `{"model":"claude-x","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`, `"text":"Hello, 世界"`},
		{"/v1/chat/completions", `{"model":"gpt-x","messages":[{"role":"user","content":"hi"}]}`, `"content":"Hello, 世界"`},
		{"/api/chat", `{"model":"llama3.2","stream":false,"messages":[{"role":"user","content":"hi"}]}`, `"content":"Hello, 世界"`},
	} {
		resp, body := post(t, s.URL+tc.path, tc.body, nil)
		if resp.StatusCode != 200 || !strings.Contains(body, tc.want) || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
			t.Errorf("%s: %d %s, want JSON with %s", tc.path, resp.StatusCode, body, tc.want)
		}
	}
}

func TestFailFirstCountsFromSetScript(t *testing.T) {
	s := llmtest.Start(t)
	s.SetScript(llmtest.Script{FailFirst: 2, FailStatus: 529, FailHeader: http.Header{"Retry-After": {"1"}}})
	body := `{"model":"claude-x","max_tokens":5,"stream":true,"messages":[{"role":"user","content":"hi"}]}`
	for i, want := range []int{529, 529, 200} {
		resp, got := post(t, s.AnthropicURL()+"/v1/messages", body, nil)
		if resp.StatusCode != want {
			t.Fatalf("request %d: status %d, want %d", i+1, resp.StatusCode, want)
		}
		if want == 529 && (resp.Header.Get("Retry-After") != "1" || !strings.Contains(got, `"type":"overloaded_error"`)) {
			t.Errorf("request %d: %v %s, want Retry-After and an overloaded_error body", i+1, resp.Header, got)
		}
	}
}

func TestAPIKeyChecked(t *testing.T) {
	s := llmtest.Start(t)
	s.SetScript(llmtest.Script{APIKey: "right"})
	body := `{"model":"gpt-x","stream":true,"messages":[{"role":"user","content":"hi"}]}`
	if resp, _ := post(t, s.OpenAIURL()+"/chat/completions", body, map[string]string{"Authorization": "Bearer wrong"}); resp.StatusCode != 401 {
		t.Errorf("wrong key: status %d, want 401", resp.StatusCode)
	}
	if resp, _ := post(t, s.OpenAIURL()+"/chat/completions", body, map[string]string{"Authorization": "Bearer right"}); resp.StatusCode != 200 {
		t.Errorf("right key: status %d, want 200", resp.StatusCode)
	}
	if got := s.Last().Header.Get("Authorization"); got != "REDACTED" {
		t.Errorf("recorded Authorization = %q, want it redacted", got)
	}
}

func TestHangEndsOnClose(t *testing.T) {
	s := llmtest.NewServer()
	s.SetScript(llmtest.Script{Break: llmtest.Hang})
	req, _ := http.NewRequest(http.MethodPost, s.OllamaURL()+"/api/chat", strings.NewReader(`{"model":"m","messages":[]}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	closed := make(chan struct{})
	go func() { s.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close blocked on a hanging stream")
	}
	_, _ = bufio.NewReader(resp.Body).ReadString('\n')
}

// BenchmarkConcurrentStreams runs 5,000 streams at once through the Ollama
// adapter, each of 100 deltas 1ms apart, to show the fake holds that load.
func BenchmarkConcurrentStreams(b *testing.B) {
	const streams = 5000
	s := llmtest.Start(b)
	s.SetScript(llmtest.Script{Delay: time.Millisecond})
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = streams
	defer tr.CloseIdleConnections()
	p := ollama.New(ollama.Config{BaseURL: s.OllamaURL(), HTTPClient: &http.Client{Transport: tr}})
	req := llm.Request{Model: "llama3.2", Messages: []llm.Message{llm.TextMessage("user", "hi")}}
	for b.Loop() {
		s.Reset()
		var wg sync.WaitGroup
		errs := make(chan error, streams)
		for range streams {
			wg.Go(func() {
				if err := p.Stream(context.Background(), req, func(llm.Delta) error { return nil }); err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(streams), "streams/op")
}

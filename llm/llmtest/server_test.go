package llmtest_test

import (
	"bufio"
	"context"
	"encoding/base64"
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

// anthropicHeaders are the headers every Anthropic request needs.
var anthropicHeaders = map[string]string{"X-Api-Key": "sk-ant-any", "Anthropic-Version": "2023-06-01"}

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
	for _, tc := range []struct {
		path, body, want string
		header           map[string]string
	}{
		{"/v1/messages", `{"model":"claude-x","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`, `"text":"Hello, 世界"`, anthropicHeaders},
		{"/v1/chat/completions", `{"model":"gpt-x","messages":[{"role":"user","content":"hi"}]}`, `"content":"Hello, 世界"`, nil},
		{"/api/chat", `{"model":"llama3.2","stream":false,"messages":[{"role":"user","content":"hi"}]}`, `"content":"Hello, 世界"`, nil},
	} {
		resp, body := post(t, s.URL+tc.path, tc.body, tc.header)
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
		resp, got := post(t, s.AnthropicURL()+"/v1/messages", body, anthropicHeaders)
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
	if resp, _ := post(t, s.OpenAIURL()+"/chat/completions", body, map[string]string{"Authorization": "right"}); resp.StatusCode != 401 {
		t.Errorf("key without Bearer: status %d, want 401", resp.StatusCode)
	}
	if resp, _ := post(t, s.OpenAIURL()+"/chat/completions", body, map[string]string{"Authorization": "Bearer right"}); resp.StatusCode != 200 {
		t.Errorf("right key: status %d, want 200", resp.StatusCode)
	}
	if got := s.Last().Header.Get("Authorization"); got != "REDACTED" {
		t.Errorf("recorded Authorization = %q, want it redacted", got)
	}

	// Anthropic takes its key in x-api-key, never as a bearer credential.
	msg := `{"model":"claude-x","max_tokens":5,"stream":true,"messages":[{"role":"user","content":"hi"}]}`
	for _, h := range []map[string]string{
		{"X-Api-Key": "wrong", "Anthropic-Version": "2023-06-01"},
		{"Authorization": "Bearer right", "Anthropic-Version": "2023-06-01"},
	} {
		if resp, got := post(t, s.AnthropicURL()+"/v1/messages", msg, h); resp.StatusCode != 401 || !strings.Contains(got, `"authentication_error"`) {
			t.Errorf("%v: %d %s, want 401 authentication_error", h, resp.StatusCode, got)
		}
	}
	if resp, _ := post(t, s.AnthropicURL()+"/v1/messages", msg, map[string]string{"X-Api-Key": "right", "Anthropic-Version": "2023-06-01"}); resp.StatusCode != 200 {
		t.Errorf("right x-api-key: status %d, want 200", resp.StatusCode)
	}
	if got := s.Last().Header.Get("X-Api-Key"); got != "REDACTED" {
		t.Errorf("recorded X-Api-Key = %q, want it redacted", got)
	}
}

// TestAnthropicHeadersRequired checks what the real API checks of every
// request, with no key configured: an x-api-key (else 401) and a known
// anthropic-version (else 400), in Anthropic's error shape.
func TestAnthropicHeadersRequired(t *testing.T) {
	s := llmtest.Start(t)
	msg := `{"model":"claude-x","max_tokens":5,"stream":true,"messages":[{"role":"user","content":"hi"}]}`
	for _, tc := range []struct {
		header map[string]string
		status int
		typ    string
	}{
		{map[string]string{"Anthropic-Version": "2023-06-01"}, 401, "authentication_error"},
		{map[string]string{"X-Api-Key": "k"}, 400, "invalid_request_error"},
		{map[string]string{"X-Api-Key": "k", "Anthropic-Version": "2024-13-01"}, 400, "invalid_request_error"},
		{anthropicHeaders, 200, ""},
	} {
		for _, rq := range []struct{ method, path, body string }{{"POST", "/v1/messages", msg}, {"GET", "/v1/models", ""}} {
			req, _ := http.NewRequest(rq.method, s.AnthropicURL()+rq.path, strings.NewReader(rq.body))
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || !strings.Contains(string(got), tc.typ) {
				t.Errorf("%s %s with %v: %d %s, want %d %s", rq.method, rq.path, tc.header, resp.StatusCode, got, tc.status, tc.typ)
			}
			if tc.status != 200 && !strings.Contains(string(got), `{"type":"error","error":{"type":`) {
				t.Errorf("%s %s with %v: not Anthropic's error shape: %s", rq.method, rq.path, tc.header, got)
			}
		}
	}
}

func TestAnthropicDocuments(t *testing.T) {
	s := llmtest.Start(t)
	pdf := []byte("%PDF-1.4 not really")
	b64 := base64.StdEncoding.EncodeToString(pdf)
	for _, tc := range []struct {
		name, block string
		status      int
	}{
		{"base64 PDF", `{"type":"document","source":{"type":"base64","media_type":"application/pdf","data":"` + b64 + `"},"title":"a.pdf"}`, 200},
		{"plain text", `{"type":"document","source":{"type":"text","media_type":"text/plain","data":"hello"}}`, 200},
		{"base64 not a PDF", `{"type":"document","source":{"type":"base64","media_type":"text/plain","data":"` + b64 + `"}}`, 400},
		{"not base64", `{"type":"document","source":{"type":"base64","media_type":"application/pdf","data":"%%%"}}`, 400},
		{"unknown block", `{"type":"hologram"}`, 400},
	} {
		body := `{"model":"claude-x","max_tokens":5,"stream":true,"messages":[{"role":"user","content":[` + tc.block + `,{"type":"text","text":"summarise"}]}]}`
		resp, got := post(t, s.AnthropicURL()+"/v1/messages", body, anthropicHeaders)
		if resp.StatusCode != tc.status {
			t.Errorf("%s: %d %s, want %d", tc.name, resp.StatusCode, got, tc.status)
		}
	}
	docs := s.Requests()[0].Documents()
	if len(docs) != 1 || docs[0].Title != "a.pdf" || docs[0].MediaType != "application/pdf" || string(docs[0].Data) != string(pdf) {
		t.Errorf("Documents() = %+v, want the PDF decoded", docs)
	}
}

func TestAnthropicModelPages(t *testing.T) {
	s := llmtest.Start(t)
	var ids []string
	q := "limit=2"
	for range 3 {
		req, _ := http.NewRequest("GET", s.AnthropicURL()+"/v1/models?"+q, nil)
		for k, v := range anthropicHeaders {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var page struct {
			Data []struct {
				ID string `json:"id"`
			} `json:"data"`
			HasMore bool   `json:"has_more"`
			LastID  string `json:"last_id"`
		}
		json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		for _, m := range page.Data {
			ids = append(ids, m.ID)
		}
		if !page.HasMore {
			break
		}
		q = "limit=2&after_id=" + page.LastID
	}
	if want := llmtest.DefaultModels("anthropic"); strings.Join(ids, ",") != strings.Join(want, ",") {
		t.Errorf("models over pages = %v, want %v", ids, want)
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

// TestRefusesWhatUpstreamsRefuse checks that the fakes answer 400, as the
// real services do, for sampling parameters they do not take: so that an
// adapter that leaks one fails its tests.
func TestRefusesWhatUpstreamsRefuse(t *testing.T) {
	s := llmtest.Start(t)
	const msgs = `"messages":[{"role":"user","content":"hi"}]`
	for _, tc := range []struct {
		path, body, says string
		header           map[string]string
	}{
		{"/v1/messages", `{"model":"claude-x","max_tokens":5,"seed":1,` + msgs + `}`, "seed: Extra inputs are not permitted", anthropicHeaders},
		{"/v1/messages", `{"model":"claude-x","max_tokens":5,"stop":["x"],` + msgs + `}`, "stop: Extra inputs", anthropicHeaders},
		{"/v1/messages", `{"model":"claude-x","max_tokens":5,"temperature":1.5,` + msgs + `}`, "temperature: Input should be less than or equal to 1", anthropicHeaders},
		{"/v1/messages", `{"model":"claude-x","max_tokens":5,"top_p":-1,` + msgs + `}`, "top_p: Input should be greater than or equal to 0", anthropicHeaders},
		{"/v1/messages", `{"model":"claude-x","max_tokens":5,"stop_sequences":["\n"],` + msgs + `}`, "non-whitespace", anthropicHeaders},
		{"/api/chat", `{"model":"llama3.2","format":"yaml",` + msgs + `}`, "invalid format", nil},
	} {
		resp, body := post(t, s.URL+tc.path, tc.body, tc.header)
		if resp.StatusCode != 400 || !strings.Contains(body, tc.says) {
			t.Errorf("%s %s: %d %s, want 400 saying %q", tc.path, tc.body, resp.StatusCode, body, tc.says)
		}
	}
	for _, tc := range []struct{ path, body string }{
		{"/v1/messages", `{"model":"claude-x","max_tokens":5,"temperature":1,"top_p":0,"stop_sequences":["END"],"metadata":{"user_id":"u"},` + msgs + `}`},
		{"/api/chat", `{"model":"llama3.2","stream":false,"format":"json",` + msgs + `}`},
		{"/api/chat", `{"model":"llama3.2","stream":false,"format":{"type":"object"},` + msgs + `}`},
	} {
		if resp, body := post(t, s.URL+tc.path, tc.body, anthropicHeaders); resp.StatusCode != 200 {
			t.Errorf("%s %s: %d %s, want 200", tc.path, tc.body, resp.StatusCode, body)
		}
	}
}

// TestOpenWithFirst: with OpenWithFirst, Anthropic's opening events come
// after the first pause, in the same write as the first delta; without
// it, they come at once and the first delta a pause later.
func TestOpenWithFirst(t *testing.T) {
	s := llmtest.Start(t)
	const pause = 150 * time.Millisecond
	for _, together := range []bool{true, false} {
		s.SetScript(llmtest.Script{Deltas: []string{"a", "b"}, Delay: pause, OpenWithFirst: together})
		req, _ := http.NewRequest(http.MethodPost, s.AnthropicURL()+"/v1/messages",
			strings.NewReader(`{"model":"claude-sonnet-4-6","max_tokens":10,"stream":true,"messages":[{"role":"user","content":"hi"}]}`))
		req.Header.Set("Content-Type", "application/json")
		for k, v := range anthropicHeaders {
			req.Header.Set(k, v)
		}
		start := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 64<<10)
		n, _ := resp.Body.Read(buf)
		first, took := string(buf[:n]), time.Since(start)
		rest, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		hasStart, hasDelta := strings.Contains(first, "message_start"), strings.Contains(first, `"text":"a"`)
		if together && (!hasStart || !hasDelta || took < pause) {
			t.Errorf("together: the first read after %v holds message_start %v, the first delta %v; want both, after the pause", took, hasStart, hasDelta)
		}
		if !together && (!hasStart || hasDelta || took >= pause) {
			t.Errorf("apart: the first read after %v holds message_start %v, the first delta %v; want only the start, at once", took, hasStart, hasDelta)
		}
		if all := first + string(rest); strings.Count(all, "text_delta") != 2 || !strings.Contains(all, "message_stop") {
			t.Errorf("together %v: the stream is %q", together, all)
		}
	}
}

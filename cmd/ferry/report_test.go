package main

import (
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/llm/llmtest"
)

// logRecord is one line of the JSON log, the fields the report writes.
type logRecord struct {
	Level    string
	Msg      string
	Provider string
	URL      string
	Models   *int
	Error    string
	Fix      string
}

// waitLog waits for the log line with msg (and provider, when not empty)
// and returns it.
func waitLog(t *testing.T, in *instance, msg, provider string) logRecord {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		for _, line := range strings.Split(in.stdout.String(), "\n") {
			var r logRecord
			if json.Unmarshal([]byte(line), &r) == nil && r.Msg == msg && (provider == "" || r.Provider == provider) {
				return r
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q line for %q in the log:\n%s", msg, provider, in.stdout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// closedURL returns an http:// URL where nothing listens.
func closedURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

// TestReportNoProvider: with no provider that answers (here Ollama, the one
// enabled without settings, at an address where nothing listens), the log
// says so and names the settings that enable one, and where the docs are.
func TestReportNoProvider(t *testing.T) {
	t.Parallel()
	env := sqliteEnv(t)
	env.vars["OLLAMA_BASE_URL"] = closedURL(t)
	in := start(t, env)

	docs := waitLog(t, in, "API docs", "")
	if docs.URL != "http://"+in.addr+"/docs" {
		t.Errorf("docs at %q, want http://%s/docs", docs.URL, in.addr)
	}
	res, err := in.client.Get(docs.URL)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Errorf("GET %s: %d", docs.URL, res.StatusCode)
	}

	o := waitLog(t, in, "provider did not answer", "ollama")
	if o.Level != "WARN" || o.URL != env.vars["OLLAMA_BASE_URL"]+"/api/tags" || !strings.Contains(o.Error, "OLLAMA_BASE_URL") {
		t.Errorf("ollama's line: %+v", o)
	}
	w := waitLog(t, in, "no model provider is usable", "")
	for _, s := range []string{"ANTHROPIC_API_KEY", "OPENAI_API_KEY", "OPENAI_BASE_URL", "OLLAMA_BASE_URL"} {
		if w.Level != "WARN" || !strings.Contains(w.Fix, s) {
			t.Errorf("the warning does not name %s: %+v", s, w)
		}
	}
	if strings.Contains(in.stdout.String(), `"msg":"provider answered"`) {
		t.Error("a provider is said to have answered")
	}
}

// TestReportProvidersAnswer: each provider the settings enable is asked
// for its models, and the log says it answered, with how many; no key
// reaches the log.
func TestReportProvidersAnswer(t *testing.T) {
	t.Parallel()
	fake := llmtest.Start(t)
	env := withFake(sqliteEnv(t), fake)
	env.vars["ANTHROPIC_API_KEY"] = "sk-ant-report-canary"
	env.vars["OPENAI_API_KEY"] = "sk-report-canary"
	fake.SetScript(llmtest.Script{})
	in := start(t, env)
	for provider, want := range map[string]struct {
		url    string
		models int
	}{
		"anthropic": {fake.AnthropicURL() + "/v1/models", len(llmtest.DefaultModels("anthropic"))},
		"openai":    {fake.OpenAIURL() + "/models", len(llmtest.DefaultModels("openai"))},
		"ollama":    {fake.OllamaURL() + "/api/tags", len(llmtest.DefaultModels("ollama"))},
	} {
		r := waitLog(t, in, "provider answered", provider)
		if r.Level != "INFO" || r.URL != want.url || r.Models == nil || *r.Models != want.models {
			t.Errorf("%s: %+v, want %s with %d models", provider, r, want.url, want.models)
		}
	}
	logs := in.stdout.String() + in.stderr.String()
	for _, s := range []string{"no model provider is usable", "sk-ant-report-canary", "sk-report-canary", "limit=1000"} {
		if strings.Contains(logs, s) {
			t.Errorf("the log holds %q", s)
		}
	}
}

// TestReportWrongBaseURL: a base URL that answers 404 for the model list,
// ANTHROPIC_BASE_URL with /v1 and OPENAI_BASE_URL without, is logged as an
// error naming the setting and the URL tried, without the credentials a
// URL may hold. A chat sent there gets a 502 naming the setting, while a
// 404 for a model the upstream does not have stays a 404 in its words.
func TestReportWrongBaseURL(t *testing.T) {
	t.Parallel()
	fake := llmtest.Start(t)
	env := withFake(sqliteEnv(t), fake)
	env.vars["ANTHROPIC_API_KEY"] = "sk-ant-wrong-base-canary"
	env.vars["ANTHROPIC_BASE_URL"] = fake.URL + "/v1"
	env.vars["OPENAI_BASE_URL"] = strings.Replace(fake.URL, "http://", "http://ferry:url-password-canary@", 1)
	in := start(t, env)

	a := waitLog(t, in, "provider base URL is wrong", "anthropic")
	want := "ANTHROPIC_BASE_URL: GET " + fake.URL + "/v1/v1/models answered 404; the base URL should not end in /v1"
	if a.Level != "ERROR" || a.Error != want || a.URL != fake.URL+"/v1/v1/models" {
		t.Errorf("anthropic: %+v\nwant the error %q", a, want)
	}
	o := waitLog(t, in, "provider base URL is wrong", "openai")
	want = "OPENAI_BASE_URL: GET " + fake.URL + "/models answered 404; the base URL usually ends in /v1, as in http://127.0.0.1:8080/v1"
	if o.Level != "ERROR" || o.Error != want {
		t.Errorf("openai: %+v\nwant the error %q", o, want)
	}
	// Ollama answers, so one provider is usable.
	waitLog(t, in, "provider answered", "ollama")

	access, _ := in.signUp(t, "wrong-base@example.com", "correct horse battery")
	status, body := in.call(t, "POST", "/ai/chat", access, map[string]any{"message": "hi", "model": "claude-sonnet-4-6"})
	detail, _ := body["detail"].(string)
	if status != http.StatusBadGateway || !strings.Contains(detail, "ANTHROPIC_BASE_URL") || !strings.Contains(detail, "should not end in /v1") ||
		strings.Contains(detail, fake.URL) {
		t.Errorf("chat through a wrong base URL: %d %v; want 502 naming ANTHROPIC_BASE_URL, not the URL", status, body)
	}
	status, body = in.call(t, "POST", "/ai/chat", access, map[string]any{"message": "hi", "model": "openai/gpt-4o-mini"})
	if detail, _ := body["detail"].(string); status != http.StatusBadGateway || !strings.Contains(detail, "OPENAI_BASE_URL") {
		t.Errorf("chat through a wrong OpenAI base URL: %d %v", status, body)
	}

	logs := in.stdout.String() + in.stderr.String()
	for _, s := range []string{"sk-ant-wrong-base-canary", "url-password-canary"} {
		if strings.Contains(logs, s) {
			t.Errorf("the log holds %q", s)
		}
	}
}

// TestUnknownModelStays404: behind a right base URL, a 404 for a model the
// upstream does not have reaches the client as 404 with the upstream's
// message.
func TestUnknownModelStays404(t *testing.T) {
	t.Parallel()
	fake := llmtest.Start(t)
	env := withFake(sqliteEnv(t), fake)
	in := start(t, env)
	access, _ := in.signUp(t, "unknown-model@example.com", "correct horse battery")
	for _, model := range []string{"claude-nope-9", "openai/gpt-nope", "ollama/nope:1b"} {
		fake.SetScript(llmtest.Script{FailFirst: 1, FailStatus: http.StatusNotFound, FailMessage: "model " + model + " does not exist"})
		status, body := in.call(t, "POST", "/ai/chat", access, map[string]any{"message": "hi", "model": model})
		if detail, _ := body["detail"].(string); status != http.StatusNotFound || !strings.Contains(detail, "model "+model+" does not exist") {
			t.Errorf("%s: %d %v; want 404 with the upstream's message", model, status, body)
		}
	}
}

package llm_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/llm"
	"github.com/ferryhq/ferry/llm/llmtest"
	"github.com/ferryhq/ferry/llm/ollama"
)

func ollamaEndpoint(base string) llm.Endpoint {
	return llm.Endpoint{Name: llm.Ollama, URLSetting: "OLLAMA_BASE_URL", BaseURL: base,
		New: func(hc *http.Client) llm.Provider { return ollama.New(ollama.Config{BaseURL: base, HTTPClient: hc}) }}
}

func TestProbe(t *testing.T) {
	fake := llmtest.Start(t)
	ctx := context.Background()

	r := ollamaEndpoint(fake.OllamaURL()).Probe(ctx, http.DefaultTransport)
	if r.Err != nil || r.Status != http.StatusOK || r.Models != len(llmtest.DefaultModels("ollama")) || r.URL != fake.URL+"/api/tags" {
		t.Errorf("a right base URL: %+v", r)
	}

	// Credentials in the URL stay out of what Probe reports.
	withUser := strings.Replace(fake.URL, "http://", "http://me:secret-canary@", 1) + "/api"
	e := ollamaEndpoint(withUser)
	r = e.Probe(ctx, http.DefaultTransport)
	if !r.WrongBase() || r.URL != fake.URL+"/api/api/tags" {
		t.Errorf("a base URL ending in /api: %+v", r)
	}
	want := "OLLAMA_BASE_URL: GET " + fake.URL + "/api/api/tags answered 404; the base URL should be Ollama's root, without /api or /v1"
	if got := e.WrongBaseError(r); got != want {
		t.Errorf("WrongBaseError = %q, want %q", got, want)
	}

	r = ollamaEndpoint("http://127.0.0.1:1").Probe(ctx, http.DefaultTransport)
	if r.Err == nil || r.WrongBase() || r.Status != 0 || r.URL != "http://127.0.0.1:1/api/tags" {
		t.Errorf("nothing listening: %+v", r)
	}
}

func TestWithBaseCheck(t *testing.T) {
	fake := llmtest.Start(t)
	ctx := context.Background()
	req := llm.Request{Model: "llama3.2:latest", Messages: []llm.Message{llm.TextMessage("user", "hi")}}
	stream := func(p llm.Provider) error { return p.Stream(ctx, req, func(llm.Delta) error { return nil }) }

	// An unknown model: the model list answers, so the 404 stays.
	right := ollamaEndpoint(fake.OllamaURL())
	p := llm.WithBaseCheck(right.New(http.DefaultClient), right, http.DefaultTransport)
	fake.SetScript(llmtest.Script{FailFirst: 1, FailStatus: http.StatusNotFound, FailMessage: `model "nope" not found, try pulling it first`})
	var fe *ferry.Error
	if err := stream(p); ferry.ErrorCode(err) != ferry.NotFound || !strings.Contains(err.Error(), `model "nope" not found`) {
		t.Errorf("unknown model: %v, want NotFound in the upstream's words", err)
	}
	fake.SetScript(llmtest.Script{})
	if err := stream(p); err != nil {
		t.Errorf("a good call: %v", err)
	}

	wrong := ollamaEndpoint(fake.URL + "/v1")
	p = llm.WithBaseCheck(wrong.New(http.DefaultClient), wrong, http.DefaultTransport)
	err := stream(p)
	if ferry.ErrorCode(err) != ferry.Upstream {
		t.Fatalf("wrong base URL: %v, want Upstream", err)
	}
	errors.As(err, &fe)
	if !strings.Contains(fe.Message, "OLLAMA_BASE_URL") || strings.Contains(fe.Message, fake.URL) {
		t.Errorf("message %q: want the setting named, not the URL", fe.Message)
	}
	if !strings.Contains(err.Error(), fake.URL+"/v1/api/tags answered 404") {
		t.Errorf("the cause, for the log, lacks the URL tried: %v", err)
	}
	if _, err := p.Models(ctx); ferry.ErrorCode(err) != ferry.Upstream {
		t.Errorf("Models through a wrong base URL: %v", err)
	}
}

package openai_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
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

// Stream goes through the SDK's generic Post, which would send the
// environment's admin key when Config has no API key.
func TestStreamSendsNoAdminKey(t *testing.T) {
	t.Setenv("OPENAI_ADMIN_KEY", "sk-admin-secret")
	var auth string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth = r.Header.Get("Authorization")
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n")
	}))
	defer srv.Close()
	p := openai.New(openai.Config{BaseURL: srv.URL, HTTPClient: srv.Client()})
	err := p.Stream(context.Background(), llm.Request{Model: "m"}, func(llm.Delta) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		t.Errorf("Authorization = %q, want none", auth)
	}
}

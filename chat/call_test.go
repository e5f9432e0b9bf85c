package chat_test

import (
	"testing"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/chat"
	"github.com/ferryhq/ferry/llm"
	"github.com/ferryhq/ferry/llm/anthropic"
	"github.com/ferryhq/ferry/llm/llmtest"
	"github.com/ferryhq/ferry/llm/ollama"
	"github.com/ferryhq/ferry/store/storetest"
)

// TestStartChecksParts checks that the funnel refuses, before anything is
// sent, a part the routed provider does not take, and lets it through
// where the provider takes it.
func TestStartChecksParts(t *testing.T) {
	fake := llmtest.Start(t)
	router, err := llm.NewRouter("",
		anthropic.New(anthropic.Config{APIKey: "sk-ant-test", BaseURL: fake.AnthropicURL()}),
		ollama.New(ollama.Config{BaseURL: fake.OllamaURL()}))
	if err != nil {
		t.Fatal(err)
	}
	svc := chat.NewService(storetest.Open(t, "sqlite"), router, chat.Options{})
	who := &ferry.Principal{User: &ferry.User{ID: "u1"}}
	doc := llm.Message{Role: "user", Parts: []llm.Part{
		{Kind: llm.PartText, Text: "summarise"},
		{Kind: llm.PartDocument, Document: &llm.Document{Name: "a.pdf", MediaType: "application/pdf", Data: []byte("%PDF-1.4")}},
	}}
	req := llm.Request{Messages: []llm.Message{doc}}

	_, err = svc.Start(t.Context(), who, "/test", "ollama/llama3.2", req)
	if ferry.ErrorCode(err) != ferry.Invalid {
		t.Errorf("document to Ollama: %v, want Invalid", err)
	}
	c, err := svc.Start(t.Context(), who, "/test", "claude-sonnet-4-6", req)
	if err != nil {
		t.Fatalf("document to Anthropic: %v", err)
	}
	if c.Provider != llm.Anthropic || c.Model != "claude-sonnet-4-6" || c.Request.Model != "claude-sonnet-4-6" {
		t.Errorf("routed to %s/%s (request model %q)", c.Provider, c.Model, c.Request.Model)
	}
	if n := len(fake.Requests()); n != 0 {
		t.Errorf("upstream saw %d requests before the call ran", n)
	}
}

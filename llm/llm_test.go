package llm_test

import (
	"testing"

	"github.com/ferryhq/ferry/llm"
)

func TestMessageText(t *testing.T) {
	m := llm.Message{Role: "user", Parts: []llm.Part{
		{Kind: llm.PartText, Text: "first"},
		{Kind: llm.PartDocument, Document: &llm.Document{Name: "a.pdf", MediaType: "application/pdf", Data: []byte("%PDF-")}},
		{Kind: llm.PartText, Text: "second"},
	}}
	if got := m.Text(); got != "first\n\nsecond" {
		t.Errorf("Text() = %q", got)
	}
	if got := llm.TextMessage("user", "hi").Text(); got != "hi" {
		t.Errorf("TextMessage Text() = %q", got)
	}
}

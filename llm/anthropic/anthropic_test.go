package anthropic_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/llm"
	"github.com/ferryhq/ferry/llm/anthropic"
	"github.com/ferryhq/ferry/llm/llmtest"
)

func TestConformance(t *testing.T) {
	llmtest.RunConformance(t, llmtest.Adapter{
		Name: llm.Anthropic,
		New: func(s *llmtest.Server, hc *http.Client, apiKey string) llm.Provider {
			return anthropic.New(anthropic.Config{APIKey: apiKey, BaseURL: s.AnthropicURL(), HTTPClient: hc})
		},
		Model:          "claude-haiku-4-5",
		DefaultModel:   "claude-sonnet-4-6",
		StopReason:     "end_turn",
		OverloadStatus: 529,
		Setting:        "ANTHROPIC_API_KEY",
	})
}

func discard(llm.Delta) error { return nil }

// TestRequest checks the request on the wire: the headers the API requires,
// the system prompt beside the turns, and a document part as a base64
// document block that the fake accepts and decodes back.
func TestRequest(t *testing.T) {
	s := llmtest.Start(t)
	p := anthropic.New(anthropic.Config{APIKey: "sk-ant-x", BaseURL: s.AnthropicURL() + "/"})
	pdf := []byte("%PDF-1.7\n\x00\xff binary bytes")
	req := llm.Request{Model: "claude-haiku-4-5", System: "be brief", Messages: []llm.Message{
		{Role: "system", Parts: []llm.Part{{Kind: llm.PartText, Text: "and kind"}}},
		{Role: "user", Parts: []llm.Part{
			{Kind: llm.PartDocument, Document: &llm.Document{Name: "report.pdf", MediaType: "application/pdf", Data: pdf}},
			{Kind: llm.PartText, Text: "summarise it"},
		}},
	}}
	if err := p.Stream(t.Context(), req, discard); err != nil {
		t.Fatal(err)
	}
	up := s.Last()
	for k, want := range map[string]string{"X-Api-Key": "REDACTED", "Anthropic-Version": "2023-06-01",
		"Content-Type": "application/json", "Accept": "text/event-stream"} {
		if got := up.Header.Get(k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
	docs := up.Documents()
	if len(docs) != 1 || docs[0].Title != "report.pdf" || docs[0].MediaType != "application/pdf" || string(docs[0].Data) != string(pdf) {
		t.Errorf("upstream documents = %+v, want report.pdf with its bytes", docs)
	}
	var body struct {
		System    string `json:"system"`
		MaxTokens int    `json:"max_tokens"`
		Stream    bool   `json:"stream"`
		Messages  []struct {
			Role    string `json:"role"`
			Content []struct {
				Type   string `json:"type"`
				Text   string `json:"text"`
				Source struct {
					Type string `json:"type"`
				} `json:"source"`
			} `json:"content"`
		} `json:"messages"`
	}
	if err := up.JSON(&body); err != nil {
		t.Fatal(err)
	}
	if body.System != "be brief\n\nand kind" || body.MaxTokens != anthropic.DefaultMaxTokens || !body.Stream {
		t.Errorf("system %q, max_tokens %d, stream %v", body.System, body.MaxTokens, body.Stream)
	}
	if len(body.Messages) != 1 || len(body.Messages[0].Content) != 2 ||
		body.Messages[0].Content[0].Source.Type != "base64" || body.Messages[0].Content[1].Text != "summarise it" {
		t.Errorf("messages = %+v, want one user turn of a base64 document then text", body.Messages)
	}

	// Without a system prompt the field is left out, as the API prefers.
	if err := p.Stream(t.Context(), llm.Request{Messages: []llm.Message{llm.TextMessage("user", "hi")}}, discard); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(s.Last().Body), `"system"`) {
		t.Errorf("body has a system field: %s", s.Last().Body)
	}
}

// TestRequestSampling checks the sampling parameters on the wire under the
// Messages API's names, a temperature of 0 included, and none of them when
// none is set.
func TestRequestSampling(t *testing.T) {
	s := llmtest.Start(t)
	p := anthropic.New(anthropic.Config{APIKey: "sk-ant-x", BaseURL: s.AnthropicURL()})
	temp, topP := 0.0, 0.5
	req := llm.Request{Model: "claude-haiku-4-5", Messages: []llm.Message{llm.TextMessage("user", "hi")},
		Sampling: llm.Sampling{Temperature: &temp, TopP: &topP, Stop: []string{"END", "\n\nHuman:"}, User: "user-7"}}
	if err := p.Stream(t.Context(), req, discard); err != nil {
		t.Fatal(err)
	}
	fields := topLevel(t, s.Last())
	for k, want := range map[string]string{"temperature": `0`, "top_p": `0.5`, "stop_sequences": `["END","\n\nHuman:"]`,
		"metadata": `{"user_id":"user-7"}`} {
		if got := string(fields[k]); got != want {
			t.Errorf("%s = %s, want %s", k, got, want)
		}
	}

	req.Sampling = llm.Sampling{}
	if err := p.Stream(t.Context(), req, discard); err != nil {
		t.Fatal(err)
	}
	for k := range topLevel(t, s.Last()) {
		if k != "model" && k != "max_tokens" && k != "messages" && k != "stream" {
			t.Errorf("unset sampling sent %s: %s", k, s.Last().Body)
		}
	}
}

// topLevel returns the fields of r's JSON body.
func topLevel(t *testing.T, r *llmtest.Request) map[string]json.RawMessage {
	t.Helper()
	var fields map[string]json.RawMessage
	if err := r.JSON(&fields); err != nil {
		t.Fatal(err)
	}
	return fields
}

// serve answers every request with status and body as an event stream.
func serve(t *testing.T, status int, body string) *anthropic.Provider {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return anthropic.New(anthropic.Config{APIKey: "k", BaseURL: srv.URL, HTTPClient: srv.Client()})
}

// TestUsageWithCache checks that the prompt tokens read from and written to
// the cache count as input, and that message_delta's cumulative counts
// replace message_start's.
func TestUsageWithCache(t *testing.T) {
	p := serve(t, 200, `event: message_start
data: {"type":"message_start","message":{"model":"claude-x","usage":{"input_tokens":5,"cache_creation_input_tokens":100,"cache_read_input_tokens":1000,"output_tokens":1}}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hi"}}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"input_tokens":6,"cache_creation_input_tokens":200,"cache_read_input_tokens":2000,"output_tokens":7}}

event: message_stop
data: {"type":"message_stop"}

`)
	var done llm.Delta
	err := p.Stream(t.Context(), llm.Request{Model: "m"}, func(d llm.Delta) error {
		if d.Done {
			done = d
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if done.Usage != (llm.Usage{InputTokens: 2206, OutputTokens: 7}) || done.Model != "claude-x" || done.StopReason != "end_turn" {
		t.Errorf("done = %+v, want 6+200+2000 in, 7 out", done)
	}
}

func TestStreamErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		body   string
		code   ferry.Code
		says   string
	}{
		{"no message_stop", 200, "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{}}\n\n", ferry.Upstream, "without finishing"},
		{"error event", 200, "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded now\"}}\n\n", ferry.Upstream, "Overloaded now"},
		{"not JSON", 200, "event: message_start\ndata: {oops\n\n", ferry.Upstream, "not JSON"},
		{"HTTP error", 401, `{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}`, ferry.Upstream, "ANTHROPIC_API_KEY"},
		{"HTTP error, not JSON", 503, "<html>down</html>", ferry.Unavailable, "<html>down</html>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := serve(t, tc.status, tc.body).Stream(t.Context(), llm.Request{Model: "m"}, discard)
			var fe *ferry.Error
			if !errors.As(err, &fe) || fe.Code != tc.code || !strings.Contains(fe.Message, tc.says) {
				t.Errorf("err = %v, want %s saying %q", err, tc.code, tc.says)
			}
		})
	}
}

func TestModelsFollowsPages(t *testing.T) {
	var queries []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		queries = append(queries, r.URL.RawQuery)
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Query().Get("after_id") == "" {
			io.WriteString(w, `{"data":[{"id":"a"},{"id":"b"}],"has_more":true,"first_id":"a","last_id":"b"}`)
			return
		}
		io.WriteString(w, `{"data":[{"id":"c"}],"has_more":false,"first_id":"c","last_id":"c"}`)
	}))
	defer srv.Close()
	p := anthropic.New(anthropic.Config{APIKey: "k", BaseURL: srv.URL, HTTPClient: srv.Client()})
	models, err := p.Models(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range models {
		names = append(names, m.ID)
	}
	if strings.Join(names, " ") != "anthropic/a anthropic/b anthropic/c" {
		t.Errorf("models = %v", names)
	}
	if strings.Join(queries, " ") != "limit=1000 after_id=b&limit=1000" {
		t.Errorf("queries = %v", queries)
	}
}

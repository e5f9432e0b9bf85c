package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// prompt is the user's message in every request; the fake answers it with
// its scripted deltas whatever it says.
const prompt = "Say hello in three languages"

// endpoint is one of Ferry's streaming routes and the upstream call a client
// would make instead without Ferry. Each is one row of the table below.
type endpoint struct {
	route string // Ferry's path, which names the row

	ferryBody, upstreamPath, upstreamBody string
	upstreamHeader                        http.Header
	ferryText, upstreamText               func([]byte) (string, error)
	ferryEnd, upstreamEnd                 string // the last event of a complete body contains this
	sep                                   string // what ends one event of Ferry's stream
}

// endpoints are the routes measured, in report order.
var endpoints = []endpoint{
	{
		route:        "/ai/chat/stream",
		ferryBody:    `{"message":"` + prompt + `","model":"claude-sonnet-4-6"}`,
		upstreamPath: "/v1/messages",
		upstreamBody: `{"model":"claude-sonnet-4-6","max_tokens":4096,"stream":true,"messages":[{"role":"user","content":"` + prompt + `"}]}`,
		upstreamHeader: http.Header{"X-Api-Key": {"sk-ant-bench"}, "Anthropic-Version": {"2023-06-01"},
			"Content-Type": {"application/json"}},
		ferryText: ferryChatText, upstreamText: anthropicText,
		ferryEnd: `"done":true`, upstreamEnd: `"message_stop"`,
		sep: "\n\n",
	},
	{
		route:          "/ollama/generate",
		ferryBody:      `{"model":"llama3.2","prompt":"` + prompt + `"}`,
		upstreamPath:   "/api/generate",
		upstreamBody:   `{"model":"llama3.2","prompt":"` + prompt + `"}`,
		upstreamHeader: http.Header{"Content-Type": {"application/json"}},
		ferryText:      ollamaText, upstreamText: ollamaText,
		ferryEnd: `"done":true`, upstreamEnd: `"done":true`,
		sep: "\n",
	},
	{
		route:          "/v1/chat/completions",
		ferryBody:      `{"model":"openai/gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"` + prompt + `"}]}`,
		upstreamPath:   "/v1/chat/completions",
		upstreamBody:   `{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"` + prompt + `"}]}`,
		upstreamHeader: http.Header{"Authorization": {"Bearer sk-bench"}, "Content-Type": {"application/json"}},
		ferryText:      openAIText, upstreamText: openAIText,
		ferryEnd: "[DONE]", upstreamEnd: "[DONE]",
		sep: "\n\n",
	},
	{
		route:        "/v1/messages",
		ferryBody:    `{"model":"claude-sonnet-4-6","max_tokens":4096,"stream":true,"messages":[{"role":"user","content":"` + prompt + `"}]}`,
		upstreamPath: "/v1/messages",
		upstreamBody: `{"model":"claude-sonnet-4-6","max_tokens":4096,"stream":true,"messages":[{"role":"user","content":"` + prompt + `"}]}`,
		upstreamHeader: http.Header{"X-Api-Key": {"sk-ant-bench"}, "Anthropic-Version": {"2023-06-01"},
			"Content-Type": {"application/json"}},
		ferryText: anthropicText, upstreamText: anthropicText,
		ferryEnd: `"message_stop"`, upstreamEnd: `"message_stop"`,
		sep: "\n\n",
	},
}

// ferry is the endpoint's request to Ferry f.
func (e endpoint) ferry(f *ferryProc) *target {
	return &target{
		url:    f.URL + e.route,
		header: http.Header{"Authorization": {"Bearer " + f.Key}, "Content-Type": {"application/json"}},
		body:   []byte(e.ferryBody), text: e.ferryText, end: []byte(e.ferryEnd), sep: []byte(e.sep),
	}
}

// upstream is the same answer asked of the fake directly, at base (the
// fake's URL, or a proxy in front of it).
func (e endpoint) upstream(base string) *target {
	return &target{
		url: base + e.upstreamPath, header: e.upstreamHeader,
		body: []byte(e.upstreamBody), text: e.upstreamText, end: []byte(e.upstreamEnd), sep: []byte(e.sep),
	}
}

// endpointFor returns the row for route.
func endpointFor(route string) (endpoint, bool) {
	for _, e := range endpoints {
		if e.route == route {
			return e, true
		}
	}
	return endpoint{}, false
}

// sseData returns the data of each event of a text/event-stream body; every
// stream measured here has one data line per event.
func sseData(body []byte) [][]byte {
	var out [][]byte
	for line := range bytes.Lines(body) {
		if d, ok := bytes.CutPrefix(line, []byte("data:")); ok {
			out = append(out, bytes.TrimSpace(d))
		}
	}
	return out
}

// ferryChatText reads /ai/chat/stream's events: {"text"} per delta, then
// {"done": true}; an {"error"} event makes the stream incomplete.
func ferryChatText(body []byte) (string, error) {
	var text strings.Builder
	for _, d := range sseData(body) {
		var ev struct {
			Text  *string         `json:"text"`
			Done  bool            `json:"done"`
			Error json.RawMessage `json:"error"`
		}
		if err := json.Unmarshal(d, &ev); err != nil {
			return "", fmt.Errorf("event %s: %w", d, err)
		}
		switch {
		case ev.Error != nil:
			return "", fmt.Errorf("error event %s", d)
		case ev.Done:
			return text.String(), nil
		case ev.Text != nil:
			text.WriteString(*ev.Text)
		}
	}
	return "", errors.New("no done event")
}

// anthropicText reads a Messages API stream: text_delta events, then
// message_stop.
func anthropicText(body []byte) (string, error) {
	var text strings.Builder
	for _, d := range sseData(body) {
		var ev struct {
			Type  string `json:"type"`
			Delta struct {
				Type string `json:"type"`
				Text string `json:"text"`
			} `json:"delta"`
		}
		if err := json.Unmarshal(d, &ev); err != nil {
			return "", fmt.Errorf("event %s: %w", d, err)
		}
		switch ev.Type {
		case "content_block_delta":
			if ev.Delta.Type == "text_delta" {
				text.WriteString(ev.Delta.Text)
			}
		case "error":
			return "", fmt.Errorf("error event %s", d)
		case "message_stop":
			return text.String(), nil
		}
	}
	return "", errors.New("no message_stop event")
}

// openAIText reads a Chat Completions stream: chunks with choices[0].delta,
// then [DONE].
func openAIText(body []byte) (string, error) {
	var text strings.Builder
	for _, d := range sseData(body) {
		if string(d) == "[DONE]" {
			return text.String(), nil
		}
		var ev struct {
			Choices []struct {
				Delta struct {
					Content string `json:"content"`
				} `json:"delta"`
			} `json:"choices"`
			Error json.RawMessage `json:"error"`
		}
		if err := json.Unmarshal(d, &ev); err != nil {
			return "", fmt.Errorf("chunk %s: %w", d, err)
		}
		if ev.Error != nil {
			return "", fmt.Errorf("error chunk %s", d)
		}
		for _, c := range ev.Choices {
			text.WriteString(c.Delta.Content)
		}
	}
	return "", errors.New("no [DONE]")
}

// ollamaText reads Ollama's /api/generate NDJSON: {"response"} per line,
// the last with "done": true.
func ollamaText(body []byte) (string, error) {
	var text strings.Builder
	for line := range bytes.Lines(body) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var ev struct {
			Response string `json:"response"`
			Done     bool   `json:"done"`
			Error    string `json:"error"`
		}
		if err := json.Unmarshal(line, &ev); err != nil {
			return "", fmt.Errorf("line %s: %w", line, err)
		}
		if ev.Error != "" {
			return "", fmt.Errorf("error line %s", line)
		}
		text.WriteString(ev.Response)
		if ev.Done {
			return text.String(), nil
		}
	}
	return "", errors.New(`no "done": true line`)
}

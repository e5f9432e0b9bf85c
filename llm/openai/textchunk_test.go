package openai

import (
	"encoding/json"
	"testing"

	"github.com/ferryhq/ferry/llm"
)

func TestTextChunk(t *testing.T) {
	const model = "gpt-4o-mini"
	for _, data := range []string{
		`{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1730000000,"model":"gpt-4o-mini","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null}]}`,
		`{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","service_tier":"default","system_fingerprint":null,"choices":[{"index":0,"delta":{"content":"第一行\n\"二\" \ud83d\ude80"},"finish_reason":null}],"usage":null,"obfuscation":"a1b2"}`,
		`{"choices":[{"index":0,"delta":{"content":""},"logprobs":null,"finish_reason":null}],"model":"gpt-4o-mini","id":"x"}` + "\n",
	} {
		var c chunk
		if err := json.Unmarshal([]byte(data), &c); err != nil {
			t.Fatal(err)
		}
		text, ok := textChunk([]byte(data), model)
		if !ok || text != c.Choices[0].Delta.Content {
			t.Errorf("%s: got %q, %v; want %q", data, text, ok, c.Choices[0].Delta.Content)
		}
	}
	// Each of these says something besides a text delta, or is spelled
	// otherwise: the full decode reads it.
	for _, data := range []string{
		`{"id":"c","model":"gpt-4o-mini","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}`,
		`{"id":"c","model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"x"},"logprobs":null,"finish_reason":"stop"}]}`,
		`{"id":"c","model":"gpt-4o-mini","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}`,
		`{"id":"c","model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":5}}`,
		`{"id":"c","model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"x"},"finish_reason":null}],"error":{"message":"boom"}}`,
		`{"id":"c","model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"x"},"finish_reason":null}],"\u0065rror":{"message":"boom"}}`,
		`{"id":"c","model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"delta":{"content":"x"},"finish_reason":null}]}`,
		`{"id":"c","choices":[{"index":0,"delta":{"content":"x"},"finish_reason":null}],"choices":[{"index":0,"delta":{"content":"y"},"finish_reason":null}]}`,
		`{"id": "c", "model": "gpt-4o-mini", "choices": [{"index": 0, "delta": {"content": "spaced"}, "finish_reason": null}]}`,
		`{"id":"c","model":"gpt-4o-mini","choices":[{"index":1,"delta":{"content":"x"},"finish_reason":null}]}`,
		`{"id":"c","model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"x","tool_calls":[]},"finish_reason":null}]}`,
		`{"id":"c","model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"x"},"finish_reason":null}]`,
		`{"id":"c","model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"x"},"finish_reason":null}]}x`,
		`{"id":"c","model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"\xff"},"finish_reason":null}]}`,
		`{"id":"c","created":-1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"x"},"finish_reason":null}]}`,
		`{"id":"c","model":"gpt-4o-mini"}`,
	} {
		if _, ok := textChunk([]byte(data), model); ok {
			t.Errorf("%s: taken by the hot path", data)
		}
	}
	if _, ok := textChunk([]byte(`{"model":"m","choices":[{"index":0,"delta":{"content":"x"},"finish_reason":null}]}`), ""); ok {
		t.Error("a chunk before the stream named its model was taken by the hot path")
	}
}

// FuzzTextChunk checks that whatever the hot path takes, the full decode
// reads the same text, with no other model, finish reason, usage or error.
func FuzzTextChunk(f *testing.F) {
	f.Add([]byte(`{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"Hi"},"logprobs":null,"finish_reason":null}],"usage":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		text, ok := textChunk(data, "m")
		if !ok {
			return
		}
		var c chunk
		if err := json.Unmarshal(data, &c); err != nil {
			t.Fatalf("taken by the hot path, but not JSON: %v", err)
		}
		if len(c.Choices) != 1 || c.Choices[0].Delta.Content != text || c.Choices[0].FinishReason != "" ||
			(c.Model != "" && c.Model != "m") || c.Usage.PromptTokens != 0 || c.Usage.CompletionTokens != 0 || len(c.Error) > 0 {
			t.Fatalf("hot path read %q; the full decode %+v", text, c)
		}
	})
}

// TestFlatChunks holds the flat reading of the chunks that are more than
// text (the role's, the finish's, the usage's) to a full decode of them
// into the chunk struct, chunk after chunk, as a stream reads them.
func TestFlatChunks(t *testing.T) {
	p := New(Config{BaseURL: "http://127.0.0.1:1"})
	decoded := func(a *answer, data string) (text string) {
		var c chunk
		if err := json.Unmarshal([]byte(data), &c); err != nil {
			t.Fatal(err)
		}
		if c.Model != "" {
			a.done.Model = c.Model
		}
		if u := c.Usage; u.PromptTokens > 0 || u.CompletionTokens > 0 {
			a.done.Usage = llm.Usage{InputTokens: u.PromptTokens, OutputTokens: u.CompletionTokens}
		}
		if len(c.Choices) > 0 {
			text = c.Choices[0].Delta.Content
			if f := c.Choices[0].FinishReason; f != "" {
				a.done.StopReason, a.finished = f, true
			}
		}
		return text
	}
	flat, full := answer{}, answer{}
	for _, data := range []string{
		`{"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}`,
		`{"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"role":"assistant","content":"Hi \u00e9"},"finish_reason":null}]}`,
		`{"id":"c1","choices":[{"index":0,"delta":{"content":"a"}},{"index":1,"delta":{"content":"b"},"finish_reason":"length"}]}`,
		`{"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini-2024","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}`,
		`{"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":34,"total_tokens":46,"prompt_tokens_details":{"cached_tokens":0}}}`,
	} {
		var got string
		err := p.chunk(&flat, []byte(data), false, func(d llm.Delta) error { got += d.Text; return nil })
		if err != nil {
			t.Fatalf("%s: %v", data, err)
		}
		want := decoded(&full, data)
		if got != want || flat != full {
			t.Errorf("after %s:\nflat %q %+v\nfull %q %+v", data, got, flat, want, full)
		}
	}
	for _, bad := range []string{`{"choices":[`, `{"model":"m"}}`, `{"error":{"message":"boom"}}`} {
		if err := p.chunk(&answer{}, []byte(bad), false, func(llm.Delta) error { return nil }); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

// chunk is what Stream reads of a chat.completion.chunk, decoded in full:
// what the tests hold its readers to.
type chunk struct {
	Model   string `json:"model"`
	Choices []struct {
		Delta struct {
			Content string `json:"content"`
		} `json:"delta"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Usage struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
	} `json:"usage"`
	Error json.RawMessage `json:"error"`
}

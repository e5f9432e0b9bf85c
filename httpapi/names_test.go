package httpapi_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/ferryhq/ferry/llm/llmtest"
	"github.com/ferryhq/ferry/store/storetest"
)

// TestConversationsStoreRoutedNames checks that a conversation and its
// answers keep the model by the name the stream's start event gives
// (provider/model), however the request named it, and that a user's
// message carries no token counts or timings in the API's JSON, while an
// answer does.
func TestConversationsStoreRoutedNames(t *testing.T) {
	t.Parallel()
	for _, engine := range storetest.Engines(t) {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			e := newChatEnv(t, engine, 0)
			e.fake.SetScript(llmtest.Script{Deltas: []string{"Hello", " there"}})
			ctx := context.Background()

			for _, tc := range []struct{ requested, routed string }{
				{"claude-sonnet-4-6", "anthropic/claude-sonnet-4-6"},
				{"anthropic/claude-sonnet-4-6", "anthropic/claude-sonnet-4-6"},
				{"", "anthropic/claude-sonnet-4-6"}, // the default
				{"llama3.2", "ollama/llama3.2"},
				{"gpt-4o", "openai/gpt-4o"},
			} {
				body := map[string]any{"message": "hi"}
				if tc.requested != "" {
					body["model"] = tc.requested
				}
				resp := e.post(t, ctx, "/ai/chat/stream", e.token, body)
				if resp.StatusCode != http.StatusOK {
					b, _ := io.ReadAll(resp.Body)
					t.Fatalf("model %q: %d %s", tc.requested, resp.StatusCode, b)
				}
				start := parseTurn(t, allEvents(t, resp.Body)).start
				model, _ := start["model"].(string)
				if model != tc.routed {
					t.Fatalf("model %q: start event names %q, want %q", tc.requested, model, tc.routed)
				}

				status, conv := e.get(t, "/conversations/"+start["conversation_id"].(string), e.token)
				if status != http.StatusOK {
					t.Fatalf("get conversation: %d %v", status, conv)
				}
				if conv["model"] != model {
					t.Errorf("model %q: conversation stores %q, the start event said %q", tc.requested, conv["model"], model)
				}
				msgs, _ := conv["messages"].([]any)
				if len(msgs) != 2 {
					t.Fatalf("%d messages, want 2: %v", len(msgs), conv)
				}
				user, answer := msgs[0].(map[string]any), msgs[1].(map[string]any)
				if answer["model"] != model || answer["provider"] == nil {
					t.Errorf("model %q: answer stores model %v (provider %v), the start event said %q",
						tc.requested, answer["model"], answer["provider"], model)
				}
				for _, k := range []string{"input_tokens", "output_tokens", "latency_ms", "first_token_ms"} {
					if v, ok := user[k]; ok {
						t.Errorf("user message has %s = %v", k, v)
					}
					if _, ok := answer[k].(float64); !ok {
						t.Errorf("answer lacks %s: %v", k, answer)
					}
				}
				if user["model"] != nil || user["provider"] != nil {
					t.Errorf("user message names a model: %v", user)
				}
				if answer["output_tokens"] != float64(2) {
					t.Errorf("answer output_tokens = %v, want 2", answer["output_tokens"])
				}
			}

			// The list says the same, and a conversation created empty
			// keeps the routed name of the model it was given.
			status, list := e.get(t, "/conversations?limit=100", e.token)
			if status != http.StatusOK {
				t.Fatalf("list: %d %v", status, list)
			}
			for _, it := range list["items"].([]any) {
				if m := it.(map[string]any)["model"].(string); m != "anthropic/claude-sonnet-4-6" && m != "ollama/llama3.2" && m != "openai/gpt-4o" {
					t.Errorf("listed conversation with model %q", m)
				}
			}
			resp := e.post(t, ctx, "/conversations", e.token, map[string]any{"title": "t", "model": "llama3.2"})
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusCreated || !strings.Contains(string(b), `"model":"ollama/llama3.2"`) {
				t.Errorf("create conversation: %d %s", resp.StatusCode, b)
			}
		})
	}
}

package httpapi_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/chat"
	"github.com/ferryhq/ferry/llm/llmtest"
	"github.com/ferryhq/ferry/store/storetest"
)

// namedEvent is one event of an Anthropic stream: its event: line and its
// data.
type namedEvent struct {
	name string
	data map[string]any
	raw  string
}

// readNamedEvents reads a whole Anthropic event stream, checking that every
// event has a name and one JSON data line whose type is the name.
func readNamedEvents(t *testing.T, r io.Reader) []namedEvent {
	t.Helper()
	var evs []namedEvent
	var ev namedEvent
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if ev.name == "" && ev.raw == "" {
				continue
			}
			if err := json.Unmarshal([]byte(ev.raw), &ev.data); err != nil {
				t.Fatalf("event %q: data is not JSON: %q", ev.name, ev.raw)
			}
			if ev.data["type"] != ev.name {
				t.Errorf("event %q has data of type %v", ev.name, ev.data["type"])
			}
			evs = append(evs, ev)
			ev = namedEvent{}
		case strings.HasPrefix(line, "event: "):
			ev.name = line[len("event: "):]
		case strings.HasPrefix(line, "data: "):
			if ev.raw != "" {
				t.Fatalf("event %q has two data lines", ev.name)
			}
			ev.raw = line[len("data: "):]
		default:
			t.Fatalf("unexpected line in an Anthropic stream: %q", line)
		}
	}
	return evs
}

// postMessages posts body to path with the Anthropic SDK's headers and the
// key in x-api-key (none when key is empty).
func (g *gateway) postMessages(t *testing.T, path, key, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), "POST", g.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Anthropic-Version", "2023-06-01")
	if key != "" {
		req.Header.Set("X-Api-Key", key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// anthropicErrorOf reads an error answer in Anthropic's shape, failing the
// test when it is in another.
func anthropicErrorOf(t *testing.T, resp *http.Response) (typ, message string) {
	t.Helper()
	body, _ := io.ReadAll(resp.Body)
	var e struct {
		Type  string `json:"type"`
		Error struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Type != "error" || e.Error.Type == "" || e.Error.Message == "" ||
		resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("%d not in Anthropic's error shape (%s): %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	return e.Error.Type, e.Error.Message
}

var messagesRoutes = []struct{ provider, model, path string }{
	{"anthropic", "claude-haiku-4-5", "/v1/messages"},
	{"openai", "openai/gpt-4o-mini", "/v1/chat/completions"},
	{"ollama", "ollama/llama3.2", "/api/chat"},
}

// TestMessagesStreamPerProvider streams through /v1/messages to each
// provider on each engine and checks Anthropic's exact event sequence, the
// fields of every event, what reached the upstream, and the usage log.
func TestMessagesStreamPerProvider(t *testing.T) {
	t.Parallel()
	for _, engine := range storetest.Engines(t) {
		for _, rt := range messagesRoutes {
			t.Run(engine+"/"+rt.provider, func(t *testing.T) {
				t.Parallel()
				g := newGateway(t, gatewayOptions{engine: engine})
				g.fake.SetScript(llmtest.Script{Deltas: tricky, InputTokens: 7, OutputTokens: 9})
				topK := ""
				if rt.provider != "openai" {
					topK = `"top_k": 40,`
				}
				resp := g.postMessages(t, "/v1/messages", g.key, `{"model": "`+rt.model+`", "max_tokens": 321, "stream": true,
					"system": [{"type": "text", "text": "be brief"}, {"type": "text", "text": "and kind", "cache_control": {"type": "ephemeral"}}],
					"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": [{"type": "text", "text": "hello"}]},
						{"role": "user", "content": [{"type": "text", "text": "say 你好"}]}],
					"temperature": 0.5, `+topK+` "stop_sequences": ["END"], "metadata": {"user_id": "u-1"}}`)
				if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream; charset=utf-8" {
					b, _ := io.ReadAll(resp.Body)
					t.Fatalf("status %d %s: %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
				}
				evs := readNamedEvents(t, resp.Body)
				var names []string
				var text strings.Builder
				for _, ev := range evs {
					if n := len(names); n == 0 || names[n-1] != ev.name || ev.name != "content_block_delta" {
						names = append(names, ev.name)
					}
					if ev.name == "content_block_delta" {
						d := ev.data["delta"].(map[string]any)
						if d["type"] != "text_delta" || ev.data["index"] != 0.0 {
							t.Errorf("delta = %s", ev.raw)
						}
						text.WriteString(d["text"].(string))
					}
				}
				want := []string{"message_start", "content_block_start", "ping", "content_block_delta", "content_block_stop", "message_delta", "message_stop"}
				if !slices.Equal(names, want) {
					t.Fatalf("events %v, want %v", names, want)
				}
				if text.String() != strings.Join(tricky, "") {
					t.Errorf("text %q, want %q", text.String(), strings.Join(tricky, ""))
				}
				msg := evs[0].data["message"].(map[string]any)
				if id, _ := msg["id"].(string); !strings.HasPrefix(id, "msg_") || msg["type"] != "message" || msg["role"] != "assistant" ||
					msg["model"] != rt.model || msg["stop_reason"] != nil || msg["stop_sequence"] != nil {
					t.Errorf("message_start = %s", evs[0].raw)
				}
				if c, ok := msg["content"].([]any); !ok || len(c) != 0 {
					t.Errorf("message_start content = %v, want []", msg["content"])
				}
				if u := msg["usage"].(map[string]any); u["input_tokens"].(float64) < 1 {
					t.Errorf("message_start usage = %v, want an estimate of the input", u)
				}
				if evs[1].raw != `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}` {
					t.Errorf("content_block_start = %s", evs[1].raw)
				}
				end := evs[len(evs)-3:]
				if end[0].raw != `{"type":"content_block_stop","index":0}` {
					t.Errorf("content_block_stop = %s", end[0].raw)
				}
				if end[1].raw != `{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"input_tokens":7,"output_tokens":9}}` {
					t.Errorf("message_delta = %s", end[1].raw)
				}
				if end[2].raw != `{"type":"message_stop"}` {
					t.Errorf("message_stop = %s", end[2].raw)
				}

				up := g.fake.Last()
				if up.Path != rt.path {
					t.Fatalf("upstream path %s, want %s", up.Path, rt.path)
				}
				sent := string(up.Body)
				for _, w := range []string{"be brief", "and kind", "hello", "say 你好", "321", "0.5", "END"} {
					if !strings.Contains(sent, w) {
						t.Errorf("upstream body lacks %q: %s", w, sent)
					}
				}
				if rt.provider != "openai" && !strings.Contains(sent, `"top_k":40`) {
					t.Errorf("upstream body lacks top_k: %s", sent)
				}
				if rt.provider == "anthropic" && !strings.Contains(sent, `"metadata":{"user_id":"u-1"}`) {
					t.Errorf("upstream body lacks metadata.user_id: %s", sent)
				}
				u := g.usage(t, 1)[0]
				if u.Endpoint != "/v1/messages" || u.Provider != rt.provider || u.APIKeyID != g.keyID ||
					u.InputTokens != 7 || u.OutputTokens != 9 || u.Status != "complete" {
					t.Errorf("usage log entry = %+v", u)
				}
			})
		}
	}
}

// TestMessagesNonStreaming answers in one Message object, signed in with
// a bearer access token, and maps each provider's stop reason.
func TestMessagesNonStreaming(t *testing.T) {
	t.Parallel()
	for _, rt := range messagesRoutes {
		t.Run(rt.provider, func(t *testing.T) {
			t.Parallel()
			g := newGateway(t, gatewayOptions{})
			g.fake.SetScript(llmtest.Script{Deltas: []string{"第一", "\"two\"\n"}, InputTokens: 3, OutputTokens: 4,
				StopReason: map[string]string{"anthropic": "max_tokens", "openai": "length", "ollama": "length"}[rt.provider]})
			resp := g.send(t, t.Context(), "POST", "/v1/messages", g.token,
				`{"model": "`+rt.model+`", "max_tokens": 4, "system": "be brief", "messages": [{"role": "user", "content": "hi"}]}`)
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			var m map[string]json.RawMessage
			if err := json.Unmarshal(body, &m); err != nil {
				t.Fatal(err)
			}
			keys := slices.Sorted(func(yield func(string) bool) {
				for k := range m {
					if !yield(k) {
						return
					}
				}
			})
			if want := []string{"content", "id", "model", "role", "stop_reason", "stop_sequence", "type", "usage"}; !slices.Equal(keys, want) {
				t.Errorf("fields %v, want %v", keys, want)
			}
			for k, want := range map[string]string{
				"type": `"message"`, "role": `"assistant"`, "model": `"` + rt.model + `"`,
				"content":     `[{"type":"text","text":"第一\"two\"\n"}]`,
				"stop_reason": `"max_tokens"`, "stop_sequence": "null", "usage": `{"input_tokens":3,"output_tokens":4}`,
			} {
				if string(m[k]) != want {
					t.Errorf("%s = %s, want %s", k, m[k], want)
				}
			}
			if u := g.usage(t, 1)[0]; u.Endpoint != "/v1/messages" || u.APIKeyID != "" || u.OutputTokens != 4 {
				t.Errorf("usage log entry = %+v", u)
			}
		})
	}
}

// TestMessagesErrors checks that every refusal on /v1/messages is in
// Anthropic's error shape with the type its status has there, before
// anything reaches the upstream, and that upstream failures map to
// Anthropic's types.
func TestMessagesErrors(t *testing.T) {
	t.Parallel()
	g := newGateway(t, gatewayOptions{only: []string{"anthropic", "openai"}})
	good := `"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "hi"}]`
	for _, c := range []struct {
		name, path, key, body string
		status                int
		typ, message          string
	}{
		{"missing max_tokens", "/v1/messages", g.key, `{` + good + `}`, 400, "invalid_request_error", "max_tokens: required"},
		{"max_tokens 0", "/v1/messages", g.key, `{"max_tokens": 0, ` + good + `}`, 400, "invalid_request_error", "max_tokens: must be at least 1"},
		{"max_tokens a string", "/v1/messages", g.key, `{"max_tokens": "10", ` + good + `}`, 400, "invalid_request_error", "max_tokens: must be an integer"},
		{"malformed JSON", "/v1/messages", g.key, `{"max_tokens": 10,`, 400, "invalid_request_error", "invalid JSON at byte"},
		{"no messages", "/v1/messages", g.key, `{"model": "claude-haiku-4-5", "max_tokens": 10, "messages": []}`, 400, "invalid_request_error", "messages: at least one"},
		{"system role", "/v1/messages", g.key, `{"max_tokens": 10, "model": "claude-haiku-4-5", "messages": [{"role": "system", "content": "x"}]}`,
			400, "invalid_request_error", "messages[0].role: must be \"user\" or \"assistant\"; the system prompt goes in the top-level field system"},
		{"unknown model", "/v1/messages", g.key, `{"max_tokens": 10, "model": "ollama/llama3.2", "messages": [{"role": "user", "content": "hi"}]}`,
			400, "invalid_request_error", "needs the ollama provider, which is not configured; set OLLAMA_BASE_URL"},
		{"tools", "/v1/messages", g.key, `{"max_tokens": 10, "tools": [{"name": "x"}], ` + good + `}`, 400, "invalid_request_error", "tools: tool use is not supported yet"},
		{"thinking", "/v1/messages", g.key, `{"max_tokens": 10, "thinking": {"type": "enabled", "budget_tokens": 1024}, ` + good + `}`, 400, "invalid_request_error", "thinking: extended thinking"},
		{"unknown field", "/v1/messages", g.key, `{"max_tokens": 10, "frobnicate": 1, ` + good + `}`, 400, "invalid_request_error", "frobnicate: Ferry does not relay"},
		{"image block", "/v1/messages", g.key, `{"max_tokens": 10, "model": "claude-haiku-4-5", "messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]}`,
			400, "invalid_request_error", "messages[0].content[0]: image blocks are not supported yet"},
		{"document from a URL", "/v1/messages", g.key, `{"max_tokens": 10, "model": "claude-haiku-4-5", "messages": [{"role": "user", "content": [{"type": "document", "source": {"type": "url", "url": "http://169.254.169.254/"}}]}]}`,
			400, "invalid_request_error", `messages[0].content[0]: source type "url" is not supported`},
		{"document not base64", "/v1/messages", g.key, `{"max_tokens": 10, "model": "claude-haiku-4-5", "messages": [{"role": "user", "content": [{"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "%%%"}}]}]}`,
			400, "invalid_request_error", "not valid base64"},
		{"temperature over Anthropic's range", "/v1/messages", g.key, `{"max_tokens": 10, "temperature": 1.5, ` + good + `}`, 400, "invalid_request_error", "temperature: must be between 0 and 1 for anthropic models"},
		{"blank stop sequence for Anthropic", "/v1/messages", g.key, `{"max_tokens": 10, "stop_sequences": ["\n"], ` + good + `}`, 400, "invalid_request_error", "stop_sequences: anthropic models refuse"},
		{"top_k for OpenAI", "/v1/messages", g.key, `{"max_tokens": 10, "top_k": 5, "model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}`, 400, "invalid_request_error", "top_k: openai models do not support it"},
		{"bad key", "/v1/messages", "fk_not-a-key", `{"max_tokens": 10, ` + good + `}`, 401, "authentication_error", ""},
		{"no key", "/v1/messages", "", `{"max_tokens": 10, ` + good + `}`, 401, "authentication_error", "missing API key: send x-api-key"},
		{"count_tokens, bad key", "/v1/messages/count_tokens", "fk_nope", `{` + good + `}`, 401, "authentication_error", ""},
		{"count_tokens, unknown model", "/v1/messages/count_tokens", g.key, `{"model": "ollama/llama3.2", "messages": [{"role": "user", "content": "hi"}]}`, 400, "invalid_request_error", "not configured"},
		{"count_tokens, stream", "/v1/messages/count_tokens", g.key, `{"stream": true, ` + good + `}`, 400, "invalid_request_error", "stream: count_tokens does not stream"},
		{"unknown path under /v1 with anthropic-version", "/v1/messages/batches", g.key, `{}`, 404, "not_found_error", "no route for /v1/messages/batches"},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp := g.postMessages(t, c.path, c.key, c.body)
			if resp.StatusCode != c.status {
				b, _ := io.ReadAll(resp.Body)
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, c.status, b)
			}
			typ, msg := anthropicErrorOf(t, resp)
			if typ != c.typ || !strings.Contains(msg, c.message) {
				t.Errorf("error %s %q, want %s %q", typ, msg, c.typ, c.message)
			}
		})
	}
	if n := len(g.fake.Requests()); n != 0 {
		t.Errorf("upstream saw %d requests for refusals, want none", n)
	}

	// A form is refused as every JSON operation refuses one.
	req, _ := http.NewRequestWithContext(t.Context(), "POST", g.url+"/v1/messages", strings.NewReader("max_tokens=1"))
	req.Header.Set("Content-Type", form)
	req.Header.Set("X-Api-Key", g.key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if typ, msg := anthropicErrorOf(t, resp); resp.StatusCode != 415 || typ != "invalid_request_error" || !strings.HasPrefix(msg, formMessage) {
		t.Errorf("a form: %d %s %q", resp.StatusCode, typ, msg)
	}
}

// TestMessagesUpstreamFailures maps an upstream that refuses or breaks to
// Anthropic's error types, with Retry-After where the upstream gave one.
func TestMessagesUpstreamFailures(t *testing.T) {
	t.Parallel()
	g := newGateway(t, gatewayOptions{only: []string{"anthropic", "openai"}})
	body := `{"model": "claude-haiku-4-5", "max_tokens": 10, "stream": true, "messages": [{"role": "user", "content": "hi"}]}`
	for _, c := range []struct {
		name       string
		script     llmtest.Script
		status     int
		typ        string
		retryAfter string
	}{
		{"429", llmtest.Script{FailFirst: 10, FailStatus: 429, FailHeader: http.Header{"Retry-After": {"7"}}}, 429, "rate_limit_error", "7"},
		{"529 overloaded", llmtest.Script{FailFirst: 10, FailStatus: 529}, 503, "overloaded_error", "5"},
		{"upstream 400", llmtest.Script{FailFirst: 10, FailStatus: 400, FailMessage: "prompt is too long"}, 400, "invalid_request_error", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			g.fake.SetScript(c.script)
			resp := g.postMessages(t, "/v1/messages", g.key, body)
			if resp.StatusCode != c.status || resp.Header.Get("Retry-After") != c.retryAfter {
				t.Fatalf("status %d, Retry-After %q; want %d, %q", resp.StatusCode, resp.Header.Get("Retry-After"), c.status, c.retryAfter)
			}
			if typ, msg := anthropicErrorOf(t, resp); typ != c.typ || !strings.Contains(msg, "anthropic") {
				t.Errorf("error %s %q, want %s", typ, msg, c.typ)
			}
		})
	}

	t.Run("error event after the first delta", func(t *testing.T) {
		g.fake.SetScript(llmtest.Script{Deltas: []string{"a", "b", "c"}, Break: llmtest.ErrorEvent, BreakAfter: 2})
		resp := g.postMessages(t, "/v1/messages", g.key, body)
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		evs := readNamedEvents(t, resp.Body)
		last := evs[len(evs)-1]
		e, _ := last.data["error"].(map[string]any)
		if last.name != "error" || e["type"] != "api_error" || !strings.Contains(e["message"].(string), "Overloaded") {
			t.Errorf("last event %s %s, want an error event", last.name, last.raw)
		}
		for _, ev := range evs {
			if ev.name == "message_stop" || ev.name == "message_delta" {
				t.Errorf("a failed stream has %s", ev.name)
			}
		}
	})

	t.Run("a client that leaves cancels the upstream call", func(t *testing.T) {
		g.fake.SetScript(llmtest.Script{Deltas: []string{"a"}, Break: llmtest.Hang, BreakAfter: 1})
		resp := g.postMessages(t, "/v1/messages", g.key, body)
		br := bufio.NewReader(resp.Body)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			if strings.HasPrefix(line, "event: content_block_delta") {
				break
			}
		}
		resp.Body.Close()
		up := g.fake.Last()
		select {
		case <-up.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("the upstream call still runs 5 s after the client left")
		}
		if !up.Cancelled() {
			t.Error("the upstream request was not cancelled")
		}
	})
}

// TestMessagesDocument sends a real PDF as a base64 document block: an
// Anthropic model gets the file itself, the others its text page by page;
// count_tokens counts its pages.
func TestMessagesDocument(t *testing.T) {
	t.Parallel()
	pdf, err := testPDFReader()
	if err != nil {
		t.Fatal(err)
	}
	file := readSharedPDF(t, fourPages)
	g := newGateway(t, gatewayOptions{pdf: pdf})
	g.fake.SetScript(llmtest.Script{Deltas: []string{"ok"}})
	doc := func(model string) string {
		return `{"model": "` + model + `", "max_tokens": 100, "messages": [{"role": "user", "content": [
			{"type": "document", "title": "paper.pdf", "source": {"type": "base64", "media_type": "application/pdf", "data": "` +
			base64.StdEncoding.EncodeToString(file) + `"}},
			{"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "a plain note"}},
			{"type": "text", "text": "summarise"}]}]}`
	}

	resp := g.postMessages(t, "/v1/messages", g.key, doc("claude-sonnet-4-6"))
	if b, _ := io.ReadAll(resp.Body); resp.StatusCode != 200 {
		t.Fatalf("anthropic: status %d: %s", resp.StatusCode, b)
	}
	docs := g.fake.Last().Documents()
	if len(docs) != 1 || docs[0].Title != "paper.pdf" || docs[0].MediaType != "application/pdf" || string(docs[0].Data) != string(file) {
		t.Fatalf("anthropic got documents %d, want the PDF itself", len(docs))
	}
	if text := upstreamText(t, g.fake.Last()); !strings.Contains(text, "a plain note") || !strings.Contains(text, "summarise") {
		t.Errorf("anthropic got text %q", text)
	}

	resp = g.postMessages(t, "/v1/messages", g.key, doc("gpt-4o-mini"))
	if b, _ := io.ReadAll(resp.Body); resp.StatusCode != 200 {
		t.Fatalf("openai: status %d: %s", resp.StatusCode, b)
	}
	sent := string(g.fake.Last().Body)
	for _, want := range []string{`Document \"paper.pdf\"`, "--- page 1 ---", "--- page 4 ---", "a plain note", "summarise"} {
		if !strings.Contains(sent, want) {
			t.Errorf("openai's request lacks %q", want)
		}
	}

	// A PDF without text cannot reach a model that reads only text.
	images := base64.StdEncoding.EncodeToString(readSharedPDF(t, imagesOnly))
	resp = g.postMessages(t, "/v1/messages", g.key, `{"model": "gpt-4o-mini", "max_tokens": 100, "messages": [{"role": "user", "content": [
		{"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "`+images+`"}}]}]}`)
	if typ, msg := anthropicErrorOf(t, resp); resp.StatusCode != 400 || typ != "invalid_request_error" ||
		!strings.HasPrefix(msg, "messages[0].content[0]: the PDF has no text layer") {
		t.Errorf("images-only PDF to openai: %d %s %q", resp.StatusCode, typ, msg)
	}

	// count_tokens: 4 pages read whole by Anthropic, text for the others.
	count := func(model string) int {
		t.Helper()
		resp := g.postMessages(t, "/v1/messages/count_tokens", g.key, strings.Replace(doc(model), `"max_tokens": 100, `, "", 1))
		var out struct {
			InputTokens int `json:"input_tokens"`
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || json.Unmarshal(b, &out) != nil {
			t.Fatalf("count_tokens %s: %d %s", model, resp.StatusCode, b)
		}
		return out.InputTokens
	}
	if n := count("claude-sonnet-4-6"); n < 4*2000 || n > 4*2000+20 {
		t.Errorf("count_tokens for anthropic = %d, want 4 pages at 2000 and a few for the text", n)
	}
	if n := count("gpt-4o-mini"); n < 100 || n >= 4*2000 {
		t.Errorf("count_tokens for openai = %d, want the text's estimate", n)
	}
	if n := len(g.usage(t, 2)); n != 2 {
		t.Errorf("usage log has %d entries; count_tokens must log none", n)
	}
}

// TestMessagesAdmissionRefusal checks that a call the admission refuses
// is a 429 in Anthropic's shape with Retry-After, whether the client
// streams or not, and that nothing reached the upstream.
func TestMessagesAdmissionRefusal(t *testing.T) {
	t.Parallel()
	g := newGateway(t, gatewayOptions{admit: func(ctx context.Context, c *chat.Call) (func(*chat.Result), error) {
		return nil, &ferry.Error{Code: ferry.RateLimited, Message: "too many calls a minute", RetryAfter: 3 * time.Second}
	}})
	for _, stream := range []string{"true", "false"} {
		resp := g.postMessages(t, "/v1/messages", g.key,
			`{"model": "claude-haiku-4-5", "max_tokens": 10, "stream": `+stream+`, "messages": [{"role": "user", "content": "hi"}]}`)
		if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "3" {
			t.Fatalf("stream %s: status %d, Retry-After %q", stream, resp.StatusCode, resp.Header.Get("Retry-After"))
		}
		if typ, msg := anthropicErrorOf(t, resp); typ != "rate_limit_error" || msg != "too many calls a minute" {
			t.Errorf("stream %s: error %s %q", stream, typ, msg)
		}
	}
	if n := len(g.fake.Requests()); n != 0 {
		t.Errorf("upstream saw %d requests", n)
	}
}

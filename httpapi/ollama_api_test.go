package httpapi_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/llm/llmtest"
	"github.com/ferryhq/ferry/store/storetest"
)

// The tests of Ollama's own paths under /ollama/api/, which its official
// clients ask for when their host is "http://…/ollama".

// ollamaErrorOf decodes Ollama's {"error": …} body, checking its
// Content-Type, which Ollama's clients read the message by.
func ollamaErrorOf(t *testing.T, resp *http.Response, body []byte) string {
	t.Helper()
	var e struct {
		Error string `json:"error"`
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") || json.Unmarshal(body, &e) != nil || e.Error == "" {
		t.Fatalf("Content-Type %q, body %s: want Ollama's {\"error\": …}", ct, body)
	}
	return e.Error
}

// TestOllamaAPIModelCalls generates, chats and embeds on Ollama's own
// paths, streamed and in one piece, with an API key and with an access
// token, and checks each answer, what Ollama was sent, and the usage log.
func TestOllamaAPIModelCalls(t *testing.T) {
	t.Parallel()
	for _, engine := range storetest.Engines(t) {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			for _, sc := range []struct {
				name     string
				path     string
				token    bool // the access token, not the API key
				body     map[string]any
				stream   bool
				text     func(map[string]any) string // a line's or the answer's text
				upstream map[string]any              // fields of what Ollama was sent
			}{
				{name: "generate streamed", path: "/api/generate", stream: true,
					body:     map[string]any{"model": "llama3.2", "prompt": "why is the sky blue?", "options": map[string]any{"temperature": 0.1}},
					text:     func(l map[string]any) string { return l["response"].(string) },
					upstream: map[string]any{"model": "llama3.2", "stream": true, "prompt": "why is the sky blue?"}},
				{name: "generate in one piece", path: "/api/generate", token: true,
					body:     map[string]any{"model": "qwen2.5:7b", "prompt": "hi", "stream": false},
					text:     func(l map[string]any) string { return l["response"].(string) },
					upstream: map[string]any{"model": "qwen2.5:7b", "stream": false}},
				{name: "chat streamed", path: "/api/chat", stream: true,
					body:     map[string]any{"model": "llama3.2:1b", "messages": []map[string]string{{"role": "user", "content": "hi"}}},
					text:     func(l map[string]any) string { return l["message"].(map[string]any)["content"].(string) },
					upstream: map[string]any{"model": "llama3.2:1b", "stream": true}},
				{name: "chat in one piece", path: "/api/chat",
					body:     map[string]any{"model": "llama3.2", "messages": []map[string]string{{"role": "user", "content": "hi"}}, "stream": false},
					text:     func(l map[string]any) string { return l["message"].(map[string]any)["content"].(string) },
					upstream: map[string]any{"model": "llama3.2", "stream": false}},
			} {
				t.Run(sc.name, func(t *testing.T) {
					t.Parallel()
					g := newGateway(t, gatewayOptions{engine: engine})
					g.fake.SetScript(llmtest.Script{Deltas: tricky, InputTokens: 11, OutputTokens: 22})
					cred, keyID := g.key, g.keyID
					if sc.token {
						cred, keyID = g.token, ""
					}
					resp := g.send(t, t.Context(), "POST", "/ollama"+sc.path, cred, sc.body)
					body, err := io.ReadAll(resp.Body)
					if err != nil {
						t.Fatal(err)
					}
					wantCT := "application/json"
					if sc.stream {
						wantCT = "application/x-ndjson"
					}
					if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != wantCT {
						t.Fatalf("status %d, Content-Type %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
					}
					var text strings.Builder
					var last map[string]any
					if sc.stream {
						lines := ndjsonLines(t, body)
						for _, l := range lines {
							text.WriteString(sc.text(l))
						}
						last = lines[len(lines)-1]
					} else if err := json.Unmarshal(body, &last); err != nil {
						t.Fatalf("answer is not one JSON object: %s", body)
					} else {
						text.WriteString(sc.text(last))
					}
					if text.String() != strings.Join(tricky, "") || last["done"] != true || last["eval_count"] != 22.0 {
						t.Errorf("text %q, last %v", text.String(), last)
					}

					up := g.fake.Last()
					var sent map[string]any
					if err := up.JSON(&sent); err != nil {
						t.Fatal(err)
					}
					if up.Path != sc.path {
						t.Errorf("upstream path %s, want %s", up.Path, sc.path)
					}
					for k, v := range sc.upstream {
						if sent[k] != v {
							t.Errorf("upstream %s = %v, want %v (body %s)", k, sent[k], v, up.Body)
						}
					}
					u := g.usage(t, 1)[0]
					if u.Endpoint != "/ollama"+sc.path || u.Provider != "ollama" || u.Model != sc.body["model"] || u.APIKeyID != keyID ||
						u.InputTokens != 11 || u.OutputTokens != 22 || u.Status != "complete" {
						t.Errorf("usage log entry = %+v", u)
					}
				})
			}
		})
	}
}

// TestOllamaAPIEmbed embeds through the funnel: Ollama's answer passes on
// whole and the usage log has its input tokens.
func TestOllamaAPIEmbed(t *testing.T) {
	t.Parallel()
	for _, engine := range storetest.Engines(t) {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			g := newGateway(t, gatewayOptions{engine: engine})
			g.fake.SetScript(llmtest.Script{InputTokens: 9})
			resp := g.send(t, t.Context(), "POST", "/ollama/api/embed", g.key,
				`{"model":"all-minilm","input":["第一","second text"],"truncate":false}`)
			got, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("status %d, Content-Type %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), got)
			}
			var answer struct {
				Model      string      `json:"model"`
				Embeddings [][]float64 `json:"embeddings"`
			}
			if err := json.Unmarshal(got, &answer); err != nil || answer.Model != "all-minilm" || len(answer.Embeddings) != 2 ||
				len(answer.Embeddings[0]) == 0 || answer.Embeddings[0][0] == answer.Embeddings[1][0] {
				t.Fatalf("answer = %s", got)
			}
			up := g.fake.Last()
			if up.Path != "/api/embed" || string(up.Body) != `{"input":["第一","second text"],"model":"all-minilm","truncate":false}` {
				t.Errorf("upstream %s got %s: want the body as sent, with no stream field", up.Path, up.Body)
			}
			u := g.usage(t, 1)[0]
			if u.Endpoint != "/ollama/api/embed" || u.Model != "all-minilm" || u.InputTokens != 9 || u.OutputTokens != 0 ||
				u.APIKeyID != g.keyID || u.Status != "complete" {
				t.Errorf("usage log entry = %+v", u)
			}
		})
	}
}

// TestOllamaAPILookups: the endpoints that only read answer what Ollama
// answered, byte for byte, and are not model calls.
func TestOllamaAPILookups(t *testing.T) {
	t.Parallel()
	g := newGateway(t, gatewayOptions{})
	direct := func(method, path, body string) []byte {
		req, _ := http.NewRequest(method, g.fake.OllamaURL()+path, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return b
	}
	for _, sc := range []struct {
		method, path, body string
		cred               string
	}{
		{"GET", "/api/tags", "", g.key},
		{"GET", "/api/ps", "", g.key},
		{"GET", "/api/version", "", g.token},
		{"POST", "/api/show", `{"model":"llama3.2"}`, g.key},
	} {
		t.Run(sc.path, func(t *testing.T) {
			var body any
			if sc.body != "" {
				body = sc.body
			}
			resp := g.send(t, t.Context(), sc.method, "/ollama"+sc.path, sc.cred, body)
			got, _ := io.ReadAll(resp.Body)
			want := direct(sc.method, sc.path, sc.body)
			if resp.StatusCode != 200 || !bytes.Equal(got, want) || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
				t.Errorf("status %d, Content-Type %q\n%s\nwant Ollama's\n%s", resp.StatusCode, resp.Header.Get("Content-Type"), got, want)
			}
			if up := g.fake.Last(); up.Path != sc.path || up.Method != sc.method || up.Header.Get("Authorization") != "" {
				t.Errorf("upstream got %s %s, Authorization %q: the Ferry credential must not reach Ollama",
					up.Method, up.Path, up.Header.Get("Authorization"))
			}
		})
	}
	if list, err := g.store.UsageFor(t.Context(), g.userID); err != nil || len(list) != 0 {
		t.Errorf("usage log = %v (%v): lookups are not model calls", list, err)
	}
}

// TestOllamaAPIRefusesModelManagement: pulling, pushing, creating,
// copying and deleting models change the Ollama every user shares; no
// Ferry account may do them, an admin's included, and Ollama never sees
// the request.
func TestOllamaAPIRefusesModelManagement(t *testing.T) {
	t.Parallel()
	g := newGateway(t, gatewayOptions{maxBody: 4096})
	admin, err := g.auth.CreateUser(t.Context(), "root@example.com", "password123", "", ferry.RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}
	_, adminKey, err := g.auth.CreateAPIKey(t.Context(), admin.ID, "admin", nil)
	if err != nil {
		t.Fatal(err)
	}
	model := `{"model":"llama3.2"}`
	for _, sc := range []struct {
		method, path string
		body         string
	}{
		{"POST", "/ollama/api/pull", model},
		{"POST", "/ollama/api/push", model},
		{"POST", "/ollama/api/create", `{"model":"mine","from":"llama3.2","system":"be evil"}`},
		{"POST", "/ollama/api/copy", `{"source":"llama3.2","destination":"llama3.2-copy"}`},
		{"DELETE", "/ollama/api/delete", model},
		{"HEAD", "/ollama/api/blobs/sha256:29fdb92e57cf0827ded04ae6461b5931d01fa595843f55d36f5b275a52087dd2", ""},
		// A model file over the body limit still hears why.
		{"POST", "/ollama/api/blobs/sha256:29fdb92e57cf0827ded04ae6461b5931d01fa595843f55d36f5b275a52087dd2", strings.Repeat("G", 8192)},
	} {
		t.Run(sc.method+" "+sc.path, func(t *testing.T) {
			var body any
			if sc.body != "" {
				body = sc.body
			}
			resp := g.send(t, t.Context(), sc.method, sc.path, "", body)
			got, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 401 {
				t.Errorf("without credentials: status %d, want 401: %s", resp.StatusCode, got)
			}
			for _, cred := range []string{g.key, adminKey} {
				resp := g.send(t, t.Context(), sc.method, sc.path, cred, body)
				got, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != 403 {
					t.Fatalf("status %d, want 403: %s", resp.StatusCode, got)
				}
				if sc.method == "HEAD" {
					continue // no body
				}
				if msg := ollamaErrorOf(t, resp, got); !strings.Contains(msg, "ollama pull") {
					t.Errorf("message %q does not say where models are managed", msg)
				}
			}
		})
	}
	resp := g.send(t, t.Context(), "POST", "/ollama/api/embeddings", g.key, `{"model":"all-minilm","prompt":"hi"}`)
	got, _ := io.ReadAll(resp.Body)
	if msg := ollamaErrorOf(t, resp, got); resp.StatusCode != 404 || !strings.Contains(msg, "/api/embed") {
		t.Errorf("/api/embeddings: status %d, %q: want 404 pointing at /api/embed", resp.StatusCode, msg)
	}
	if n := len(g.fake.Requests()); n != 0 {
		t.Errorf("Ollama received %d requests, want none", n)
	}
}

// TestOllamaAPIErrors: every failure on Ollama's paths is an {"error": …}
// body with a fitting status, which Ollama's clients turn into an error
// with that message.
func TestOllamaAPIErrors(t *testing.T) {
	t.Parallel()
	g := newGateway(t, gatewayOptions{})
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	unreachable := newGateway(t, gatewayOptions{ollamaURL: down.URL})
	// half passes on the first half of Ollama's answer and ends it there,
	// as a proxy that gave up might.
	whole := llmtest.Start(t)
	half := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, _ := http.NewRequestWithContext(r.Context(), r.Method, whole.OllamaURL()+r.URL.Path, r.Body)
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			panic(http.ErrAbortHandler)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
		w.Write(b[:len(b)/2])
	}))
	t.Cleanup(half.Close)
	cut := newGateway(t, gatewayOptions{ollamaURL: half.URL})
	chat := map[string]any{"model": "llama3.2", "messages": []map[string]string{{"role": "user", "content": "hi"}}}
	for _, sc := range []struct {
		name     string
		g        *gateway
		cred     string
		method   string
		path     string
		body     any
		script   llmtest.Script
		status   int
		contains string
	}{
		{name: "no credential", g: g, method: "POST", path: "/ollama/api/chat", body: chat, status: 401, contains: "Authorization: Bearer"},
		{name: "no credential to list", g: g, method: "GET", path: "/ollama/api/tags", status: 401, contains: "Authorization: Bearer"},
		{name: "no credential for the version", g: g, method: "GET", path: "/ollama/api/version", status: 401},
		{name: "bad key", g: g, cred: "fk_wrong", method: "POST", path: "/ollama/api/generate", body: map[string]any{"prompt": "hi"}, status: 401},
		{name: "unknown model", g: g, cred: g.key, method: "POST", path: "/ollama/api/chat",
			body:   map[string]any{"model": "nope", "messages": []any{}, "stream": false},
			script: llmtest.Script{FailFirst: 1, FailStatus: 404, FailMessage: `model "nope" not found, try pulling it first`},
			status: 404, contains: `ollama: model "nope" not found, try pulling it first`},
		{name: "unknown model to embed", g: g, cred: g.key, method: "POST", path: "/ollama/api/embed", body: map[string]any{"model": "nope", "input": "hi"},
			script: llmtest.Script{FailFirst: 1, FailStatus: 404, FailMessage: `model "nope" not found, try pulling it first`},
			status: 404, contains: `model "nope" not found`},
		{name: "show an unknown model", g: g, cred: g.key, method: "POST", path: "/ollama/api/show", body: map[string]any{"model": "nope"},
			status: 404, contains: "ollama: model 'nope' not found"},
		{name: "show without a model", g: g, cred: g.key, method: "POST", path: "/ollama/api/show", body: map[string]any{},
			status: 400, contains: "model is required"},
		{name: "show not an object", g: g, cred: g.key, method: "POST", path: "/ollama/api/show", body: `"llama3.2"`,
			status: 400, contains: "JSON object"},
		{name: "stream not a bool", g: g, cred: g.key, method: "POST", path: "/ollama/api/generate", body: map[string]any{"stream": "no"},
			status: 400, contains: "stream"},
		{name: "unknown path", g: g, cred: g.key, method: "GET", path: "/ollama/api/nothing", status: 404, contains: "/ollama/api/nothing"},
		{name: "ollama down", g: unreachable, cred: unreachable.key, method: "POST", path: "/ollama/api/chat", body: chat,
			status: 503, contains: "OLLAMA_BASE_URL"},
		{name: "ollama down, in one piece", g: unreachable, cred: unreachable.key, method: "POST", path: "/ollama/api/generate",
			body: map[string]any{"prompt": "hi", "stream": false}, status: 503, contains: "OLLAMA_BASE_URL"},
		{name: "ollama down, version", g: unreachable, cred: unreachable.key, method: "GET", path: "/ollama/api/version",
			status: 503, contains: "OLLAMA_BASE_URL"},
		// An answer in one piece that was cut short is an error, not a 200
		// with half a JSON object.
		{name: "answer cut short", g: cut, cred: cut.key, method: "POST", path: "/ollama/api/generate",
			body: map[string]any{"prompt": "hi", "stream": false}, status: 502, contains: "not JSON"},
	} {
		t.Run(sc.name, func(t *testing.T) {
			sc.g.fake.SetScript(sc.script)
			resp := sc.g.send(t, t.Context(), sc.method, sc.path, sc.cred, sc.body)
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != sc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, sc.status, body)
			}
			if msg := ollamaErrorOf(t, resp, body); !strings.Contains(msg, sc.contains) {
				t.Errorf("message %q lacks %q", msg, sc.contains)
			}
		})
	}
	// The refused model calls are in the usage log, as failed.
	for _, gw := range []*gateway{g, unreachable, cut} {
		for _, u := range gw.usage(t, map[*gateway]int{g: 2, unreachable: 2, cut: 1}[gw]) {
			if u.Status != "failed" || !strings.HasPrefix(u.Endpoint, "/ollama/api/") {
				t.Errorf("usage log entry = %+v, want a failed call", u)
			}
		}
	}
}

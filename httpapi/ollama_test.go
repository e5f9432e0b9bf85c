package httpapi_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryhq/ferry/llm/llmtest"
	"github.com/ferryhq/ferry/store/storetest"
)

// wiretap sits between Ferry and the fake upstream and records the bytes
// the upstream sent, passing each read on at once.
type wiretap struct {
	url string
	mu  sync.Mutex
	got bytes.Buffer
}

func newWiretap(t *testing.T, target string) *wiretap {
	tap := &wiretap{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, _ := http.NewRequestWithContext(r.Context(), r.Method, target+r.URL.Path, r.Body)
		req.Header = r.Header.Clone()
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			panic(http.ErrAbortHandler)
		}
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		buf := make([]byte, 32<<10)
		for {
			n, err := resp.Body.Read(buf)
			if n > 0 {
				tap.mu.Lock()
				tap.got.Write(buf[:n])
				tap.mu.Unlock()
				w.Write(buf[:n])
				w.(http.Flusher).Flush()
			}
			if err != nil {
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	tap.url = srv.URL
	return tap
}

func (tap *wiretap) bytes() []byte {
	tap.mu.Lock()
	defer tap.mu.Unlock()
	return bytes.Clone(tap.got.Bytes())
}

// ndjsonLines splits an NDJSON body into its lines, checking each is a
// JSON object ending in a newline.
func ndjsonLines(t *testing.T, body []byte) []map[string]any {
	t.Helper()
	if len(body) == 0 || body[len(body)-1] != '\n' {
		t.Fatalf("NDJSON body does not end with a newline: %q", body)
	}
	var lines []map[string]any
	for _, l := range bytes.Split(body[:len(body)-1], []byte("\n")) {
		var m map[string]any
		if err := json.Unmarshal(l, &m); err != nil {
			t.Fatalf("line is not a JSON object: %q", l)
		}
		lines = append(lines, m)
	}
	return lines
}

func TestOllamaGenerateStreamsUpstreamBytes(t *testing.T) {
	t.Parallel()
	for _, engine := range storetest.Engines(t) {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			for _, fragment := range []bool{false, true} {
				fake := llmtest.Start(t)
				tap := newWiretap(t, fake.OllamaURL())
				g := newGateway(t, gatewayOptions{engine: engine, ollamaURL: tap.url})
				g.fake = fake
				fake.SetScript(llmtest.Script{Deltas: tricky, Fragment: fragment, InputTokens: 11, OutputTokens: 22})
				resp := g.send(t, t.Context(), "POST", "/ollama/generate", g.key, map[string]any{"prompt": "why is the sky blue?"})
				body, err := io.ReadAll(resp.Body)
				if err != nil {
					t.Fatal(err)
				}
				if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-ndjson" {
					t.Fatalf("status %d, Content-Type %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
				}
				if sent := tap.bytes(); !bytes.Equal(body, sent) {
					t.Fatalf("fragment %v: client got\n%q\nupstream sent\n%q", fragment, body, sent)
				}
				lines := ndjsonLines(t, body)
				var text strings.Builder
				for _, l := range lines {
					text.WriteString(l["response"].(string))
				}
				if text.String() != strings.Join(tricky, "") || len(lines) != len(tricky)+1 || lines[len(lines)-1]["done"] != true {
					t.Errorf("fragment %v: %d lines, text %q", fragment, len(lines), text.String())
				}

				var up map[string]any
				if err := fake.Last().JSON(&up); err != nil {
					t.Fatal(err)
				}
				if up["model"] != "llama3.2" || up["stream"] != true || up["prompt"] != "why is the sky blue?" {
					t.Errorf("upstream body = %s, want the seed's defaults filled", fake.Last().Body)
				}
				u := g.usage(t, 1)[0]
				if u.Endpoint != "/ollama/generate" || u.Provider != "ollama" || u.Model != "llama3.2" || u.APIKeyID != g.keyID ||
					u.InputTokens != 11 || u.OutputTokens != 22 || u.Status != "complete" {
					t.Errorf("usage log entry = %+v", u)
				}
			}
		})
	}
}

// TestOllamaForwardsFieldsUnchanged checks that the fields Ferry does not
// read reach Ollama as the client sent them, numbers included.
func TestOllamaForwardsFieldsUnchanged(t *testing.T) {
	t.Parallel()
	g := newGateway(t, gatewayOptions{})
	fields := map[string]string{
		"system":     `"你是助手"`,
		"options":    `{"temperature":0.1,"seed":12345678901234567890,"num_ctx":8192,"stop":["\n"]}`,
		"format":     `{"type":"object","properties":{"a":{"type":"string"}}}`,
		"images":     `["aGVsbG8="]`,
		"keep_alive": `"5m"`,
		"raw":        `true`,
		"think":      `false`,
	}
	var b strings.Builder
	b.WriteString(`{"model":"qwen2.5:7b","prompt":"hi","stream":false`)
	for k, v := range fields {
		b.WriteString(`,"` + k + `":` + v)
	}
	b.WriteString("}")
	resp := g.send(t, t.Context(), "POST", "/ollama/generate", g.key, b.String())
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("status %d, Content-Type %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	var answer map[string]any
	if err := json.Unmarshal(body, &answer); err != nil || answer["done"] != true || answer["model"] != "qwen2.5:7b" {
		t.Fatalf("non-streaming answer = %s", body)
	}
	var up map[string]json.RawMessage
	if err := g.fake.Last().JSON(&up); err != nil {
		t.Fatal(err)
	}
	for k, v := range fields {
		if string(up[k]) != v {
			t.Errorf("upstream %s = %s, want %s", k, up[k], v)
		}
	}
	if string(up["stream"]) != "false" || string(up["model"]) != `"qwen2.5:7b"` {
		t.Errorf("upstream model %s, stream %s", up["model"], up["stream"])
	}
	if u := g.usage(t, 1)[0]; u.Status != "complete" || u.Model != "qwen2.5:7b" || u.OutputTokens == 0 {
		t.Errorf("usage log entry = %+v", u)
	}
}

func TestOllamaChatAndTags(t *testing.T) {
	t.Parallel()
	g := newGateway(t, gatewayOptions{})
	g.fake.SetScript(llmtest.Script{Deltas: tricky, InputTokens: 5, OutputTokens: 6})
	resp := g.send(t, t.Context(), "POST", "/ollama/chat", g.token, map[string]any{
		"model": "llama3.2:1b", "messages": []map[string]string{{"role": "user", "content": "hi"}}})
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("chat: status %d: %s", resp.StatusCode, body)
	}
	var text strings.Builder
	for _, l := range ndjsonLines(t, body) {
		text.WriteString(l["message"].(map[string]any)["content"].(string))
	}
	if text.String() != strings.Join(tricky, "") || g.fake.Last().Path != "/api/chat" {
		t.Errorf("chat text %q via %s", text.String(), g.fake.Last().Path)
	}
	if u := g.usage(t, 1)[0]; u.Endpoint != "/ollama/chat" || u.Model != "llama3.2:1b" || u.InputTokens != 5 || u.OutputTokens != 6 || u.APIKeyID != "" {
		t.Errorf("usage log entry = %+v", u)
	}

	resp = g.send(t, t.Context(), "GET", "/ollama/tags", g.key, nil)
	got, _ := io.ReadAll(resp.Body)
	direct, err := http.Get(g.fake.OllamaURL() + "/api/tags")
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Body.Close()
	want, _ := io.ReadAll(direct.Body)
	if resp.StatusCode != 200 || !bytes.Equal(got, want) {
		t.Errorf("tags: status %d\n%s\nwant\n%s", resp.StatusCode, got, want)
	}
	g.usage(t, 1) // listing models is not a model call
}

func TestOllamaErrors(t *testing.T) {
	t.Parallel()
	g := newGateway(t, gatewayOptions{maxBody: 4096})
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	unreachable := newGateway(t, gatewayOptions{ollamaURL: down.URL})
	for _, sc := range []struct {
		name         string
		g            *gateway
		cred         string
		path         string
		body         any
		script       llmtest.Script
		status       int
		exact        string // the whole body, when Ollama's is passed on
		contains     string
		ollamaShaped bool
	}{
		{name: "no credential", g: g, path: "/ollama/generate", body: map[string]any{"prompt": "hi"}, status: 401, ollamaShaped: true},
		{name: "bad key", g: g, cred: "fk_wrong", path: "/ollama/chat", body: map[string]any{}, status: 401, ollamaShaped: true},
		{name: "tags need a credential", g: g, path: "/ollama/tags", status: 401, ollamaShaped: true},
		{name: "model not found", g: g, cred: g.key, path: "/ollama/generate", body: map[string]any{"model": "nope", "prompt": "hi"},
			script: llmtest.Script{FailFirst: 1, FailStatus: 404, FailMessage: `model "nope" not found, try pulling it first`},
			status: 404, exact: `{"error":"ollama: model \"nope\" not found, try pulling it first"}` + "\n"},
		{name: "upstream 500", g: g, cred: g.key, path: "/ollama/chat", body: map[string]any{"messages": []any{}},
			script: llmtest.Script{FailFirst: 1, FailStatus: 500, FailMessage: "llama runner process has terminated"},
			status: 503, exact: `{"error":"ollama is unavailable (500): llama runner process has terminated"}` + "\n"},
		{name: "unreachable", g: unreachable, cred: unreachable.key, path: "/ollama/generate", body: map[string]any{"prompt": "hi"},
			status: 503, ollamaShaped: true, contains: "OLLAMA_BASE_URL"},
		{name: "unreachable tags", g: unreachable, cred: unreachable.key, path: "/ollama/tags",
			status: 503, ollamaShaped: true, contains: "OLLAMA_BASE_URL"},
		{name: "not an object", g: g, cred: g.key, path: "/ollama/generate", body: `[1, 2]`, status: 400, ollamaShaped: true},
		{name: "model not a string", g: g, cred: g.key, path: "/ollama/generate", body: map[string]any{"model": 5}, status: 400, ollamaShaped: true, contains: "model"},
		{name: "stream not a bool", g: g, cred: g.key, path: "/ollama/generate", body: map[string]any{"stream": "yes"}, status: 400, ollamaShaped: true, contains: "stream"},
		{name: "too large", g: g, cred: g.key, path: "/ollama/generate", body: map[string]any{"prompt": strings.Repeat("a", 5000)}, status: 413, ollamaShaped: true},
	} {
		t.Run(sc.name, func(t *testing.T) {
			sc.g.fake.SetScript(sc.script)
			method := "POST"
			if sc.body == nil {
				method = "GET"
			}
			resp := sc.g.send(t, t.Context(), method, sc.path, sc.cred, sc.body)
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != sc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, sc.status, body)
			}
			if sc.exact != "" && string(body) != sc.exact {
				t.Errorf("body %q, want Ollama's %q", body, sc.exact)
			}
			if sc.ollamaShaped {
				var e struct {
					Error string `json:"error"`
				}
				if resp.Header.Get("Content-Type") != "application/json" || json.Unmarshal(body, &e) != nil || e.Error == "" {
					t.Errorf("Content-Type %q, want Ollama's {\"error\": …}: %s", resp.Header.Get("Content-Type"), body)
				}
			}
			if !strings.Contains(string(body), sc.contains) {
				t.Errorf("body lacks %q: %s", sc.contains, body)
			}
		})
	}
	// Ollama's refusals and an unreachable Ollama are failed calls.
	for _, u := range g.usage(t, 2) {
		if u.Status != "failed" {
			t.Errorf("usage log entry = %+v, want failed", u)
		}
	}
	if u := unreachable.usage(t, 1)[0]; u.Status != "failed" {
		t.Errorf("usage log entry = %+v, want failed", u)
	}
}

// TestOllamaStreamsAsItArrives reads lines while Ollama is still
// generating, which a proxy that buffers the answer would not allow, then
// leaves and checks the generation upstream was cancelled.
func TestOllamaStreamsAsItArrives(t *testing.T) {
	t.Parallel()
	g := newGateway(t, gatewayOptions{})
	g.fake.SetScript(llmtest.Script{Deltas: llmtest.Deltas(10), Break: llmtest.Hang, BreakAfter: 3, Fragment: true})
	// A proxy that buffered the answer would never hand over a line: the
	// upstream does not finish. The timeout turns that into a failure.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	resp := g.send(t, ctx, "POST", "/ollama/generate", g.key, map[string]any{"model": "llama3.2", "prompt": "hi"})
	r := bufio.NewReader(resp.Body)
	for i := range 3 {
		line, err := r.ReadBytes('\n')
		if err != nil {
			t.Fatalf("line %d: %v", i, err)
		}
		var l map[string]any
		if err := json.Unmarshal(line, &l); err != nil || l["response"] != llmtest.Deltas(3)[i] {
			t.Fatalf("line %d = %q", i, line)
		}
	}
	cancel()
	up := g.fake.Last()
	select {
	case <-up.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream request did not end after the client left")
	}
	if !up.Cancelled() {
		t.Error("the upstream request was not cancelled")
	}
	if u := g.usage(t, 1)[0]; u.Status != "cancelled" || u.OutputTokens != 3 || u.InputTokens == 0 {
		t.Errorf("usage log entry = %+v, want cancelled with estimated tokens", u)
	}
}

// TestOllamaStreamNeverJustStops: when Ollama's stream breaks, or it sends
// its own error line, the client's stream ends with an {"error": …} line.
func TestOllamaStreamNeverJustStops(t *testing.T) {
	t.Parallel()
	for _, sc := range []struct {
		name   string
		script llmtest.Script
		says   string
	}{
		{"ollama's error line", llmtest.Script{Deltas: llmtest.Deltas(5), Break: llmtest.ErrorEvent, BreakAfter: 2, ErrorMessage: "out of memory"}, "out of memory"},
		{"dropped connection", llmtest.Script{Deltas: llmtest.Deltas(5), Break: llmtest.Drop, BreakAfter: 2, Fragment: true}, "ollama"},
	} {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			g := newGateway(t, gatewayOptions{})
			g.fake.SetScript(sc.script)
			resp := g.send(t, t.Context(), "POST", "/ollama/generate", g.key, map[string]any{"prompt": "hi"})
			body, _ := io.ReadAll(resp.Body)
			lines := ndjsonLines(t, body)
			last, _ := lines[len(lines)-1]["error"].(string)
			if resp.StatusCode != 200 || !strings.Contains(last, sc.says) {
				t.Errorf("status %d, body %q: want an error line saying %q", resp.StatusCode, body, sc.says)
			}
			if u := g.usage(t, 1)[0]; u.Status != "failed" {
				t.Errorf("usage log entry = %+v, want failed", u)
			}
		})
	}
}

func TestOllamaDraining(t *testing.T) {
	t.Parallel()
	g := newGateway(t, gatewayOptions{})
	g.fake.SetScript(llmtest.Script{Deltas: llmtest.Deltas(5), Break: llmtest.Hang, BreakAfter: 2})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	resp := g.send(t, ctx, "POST", "/ollama/generate", g.key, map[string]any{"prompt": "hi"})
	r := bufio.NewReader(resp.Body)
	for range 2 {
		if _, err := r.ReadBytes('\n'); err != nil {
			t.Fatal(err)
		}
	}
	g.drain()
	rest, _ := io.ReadAll(r)
	if !strings.Contains(string(rest), `"error":"the server is restarting`) {
		t.Errorf("after draining the stream ended with %q, want an error line", rest)
	}
	if !g.fake.WaitCancelled(5 * time.Second) {
		t.Error("draining did not cancel the upstream request")
	}
}

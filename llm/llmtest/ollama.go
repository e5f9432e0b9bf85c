package llmtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strings"
	"time"
)

// ollamaRequest is the part of an /api/chat or /api/generate request the
// fake reads.
type ollamaRequest struct {
	Model    string `json:"model"`
	Stream   *bool  `json:"stream"` // Ollama streams unless told false
	Prompt   string `json:"prompt"`
	System   string `json:"system"`
	Messages []struct {
		Role    string `json:"role"`
		Content string `json:"content"`
	} `json:"messages"`
	Format json.RawMessage `json:"format"`
}

// checkFormat returns what Ollama answers 400 for in format, or "": it
// takes "json", a JSON Schema (an object), or nothing.
func (q *ollamaRequest) checkFormat() string {
	f := bytes.TrimSpace(q.Format)
	if len(f) == 0 || string(f) == "null" || string(f) == `""` || string(f) == `"json"` || f[0] == '{' {
		return ""
	}
	return fmt.Sprintf(`invalid format: %s; expected "json" or a valid JSON Schema`, f)
}

func (q *ollamaRequest) prompt() string {
	parts := []string{q.System, q.Prompt}
	for _, m := range q.Messages {
		parts = append(parts, m.Content)
	}
	return strings.Join(parts, " ")
}

func ollamaError(w http.ResponseWriter, status int, message string) {
	if message == "" {
		message = defaultFailMessage(status, "unauthorized")
	}
	writeJSON(w, status, map[string]string{"error": message})
}

func (s *Server) ollamaChat(w http.ResponseWriter, r *http.Request) {
	s.ollamaAnswer(w, r, true)
}

func (s *Server) ollamaGenerate(w http.ResponseWriter, r *http.Request) {
	s.ollamaAnswer(w, r, false)
}

// ollamaAnswer serves /api/chat (chat true) and /api/generate, which differ
// only in where the text goes: message.content or response.
func (s *Server) ollamaAnswer(w http.ResponseWriter, r *http.Request, chat bool) {
	rec, p, ok := s.begin(w, r, true)
	if !ok {
		return
	}
	var q ollamaRequest
	switch err := json.Unmarshal(rec.Body, &q); {
	case err != nil:
		ollamaError(w, 400, "invalid character in request body")
	case p.fail:
		p.failHeader(w)
		ollamaError(w, p.FailStatus, p.FailMessage)
	case q.Model == "":
		ollamaError(w, 400, "model is required")
	case q.checkFormat() != "":
		ollamaError(w, 400, q.checkFormat())
	case q.Stream != nil && !*q.Stream:
		// An answer in one piece takes as long as the stream would.
		st := &stream{r: r, quit: s.quit, p: p}
		for range p.Deltas {
			if !st.pause(p.Delay) {
				if st.timer != nil {
					st.timer.Stop()
				}
				s.end(rec, r.Context().Err() != nil)
				return
			}
		}
		if st.timer != nil {
			st.timer.Stop()
		}
		last := newOllamaWire(p, chat, &q).final(len(p.Deltas), p.text())
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		_, _ = w.Write(last)
	default:
		s.run(w, r, rec, p, "application/x-ndjson", newOllamaWire(p, chat, &q))
		return
	}
	s.end(rec, false)
}

// ollamaWire streams as Ollama does: one JSON object per line, the last
// with done true and the token counts.
type ollamaWire struct {
	p     plan
	chat  bool
	model []byte // as JSON
	input int
	buf   []byte
}

func newOllamaWire(p plan, chat bool, q *ollamaRequest) *ollamaWire {
	return &ollamaWire{p: p, chat: chat, model: rawJSON(q.Model), input: p.inputTokens(q.prompt())}
}

func (o *ollamaWire) head(dst []byte) []byte {
	dst = append(dst, `{"model":`...)
	dst = append(dst, o.model...)
	dst = append(dst, `,"created_at":"`...)
	dst = time.Now().AppendFormat(dst, time.RFC3339Nano)
	if o.chat {
		return append(dst, `","message":{"role":"assistant","content":`...)
	}
	return append(dst, `","response":`...)
}

func (o *ollamaWire) open() []byte { return nil }

func (o *ollamaWire) delta(quoted []byte) []byte {
	o.buf = append(o.head(o.buf[:0]), quoted...)
	if o.chat {
		o.buf = append(o.buf, '}')
	}
	return append(o.buf, ",\"done\":false}\n"...)
}

func (o *ollamaWire) fail(message string) []byte {
	return append(rawJSON(map[string]string{"error": message}), '\n')
}

func (o *ollamaWire) close(sent int) []byte { return o.final(sent, "") }

func (o *ollamaWire) final(sent int, text string) []byte {
	out := append(o.head(nil), rawJSON(text)...)
	if o.chat {
		out = append(out, '}')
	} else {
		out = append(out, `,"context":[1,2,3]`...)
	}
	return fmt.Appendf(out, `,"done_reason":%s,"done":true,"total_duration":4883583458,"load_duration":1334875,"prompt_eval_count":%d,"prompt_eval_duration":342546000,"eval_count":%d,"eval_duration":4535599000}`+"\n",
		rawJSON(o.p.stopReason("stop")), o.input, o.p.outputTokens(sent))
}

func (s *Server) ollamaTags(w http.ResponseWriter, r *http.Request) {
	rec, _, ok := s.begin(w, r, false)
	if !ok {
		return
	}
	defer s.end(rec, false)
	type details struct {
		ParentModel       string   `json:"parent_model"`
		Format            string   `json:"format"`
		Family            string   `json:"family"`
		Families          []string `json:"families"`
		ParameterSize     string   `json:"parameter_size"`
		QuantizationLevel string   `json:"quantization_level"`
	}
	type model struct {
		Name       string  `json:"name"`
		Model      string  `json:"model"`
		ModifiedAt string  `json:"modified_at"`
		Size       int64   `json:"size"`
		Digest     string  `json:"digest"`
		Details    details `json:"details"`
	}
	names := DefaultModels("ollama")
	models := make([]model, len(names))
	for i, n := range names {
		family := strings.TrimRight(strings.Split(n, ":")[0], ".0123456789")
		models[i] = model{
			Name: n, Model: n, ModifiedAt: "2025-10-01T12:00:00.000000000Z", Size: 2019393189,
			Digest:  fmt.Sprintf("%064x", i+1),
			Details: details{Format: "gguf", Family: family, Families: []string{family}, ParameterSize: "3.2B", QuantizationLevel: "Q4_K_M"},
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"models": models})
}

// ollamaVersion is the version the fake says it is on GET /api/version.
const ollamaVersion = "0.12.3"

func (s *Server) ollamaVersion(w http.ResponseWriter, r *http.Request) {
	rec, _, ok := s.begin(w, r, false)
	if !ok {
		return
	}
	defer s.end(rec, false)
	writeJSON(w, http.StatusOK, map[string]string{"version": ollamaVersion})
}

// ollamaModel returns the fake's full name for name (Ollama adds ":latest"
// to a name without a tag), and whether the fake has it pulled.
func ollamaModel(name string) (string, bool) {
	if name != "" && !strings.Contains(name, ":") {
		name += ":latest"
	}
	for _, m := range DefaultModels("ollama") {
		if m == name {
			return m, true
		}
	}
	return name, false
}

// ollamaShow serves POST /api/show: one pulled model's details, 400 without
// a model, 404 for one not pulled, as Ollama words them.
func (s *Server) ollamaShow(w http.ResponseWriter, r *http.Request) {
	rec, _, ok := s.begin(w, r, false)
	if !ok {
		return
	}
	defer s.end(rec, false)
	var q struct {
		Model string `json:"model"`
		Name  string `json:"name"` // before "model", Ollama's field was "name"
	}
	if err := json.Unmarshal(rec.Body, &q); err != nil {
		ollamaError(w, http.StatusBadRequest, "invalid character in request body")
		return
	}
	if q.Model == "" {
		q.Model = q.Name
	}
	if q.Model == "" {
		ollamaError(w, http.StatusBadRequest, "model is required")
		return
	}
	name, found := ollamaModel(q.Model)
	if !found {
		ollamaError(w, http.StatusNotFound, fmt.Sprintf("model '%s' not found", q.Model))
		return
	}
	family := strings.TrimRight(strings.Split(name, ":")[0], ".0123456789")
	writeJSON(w, http.StatusOK, map[string]any{
		"license":    "LLAMA 3.2 COMMUNITY LICENSE AGREEMENT",
		"modelfile":  "# Modelfile generated by \"ollama show\"\nFROM " + name + "\n",
		"parameters": "stop                           \"<|eot_id|>\"",
		"template":   "{{ .Prompt }}",
		"details": map[string]any{"parent_model": "", "format": "gguf", "family": family, "families": []string{family},
			"parameter_size": "3.2B", "quantization_level": "Q4_K_M"},
		"model_info":   map[string]any{"general.architecture": family, "general.parameter_count": 3212749888, family + ".context_length": 131072},
		"capabilities": []string{"completion", "tools"},
		"modified_at":  "2025-10-01T12:00:00.000000000Z",
	})
}

// ollamaPS serves GET /api/ps: the fake has its first model loaded.
func (s *Server) ollamaPS(w http.ResponseWriter, r *http.Request) {
	rec, _, ok := s.begin(w, r, false)
	if !ok {
		return
	}
	defer s.end(rec, false)
	name := DefaultModels("ollama")[0]
	writeJSON(w, http.StatusOK, map[string]any{"models": []map[string]any{{
		"name": name, "model": name, "size": 3355443200, "digest": fmt.Sprintf("%064x", 1),
		"details": map[string]any{"parent_model": "", "format": "gguf", "family": "llama", "families": []string{"llama"},
			"parameter_size": "3.2B", "quantization_level": "Q4_K_M"},
		"expires_at": "2025-10-01T12:05:00.000000000Z", "size_vram": 3355443200, "context_length": 4096,
	}}})
}

// ollamaEmbed serves POST /api/embed: one vector per input text, made from
// the text so that different texts get different vectors (by SetEmbedding's
// function when one is set), and the input tokens as prompt_eval_count. It is a model call: Script's failures apply.
func (s *Server) ollamaEmbed(w http.ResponseWriter, r *http.Request) {
	rec, p, ok := s.begin(w, r, true)
	if !ok {
		return
	}
	defer s.end(rec, false)
	var q struct {
		Model string          `json:"model"`
		Input json.RawMessage `json:"input"`
	}
	if err := json.Unmarshal(rec.Body, &q); err != nil {
		ollamaError(w, http.StatusBadRequest, "invalid character in request body")
		return
	}
	inputs, ok := embedInputs(q.Input)
	if !ok {
		ollamaError(w, http.StatusBadRequest, "invalid input type")
		return
	}
	switch {
	case p.fail:
		p.failHeader(w)
		ollamaError(w, p.FailStatus, p.FailMessage)
		return
	case q.Model == "":
		ollamaError(w, http.StatusBadRequest, "model is required")
		return
	}
	s.mu.Lock()
	fn := s.embed
	s.mu.Unlock()
	vectors := make([]any, len(inputs))
	for i, in := range inputs {
		if fn != nil {
			vectors[i] = fn(in)
		} else {
			vectors[i] = embedding(in)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"model": q.Model, "embeddings": vectors,
		"total_duration": 14143917, "load_duration": 1019500, "prompt_eval_count": p.inputTokens(strings.Join(inputs, " "))})
}

// embedding is a small unit vector that depends on every byte of text.
func embedding(text string) []float64 {
	v := make([]float64, 8)
	for i, c := range []byte(text) {
		v[i%len(v)] += float64(c) * float64(i+1)
	}
	var norm float64
	for _, x := range v {
		norm += x * x
	}
	if norm == 0 {
		return v
	}
	norm = math.Sqrt(norm)
	for i := range v {
		v[i] /= norm
	}
	return v
}

package llmtest

import (
	"encoding/json"
	"hash/fnv"
	"math"
	"net/http"
	"strings"
	"unicode"
)

// SetEmbedding makes fn compute the vectors OpenAI's /v1/embeddings
// answers with, one per input text; nil restores the default, a small
// vector that depends on every byte of the text and on nothing else.
func (s *Server) SetEmbedding(fn func(text string) []float32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.embed = fn
}

// HashedWords returns an embedding of dim dimensions that is weak but
// real: the text's lowercased words (runs of letters and digits), each
// hashed to a pseudo-random ±1 direction (a random projection of the bag
// of words), summed with weight 1 + ln(count) and normalised. Texts that
// share words are near; it knows no synonyms, no word order and not
// which words matter, which makes it a fair stand-in for a weak embedding
// model in tests that must run offline.
func HashedWords(dim int) func(text string) []float32 {
	return func(text string) []float32 {
		counts := map[string]int{}
		for _, w := range strings.FieldsFunc(strings.ToLower(text), func(r rune) bool {
			return !unicode.IsLetter(r) && !unicode.IsDigit(r)
		}) {
			counts[w]++
		}
		v := make([]float64, dim)
		for w, n := range counts {
			weight := 1 + math.Log(float64(n))
			h := fnv.New64a()
			h.Write([]byte(w))
			x := h.Sum64()
			for i := range v {
				// xorshift64: the word's own sequence of signs.
				x ^= x << 13
				x ^= x >> 7
				x ^= x << 17
				if x&1 == 1 {
					v[i] += weight
				} else {
					v[i] -= weight
				}
			}
		}
		var norm float64
		for _, x := range v {
			norm += x * x
		}
		out := make([]float32, dim)
		if norm == 0 {
			return out
		}
		norm = math.Sqrt(norm)
		for i, x := range v {
			out[i] = float32(x / norm)
		}
		return out
	}
}

// openAIEmbeddings serves POST /v1/embeddings as OpenAI does: input is a
// string or an array of strings, the answer a list of embedding objects
// in input order with usage. encoding_format "base64" is not served
// (Ferry asks for floats). It is a model call: Script's failures apply.
func (s *Server) openAIEmbeddings(w http.ResponseWriter, r *http.Request) {
	rec, p, ok := s.begin(w, r, true)
	if !ok {
		return
	}
	defer s.end(rec, false)
	var q struct {
		Model          string          `json:"model"`
		Input          json.RawMessage `json:"input"`
		EncodingFormat string          `json:"encoding_format"`
	}
	if err := json.Unmarshal(rec.Body, &q); err != nil {
		openAIError(w, 400, "We could not parse the JSON body of your request.")
		return
	}
	inputs, ok := embedInputs(q.Input)
	if !ok {
		openAIError(w, 400, "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.")
		return
	}
	switch {
	case p.fail:
		p.failHeader(w)
		openAIError(w, p.FailStatus, p.FailMessage)
		return
	case q.Model == "":
		openAIError(w, 400, "you must provide a model parameter")
		return
	case len(inputs) == 0 || len(inputs) > 2048:
		openAIError(w, 400, "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.")
		return
	case q.EncodingFormat != "" && q.EncodingFormat != "float":
		openAIError(w, 400, "the fake serves encoding_format float only")
		return
	}
	s.mu.Lock()
	fn := s.embed
	s.mu.Unlock()
	data := make([]map[string]any, len(inputs))
	for i, in := range inputs {
		var vec any
		if fn != nil {
			vec = fn(in)
		} else {
			vec = embedding(in)
		}
		data[i] = map[string]any{"object": "embedding", "index": i, "embedding": vec}
	}
	tokens := p.inputTokens(strings.Join(inputs, " "))
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": data, "model": q.Model,
		"usage": map[string]int{"prompt_tokens": tokens, "total_tokens": tokens}})
}

// embedInputs reads an embedding request's input, a string or a list of
// strings as both OpenAI and Ollama take it; false when it is neither.
func embedInputs(raw json.RawMessage) ([]string, bool) {
	var inputs []string
	if json.Unmarshal(raw, &inputs) == nil {
		return inputs, true
	}
	var one string
	if json.Unmarshal(raw, &one) != nil {
		return nil, false
	}
	return []string{one}, true
}

package main

import (
	"net/http"
	"testing"

	"github.com/ferryhq/ferry/llm/llmtest"
)

// TestServeEmbeds checks the wiring of FERRY_EMBED_MODEL in serve: a
// posted document is embedded through the fake OpenAI upstream, and the
// search endpoint's vector mode finds it by the words it shares with the
// query; without the setting, vector mode is a 400 naming it.
func TestServeEmbeds(t *testing.T) {
	up := llmtest.Start(t)
	up.SetEmbedding(llmtest.HashedWords(64))
	env := sqliteEnv(t)
	env.vars["FERRY_EMBED_MODEL"] = "openai/text-embedding-3-small"
	env.vars["OPENAI_BASE_URL"] = up.OpenAIURL()
	in := start(t, env)
	access, _ := in.signUp(t, "ann@example.com", "correct horse battery")
	m := in.must(t, http.StatusAccepted, "POST", "/collections/default/documents", access,
		map[string]string{"external_id": "k", "title": "Tides", "text": "The moon pulls the oceans into tides."})
	id := m["items"].([]any)[0].(map[string]any)["id"].(string)
	waitStatus(t, in, access, id, "indexed")
	m = in.must(t, http.StatusOK, "POST", "/collections/default/search", access,
		map[string]any{"query": "moon oceans", "mode": "vector"})
	results, _ := m["results"].([]any)
	if m["mode"] != "vector" || len(results) != 1 || results[0].(map[string]any)["document_id"] != id {
		t.Fatalf("vector search: %v; want the document", m)
	}
	embedded := 0
	for _, r := range up.Requests() {
		if r.Path == "/v1/embeddings" {
			embedded++
		}
	}
	if embedded < 2 {
		t.Fatalf("%d embedding requests; want the chunk's and the query's", embedded)
	}

	plain := start(t, sqliteEnv(t))
	access, _ = plain.signUp(t, "ann@example.com", "correct horse battery")
	code, body := plain.call(t, "POST", "/collections/default/search", access, map[string]any{"query": "moon", "mode": "vector"})
	if code != http.StatusBadRequest {
		t.Fatalf("vector without an embedder: %d %v; want 400", code, body)
	}
}

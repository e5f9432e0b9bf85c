package main

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/ferryhq/ferry/llm/llmtest"
	"github.com/ferryhq/ferry/store/storetest"
)

// TestDocumentsWalkthrough is issue 9's newcomer, end to end: ferry ingest
// uploads a folder of real PDFs, and a question to the collection is
// answered with sources that cite the right document and page. On SQLite
// one instance does it all; on PostgreSQL (with Redis) the folder goes to
// one instance and the question to another, which shares its database.
func TestDocumentsWalkthrough(t *testing.T) {
	for _, engine := range storetest.Engines(t) {
		t.Run(engine, func(t *testing.T) {
			fake := llmtest.Start(t)
			fake.SetScript(llmtest.Script{Deltas: []string{"The text praises the misfits and rebels ", "[1]."}})
			env := withPDFiumCache(t, withFake(engineEnv(t, engine), fake))
			a := start(t, env)
			b := a
			if engine == "postgres" {
				b = start(t, env)
			}
			access, _ := a.signUp(t, "ann@example.com", "correct horse battery")
			key := a.must(t, http.StatusCreated, "POST", "/auth/api-keys", access, map[string]string{"name": "ingest"})["key"].(string)

			stdout, stderr, err := command(t, fakeEnv{vars: map[string]string{"FERRY_API_KEY": key}}, "",
				"ingest", ingestFolder(t), "--collection", "papers", "--url", a.url)
			checkIngestRun(t, key, stdout, stderr, err)

			resp, err := b.post(context.Background(), "/rag/query", key, map[string]any{
				"question": "Here's to the crazy ones, the misfits, the rebels: who are they?", "collection": "papers"})
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("rag/query: %d", resp.StatusCode)
			}
			var events []map[string]any
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
					var ev map[string]any
					if err := json.Unmarshal([]byte(data), &ev); err != nil {
						t.Fatalf("event %q: %v", data, err)
					}
					events = append(events, ev)
				}
			}
			if len(events) < 3 {
				t.Fatalf("events %v", events)
			}
			sources, _ := events[0]["sources"].([]any)
			if len(sources) == 0 {
				t.Fatalf("first event %v, want the sources", events[0])
			}
			first := sources[0].(map[string]any)
			if first["external_id"] != "crazyones.pdf" || first["page"] != 1.0 || first["n"] != 1.0 {
				t.Errorf("source [1] = %v, want crazyones.pdf, page 1", first)
			}
			done := events[len(events)-1]
			cited, _ := done["cited"].([]any)
			if done["done"] != true || len(cited) != 1 || cited[0].(map[string]any)["external_id"] != "crazyones.pdf" {
				t.Errorf("done event %v, want [1] crazyones.pdf cited", done)
			}
			// The upstream was shown the page's text, numbered.
			if up := fake.Last(); up == nil || !strings.Contains(string(up.Body), "[1] ") || !strings.Contains(string(up.Body), "misfits") {
				t.Errorf("the upstream request lacks the numbered source")
			}
			// The conversation, read on the first instance, keeps the sources.
			conv := a.must(t, http.StatusOK, "GET", "/conversations/"+events[0]["conversation_id"].(string), key, nil)
			msgs, _ := conv["messages"].([]any)
			if len(msgs) != 2 {
				t.Fatalf("conversation %v", conv)
			}
			if kept, _ := msgs[1].(map[string]any)["sources"].([]any); len(kept) != len(sources) {
				t.Errorf("the stored answer has %d sources, want %d", len(kept), len(sources))
			}
		})
	}
}

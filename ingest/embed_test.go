package ingest

import (
	"context"
	"slices"
	"testing"

	"github.com/ferryhq/ferry/embed"
	"github.com/ferryhq/ferry/llm/llmtest"
	"github.com/ferryhq/ferry/search"
)

// TestIngestEmbeds runs ingestion with an embedder (a fake OpenAI
// upstream): the chunks are stored with their vectors, and a vector search
// finds the document.
func TestIngestEmbeds(t *testing.T) {
	eachEngine(t, func(t *testing.T, e *env) {
		up := llmtest.Start(t)
		up.SetEmbedding(llmtest.HashedWords(64))
		emb, err := embed.New(embed.Config{Model: "openai/text-embedding-3-small", OpenAIBaseURL: up.OpenAIURL()})
		if err != nil {
			t.Fatal(err)
		}
		r := search.NewRetriever(e.ix, emb, search.DefaultFusion, nil)
		s := e.service(t, Options{Embed: r.EmbedChunks})
		if err := s.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		u := e.newUser(t, "ann")
		d := submit(t, s, u, "default", text("v", "Volcanoes", "Volcanoes erupt molten rock called lava."))
		if got := waitFor(t, s, u, "default", d.ID); got.Status != search.StatusIndexed {
			t.Fatalf("%+v; want indexed", got)
		}
		var n int
		if err := e.st.Reader().QueryRowContext(context.Background(),
			`SELECT COUNT(*) FROM chunks WHERE document_id = $1 AND embedding IS NOT NULL`, d.ID).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Fatalf("%d chunks with an embedding; want 1", n)
		}
		found, err := r.Search(context.Background(), u, "default", "molten lava", 5, search.ModeVector)
		if err != nil {
			t.Fatal(err)
		}
		if ids := func() []string {
			var out []string
			for _, h := range found {
				out = append(out, h.DocumentID)
			}
			return out
		}(); !slices.Equal(ids, []string{d.ID}) {
			t.Fatalf("vector search found %v; want %s", ids, d.ID)
		}
	})
}

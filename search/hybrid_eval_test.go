package search

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/llm/llmtest"
	"github.com/ferryhq/ferry/store/storetest"
)

// hashedDim is the size of the weak embedding the SciFact evaluation uses.
const hashedDim = 256

// TestSciFactHybrid measures lexical, vector and hybrid retrieval on BEIR
// SciFact with a weak but real embedder: an OpenAI-compatible fake
// upstream computing llmtest.HashedWords, a random projection of the bag
// of words (no idf, no stemming, no synonyms), the kind of embedder with
// which equal-weight fusion hurts. It logs nDCG@10 and Recall@100 for
// several vector weights (the table in BENCHMARKS.md) and checks that
// hybrid with DefaultFusion is no worse than lexical beyond noise. On
// SQLite only: the engines rank alike (TestIndexEnginesAgree), and the
// vectors are the same in memory. With -short, or under the race
// detector, it is skipped.
func TestSciFactHybrid(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("-short or -race: skipping the SciFact hybrid evaluation")
	}
	sf := loadSciFact(t)
	ctx := context.Background()
	st := storetest.Open(t, "sqlite")
	ix := New(st)
	emb, _ := embedder(t, llmtest.HashedWords(hashedDim))
	r := NewRetriever(ix, emb, DefaultFusion, nil)
	user := newUser(t, st, "scifact")
	if _, err := ix.CreateCollection(ctx, user, "scifact"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i := 0; i < len(sf.corpus); i += 100 {
		for _, d := range sf.corpus[i:min(i+100, len(sf.corpus))] {
			doc := Document{ExternalID: d.ID, Title: d.Title}
			chunks := Split([]Page{{Text: d.Text}}, ChunkOptions{})
			if err := r.EmbedChunks(ctx, &doc, chunks); err != nil {
				t.Fatal(err)
			}
			if _, err := ix.Add(ctx, user, "scifact", doc, chunks); err != nil {
				t.Fatal(err)
			}
			if err := ix.SetEmbeddings(ctx, chunks); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Logf("ingested and embedded %d abstracts in %v", len(sf.corpus), time.Since(start).Round(time.Millisecond))

	// Each query's two rankings are read once, as deep as a hybrid search
	// of the top 200 reads them; each weighting then fuses them.
	docOf := map[int64]string{}
	rows, err := st.Reader().QueryContext(ctx, `SELECT c.id, d.external_id FROM chunks c JOIN documents d ON d.id = c.document_id`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id int64
		var ext string
		if err := rows.Scan(&id, &ext); err != nil {
			t.Fatal(err)
		}
		docOf[id] = ext
	}
	rows.Close()
	type lists struct {
		lexical []scored
		near    []scored
	}
	all := make([]lists, len(sf.queries))
	coll, err := ix.collectionState(ctx, user, "scifact")
	if err != nil {
		t.Fatal(err)
	}
	for i, q := range sf.queries {
		if all[i].lexical, err = ix.lexicalRank(ctx, coll, q.Text, depth(200)); err != nil {
			t.Fatal(err)
		}
		qv, err := r.embedQuery(ctx, q.Text)
		if err != nil {
			t.Fatal(err)
		}
		if all[i].near, err = r.nearestTo(ctx, coll, qv, depth(200)); err != nil {
			t.Fatal(err)
		}
	}
	type run struct {
		name string
		fuse func(lexical, near []scored) []scored
	}
	runs := []run{
		{"lexical", func(l, _ []scored) []scored { return Fusion{Vector: 0}.fuse(l, nil) }},
		{"vector", func(_, n []scored) []scored { return n }},
	}
	for _, w := range []float64{0.02, 0.05, 0.1, 0.3, 1} {
		runs = append(runs, run{fmt.Sprintf("RRF (k 60), vector weight %.2f, BM25 1", w),
			func(l, n []scored) []scored { return rrf(w, l, n) }})
	}
	for _, w := range []float64{0.05, 0.1, 0.2, 0.3, 0.5} {
		runs = append(runs, run{fmt.Sprintf("Fusion{Vector: %.2f}", w), Fusion{Vector: w}.fuse})
	}
	var table strings.Builder
	for _, rn := range runs {
		var nd, rc float64
		for i, q := range sf.queries {
			fused := rn.fuse(all[i].lexical, all[i].near)
			seen := map[string]bool{}
			var ranked []string
			for _, s := range fused[:min(200, len(fused))] {
				if d := docOf[s.id]; !seen[d] {
					seen[d] = true
					ranked = append(ranked, d)
				}
			}
			nd += ndcg(ranked, sf.qrels[q.ID], 10)
			rc += recall(ranked, sf.qrels[q.ID], 100)
		}
		n := float64(len(sf.queries))
		fmt.Fprintf(&table, "\n| %s | %.3f | %.3f |", rn.name, nd/n, rc/n)
	}
	var lexicalNDCG, defaultNDCG, defaultRecall, lexicalRecall float64
	for _, mode := range []Mode{ModeLexical, ModeHybrid} {
		var nd, rc float64
		for _, q := range sf.queries {
			hits, err := r.Search(ctx, user, "scifact", q.Text, 200, mode)
			if err != nil {
				t.Fatal(err)
			}
			ranked := rankedDocuments(hits)
			nd += ndcg(ranked, sf.qrels[q.ID], 10)
			rc += recall(ranked, sf.qrels[q.ID], 100)
		}
		n := float64(len(sf.queries))
		if mode == ModeLexical {
			lexicalNDCG, lexicalRecall = nd/n, rc/n
		} else {
			defaultNDCG, defaultRecall = nd/n, rc/n
		}
	}
	t.Logf("SciFact, %d queries, HashedWords(%d) embedder, top 200 chunks:\n| run | nDCG@10 | Recall@100 |\n|---|---|---|%s",
		len(sf.queries), hashedDim, table.String())
	// Noise: one query of 300 moving a relevant document a few places
	// moves nDCG@10 by about 0.003.
	if defaultNDCG < lexicalNDCG-0.01 || defaultRecall < lexicalRecall-0.01 {
		t.Errorf("hybrid with DefaultFusion %+v: nDCG@10 %.4f, Recall@100 %.4f; lexical %.4f, %.4f: the default hurts",
			DefaultFusion, defaultNDCG, defaultRecall, lexicalNDCG, lexicalRecall)
	}
}

// rrf is weighted reciprocal rank fusion, for comparison: a chunk scores
// 1/(60 + its BM25 rank) + w/(60 + its vector rank).
func rrf(w float64, lexical, near []scored) []scored {
	score := map[int64]float64{}
	for i, h := range lexical {
		score[h.id] += 1 / (60 + float64(i+1))
	}
	for i, s := range near {
		score[s.id] += w / (60 + float64(i+1))
	}
	out := make([]scored, 0, len(score))
	for id, s := range score {
		out = append(out, scored{id, s})
	}
	sortScored(out)
	return out
}

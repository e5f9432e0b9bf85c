package search

import (
	"context"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/embed"
	"github.com/ferryhq/ferry/llm/llmtest"
	"github.com/ferryhq/ferry/store"
	"github.com/ferryhq/ferry/store/storetest"
)

// synonyms is an embedding that knows what BM25 cannot: "cat", "feline"
// and "kitten" point one way, "car" and "automobile" another; any other
// word gets a direction of its own from HashedWords.
func synonyms(text string) []float32 {
	v := make([]float32, 32)
	words := strings.Fields(strings.ToLower(text))
	other := llmtest.HashedWords(30)
	var rest []string
	for _, w := range words {
		w = strings.Trim(w, ".,;:")
		switch w {
		case "cat", "cats", "feline", "felines", "kitten":
			v[0] += 3
		case "car", "cars", "automobile":
			v[1] += 3
		default:
			rest = append(rest, w)
		}
	}
	if len(rest) > 0 {
		for i, x := range other(strings.Join(rest, " ")) {
			v[2+i] = x
		}
	}
	return v
}

// embedder starts a fake OpenAI upstream computing fn and returns a
// client of it.
func embedder(t *testing.T, fn func(string) []float32) (*embed.Client, *llmtest.Server) {
	t.Helper()
	up := llmtest.Start(t)
	up.SetEmbedding(fn)
	c, err := embed.New(embed.Config{Model: "openai/text-embedding-3-small", OpenAIBaseURL: up.OpenAIURL(), Batch: 3})
	if err != nil {
		t.Fatal(err)
	}
	return c, up
}

// addEmbedded adds a one-page document as ingestion does: embed the
// chunks, add them as StatusEmbedding, store the vectors.
func addEmbedded(t *testing.T, r *Retriever, userID, collection string, doc Document, text string) *Document {
	t.Helper()
	ctx := context.Background()
	chunks := Split([]Page{{Text: text}}, ChunkOptions{})
	if err := r.EmbedChunks(ctx, &doc, chunks); err != nil {
		t.Fatal(err)
	}
	doc.Status = StatusEmbedding
	d, err := r.ix.Add(ctx, userID, collection, doc, chunks)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.ix.SetEmbeddings(ctx, chunks); err != nil {
		t.Fatal(err)
	}
	// Indexed once its vectors are stored.
	if got, err := r.ix.Document(ctx, userID, d.ID); err != nil || got.Status != StatusIndexed {
		t.Fatalf("after SetEmbeddings: %+v, %v; want indexed", got, err)
	}
	return d
}

// find runs a search and fails the test on error.
func find(t *testing.T, r *Retriever, userID, query string, mode Mode) []Hit {
	t.Helper()
	hits, err := r.Search(context.Background(), userID, "default", query, 10, mode)
	if err != nil {
		t.Fatalf("%s search %q: %v", mode, query, err)
	}
	return hits
}

func TestVectorEncoding(t *testing.T) {
	v := []float32{1, -0.5, float32(math.Pi), 0}
	b := EncodeVector(v)
	if len(b) != 16 || b[4] != 0 || b[7] != 0xbf {
		t.Fatalf("encoded % x; want float32 little-endian", b)
	}
	got, err := DecodeVector(nil, b)
	if err != nil || !slices.Equal(got, v) {
		t.Fatalf("decoded %v, %v; want %v", got, err, v)
	}
	if _, err := DecodeVector(nil, b[:5]); err == nil {
		t.Fatal("5 bytes decoded")
	}
}

func TestRetrieverEmbeddingsStoredAndUsed(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		emb, up := embedder(t, synonyms)
		r := NewRetriever(New(st), emb, DefaultFusion, nil)
		u := newUser(t, st, "ann")
		addEmbedded(t, r, u, "default", Document{Title: "Pets"}, "Cats sleep most of the day.")
		addEmbedded(t, r, u, "default", Document{Title: "Traffic"}, "Cars queue at the lights.")
		addEmbedded(t, r, u, "default", Document{Title: "Felines"}, "A feline hunts at dusk.")

		// Stored with the chunk: unit float32 vectors of the model's size.
		rows, err := st.Reader().QueryContext(ctx, `SELECT embedding FROM chunks`)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for rows.Next() {
			var raw []byte
			if err := rows.Scan(&raw); err != nil {
				t.Fatal(err)
			}
			v, err := DecodeVector(nil, raw)
			if err != nil || len(v) != 32 || math.Abs(float64(dot(v, v))-1) > 1e-5 {
				t.Fatalf("stored embedding %v (%v); want a unit vector of 32", v, err)
			}
			n++
		}
		rows.Close()
		if n != 3 {
			t.Fatalf("%d chunks with embeddings; want 3", n)
		}

		// Vector search finds the cat under "feline", which BM25 cannot.
		if got := titles(find(t, r, u, "feline", ModeLexical)); !slices.Equal(got, []string{"Felines"}) {
			t.Fatalf("lexical: %v; want [Felines]", got)
		}
		vec := find(t, r, u, "feline", ModeVector)
		if got := titles(vec); len(got) != 3 || !slices.Equal(sorted(got[:2]), []string{"Felines", "Pets"}) || got[2] != "Traffic" {
			t.Fatalf("vector: %v; want Felines and Pets, then Traffic", got)
		}
		if vec[0].Score <= vec[2].Score || vec[0].Score > 1.0001 || vec[0].Snippet == "" {
			t.Fatalf("vector scores %v, %v, snippet %q; want cosines, best first", vec[0].Score, vec[2].Score, vec[0].Snippet)
		}
		// Hybrid keeps BM25's hit first and adds what only the vectors
		// found.
		hyb := find(t, r, u, "feline", ModeHybrid)
		if got := titles(hyb); len(got) < 2 || got[0] != "Felines" || !slices.Contains(got, "Pets") {
			t.Fatalf("hybrid: %v; want Felines first, Pets found", got)
		}
		if hyb[0].Score <= hyb[1].Score {
			t.Fatalf("hybrid scores %v, %v; want best first", hyb[0].Score, hyb[1].Score)
		}
		// The query went to the embedder in batches of at most 3, with the
		// title: four requests (three documents, one query… or more).
		var embedded int
		for _, rq := range up.Requests() {
			if rq.Path == "/v1/embeddings" {
				embedded++
			}
		}
		if embedded < 5 {
			t.Fatalf("%d embedding requests; want one per document and per query", embedded)
		}
	})
}

// sorted returns s sorted.
func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func TestRetrieverCoherentAcrossInstances(t *testing.T) {
	for _, engine := range storetest.Engines(t) {
		t.Run(engine, func(t *testing.T) {
			ctx := context.Background()
			db := storetest.Database(t, engine)
			open := func() *store.Store {
				st, err := store.Open(ctx, db)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { st.Close() })
				if err := st.Migrate(ctx); err != nil {
					t.Fatal(err)
				}
				return st
			}
			stA, stB := open(), open()
			emb, _ := embedder(t, synonyms)
			a := NewRetriever(New(stA), emb, DefaultFusion, nil)
			b := NewRetriever(New(stB), emb, DefaultFusion, nil)
			u := newUser(t, stA, "ann")
			addEmbedded(t, a, u, "default", Document{Title: "Pets", ExternalID: "pets"}, "Cats sleep most of the day.")
			if got := titles(find(t, b, u, "kitten", ModeVector)); !slices.Equal(got, []string{"Pets"}) {
				t.Fatalf("B before: %v; want [Pets]", got)
			}
			// Indexed through A: B sees it at its next search.
			d := addEmbedded(t, a, u, "default", Document{Title: "Felines"}, "A feline hunts at dusk.")
			if got := titles(find(t, b, u, "kitten", ModeVector)); !slices.Equal(sorted(got), []string{"Felines", "Pets"}) {
				t.Fatalf("B after A indexed: %v; want Felines and Pets", got)
			}
			// Deleted through A: gone from B's vector and hybrid search.
			if err := a.ix.Delete(ctx, u, d.ID); err != nil {
				t.Fatal(err)
			}
			for _, mode := range []Mode{ModeVector, ModeHybrid} {
				if got := titles(find(t, b, u, "feline kitten", mode)); !slices.Equal(got, []string{"Pets"}) {
					t.Fatalf("B %s after A deleted: %v; want [Pets]", mode, got)
				}
			}
			// Replaced through A by external_id: B finds the new text only.
			addEmbedded(t, a, u, "default", Document{Title: "Pets", ExternalID: "pets"}, "Cars queue at the lights.")
			if got := find(t, b, u, "automobile", ModeVector); len(got) != 1 || !strings.Contains(got[0].Text, "Cars") {
				t.Fatalf("B after A replaced: %+v; want the new text", got)
			}
			if got := find(t, b, u, "kitten", ModeVector); len(got) != 1 || strings.Contains(got[0].Text, "Cats") {
				t.Fatalf("B still has the replaced text: %+v", got)
			}
		})
	}
}

func TestRetrieverWithoutEmbedder(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		ix := New(st)
		r := NewRetriever(ix, nil, DefaultFusion, nil)
		u := newUser(t, st, "ann")
		addText(t, ix, u, "default", Document{Title: "Pets"}, "Cats sleep most of the day.")
		addText(t, ix, u, "default", Document{Title: "Felines"}, "A feline hunts cats at dusk.")
		for _, mode := range []Mode{"", ModeHybrid, ModeLexical} {
			got := find(t, r, u, "cats", mode)
			want := search(t, ix, u, "default", "cats")
			if len(got) != 2 || !slices.EqualFunc(got, want, func(a, b Hit) bool { return a.ChunkID == b.ChunkID && a.Score == b.Score }) {
				t.Fatalf("%q: %+v; want Lexical's %+v", mode, got, want)
			}
		}
		_, err := r.Search(context.Background(), u, "default", "cats", 10, ModeVector)
		wantCode(t, err, ferry.Invalid, "vector without an embedder")
		if err == nil || !strings.Contains(err.Error(), "no embedder configured; set FERRY_EMBED_MODEL") {
			t.Fatalf("error %v; want it to name FERRY_EMBED_MODEL", err)
		}
		_, err = r.Search(context.Background(), u, "default", "cats", 10, "fuzzy")
		wantCode(t, err, ferry.Invalid, "unknown mode")
	})
}

func TestRetrieverInvalidAndMissing(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		emb, _ := embedder(t, synonyms)
		r := NewRetriever(New(st), emb, DefaultFusion, nil)
		u := newUser(t, st, "ann")
		ctx := context.Background()
		for _, mode := range []Mode{ModeHybrid, ModeVector} {
			_, err := r.Search(ctx, u, "default", " ", 10, mode)
			wantCode(t, err, ferry.Invalid, string(mode)+": empty query")
			_, err = r.Search(ctx, u, "default", "cats", 0, mode)
			wantCode(t, err, ferry.Invalid, string(mode)+": top_k 0")
			_, err = r.Search(ctx, u, "nope", "cats", 10, mode)
			wantCode(t, err, ferry.NotFound, string(mode)+": missing collection")
			if hits, err := r.Search(ctx, u, "default", "cats", 10, mode); err != nil || len(hits) != 0 {
				t.Fatalf("%s on an unused default: %v, %v; want none", mode, hits, err)
			}
		}
	})
}

func TestRetrieverEmbedderDown(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		emb, up := embedder(t, synonyms)
		r := NewRetriever(New(st), emb, DefaultFusion, nil)
		u := newUser(t, st, "ann")
		addEmbedded(t, r, u, "default", Document{Title: "Pets"}, "Cats sleep most of the day.")
		// A refusal is not retried: hybrid answers lexically, vector fails.
		up.SetScript(llmtest.Script{FailFirst: 2, FailStatus: 400, FailMessage: "bad model"})
		if got := titles(find(t, r, u, "cats", ModeHybrid)); !slices.Equal(got, []string{"Pets"}) {
			t.Fatalf("hybrid with the embedder down: %v; want the lexical hit", got)
		}
		_, err := r.Search(context.Background(), u, "default", "cats", 10, ModeVector)
		wantCode(t, err, ferry.Invalid, "vector with the embedder refusing")
	})
}

func TestFusionWeights(t *testing.T) {
	// BM25: 1 far ahead, then 2 and 3 close; vectors: 3, 4, 1, with 3
	// and 4 close.
	lexical := []scored{{1, 10}, {2, 5}, {3, 4.8}, {5, 1}}
	near := []scored{{3, 0.9}, {4, 0.88}, {1, 0.5}}
	ids := func(s []scored) []int64 {
		out := make([]int64, len(s))
		for i, x := range s {
			out[i] = x.id
		}
		return out
	}
	cases := []struct {
		f    Fusion
		want []int64
	}{
		// Vectors off: BM25's order (its last hit, scaled to 0, ties
		// with the vectors' own hits, ordered by id).
		{Fusion{Vector: 0}, []int64{1, 2, 3, 4, 5}},
		// The default: a confident BM25 first stays first, and the
		// vectors settle what BM25 nearly tied (3 over 2); their own
		// hit stays below BM25's good ones.
		{DefaultFusion, []int64{1, 3, 2, 4, 5}},
		// Even: found by both beats found by one.
		{Fusion{Vector: 0.5}, []int64{3, 1, 4, 2, 5}},
		// Vectors only: their order, BM25's other hits after.
		{Fusion{Vector: 1}, []int64{3, 4, 1, 2, 5}},
	}
	for _, c := range cases {
		if got := ids(c.f.fuse(lexical, near)); !slices.Equal(got, c.want) {
			t.Errorf("%+v: %v; want %v", c.f, got, c.want)
		}
	}
	if got := NewRetriever(nil, nil, Fusion{Vector: 7}, nil).fusion.Vector; got != 1 {
		t.Errorf("a weight of 7 became %v; want 1", got)
	}
}

func TestVectorNearest(t *testing.T) {
	// Enough rows to be split across goroutines; the best by brute force.
	const n, dim = 40000, 8
	s := &vectorSet{dim: dim}
	for i := range n {
		v := make([]float32, dim)
		for j := range v {
			v[j] = float32(math.Sin(float64(i*dim + j)))
		}
		normalize(v)
		s.ids = append(s.ids, int64(i+1))
		s.data = append(s.data, v...)
	}
	q := []float32{1, 2, 3, 4, 5, 6, 7, 8}
	normalize(q)
	all := make([]scored, n)
	for i := range n {
		all[i] = scored{int64(i + 1), float64(dot(q, s.data[i*dim:(i+1)*dim]))}
	}
	sortScored(all)
	got := s.nearest(q, 25)
	if !slices.Equal(got, all[:25]) {
		t.Fatalf("nearest: %v; want %v", got[:3], all[:3])
	}
	if got := s.nearest(q[:4], 5); got != nil {
		t.Fatalf("a query of another dimension found %v", got)
	}
}

// TestVectorReusedChunkID checks that an instance's vectors follow a
// document that replaces the newest one by external_id: on SQLite its new
// chunks take the old chunks' ids, and must not keep their vectors.
func TestVectorReusedChunkID(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		emb, _ := embedder(t, synonyms)
		r := NewRetriever(New(st), emb, DefaultFusion, nil)
		u := newUser(t, st, "ann")
		addEmbedded(t, r, u, "default", Document{Title: "Traffic"}, "Cars queue at the lights.")
		addEmbedded(t, r, u, "default", Document{Title: "Pets", ExternalID: "pets"}, "Cats sleep most of the day.")
		find(t, r, u, "kitten", ModeVector) // loads the vectors
		addEmbedded(t, r, u, "default", Document{Title: "Pets", ExternalID: "pets"}, "Automobile repairs at noon.")
		for _, h := range find(t, r, u, "kitten", ModeVector) {
			if strings.Contains(h.Text, "Automobile") && h.Score > 0.5 {
				t.Fatalf("the new chunk scored %.2f for kitten: it kept the replaced chunk's vector", h.Score)
			}
		}
	})
}

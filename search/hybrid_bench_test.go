//go:build unix

package search

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/embed"
	"github.com/ferryhq/ferry/llm/llmtest"
	"github.com/ferryhq/ferry/store/storetest"
)

// benchDim is the embedding size of the latency benchmark: all-MiniLM's
// 384 (nomic-embed-text has 768, text-embedding-3-small 1,536; the cost
// of the vector scan grows with it).
const benchDim = 384

// BenchmarkSearch100k measures search at 100,000 synthetic chunks in one
// collection on each engine: 1,000 documents of 100 chunks, each chunk 20
// words drawn from a 20,000-word vocabulary with Zipf's law, and a
// random unit vector of benchDim per chunk. Each query is 4 words; the
// query's vector comes from the fake OpenAI upstream over HTTP, as in
// production. It reports the p50 and p99 of each mode, top 10, twice:
// "sql" ranks BM25 in SQL and scans the vectors with the plain Go loop
// (what search did before the in-memory postings and the AVX2 kernel),
// "memory" ranks in memory and scans with the kernel.
//
//	go test ./search -run '^$' -bench Search100k -benchtime 50x
func BenchmarkSearch100k(b *testing.B) {
	for _, engine := range storetest.Engines(b) {
		b.Run(engine, func(b *testing.B) { benchSearch100k(b, engine) })
	}
}

func benchSearch100k(b *testing.B, engine string) {
	ctx := context.Background()
	st := storetest.Open(b, engine)
	ix := New(st)
	up := llmtest.Start(b)
	rng := rand.New(rand.NewPCG(1, 2))
	up.SetEmbedding(func(string) []float32 { return randomUnit(rand.New(rand.NewPCG(rng.Uint64(), 3)), benchDim) })
	emb, err := embed.New(embed.Config{Model: "openai/bench", OpenAIBaseURL: up.OpenAIURL()})
	if err != nil {
		b.Fatal(err)
	}
	r := NewRetriever(ix, emb, DefaultFusion, nil)
	user := "u-bench"
	if err := st.CreateUser(ctx, &ferry.User{ID: user, Email: "bench@example.com", Name: "bench", Role: ferry.RoleUser}); err != nil {
		b.Fatal(err)
	}
	vocab := make([]string, 20000)
	for i := range vocab {
		vocab[i] = fmt.Sprintf("w%dx", i)
	}
	zipf := rand.NewZipf(rng, 1.1, 1, uint64(len(vocab)-1))
	words := func(n int) string {
		w := make([]string, n)
		for i := range w {
			w[i] = vocab[zipf.Uint64()]
		}
		return strings.Join(w, " ")
	}
	start := time.Now()
	// Ten documents a transaction, as an NDJSON upload comes.
	for d := 0; d < 1000; d += 10 {
		items := make([]Item, 10)
		for k := range items {
			chunks := make([]Chunk, 100)
			for i := range chunks {
				chunks[i] = Chunk{Page: 1, LastPage: 1, Text: words(20), Tokens: 30, Embedding: randomUnit(rng, benchDim)}
			}
			items[k] = Item{Document: Document{Title: fmt.Sprintf("doc %d", d+k)}, Chunks: chunks}
		}
		if _, err := ix.AddAll(ctx, user, "default", items); err != nil {
			b.Fatal(err)
		}
		for _, it := range items {
			if err := ix.SetEmbeddings(ctx, it.Chunks); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Logf("%s: 100,000 chunks stored in %v", engine, time.Since(start).Round(time.Second))
	if engine == "postgres" {
		// What autovacuum provides within minutes of a bulk load.
		if _, err := st.Reader().ExecContext(ctx, "VACUUM ANALYZE"); err != nil {
			b.Fatal(err)
		}
	}
	// Queries are 4 words of middling frequency (ranks 50 to 5,000), as
	// queries are once stopwords are gone: the head of a Zipf vocabulary
	// is in most chunks.
	queries := make([]string, 200)
	for i := range queries {
		w := make([]string, 4)
		for j := range w {
			w[j] = vocab[50+rng.IntN(4950)]
		}
		queries[i] = strings.Join(w, " ")
	}
	// The first vector search loads the collection's vectors; the first
	// lexical search starts loading its postings.
	start = time.Now()
	if _, err := r.Search(ctx, user, "default", queries[0], 10, ModeVector); err != nil {
		b.Fatal(err)
	}
	b.Logf("%s: vectors loaded in %v", engine, time.Since(start).Round(time.Millisecond))
	start = time.Now()
	if _, err := r.Search(ctx, user, "default", queries[0], 10, ModeLexical); err != nil {
		b.Fatal(err)
	}
	ix.lex.loads.Wait()
	coll, err := ix.collectionState(ctx, user, "default")
	if err != nil {
		b.Fatal(err)
	}
	set := ix.lex.get(coll)
	if set == nil {
		b.Fatal("the postings were not loaded")
	}
	postings := 0
	for _, pl := range set.terms {
		postings += len(pl.docs)
	}
	b.Logf("%s: postings loaded in %v: %d chunks, %d terms, %d postings, %.1f MB; vectors %.1f MB", engine,
		time.Since(start).Round(time.Millisecond), len(set.ids), len(set.terms), postings, float64(ix.lex.memory())/1e6,
		float64(benchDim*4+8)*float64(len(set.ids))/1e6)
	avx2 := useAVX2
	defer func() { useAVX2 = avx2 }()
	for _, path := range []string{"sql", "memory"} {
		if path == "sql" {
			ix.LexicalMemory, useAVX2 = 0, false
		} else {
			ix.LexicalMemory, useAVX2 = DefaultLexicalMemory, avx2
		}
		for _, mode := range []Mode{ModeLexical, ModeVector, ModeHybrid} {
			b.Run(path+"/"+string(mode), func(b *testing.B) {
				took := make([]time.Duration, 0, b.N)
				cpu0 := cpuTime()
				for i := 0; b.Loop(); i++ {
					t0 := time.Now()
					if _, err := r.Search(ctx, user, "default", queries[i%len(queries)], 10, mode); err != nil {
						b.Fatal(err)
					}
					took = append(took, time.Since(t0))
				}
				b.ReportMetric(float64(percentile(took, 50).Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(percentile(took, 99).Microseconds())/1000, "p99-ms")
				b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/1000/float64(len(took)), "cpu-ms/op")
			})
		}
	}
}

// randomUnit returns a random unit vector of dim.
func randomUnit(rng *rand.Rand, dim int) []float32 {
	v := make([]float32, dim)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	normalize(v)
	return v
}

// BenchmarkNearest100k measures the vector scan alone: the best 10 of
// 100,000 unit vectors of benchDim, in memory, on every CPU.
func BenchmarkNearest100k(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	s := &vectorSet{dim: benchDim}
	for i := range 100000 {
		s.ids = append(s.ids, int64(i+1))
		s.data = append(s.data, randomUnit(rng, benchDim)...)
	}
	q := randomUnit(rng, benchDim)
	avx2 := useAVX2
	defer func() { useAVX2 = avx2 }()
	for _, kernel := range []string{"go", "avx2"} {
		if kernel == "avx2" && !avx2 {
			continue
		}
		useAVX2 = kernel == "avx2"
		b.Run(kernel, func(b *testing.B) {
			cpu0 := cpuTime()
			for b.Loop() {
				s.nearest(q, 10)
			}
			b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/1000/float64(b.N), "cpu-ms/op")
		})
	}
}

// cpuTime is the CPU time the process has used, in user and system mode:
// on a loaded machine it tells the work done apart from the wait for a
// CPU.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

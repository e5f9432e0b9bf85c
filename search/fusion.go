package search

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"strings"

	"github.com/ferryhq/ferry"
)

// Mode says how a search ranks: by BM25, by vector, or both fused.
type Mode string

// The search modes. The empty Mode is ModeHybrid.
const (
	ModeHybrid  Mode = "hybrid"
	ModeLexical Mode = "lexical"
	ModeVector  Mode = "vector"
)

// Fusion weighs the two rankings of a hybrid search by a convex
// combination of their scores: each ranking's scores are scaled to 0..1
// over the chunks it returned (min-max), a chunk that a ranking did not
// return gets 0 there, and a chunk's score is
//
//	(1 - Vector) * BM25 + Vector * cosine
//
// Why not reciprocal rank fusion: it keeps only ranks, so a weak
// embedder's first hit counts as much as BM25's however far apart their
// scores; on SciFact with a weak embedder RRF lost nDCG@10 at every
// weight that let the vectors matter, while this combination held it (see
// BENCHMARKS.md).
type Fusion struct {
	// Vector is the vector ranking's share, 0 to 1; BM25 has the rest.
	Vector float64
}

// DefaultFusion is the weighting measured on SciFact with a weak embedder
// (see BENCHMARKS.md): hybrid is then as good as lexical; a strong
// embedder deserves more weight (FERRY_HYBRID_VECTOR_WEIGHT).
var DefaultFusion = Fusion{Vector: 0.1}

// Retriever searches an Index by BM25, by vector through an Embedder, or
// both fused, and embeds chunks for ingestion. Without an Embedder, hybrid
// search is lexical and vector search is refused. It is safe for
// concurrent use.
type Retriever struct {
	ix     *Index
	emb    Embedder
	fusion Fusion
	vc     *vectorCache
	log    *slog.Logger
}

// NewRetriever returns a Retriever over ix; emb nil means no embedder.
// f.Vector is kept within 0..1; log (nil: none) hears of an embedder
// failure that a hybrid search answered lexically.
func NewRetriever(ix *Index, emb Embedder, f Fusion, log *slog.Logger) *Retriever {
	f.Vector = min(1, max(0, f.Vector))
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Retriever{ix: ix, emb: emb, fusion: f, vc: newVectorCache(ix), log: log}
}

// HasEmbedder reports whether vector search is available.
func (r *Retriever) HasEmbedder() bool { return r.emb != nil }

// ParseMode returns the Mode s names; "" is ModeHybrid. Anything else is
// an Invalid error naming the field "mode".
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case "":
		return ModeHybrid, nil
	case ModeHybrid, ModeLexical, ModeVector:
		return m, nil
	}
	return "", ferry.InvalidField("mode", "must be hybrid, lexical or vector")
}

// embeddingText is what is embedded for a chunk: its document's title
// and its text, as the lexical index has it.
func embeddingText(title, text string) string {
	if title == "" {
		return text
	}
	return title + "\n\n" + text
}

// EmbedChunks sets the Embedding of each chunk of doc, through the
// embedder; it is ingestion's embedding stage, and Index.SetEmbeddings
// stores the vectors once Add has stored the chunks. Without an embedder
// it does nothing. Its errors are the embedder's.
func (r *Retriever) EmbedChunks(ctx context.Context, doc *Document, chunks []Chunk) error {
	if r.emb == nil || len(chunks) == 0 {
		return nil
	}
	texts := make([]string, len(chunks))
	for i, c := range chunks {
		texts[i] = embeddingText(doc.Title, c.Text)
	}
	vecs, err := r.emb.Embed(ctx, texts)
	if err != nil {
		return err
	}
	if len(vecs) != len(chunks) {
		return ferry.Errorf(ferry.Upstream, "the embedder returned %d vectors for %d texts", len(vecs), len(chunks))
	}
	for i := range chunks {
		chunks[i].Embedding = vecs[i]
	}
	return nil
}

// Search returns the topK chunks of the user's collection that best match
// query in mode (see Mode; "" is hybrid), best first, as Index.Lexical
// does. Hit.Score is BM25 in lexical mode, the cosine in vector mode and
// the fused score (see Fusion) in hybrid mode. Without an embedder hybrid
// is lexical, and vector is Invalid ("no embedder configured; set
// FERRY_EMBED_MODEL"); when the embedder fails on the query, hybrid
// answers lexically and vector returns its error. Otherwise it fails as
// Lexical does: Invalid for an empty query or topK outside 1..MaxTopK
// and NotFound for a collection the user does not have.
func (r *Retriever) Search(ctx context.Context, userID, collection, query string, topK int, mode Mode) ([]Hit, error) {
	if mode == "" {
		mode = ModeHybrid
	}
	if _, err := ParseMode(string(mode)); err != nil {
		return nil, err
	}
	if mode == ModeLexical || (mode == ModeHybrid && r.emb == nil) {
		return r.ix.Lexical(ctx, userID, collection, query, topK)
	}
	if r.emb == nil {
		return nil, &ferry.Error{Code: ferry.Invalid, Message: errNoEmbedder.Error(),
			Fields: map[string]string{"mode": errNoEmbedder.Error()}}
	}
	if err := checkSearch(query, topK); err != nil {
		return nil, err
	}
	if mode == ModeVector {
		return r.vector(ctx, userID, collection, query, topK)
	}
	return r.hybrid(ctx, userID, collection, query, topK)
}

// depth is how many hits of each ranking a hybrid search fuses for topK.
func depth(topK int) int { return min(MaxTopK, max(50, 2*topK)) }

// hybrid fuses the lexical and vector rankings of query. The query is
// embedded while BM25 ranks; only the fused topK chunks are read from the
// database, with their text, and given snippets.
func (r *Retriever) hybrid(ctx context.Context, userID, collection, query string, topK int) ([]Hit, error) {
	coll, err := r.ix.collectionState(ctx, userID, collection)
	if err != nil {
		return nil, err
	}
	if coll == nil {
		return []Hit{}, nil
	}
	var q []float32
	var embedErr error
	embedded := make(chan struct{})
	go func() {
		defer close(embedded)
		q, embedErr = r.embedQuery(ctx, query)
	}()
	n := depth(topK)
	lexical, err := r.ix.lexicalRank(ctx, coll, query, n)
	<-embedded
	if err != nil {
		return nil, err
	}
	var near []scored
	if embedErr == nil {
		near, err = r.nearestTo(ctx, coll, q, n)
		if err != nil {
			return nil, err
		}
	} else {
		if ctx.Err() != nil {
			return nil, embedErr
		}
		r.log.Warn("search: the embedder failed; answering lexically", "error", embedErr)
		return r.ix.hits(ctx, lexical[:min(topK, len(lexical))], query)
	}
	fused := r.fusion.fuse(lexical, near)
	return r.ix.hits(ctx, fused[:min(topK, len(fused))], query)
}

// fuse ranks the chunks of both rankings (each best first) as Fusion
// says, best first, ties by id.
func (f Fusion) fuse(lexical, near []scored) []scored {
	score := make(map[int64]float64, len(lexical)+len(near))
	if len(lexical) > 0 {
		hi, lo := lexical[0].score, lexical[len(lexical)-1].score
		for _, h := range lexical {
			score[h.id] += (1 - f.Vector) * scale(h.score, lo, hi)
		}
	}
	if len(near) > 0 {
		hi, lo := near[0].score, near[len(near)-1].score
		for _, s := range near {
			score[s.id] += f.Vector * scale(s.score, lo, hi)
		}
	}
	out := make([]scored, 0, len(score))
	for id, s := range score {
		out = append(out, scored{id, s})
	}
	sortScored(out)
	return out
}

// scale maps x from lo..hi to 0..1; a ranking whose scores are all equal
// gives 1.
func scale(x, lo, hi float64) float64 {
	if hi <= lo {
		return 1
	}
	return (x - lo) / (hi - lo)
}

// vector returns the topK chunks nearest query.
func (r *Retriever) vector(ctx context.Context, userID, collection, query string, topK int) ([]Hit, error) {
	coll, err := r.ix.collectionState(ctx, userID, collection)
	if err != nil {
		return nil, err
	}
	if coll == nil {
		return []Hit{}, nil
	}
	q, err := r.embedQuery(ctx, query)
	if err != nil {
		return nil, err
	}
	near, err := r.nearestTo(ctx, coll, q, topK)
	if err != nil {
		return nil, err
	}
	return r.ix.hits(ctx, near, query)
}

// embedQuery returns the unit vector of query.
func (r *Retriever) embedQuery(ctx context.Context, query string) ([]float32, error) {
	vecs, err := r.emb.Embed(ctx, []string{query})
	if err != nil {
		return nil, err
	}
	if len(vecs) != 1 {
		return nil, ferry.Errorf(ferry.Upstream, "the embedder returned %d vectors for 1 text", len(vecs))
	}
	q := vecs[0]
	normalize(q)
	return q, nil
}

// nearestTo returns the k chunks of the collection nearest the unit
// vector q, from this instance's copy of the vectors, brought up to date
// first.
func (r *Retriever) nearestTo(ctx context.Context, coll *collState, q []float32, k int) ([]scored, error) {
	set, err := r.vc.get(ctx, coll.id, coll.version)
	if err != nil {
		return nil, err
	}
	return set.nearest(q, k), nil
}

// hitsByID returns the hits for the chunks with ids, in no order; ids of
// chunks that no longer exist are left out. Snippet and Score are unset.
func (ix *Index) hitsByID(ctx context.Context, ids []int64) ([]Hit, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	marks := make([]string, len(ids))
	args := make([]any, len(ids))
	for i, id := range ids {
		marks[i] = fmt.Sprintf("$%d", i+1)
		args[i] = id
	}
	rows, err := ix.st.Reader().QueryContext(ctx, `SELECT c.id, c.document_id, d.external_id, d.title, c.page, c.last_page,
		c.ordinal, c.text FROM chunks c JOIN documents d ON d.id = c.document_id WHERE c.id IN (`+strings.Join(marks, ", ")+`)`, args...)
	if err != nil {
		return nil, fmt.Errorf("search: read chunks: %w", err)
	}
	defer rows.Close()
	var out []Hit
	for rows.Next() {
		var h Hit
		var externalID sql.NullString
		if err := rows.Scan(&h.ChunkID, &h.DocumentID, &externalID, &h.Title, &h.Page, &h.LastPage, &h.Ordinal, &h.Text); err != nil {
			return nil, fmt.Errorf("search: read chunks: %w", err)
		}
		h.ExternalID = externalID.String
		out = append(out, h)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("search: read chunks: %w", err)
	}
	return out, nil
}

package search

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
)

// Embedder turns texts into vectors; package embed has the OpenAI- and
// Ollama-compatible ones. Embed returns one vector per text, in order,
// all of one length; its errors are *ferry.Error as llm's adapters return
// them (Upstream, RateLimited, Unavailable, Timeout, Invalid).
type Embedder interface {
	Embed(ctx context.Context, texts []string) ([][]float32, error)
}

// EncodeVector returns v as stored in chunks.embedding: each float32
// little-endian, one after the other.
func EncodeVector(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

// DecodeVector appends to dst the vector EncodeVector made b from; b of
// a length not a multiple of 4 is an error.
func DecodeVector(dst []float32, b []byte) ([]float32, error) {
	if len(b)%4 != 0 {
		return dst, fmt.Errorf("embedding of %d bytes is not float32s", len(b))
	}
	for i := 0; i < len(b); i += 4 {
		dst = append(dst, math.Float32frombits(binary.LittleEndian.Uint32(b[i:])))
	}
	return dst, nil
}

// normalize scales v to unit length in place, so that a dot product of
// two normalised vectors is their cosine. A zero vector stays zero.
func normalize(v []float32) {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	if s == 0 {
		return
	}
	inv := float32(1 / math.Sqrt(s))
	for i := range v {
		v[i] *= inv
	}
}

// SetEmbeddings stores the Embedding of each chunk that has both an ID
// (Add gave it one) and an Embedding, normalised, and marks the chunks'
// collection changed so that every instance's vector search sees them;
// their document, when Add stored it as StatusEmbedding, becomes
// StatusIndexed in the same transaction. Chunks without either are left
// as they are. The chunks are one document's.
func (ix *Index) SetEmbeddings(ctx context.Context, chunks []Chunk) error {
	var first int64
	for _, c := range chunks {
		if c.ID != 0 && len(c.Embedding) > 0 {
			first = c.ID
			break
		}
	}
	if first == 0 {
		return nil
	}
	err := ix.st.Tx(ctx, func(tx *sql.Tx) error {
		for _, c := range chunks {
			if c.ID == 0 || len(c.Embedding) == 0 {
				continue
			}
			v := slices.Clone(c.Embedding)
			normalize(v)
			if _, err := tx.ExecContext(ctx, `UPDATE chunks SET embedding = $1 WHERE id = $2`, EncodeVector(v), c.ID); err != nil {
				return err
			}
		}
		at := now()
		if _, err := tx.ExecContext(ctx, `UPDATE documents SET status = $1, updated_at = $2
			WHERE status = $3 AND id = (SELECT document_id FROM chunks WHERE id = $4)`,
			string(StatusIndexed), at, string(StatusEmbedding), first); err != nil {
			return err
		}
		// updated_at is the collection's version for vectorCache: a new
		// value makes every instance look for the new vectors.
		_, err := tx.ExecContext(ctx, `UPDATE collections SET updated_at = $1 WHERE id =
			(SELECT d.collection_id FROM chunks c JOIN documents d ON d.id = c.document_id WHERE c.id = $2)`, at, first)
		return err
	})
	if err != nil {
		return fmt.Errorf("store embeddings: %w", err)
	}
	return nil
}

// collectionVersion is what tells a collection's vectors changed: Add,
// Delete and SetEmbeddings all set updated_at, and chunks changes with
// most of them. Instances compare it for equality only, so their clocks
// need not agree.
type collectionVersion struct {
	updated time.Time
	chunks  int64
}

// vectorSet is one collection's vectors as one instance holds them: ids[i]
// is the chunk whose unit vector is data[i*dim:(i+1)*dim]. A vectorSet is
// never changed once built; a reload builds a new one.
type vectorSet struct {
	version collectionVersion
	dim     int
	ids     []int64
	data    []float32
	// stamps are the chunks' documents' updated_at, in microseconds: a
	// chunk id that SQLite gave again to a new chunk (see lexSet.stamps)
	// comes with a new stamp.
	stamps []int64
	used   time.Time
}

// vectorCache holds the vectors of the collections searched on this
// instance, in memory, and keeps them coherent with the database: before
// each search it reads the collection's version (one row by primary key)
// and, when it changed, reloads what changed — the ids of the chunks with
// an embedding, then the vectors of the ids it does not hold. Chunks are
// never changed in place (a document replaced gets new chunks), so an id
// it holds keeps its vector.
type vectorCache struct {
	ix *Index

	mu   sync.Mutex
	sets map[int64]*vectorSet
	// loading serialises reloads per collection, so that a burst of
	// searches after a change reloads once.
	loading map[int64]*sync.Mutex
}

// evictAfter is how long a collection's vectors stay in memory unsearched
// (a deleted collection's included).
const evictAfter = 15 * time.Minute

func newVectorCache(ix *Index) *vectorCache {
	return &vectorCache{ix: ix, sets: map[int64]*vectorSet{}, loading: map[int64]*sync.Mutex{}}
}

// get returns the collection's vectors as of version v, reloading what
// changed when the set held is of another version.
func (vc *vectorCache) get(ctx context.Context, collID int64, v collectionVersion) (*vectorSet, error) {
	vc.mu.Lock()
	set := vc.sets[collID]
	if set != nil && set.version == v {
		set.used = time.Now()
		vc.mu.Unlock()
		return set, nil
	}
	lock := vc.loading[collID]
	if lock == nil {
		lock = &sync.Mutex{}
		vc.loading[collID] = lock
	}
	vc.mu.Unlock()

	lock.Lock()
	defer lock.Unlock()
	vc.mu.Lock()
	set = vc.sets[collID]
	vc.mu.Unlock()
	if set != nil && set.version == v {
		return set, nil
	}
	next, err := vc.ix.loadVectors(ctx, collID, set)
	if err != nil {
		return nil, err
	}
	// v was read before the vectors, so a change in between makes the
	// next search reload again rather than miss it.
	next.version, next.used = v, time.Now()
	vc.mu.Lock()
	defer vc.mu.Unlock()
	vc.sets[collID] = next
	for id, s := range vc.sets {
		if time.Since(s.used) > evictAfter {
			delete(vc.sets, id)
			delete(vc.loading, id)
		}
	}
	return next, nil
}

// loadVectors returns the collection's vectors, reusing those of old (nil:
// none) for the chunks still there.
func (ix *Index) loadVectors(ctx context.Context, collID int64, old *vectorSet) (*vectorSet, error) {
	if old == nil || len(old.ids) == 0 {
		return ix.readVectors(ctx, `SELECT c.id, c.embedding, d.updated_at FROM chunks c JOIN documents d ON d.id = c.document_id
			WHERE d.collection_id = $1 AND c.embedding IS NOT NULL ORDER BY c.id`, collID)
	}
	ids, stamps, err := ix.vectorIDs(ctx, collID)
	if err != nil {
		return nil, err
	}
	held := make(map[int64]int, len(old.ids))
	for i, id := range old.ids {
		held[id] = i
	}
	next := &vectorSet{dim: old.dim, ids: make([]int64, 0, len(ids)), data: make([]float32, 0, len(ids)*old.dim)}
	var missing []int64
	for k, id := range ids {
		if i, ok := held[id]; ok && old.stamps[i] == stamps[k] {
			next.ids = append(next.ids, id)
			next.stamps = append(next.stamps, stamps[k])
			next.data = append(next.data, old.data[i*old.dim:(i+1)*old.dim]...)
		} else {
			missing = append(missing, id)
		}
	}
	for len(missing) > 0 {
		n := min(len(missing), 500)
		marks := make([]string, n)
		args := make([]any, n)
		for i, id := range missing[:n] {
			marks[i] = fmt.Sprintf("$%d", i+1)
			args[i] = id
		}
		add, err := ix.readVectors(ctx, `SELECT c.id, c.embedding, d.updated_at FROM chunks c JOIN documents d ON d.id = c.document_id
			WHERE c.embedding IS NOT NULL AND c.id IN (`+strings.Join(marks, ", ")+`)`, args...)
		if err != nil {
			return nil, err
		}
		next.merge(add)
		missing = missing[n:]
	}
	return next, nil
}

// merge appends add's vectors to s; those of another length than s's
// first are left out (embeddings of another model).
func (s *vectorSet) merge(add *vectorSet) {
	if s.dim == 0 {
		s.dim = add.dim
	}
	if add.dim != s.dim {
		return
	}
	s.ids = append(s.ids, add.ids...)
	s.stamps = append(s.stamps, add.stamps...)
	s.data = append(s.data, add.data...)
}

// vectorIDs returns the ids of the collection's chunks that have an
// embedding, and their stamps (see vectorSet.stamps).
func (ix *Index) vectorIDs(ctx context.Context, collID int64) (ids, stamps []int64, err error) {
	rows, err := ix.st.Reader().QueryContext(ctx, `SELECT c.id, d.updated_at FROM chunks c JOIN documents d ON d.id = c.document_id
		WHERE d.collection_id = $1 AND c.embedding IS NOT NULL`, collID)
	if err != nil {
		return nil, nil, fmt.Errorf("search: read vector ids: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var at time.Time
		if err := rows.Scan(&id, &at); err != nil {
			return nil, nil, fmt.Errorf("search: read vector ids: %w", err)
		}
		ids, stamps = append(ids, id), append(stamps, at.UnixMicro())
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("search: read vector ids: %w", err)
	}
	return ids, stamps, nil
}

// readVectors runs query, which selects (id, embedding, document's
// updated_at) rows, and returns
// them as a vectorSet of the first row's dimension; rows of another are
// left out.
func (ix *Index) readVectors(ctx context.Context, query string, args ...any) (*vectorSet, error) {
	rows, err := ix.st.Reader().QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("search: read vectors: %w", err)
	}
	defer rows.Close()
	s := &vectorSet{}
	var raw []byte
	for rows.Next() {
		var id int64
		var at time.Time
		if err := rows.Scan(&id, &raw, &at); err != nil {
			return nil, fmt.Errorf("search: read vectors: %w", err)
		}
		if len(raw) == 0 || len(raw)%4 != 0 || (s.dim != 0 && len(raw)/4 != s.dim) {
			continue
		}
		if s.dim == 0 {
			s.dim = len(raw) / 4
		}
		n := len(s.data)
		s.data, _ = DecodeVector(s.data, raw)
		normalize(s.data[n:])
		s.ids = append(s.ids, id)
		s.stamps = append(s.stamps, at.UnixMicro())
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("search: read vectors: %w", err)
	}
	return s, nil
}

// scored is a chunk with its score in one ranking.
type scored struct {
	id    int64
	score float64
}

// nearest returns the k chunks of s whose vectors have the largest dot
// product with q (a unit vector: their cosine), best first, ties by id.
// Large sets are split across the CPUs.
func (s *vectorSet) nearest(q []float32, k int) []scored {
	if s.dim != len(q) || len(s.ids) == 0 {
		return nil
	}
	n := len(s.ids)
	parts := min(runtime.GOMAXPROCS(0), max(1, n/16384))
	tops := make([][]scored, parts)
	var wg sync.WaitGroup
	for p := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tops[p] = s.topRange(q, k, p*n/parts, (p+1)*n/parts)
		}()
	}
	wg.Wait()
	all := slices.Concat(tops...)
	sortScored(all)
	return all[:min(k, len(all))]
}

// topRange returns the best k of rows from..to, unordered.
func (s *vectorSet) topRange(q []float32, k, from, to int) []scored {
	h := make(minHeap, 0, k)
	for i := from; i < to; i++ {
		sc := float64(dot(q, s.data[i*s.dim:(i+1)*s.dim]))
		if len(h) < k {
			h.push(scored{s.ids[i], sc})
		} else if sc > h[0].score {
			h[0] = scored{s.ids[i], sc}
			h.down(0)
		}
	}
	return h
}

// dotGeneric returns the dot product of a and b, of one length, in plain
// Go with four accumulators (about two billion multiply-adds a second per
// core); dot uses it where the AVX2 kernel cannot run.
func dotGeneric(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return s0 + s1 + s2 + s3
}

// sortScored orders by score, best first, then by id.
func sortScored(s []scored) {
	slices.SortFunc(s, func(a, b scored) int {
		switch {
		case a.score > b.score:
			return -1
		case a.score < b.score:
			return 1
		}
		return int(a.id - b.id)
	})
}

// minHeap keeps the best k scores seen, the worst of them at the root.
type minHeap []scored

func (h *minHeap) push(x scored) {
	*h = append(*h, x)
	s := *h
	for i := len(s) - 1; i > 0; {
		p := (i - 1) / 2
		if !worse(s[i], s[p]) {
			break
		}
		s[i], s[p] = s[p], s[i]
		i = p
	}
}

func (h minHeap) down(i int) {
	for {
		l, r, m := 2*i+1, 2*i+2, i
		if l < len(h) && worse(h[l], h[m]) {
			m = l
		}
		if r < len(h) && worse(h[r], h[m]) {
			m = r
		}
		if m == i {
			return
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}

// worse reports whether a ranks below b.
func worse(a, b scored) bool {
	return a.score < b.score || (a.score == b.score && a.id > b.id)
}

// errNoEmbedder is the refusal of a vector search without an embedder.
var errNoEmbedder = errors.New("no embedder configured; set FERRY_EMBED_MODEL")

package search

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"
)

// The lexical index in memory. The postings table is the source of truth:
// durable, shared by every instance, and what a search reads until this
// instance holds a current copy of its collection's postings. Reading them
// from SQL costs in proportion to how many postings the query's terms
// have (at 100,000 chunks of real text, 50–100 ms a search); in memory the
// same BM25 sum over the same postings takes well under a millisecond, so
// every posting is still scored and the ranking is the one SQL gives
// (TestLexicalMemoryMatchesSQL): no early termination is needed at this
// size.
//
// A copy is kept coherent the way the vectors are (vectorCache): a search
// reads its collection's version (updated_at and chunk count, which every
// change sets) with the collection's statistics, as it must anyway, and
// uses the copy only when it is of that very version; so a document
// deleted or added through any instance is seen by the next search on
// every instance. Otherwise the search ranks in SQL and the copy is
// brought up to date in the background: the ids of the collection's
// chunks, then the postings of the chunks it lacks; chunks are never
// changed in place, so a chunk it holds keeps its postings.

// DefaultLexicalMemory is how much memory an Index gives the in-memory
// postings of all its collections by default: 512 MiB holds about
// 80 million postings (a posting is 6 bytes), some 800,000 chunks of
// abstract-sized text.
const DefaultLexicalMemory = 512 << 20

// lexRetry is how long a collection whose postings could not be loaded
// is searched in SQL before loading is tried again.
const lexRetry = time.Minute

// loadTimeout bounds one background load.
const loadTimeout = 10 * time.Minute

// postingList is one term's postings in a collection: the positions
// (in lexSet.ids) of the chunks that hold it, ascending, and how often
// each holds it.
type postingList struct {
	docs []uint32
	tfs  []uint16
}

// lexSet is one collection's postings as one instance holds them. It is
// never changed once built: a reload builds a new one, sharing the lists
// that did not change.
type lexSet struct {
	version collectionVersion
	// ids are the collection's chunks, ascending; lens their lengths in
	// terms, as chunk_terms.len has them; stamps their documents'
	// updated_at, in microseconds: SQLite gives a new row the highest id
	// plus one, so a document that replaces the newest one (by
	// external_id, keeping its document id) gets its old chunks' ids, and
	// only the stamp tells the new chunks from the old.
	ids    []int64
	lens   []uint32
	stamps []int64
	terms  map[string]*postingList
	bytes  int64
	used   time.Time
}

// lexCache holds the in-memory postings of the collections searched on
// this instance, within Index.LexicalMemory bytes: the least recently
// searched collections leave first, any unsearched for evictAfter, and a
// collection too large for the whole budget is always searched in SQL.
type lexCache struct {
	ix *Index

	mu      sync.Mutex
	sets    map[int64]*lexSet
	loading map[int64]bool
	failed  map[int64]time.Time
	total   int64
	// loads lets tests wait for the background loads.
	loads sync.WaitGroup
}

func newLexCache(ix *Index) *lexCache {
	return &lexCache{ix: ix, sets: map[int64]*lexSet{}, loading: map[int64]bool{}, failed: map[int64]time.Time{}}
}

// get returns the collection's postings if this instance holds them at
// the collection's version, and nil otherwise, after starting a
// background load unless one is running or the collection cannot fit.
func (lc *lexCache) get(coll *collState) *lexSet {
	budget := lc.ix.LexicalMemory
	if budget <= 0 {
		return nil
	}
	lc.mu.Lock()
	defer lc.mu.Unlock()
	set := lc.sets[coll.id]
	if set != nil && set.version == coll.version {
		set.used = time.Now()
		return set
	}
	if lc.loading[coll.id] || time.Since(lc.failed[coll.id]) < lexRetry {
		return nil
	}
	// chunk_terms has at most one row per term occurrence: an upper
	// bound, known before anything is read.
	if 6*coll.terms+12*coll.chunks > budget {
		return nil
	}
	lc.loading[coll.id] = true
	lc.loads.Add(1)
	go func() {
		defer lc.loads.Done()
		lc.load(coll.id, coll.version, set)
	}()
	return nil
}

// load brings the collection's postings to version v (read before them:
// a change in between makes the next search load again rather than miss
// it), from old (nil: none).
func (lc *lexCache) load(collID int64, v collectionVersion, old *lexSet) {
	ctx, cancel := context.WithTimeout(context.Background(), loadTimeout)
	defer cancel()
	next, err := lc.ix.loadPostings(ctx, collID, old)
	lc.mu.Lock()
	defer lc.mu.Unlock()
	delete(lc.loading, collID)
	if err != nil {
		// Searched in SQL meanwhile; nobody waits for this error.
		lc.failed[collID] = time.Now()
		return
	}
	delete(lc.failed, collID)
	next.version, next.used = v, time.Now()
	if prev := lc.sets[collID]; prev != nil {
		lc.total -= prev.bytes
	}
	lc.sets[collID] = next
	lc.total += next.bytes
	for id, s := range lc.sets {
		if time.Since(s.used) > evictAfter {
			lc.drop(id)
		}
	}
	for lc.total > lc.ix.LexicalMemory && len(lc.sets) > 0 {
		var lru int64
		var at time.Time
		for id, s := range lc.sets {
			if at.IsZero() || s.used.Before(at) {
				lru, at = id, s.used
			}
		}
		lc.drop(lru)
	}
}

// drop forgets a collection's postings; lc.mu is held.
func (lc *lexCache) drop(collID int64) {
	if s := lc.sets[collID]; s != nil {
		lc.total -= s.bytes
		delete(lc.sets, collID)
	}
}

// memory returns how many bytes the postings held take (an estimate of
// what they keep reachable).
func (lc *lexCache) memory() int64 {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	return lc.total
}

// rank returns the topK chunks by BM25 for the query terms in order (each
// once, qtf[t] the times the query holds it), best first, ties by id: the
// sum rankSQL computes, over the same postings, term by term into one
// accumulator per chunk. n and avgLen are the collection's statistics as
// its row has them.
func (s *lexSet) rank(p BM25, n int64, avgLen float64, order []string, qtf map[string]int, topK int) []scored {
	c1, c2 := p.consts(avgLen)
	acc := getAccumulator(len(s.ids))
	defer putAccumulator(acc)
	var touched []uint32
	for _, t := range order {
		pl := s.terms[t]
		if pl == nil {
			continue
		}
		w := float64(qtf[t]) * idf(n, int64(len(pl.docs)))
		if !(w > 0) {
			// Only while the statistics lag the postings (n < df).
			continue
		}
		tfs := pl.tfs[:len(pl.docs)]
		for i, d := range pl.docs {
			tf := float64(tfs[i])
			// Every term's share is positive: 0 is "not yet scored".
			if acc[d] == 0 {
				touched = append(touched, d)
			}
			acc[d] += w * tf / (tf + c1 + c2*float64(s.lens[d]))
		}
	}
	h := make(minHeap, 0, min(topK, len(touched)))
	for _, d := range touched {
		sc := scored{s.ids[d], acc[d]}
		acc[d] = 0
		if len(h) < topK {
			h.push(sc)
		} else if worse(h[0], sc) {
			h[0] = sc
			h.down(0)
		}
	}
	out := []scored(h)
	sortScored(out)
	return out
}

// accumulators are rank's per-chunk scores, all 0 between uses.
var accumulators sync.Pool

func getAccumulator(n int) []float64 {
	if p, ok := accumulators.Get().(*[]float64); ok && cap(*p) >= n {
		return (*p)[:n]
	}
	return make([]float64, n)
}

func putAccumulator(acc []float64) { accumulators.Put(&acc) }

// errTFTooLarge refuses a collection with a chunk that holds a term more
// than a posting can count; it is searched in SQL.
var errTFTooLarge = errors.New("a term occurs more than 65,535 times in one chunk")

// loadPostings returns the collection's postings, reusing old's (nil:
// none) for the chunks it holds that are still there.
func (ix *Index) loadPostings(ctx context.Context, collID int64, old *lexSet) (*lexSet, error) {
	ids, lens, stamps, err := ix.chunkLengths(ctx, collID)
	if err != nil {
		return nil, err
	}
	next := &lexSet{ids: ids, lens: lens, stamps: stamps}
	if old == nil {
		old = &lexSet{}
	}
	// remap[i] is the new position of old.ids[i], -1 when it is gone;
	// both lists ascend.
	remap := make([]int32, len(old.ids))
	var missing []int64
	same := true // every chunk held keeps its position
	i := 0
	for pos, id := range ids {
		for i < len(old.ids) && old.ids[i] < id {
			remap[i], same = -1, false
			i++
		}
		if i < len(old.ids) && old.ids[i] == id {
			if old.stamps[i] == stamps[pos] {
				remap[i] = int32(pos)
				same = same && pos == i
				i++
				continue
			}
			// The id of a chunk gone, given to a new one.
			remap[i], same = -1, false
			i++
		}
		missing = append(missing, id)
	}
	for ; i < len(old.ids); i++ {
		remap[i], same = -1, false
	}
	owned := map[string]bool{}
	if len(old.ids) == 0 || len(missing) > len(ids)/2 {
		next.terms = map[string]*postingList{}
		err = ix.readPostings(ctx, next, owned, `SELECT chunk_id, term, tf FROM chunk_terms WHERE collection_id = $1`, collID)
	} else {
		next.terms = make(map[string]*postingList, len(old.terms))
		for t, pl := range old.terms {
			if same {
				next.terms[t] = pl
				continue
			}
			np := &postingList{docs: make([]uint32, 0, len(pl.docs)), tfs: make([]uint16, 0, len(pl.docs))}
			for k, d := range pl.docs {
				if p := remap[d]; p >= 0 {
					np.docs = append(np.docs, uint32(p))
					np.tfs = append(np.tfs, pl.tfs[k])
				}
			}
			if len(np.docs) > 0 {
				next.terms[t] = np
				owned[t] = true
			}
		}
		for len(missing) > 0 && err == nil {
			n := min(len(missing), 500)
			marks := make([]string, n)
			args := make([]any, n)
			for k, id := range missing[:n] {
				marks[k] = fmt.Sprintf("$%d", k+1)
				args[k] = id
			}
			err = ix.readPostings(ctx, next, owned, `SELECT chunk_id, term, tf FROM chunk_terms WHERE chunk_id IN (`+
				strings.Join(marks, ", ")+`)`, args...)
			missing = missing[n:]
		}
	}
	if err != nil {
		return nil, err
	}
	next.bytes = int64(20 * len(next.ids))
	for t, pl := range next.terms {
		if owned[t] {
			sortPostings(pl)
		}
		// The map entry, the string and the list's header besides the
		// postings.
		next.bytes += int64(len(t)) + 96 + 6*int64(cap(pl.docs))
	}
	return next, nil
}

// chunkLengths returns the ids of the collection's chunks, ascending,
// their lengths in terms and their documents' updated_at (see
// lexSet.stamps).
func (ix *Index) chunkLengths(ctx context.Context, collID int64) (ids []int64, lens []uint32, stamps []int64, err error) {
	rows, err := ix.st.Reader().QueryContext(ctx, `SELECT c.id, c.terms, d.updated_at FROM chunks c
		JOIN documents d ON d.id = c.document_id WHERE d.collection_id = $1`, collID)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("search: read chunk ids: %w", err)
	}
	defer rows.Close()
	type chunkLen struct {
		id, stamp int64
		len       uint32
	}
	var all []chunkLen
	for rows.Next() {
		var c chunkLen
		var at time.Time
		if err := rows.Scan(&c.id, &c.len, &at); err != nil {
			return nil, nil, nil, fmt.Errorf("search: read chunk ids: %w", err)
		}
		c.stamp = at.UnixMicro()
		all = append(all, c)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, nil, fmt.Errorf("search: read chunk ids: %w", err)
	}
	slices.SortFunc(all, func(a, b chunkLen) int { return cmp.Compare(a.id, b.id) })
	ids, lens, stamps = make([]int64, len(all)), make([]uint32, len(all)), make([]int64, len(all))
	for i, c := range all {
		ids[i], lens[i], stamps[i] = c.id, c.len, c.stamp
	}
	return ids, lens, stamps, nil
}

// readPostings adds to s the postings that query selects as (chunk_id,
// term, tf) rows, leaving out chunks s does not hold (added after its ids
// were read). A list that s shares with an older set is copied before it
// is changed; owned records the lists s has of its own.
func (ix *Index) readPostings(ctx context.Context, s *lexSet, owned map[string]bool, query string, args ...any) error {
	rows, err := ix.st.Reader().QueryContext(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("search: read postings: %w", err)
	}
	defer rows.Close()
	var term sql.RawBytes
	for rows.Next() {
		var id, tf int64
		if err := rows.Scan(&id, &term, &tf); err != nil {
			return fmt.Errorf("search: read postings: %w", err)
		}
		pos, ok := slices.BinarySearch(s.ids, id)
		if !ok {
			continue
		}
		if tf > math.MaxUint16 || tf < 1 {
			return errTFTooLarge
		}
		pl := s.terms[string(term)]
		if pl == nil || !owned[string(term)] {
			t := string(term)
			if pl == nil {
				pl = &postingList{}
			} else {
				pl = &postingList{docs: slices.Clone(pl.docs), tfs: slices.Clone(pl.tfs)}
			}
			s.terms[t], owned[t] = pl, true
		}
		pl.docs = append(pl.docs, uint32(pos))
		pl.tfs = append(pl.tfs, uint16(tf))
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("search: read postings: %w", err)
	}
	return nil
}

// sortPostings orders a list by position, unless it is in order already
// (as a full load in primary-key order and chunks added after the rest
// leave it).
func sortPostings(pl *postingList) {
	if slices.IsSorted(pl.docs) {
		pl.docs, pl.tfs = slices.Clip(pl.docs), slices.Clip(pl.tfs)
		return
	}
	type posting struct {
		doc uint32
		tf  uint16
	}
	ps := make([]posting, len(pl.docs))
	for i := range ps {
		ps[i] = posting{pl.docs[i], pl.tfs[i]}
	}
	slices.SortFunc(ps, func(a, b posting) int { return cmp.Compare(a.doc, b.doc) })
	docs, tfs := make([]uint32, len(ps)), make([]uint16, len(ps))
	for i, p := range ps {
		docs[i], tfs[i] = p.doc, p.tf
	}
	pl.docs, pl.tfs = docs, tfs
}

package search

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"strings"
	"unicode/utf8"

	"github.com/ferryhq/ferry"
)

// MaxTopK is the most hits one search returns.
const MaxTopK = 1000

// Hit is one chunk that a search found, with what a citation needs.
type Hit struct {
	ChunkID    int64
	DocumentID string
	ExternalID string
	Title      string
	// Page and LastPage are the pages the chunk spans; Ordinal is its
	// place in the document.
	Page, LastPage int
	Ordinal        int
	// Text is the whole chunk; Snippet the part of it, on one line, that
	// holds most of the query's words.
	Text    string
	Snippet string
	// Score is the chunk's BM25 score: higher is better; it compares hits
	// of one search only.
	Score float64
}

// Lexical returns the topK chunks of the user's collection that best match
// query by BM25, best first (ties by the order they were added). Every
// query term is optional: a chunk that holds any of them is a candidate,
// and rarer terms weigh more. A query with no searchable term (only
// stopwords or punctuation) finds nothing. It fails with Invalid for an
// empty query or topK outside 1..MaxTopK, and NotFound for a collection
// that the user does not have (DefaultCollection, until used, is empty).
func (ix *Index) Lexical(ctx context.Context, userID, collection, query string, topK int) ([]Hit, error) {
	if err := checkSearch(query, topK); err != nil {
		return nil, err
	}
	coll, err := ix.collectionState(ctx, userID, collection)
	if err != nil {
		return nil, err
	}
	if coll == nil {
		return []Hit{}, nil
	}
	ranked, err := ix.lexicalRank(ctx, coll, query, topK)
	if err != nil {
		return nil, err
	}
	return ix.hits(ctx, ranked, query)
}

// checkSearch returns the Invalid error for an empty query or a topK
// outside 1..MaxTopK, or nil.
func checkSearch(query string, topK int) error {
	if strings.TrimSpace(query) == "" {
		return ferry.InvalidField("query", "must not be empty")
	}
	if topK < 1 || topK > MaxTopK {
		return ferry.InvalidField("top_k", fmt.Sprintf("must be between 1 and %d", MaxTopK))
	}
	return nil
}

// collState is what a search reads of its collection first, in one row by
// key: its id, BM25's statistics, and its version, which tells whether
// this instance's in-memory copies (postings and vectors) are current.
type collState struct {
	id, chunks, terms int64
	version           collectionVersion
}

// collectionState reads the user's collection; it returns nil for
// DefaultCollection while it does not exist, and NotFound for any other
// collection that does not.
func (ix *Index) collectionState(ctx context.Context, userID, collection string) (*collState, error) {
	var c collState
	err := ix.st.Reader().QueryRowContext(ctx, `SELECT id, chunks, terms, updated_at FROM collections WHERE user_id = $1 AND name = $2`,
		userID, collection).Scan(&c.id, &c.chunks, &c.terms, &c.version.updated)
	if errors.Is(err, sql.ErrNoRows) {
		if collection == DefaultCollection {
			return nil, nil
		}
		return nil, collectionNotFound(collection)
	}
	if err != nil {
		return nil, fmt.Errorf("search: read collection: %w", err)
	}
	c.version.chunks = c.chunks
	return &c, nil
}

// lexicalRank returns the ids and BM25 scores of the topK chunks of the
// collection that best match query, best first, ties by id: from this
// instance's in-memory postings when it holds them at the collection's
// current version, otherwise from the postings table (and a load of the
// postings into memory starts in the background, see lexCache).
func (ix *Index) lexicalRank(ctx context.Context, coll *collState, query string, topK int) ([]scored, error) {
	qtf := map[string]int{}
	var order []string
	for _, t := range QueryTerms(query) {
		if qtf[t] == 0 {
			order = append(order, t)
		}
		qtf[t]++
	}
	if coll.chunks == 0 || len(order) == 0 {
		return nil, nil
	}
	avgLen := float64(coll.terms) / float64(coll.chunks)
	if set := ix.lex.get(coll); set != nil {
		return set.rank(ix.BM25, coll.chunks, avgLen, order, qtf, topK), nil
	}
	weights, err := ix.termWeights(ctx, coll.id, coll.chunks, order, qtf)
	if err != nil || len(weights) == 0 {
		return nil, err
	}
	return ix.rank(ctx, coll.id, avgLen, weights, topK)
}

// hits returns the hits of ranked, in its order, with their scores and
// snippets for query; a chunk deleted since it was ranked is left out.
func (ix *Index) hits(ctx context.Context, ranked []scored, query string) ([]Hit, error) {
	ids := make([]int64, len(ranked))
	for i, s := range ranked {
		ids[i] = s.id
	}
	found, err := ix.hitsByID(ctx, ids)
	if err != nil {
		return nil, err
	}
	byID := make(map[int64]*Hit, len(found))
	for i := range found {
		byID[found[i].ChunkID] = &found[i]
	}
	out := make([]Hit, 0, len(ranked))
	for _, s := range ranked {
		if h := byID[s.id]; h != nil {
			hit := *h
			hit.Score, hit.Snippet = s.score, Snippet(hit.Text, query)
			out = append(out, hit)
		}
	}
	return out, nil
}

// termWeight is a query term with its weight: BM25's idf of the term in
// the collection, times how often the query repeats it.
type termWeight struct {
	term   string
	weight float64
}

// termWeights reads how many chunks of the collection hold each query term
// and returns the weight of each term that some chunk holds, in query
// order. idf is Lucene's, ln(1 + (N - df + 0.5) / (df + 0.5)), which stays
// positive for a term in most chunks.
func (ix *Index) termWeights(ctx context.Context, collID, n int64, terms []string, qtf map[string]int) ([]termWeight, error) {
	args := []any{collID}
	marks := make([]string, len(terms))
	for i, t := range terms {
		args = append(args, t)
		marks[i] = fmt.Sprintf("$%d", i+2)
	}
	rows, err := ix.st.Reader().QueryContext(ctx, `SELECT term, COUNT(*) FROM chunk_terms
		WHERE collection_id = $1 AND term IN (`+strings.Join(marks, ", ")+`) GROUP BY term`, args...)
	if err != nil {
		return nil, fmt.Errorf("search: count terms: %w", err)
	}
	defer rows.Close()
	df := map[string]int64{}
	for rows.Next() {
		var t string
		var n int64
		if err := rows.Scan(&t, &n); err != nil {
			return nil, fmt.Errorf("search: count terms: %w", err)
		}
		df[t] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("search: count terms: %w", err)
	}
	var out []termWeight
	for _, t := range terms {
		d, ok := df[t]
		if !ok {
			continue
		}
		out = append(out, termWeight{t, float64(qtf[t]) * idf(n, d)})
	}
	return out, nil
}

// idf is BM25's inverse document frequency of a term that df of the n
// chunks hold, Lucene's: ln(1 + (n - df + 0.5) / (df + 0.5)).
func idf(n, df int64) float64 {
	return math.Log(1 + (float64(n)-float64(df)+0.5)/(float64(df)+0.5))
}

// rank sums BM25 over the postings of the weighted terms in SQL and
// returns the topK chunks, best first, ties by id. Per term and chunk the
// score is
//
//	weight * tf / (tf + k1 * (1 - b + b * len / avglen))
//
// Lucene's form: without BM25's constant factor (k1 + 1), which does not
// change the order. lexSet.rank computes the same in memory.
func (ix *Index) rank(ctx context.Context, collID int64, avgLen float64, weights []termWeight, topK int) ([]scored, error) {
	query, args := ix.rankSQL(collID, avgLen, weights, topK)
	rows, err := ix.st.Reader().QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("search: rank: %w", err)
	}
	defer rows.Close()
	out := make([]scored, 0, topK)
	for rows.Next() {
		var s scored
		if err := rows.Scan(&s.id, &s.score); err != nil {
			return nil, fmt.Errorf("search: rank: %w", err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("search: rank: %w", err)
	}
	return out, nil
}

// consts returns the two constants of a term's score for a
// collection whose chunks average avgLen terms: k1 * (1 - b) and
// k1 * b / avgLen, so that the score is weight * tf / (tf + c1 + c2 * len).
func (p BM25) consts(avgLen float64) (c1, c2 float64) {
	return p.K1 * (1 - p.B), p.K1 * p.B / avgLen
}

// rankSQL returns rank's query and its arguments.
func (ix *Index) rankSQL(collID int64, avgLen float64, weights []termWeight, topK int) (string, []any) {
	c1, c2 := ix.BM25.consts(avgLen)
	args := []any{collID, c1, c2, topK}
	values := make([]string, len(weights))
	for i, w := range weights {
		values[i] = fmt.Sprintf("($%d, CAST($%d AS DOUBLE PRECISION))", len(args)+1, len(args)+2)
		args = append(args, w.term, w.weight)
	}
	// The casts are for PostgreSQL, which cannot tell a parameter's type
	// from a VALUES list; SQLite reads them as REAL. CROSS JOIN makes
	// SQLite read the postings term by term through the primary key (its
	// planner may otherwise scan the whole collection's postings for a
	// long query); PostgreSQL plans it as the inner join it is.
	return `WITH q (term, w) AS (VALUES ` + strings.Join(values, ", ") + `)
		SELECT p.chunk_id, SUM(q.w * p.tf / (p.tf + CAST($2 AS DOUBLE PRECISION) + CAST($3 AS DOUBLE PRECISION) * p.len)) AS score
		FROM q CROSS JOIN chunk_terms p
		WHERE p.collection_id = $1 AND p.term = q.term
		GROUP BY p.chunk_id
		ORDER BY score DESC, p.chunk_id
		LIMIT $4`, args
}

// snippetRunes is about how long a snippet is, in characters.
const snippetRunes = 240

// Snippet returns the passage of text, about 240 characters on one line,
// that holds the most distinct terms of query (the earliest such), cut
// between words and marked with "…" where it was cut. Text without any of
// the terms gives its beginning.
func Snippet(text, query string) string {
	want := map[string]bool{}
	// A stem keeps its word's first letter: a word whose first letter
	// starts no query term need not be stemmed.
	var firsts [256]bool
	for _, t := range QueryTerms(query) {
		want[t] = true
		firsts[t[0]] = true
	}
	skip := func(w string) bool { return w[0] < utf8.RuneSelf && !firsts[lower(w[0])] }
	var matches []term
	for _, t := range analyze(text, true, skip) {
		if want[t.text] {
			matches = append(matches, t)
		}
	}
	rc := runeCounter{text: text}
	runeOf := make([]int, len(matches))
	for i, m := range matches {
		runeOf[i] = rc.at(m.start)
	}
	// The window of snippetRunes characters that starts at a match and
	// holds the most distinct terms.
	best, bestN := 0, 0
	for i := range matches {
		seen := map[string]bool{}
		for j := i; j < len(matches) && runeOf[j]-runeOf[i] < snippetRunes*3/4; j++ {
			seen[matches[j].text] = true
		}
		if len(seen) > bestN {
			best, bestN = i, len(seen)
		}
	}
	start := 0
	if bestN > 0 {
		// A little context before the first match.
		start = runeOffset(text, matches[best].start, -snippetRunes/6)
	}
	end := runeOffset(text, start, snippetRunes)
	start, end = wordBounds(text, start, end)
	s := trimSpaces(text[start:end])
	if strings.TrimSpace(text[:start]) != "" {
		s = "…" + s
	}
	if strings.TrimSpace(text[end:]) != "" {
		s += "…"
	}
	return s
}

// runeOffset returns the byte offset n characters after (n < 0: before)
// byte offset i of text, kept within text.
func runeOffset(text string, i, n int) int {
	for ; n > 0 && i < len(text); n-- {
		_, size := utf8.DecodeRuneInString(text[i:])
		i += size
	}
	for ; n < 0 && i > 0; n++ {
		_, size := utf8.DecodeLastRuneInString(text[:i])
		i -= size
	}
	return i
}

// wordBounds moves start forward and end back so that neither cuts a word
// of a spaced script, unless that would leave nothing.
func wordBounds(text string, start, end int) (int, int) {
	s, e := start, end
	for s < e && midWord(text, s) {
		_, size := utf8.DecodeRuneInString(text[s:])
		s += size
	}
	for e > s && midWord(text, e) {
		_, size := utf8.DecodeLastRuneInString(text[:e])
		e -= size
	}
	if s >= e {
		return start, end
	}
	return s, e
}

// midWord reports whether byte offset i of text falls between two
// characters of one word of a spaced script.
func midWord(text string, i int) bool {
	if i <= 0 || i >= len(text) {
		return false
	}
	a, _ := utf8.DecodeLastRuneInString(text[:i])
	b, _ := utf8.DecodeRuneInString(text[i:])
	return isWordRune(a) && isWordRune(b)
}

// lower lowercases an ASCII letter.
func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

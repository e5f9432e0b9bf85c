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
	if strings.TrimSpace(query) == "" {
		return nil, ferry.InvalidField("query", "must not be empty")
	}
	if topK < 1 || topK > MaxTopK {
		return nil, ferry.InvalidField("top_k", fmt.Sprintf("must be between 1 and %d", MaxTopK))
	}
	var collID, chunks, terms int64
	err := ix.st.Reader().QueryRowContext(ctx, `SELECT id, chunks, terms FROM collections WHERE user_id = $1 AND name = $2`,
		userID, collection).Scan(&collID, &chunks, &terms)
	if errors.Is(err, sql.ErrNoRows) {
		if collection == DefaultCollection {
			return []Hit{}, nil
		}
		return nil, collectionNotFound(collection)
	}
	if err != nil {
		return nil, fmt.Errorf("search: read collection: %w", err)
	}
	qtf := map[string]int{}
	var order []string
	for _, t := range QueryTerms(query) {
		if qtf[t] == 0 {
			order = append(order, t)
		}
		qtf[t]++
	}
	if chunks == 0 || len(order) == 0 {
		return []Hit{}, nil
	}
	weights, err := ix.termWeights(ctx, collID, chunks, order, qtf)
	if err != nil {
		return nil, err
	}
	if len(weights) == 0 {
		return []Hit{}, nil
	}
	hits, err := ix.rank(ctx, collID, float64(terms)/float64(chunks), weights, topK)
	if err != nil {
		return nil, err
	}
	for i := range hits {
		hits[i].Snippet = Snippet(hits[i].Text, query)
	}
	return hits, nil
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
		idf := math.Log(1 + (float64(n)-float64(d)+0.5)/(float64(d)+0.5))
		out = append(out, termWeight{t, float64(qtf[t]) * idf})
	}
	return out, nil
}

// rank sums BM25 over the postings of the weighted terms and returns the
// topK chunks. Per term and chunk the score is
//
//	weight * tf / (tf + k1 * (1 - b + b * len / avglen))
//
// Lucene's form: without BM25's constant factor (k1 + 1), which does not
// change the order.
func (ix *Index) rank(ctx context.Context, collID int64, avgLen float64, weights []termWeight, topK int) ([]Hit, error) {
	query, args := ix.rankSQL(collID, avgLen, weights, topK)
	rows, err := ix.st.Reader().QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("search: rank: %w", err)
	}
	defer rows.Close()
	hits := make([]Hit, 0, topK)
	for rows.Next() {
		var h Hit
		var externalID sql.NullString
		if err := rows.Scan(&h.ChunkID, &h.DocumentID, &externalID, &h.Title, &h.Page, &h.LastPage, &h.Ordinal,
			&h.Text, &h.Score); err != nil {
			return nil, fmt.Errorf("search: rank: %w", err)
		}
		h.ExternalID = externalID.String
		hits = append(hits, h)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("search: rank: %w", err)
	}
	return hits, nil
}

// rankSQL returns rank's query and its arguments.
func (ix *Index) rankSQL(collID int64, avgLen float64, weights []termWeight, topK int) (string, []any) {
	p := ix.BM25
	args := []any{collID, p.K1 * (1 - p.B), p.K1 * p.B / avgLen, topK}
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
	return `WITH q (term, w) AS (VALUES ` + strings.Join(values, ", ") + `),
		top AS (
			SELECT p.chunk_id, SUM(q.w * p.tf / (p.tf + CAST($2 AS DOUBLE PRECISION) + CAST($3 AS DOUBLE PRECISION) * p.len)) AS score
			FROM q CROSS JOIN chunk_terms p
			WHERE p.collection_id = $1 AND p.term = q.term
			GROUP BY p.chunk_id
			ORDER BY score DESC, p.chunk_id
			LIMIT $4)
		SELECT c.id, c.document_id, d.external_id, d.title, c.page, c.last_page, c.ordinal, c.text, top.score
		FROM top JOIN chunks c ON c.id = top.chunk_id JOIN documents d ON d.id = c.document_id
		ORDER BY top.score DESC, c.id`, args
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

package search

import (
	"strings"
	"sync"
	"sync/atomic"
	"unicode"
	"unicode/utf8"

	"github.com/kljensen/snowball/english"
)

// Text is turned into index terms here, in Go, once, for both engines, so
// that SQLite and PostgreSQL index and rank the very same terms (neither
// engine's own text search does what retrieval needs: FTS5's unicode61
// tokenizer leaves a run of Chinese as one token, PostgreSQL's parsers do
// the same, and their stemmers and stopword lists differ).
//
// The analysis follows Anserini's BM25 baseline, the strongest published
// lexical run on BEIR: words are lowercased runs of Unicode letters and
// digits; Lucene's 33 English stopwords are dropped; English words are
// stemmed (Snowball's English stemmer, Porter's algorithm revised). Text in
// Chinese, Japanese or Korean, which does not mark words with spaces,
// becomes overlapping pairs of characters ("北京大学" -> 北京 京大 大学), as
// Lucene's CJK analyzer does: pairs find words without a dictionary, and a
// lone character stands for itself.

// maxTermRunes bounds a word: longer ones (base64, hashes, a table read as
// one line) are not words anyone searches for, and are skipped.
const maxTermRunes = 64

// stopwords are Lucene's English stopwords (EnglishAnalyzer's default set,
// the one Anserini's baselines use): few enough that a query made only of
// common words still finds something.
var stopwords = map[string]bool{
	"a": true, "an": true, "and": true, "are": true, "as": true, "at": true, "be": true, "but": true,
	"by": true, "for": true, "if": true, "in": true, "into": true, "is": true, "it": true, "no": true,
	"not": true, "of": true, "on": true, "or": true, "such": true, "that": true, "the": true,
	"their": true, "then": true, "there": true, "these": true, "they": true, "this": true, "to": true,
	"was": true, "will": true, "with": true,
}

// term is one index term of a text and where its source is in the text, in
// bytes.
type term struct {
	text       string
	start, end int
}

// DocumentTerms returns the index terms of a chunk's text, in order. Besides
// the pairs of CJK characters it holds each CJK character alone, so that a
// query of one character ("猫") finds the text that has it inside a longer
// run ("小猫很可爱").
func DocumentTerms(text string) []string {
	return termTexts(analyze(text, true, nil))
}

// QueryTerms returns the index terms of a query, in order, repeats kept (a
// word asked for twice weighs twice). A run of CJK characters is queried
// by its pairs, and a lone character by itself.
func QueryTerms(query string) []string {
	return termTexts(analyze(query, false, nil))
}

func termTexts(ts []term) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.text
	}
	return out
}

// analyze splits text into terms; document adds CJK unigrams (see
// DocumentTerms). A word of a spaced script for which skip reports true is
// left out before it is stemmed (Snippet's shortcut).
func analyze(text string, document bool, skip func(word string) bool) []term {
	var out []term
	i := 0
	for i < len(text) {
		r, size := utf8.DecodeRuneInString(text[i:])
		switch {
		case isCJK(r):
			j := i + size
			for j < len(text) {
				r2, s2 := utf8.DecodeRuneInString(text[j:])
				if !isCJK(r2) {
					break
				}
				j += s2
			}
			out = appendCJK(out, text, i, j, document)
			i = j
		case isWordRune(r):
			j := wordEnd(text, i)
			if skip != nil && skip(text[i:j]) {
				i = j
				continue
			}
			if t, ok := word(text[i:j]); ok {
				out = append(out, term{t, i, j})
			}
			i = j
		default:
			i += size
		}
	}
	return out
}

// isCJK reports whether r belongs to a script written without spaces
// between words, which is indexed by pairs of characters: Han, Hiragana,
// Katakana and Hangul (Lucene's CJK analyzer takes the same four).
func isCJK(r rune) bool {
	return r >= 0x1100 && (unicode.Is(unicode.Han, r) || unicode.Is(unicode.Hiragana, r) ||
		unicode.Is(unicode.Katakana, r) || unicode.Is(unicode.Hangul, r))
}

// isWordRune reports whether r can be part of a word of a spaced script:
// a letter, a digit, or a combining mark (Hindi and Thai vowels).
func isWordRune(r rune) bool {
	return !isCJK(r) && (unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.Is(unicode.Mn, r) || unicode.Is(unicode.Mc, r))
}

// wordEnd returns where the word that starts at i ends. An apostrophe
// between letters stays inside ("patient's"), and so does a point or comma
// between digits ("3.5", "1,000"), as Unicode's word boundaries (UAX #29)
// have it.
func wordEnd(text string, i int) int {
	j := i
	var prev rune
	for j < len(text) {
		r, size := utf8.DecodeRuneInString(text[j:])
		if isWordRune(r) {
			prev = r
			j += size
			continue
		}
		next, nsize := utf8.DecodeRuneInString(text[j+size:])
		if j+size < len(text) && nsize > 0 && joins(prev, r, next) {
			j += size
			continue
		}
		break
	}
	return j
}

// joins reports whether mid, between prev and next, is inside a word.
func joins(prev, mid, next rune) bool {
	switch mid {
	case '\'', '’':
		return unicode.IsLetter(prev) && unicode.IsLetter(next)
	case '.', ',':
		return unicode.IsDigit(prev) && unicode.IsDigit(next)
	}
	return false
}

// word turns one word into its term: lowercased, without a possessive 's,
// stemmed when it is English. It reports false for a stopword or a word
// too long to be one.
func word(w string) (string, bool) {
	if utf8.RuneCountInString(w) > maxTermRunes {
		return "", false
	}
	w = strings.ToLower(w)
	w = strings.ReplaceAll(w, "’", "'")
	w = strings.TrimSuffix(w, "'s")
	w = strings.ReplaceAll(w, "'", "")
	if w == "" || stopwords[w] {
		return "", false
	}
	if isASCIIWord(w) && hasLetter(w) {
		w = stems.stem(w)
	}
	return w, true
}

// stemCacheSize bounds the stem cache: a language's working vocabulary
// fits, and text made of ever new words cannot grow it further.
const stemCacheSize = 1 << 16

// stemCache remembers stems: the stemmer allocates on every call, and the
// same few thousand words make up most of any text. Searches read it
// concurrently, hence a sync.Map; when it is full it starts over.
type stemCache struct {
	m sync.Map // word -> stem
	n atomic.Int64
}

var stems = &stemCache{}

// stem returns the English stem of the lowercase ASCII word w.
func (c *stemCache) stem(w string) string {
	if s, ok := c.m.Load(w); ok {
		return s.(string)
	}
	s := english.Stem(w, true)
	if c.n.Add(1) > stemCacheSize {
		c.m.Clear()
		c.n.Store(0)
	}
	c.m.Store(strings.Clone(w), s)
	return s
}

// isASCIIWord reports whether w is made of ASCII letters and digits only:
// the words the English stemmer is for.
func isASCIIWord(w string) bool {
	for i := 0; i < len(w); i++ {
		c := w[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

func hasLetter(w string) bool {
	for i := 0; i < len(w); i++ {
		if 'a' <= w[i] && w[i] <= 'z' {
			return true
		}
	}
	return false
}

// appendCJK appends the terms of the CJK run text[i:j]: each pair of
// neighbouring characters, or the character itself when the run has one;
// with document, each character as well.
func appendCJK(out []term, text string, i, j int, document bool) []term {
	var starts []int
	for k := i; k < j; {
		starts = append(starts, k)
		_, size := utf8.DecodeRuneInString(text[k:])
		k += size
	}
	starts = append(starts, j)
	n := len(starts) - 1
	if n == 1 {
		return append(out, term{strings.ToLower(text[i:j]), i, j})
	}
	for k := 0; k < n; k++ {
		if document {
			out = append(out, term{text[starts[k]:starts[k+1]], starts[k], starts[k+1]})
		}
		if k+1 < n {
			out = append(out, term{text[starts[k]:starts[k+2]], starts[k], starts[k+2]})
		}
	}
	return out
}

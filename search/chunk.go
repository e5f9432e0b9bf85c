package search

import (
	"slices"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/ferryhq/ferry/chat"
)

// DefaultChunkTokens is the size Split aims for: large enough that a chunk
// holds a whole argument, small enough that five of them leave a model's
// context room for the question and the answer.
const DefaultChunkTokens = 800

// DefaultOverlapPercent is the share of a chunk that the next one repeats
// by default, so that a passage cut in two is still found whole in one.
const DefaultOverlapPercent = 12

// PageSeparator joins pages into a document's text (see JoinPages).
const PageSeparator = "\n\n"

// Page is one page of a document's text. Number counts from 1; a zero
// Number is taken to be the page's place in the list, from 1.
type Page struct {
	Number int
	Text   string
}

// Chunk is a piece of a document that is indexed and retrieved on its own.
// Its Text is exactly JoinPages(pages)[Start:End], so a citation can point
// into the document.
type Chunk struct {
	// ID is the chunk's id once stored; 0 before.
	ID int64
	// Ordinal is the chunk's place in its document, from 0.
	Ordinal int
	// Page is the number of the page the chunk starts on; LastPage the
	// page it ends on (the same for a chunk within one page).
	Page, LastPage int
	// Start and End are byte offsets into the document's text;
	// RuneStart and RuneEnd the same in characters (Unicode code points).
	Start, End         int
	RuneStart, RuneEnd int
	Text               string
	// Tokens is chat.EstimateTokens(Text), the measure of the chunk's size.
	Tokens int
	// Embedding is the chunk's vector, set by Retriever.EmbedChunks and
	// stored with the chunk by Index.Add (or later by
	// Index.SetEmbeddings); nil when there is none.
	Embedding []float32
}

// ChunkOptions sets how Split cuts.
type ChunkOptions struct {
	// Tokens is the most a chunk holds (estimated as chat.EstimateTokens
	// does); 0 means DefaultChunkTokens. A chunk holds more only when a
	// single word is longer than that.
	Tokens int
	// Overlap is about how many tokens of a chunk's end the next chunk
	// starts with; 0 means DefaultOverlapPercent of Tokens, a negative
	// value none.
	Overlap int
}

// JoinPages returns a document's text: its pages' texts joined by
// PageSeparator. Chunk offsets count in this text.
func JoinPages(pages []Page) string {
	texts := make([]string, len(pages))
	for i, p := range pages {
		texts[i] = p.Text
	}
	return strings.Join(texts, PageSeparator)
}

// Break strengths: where Split prefers to cut, weakest first.
const (
	breakWord      = iota + 1 // between words: whitespace, or beside a CJK character
	breakSentence             // after . ! ? and 。！？；
	breakParagraph            // a blank line
	breakHeading              // before a heading line
)

// boundary is a place where a chunk may end and the next begin: a chunk
// ending here ends at cut; one starting here starts at next (after the
// whitespace). cost and nextCost are quarter tokens from the text's start.
type boundary struct {
	cut, next      int
	level          int
	cost, nextCost int
}

// Split cuts a document's pages into chunks of at most opts.Tokens tokens,
// each starting where the previous one's last opts.Overlap tokens or so
// start. It cuts where the text breaks most strongly within the last half
// of a chunk's room: before a heading (a Markdown "#" line, or a short line
// that stands alone and does not end like a sentence), else at a blank
// line, else after a sentence (English . ! ? and Chinese 。！？；), else
// between words; never inside a word unless one word is longer than a
// chunk. The overlap starts at a sentence where one is near; a chunk that
// ends before a heading has none, so that a section does not start with
// the end of the one before. Whitespace-only pages yield no chunks.
func Split(pages []Page, opts ChunkOptions) []Chunk {
	size := opts.Tokens
	if size <= 0 {
		size = DefaultChunkTokens
	}
	overlap := opts.Overlap
	if overlap == 0 {
		overlap = size * DefaultOverlapPercent / 100
	}
	overlap = max(0, min(overlap, size/2))
	text := JoinPages(pages)
	sp := newSplitter(text, pages)
	var chunks []Chunk
	start, startCost := sp.contentStart(0)
	end, endCost := sp.contentEnd()
	prevCut := start
	room, fill := size*4, size*2
	for start < end {
		b := sp.cutAfter(start, startCost, prevCut, end, endCost, room, fill)
		chunks = append(chunks, sp.chunk(len(chunks), start, b.cut))
		if b.cut >= end {
			break
		}
		prevCut = b.cut
		next := b.next
		nextCost := b.nextCost
		if b.level < breakHeading && overlap > 0 {
			if o, ok := sp.overlapStart(start, b, overlap*4); ok {
				next, nextCost = o.next, o.nextCost
			}
		}
		start, startCost = next, nextCost
	}
	return chunks
}

// splitter holds a text's boundaries and page starts while Split works.
type splitter struct {
	text       string
	bounds     []boundary
	pageStarts []int // byte offset of each page in text
	pageNums   []int
	runeAt     runeCounter
}

func newSplitter(text string, pages []Page) *splitter {
	sp := &splitter{text: text, runeAt: runeCounter{text: text}}
	off := 0
	for i, p := range pages {
		n := p.Number
		if n == 0 {
			n = i + 1
		}
		sp.pageStarts = append(sp.pageStarts, off)
		sp.pageNums = append(sp.pageNums, n)
		off += len(p.Text) + len(PageSeparator)
	}
	sp.scan()
	return sp
}

// scan finds every boundary of the text, in order.
func (sp *splitter) scan() {
	text := sp.text
	cost := 0
	var prev rune
	prevEnd := -1 // where the last non-space rune ended
	for i := 0; i < len(text); {
		r, size := utf8.DecodeRuneInString(text[i:])
		if unicode.IsSpace(r) {
			j, jCost := i, cost
			for j < len(text) {
				r2, s2 := utf8.DecodeRuneInString(text[j:])
				if !unicode.IsSpace(r2) {
					break
				}
				j += s2
				jCost += runeCost(r2)
			}
			if prevEnd >= 0 && j < len(text) {
				sp.bounds = append(sp.bounds, boundary{cut: i, next: j, level: sp.gapLevel(i, j),
					cost: cost, nextCost: jCost})
			}
			i, cost = j, jCost
			continue
		}
		if prevEnd == i && i > 0 {
			if level := runBreak(text, prev, r, i); level > 0 {
				sp.bounds = append(sp.bounds, boundary{cut: i, next: i, level: level, cost: cost, nextCost: cost})
			}
		}
		prev = r
		i += size
		cost += runeCost(r)
		prevEnd = i
	}
}

// runeCost is a rune's share of chat.EstimateTokens, in quarter tokens.
func runeCost(r rune) int {
	if r < utf8.RuneSelf {
		return 1
	}
	return 4
}

// gapLevel is the strength of the whitespace text[i:j], which follows a
// word and precedes one.
func (sp *splitter) gapLevel(i, j int) int {
	text := sp.text
	newlines := strings.Count(text[i:j], "\n")
	if sp.pageBreakIn(i, j) {
		// The separator's own blank line is not a paragraph: most pages
		// end in the middle of one.
		newlines -= strings.Count(PageSeparator, "\n")
	}
	if strings.Contains(text[i:j], "\n") && sp.headingAt(j, newlines >= 2 || sp.pageBreakIn(i, j)) {
		return breakHeading
	}
	if newlines >= 2 {
		return breakParagraph
	}
	if endsSentence(text[:i]) {
		return breakSentence
	}
	return breakWord
}

// pageBreakIn reports whether a page separator lies within text[i:j].
func (sp *splitter) pageBreakIn(i, j int) bool {
	starts := sp.pageStarts[min(1, len(sp.pageStarts)):]
	k, _ := slices.BinarySearch(starts, i+len(PageSeparator))
	return k < len(starts) && starts[k] <= j
}

// runBreak is the strength of the boundary between prev and r, which touch
// at i, or 0 when they are one word: text in CJK scripts may break between
// any two characters, and after a Chinese sentence end most of all.
func runBreak(text string, prev, r rune, i int) int {
	if isCJKSentenceEnd(prev) && !isCloser(r) {
		return breakSentence
	}
	if isCloser(prev) && !isCloser(r) && isCJKSentenceEnd(lastBeforeClosers(text[:i])) {
		return breakSentence
	}
	if isCJK(prev) || isCJK(r) || isCJKPunct(prev) || isCJKPunct(r) {
		return breakWord
	}
	return 0
}

// endsSentence reports whether s ends a sentence: with . ! ? (or a CJK
// sentence end), maybe followed by closing quotes or brackets.
func endsSentence(s string) bool {
	r := lastBeforeClosers(s)
	return r == '.' || r == '!' || r == '?' || isCJKSentenceEnd(r)
}

// lastBeforeClosers returns the last rune of s that is not a closing quote
// or bracket.
func lastBeforeClosers(s string) rune {
	for len(s) > 0 {
		r, size := utf8.DecodeLastRuneInString(s)
		if !isCloser(r) {
			return r
		}
		s = s[:len(s)-size]
	}
	return 0
}

func isCJKSentenceEnd(r rune) bool {
	return r == '。' || r == '！' || r == '？' || r == '；'
}

// isCloser reports whether r closes a quotation or a bracket.
func isCloser(r rune) bool {
	return unicode.Is(unicode.Pe, r) || unicode.Is(unicode.Pf, r) || r == '"' || r == '\''
}

// isCJKPunct reports whether r is punctuation of CJK text (the CJK symbols
// block and full-width forms), after or before which text may break.
func isCJKPunct(r rune) bool {
	return unicode.IsPunct(r) && (r >= 0x3000 && r <= 0x303f || r >= 0xff00 && r <= 0xffef)
}

// maxHeadingRunes bounds a title-like line: longer ones are prose.
const maxHeadingRunes = 80

// headingAt reports whether the line starting at i is a heading: a
// Markdown heading, or, when it stands apart (after a blank line), a short
// line that is followed by more text and does not end like a sentence or
// a clause.
func (sp *splitter) headingAt(i int, apart bool) bool {
	line, _, more := strings.Cut(sp.text[i:], "\n")
	line = strings.TrimRight(line, " \t\r")
	if n := len(line) - len(strings.TrimLeft(line, "#")); n >= 1 && n <= 6 && len(line) > n && (line[n] == ' ' || line[n] == '\t') {
		return true
	}
	if !apart || !more || line == "" || utf8.RuneCountInString(line) > maxHeadingRunes {
		return false
	}
	last, _ := utf8.DecodeLastRuneInString(line)
	if strings.ContainsRune(".,;:!?。，；：！？、", last) {
		return false
	}
	return strings.IndexFunc(line, unicode.IsLetter) >= 0
}

// contentStart returns the first non-space position at or after i and its
// cost.
func (sp *splitter) contentStart(i int) (int, int) {
	cost := 0
	for _, r := range sp.text[:i] {
		cost += runeCost(r)
	}
	for i < len(sp.text) {
		r, size := utf8.DecodeRuneInString(sp.text[i:])
		if !unicode.IsSpace(r) {
			break
		}
		i += size
		cost += runeCost(r)
	}
	return i, cost
}

// contentEnd returns the end of the text without its trailing whitespace,
// and its cost.
func (sp *splitter) contentEnd() (int, int) {
	end := len(strings.TrimRightFunc(sp.text, unicode.IsSpace))
	cost := 0
	for _, r := range sp.text[:end] {
		cost += runeCost(r)
	}
	return end, cost
}

// cutAfter chooses where the chunk that starts at start (with cost
// startCost) ends: at end when the rest fits in room quarter tokens, else
// at the strongest boundary after prevCut that leaves the chunk at least
// fill and at most room, the latest of equals; else at the latest boundary
// that fits; else, within one long word, at the last character that fits.
func (sp *splitter) cutAfter(start, startCost, prevCut, end, endCost, room, fill int) boundary {
	if endCost-startCost <= room {
		return boundary{cut: end, next: end, cost: endCost, nextCost: endCost}
	}
	best, latest := -1, -1
	from := sort.Search(len(sp.bounds), func(k int) bool { return sp.bounds[k].cut > max(start, prevCut) })
	for k := from; k < len(sp.bounds); k++ {
		b := sp.bounds[k]
		if b.cost-startCost > room {
			break
		}
		latest = k
		if b.cost-startCost >= fill && (best < 0 || b.level >= sp.bounds[best].level) {
			best = k
		}
	}
	switch {
	case best >= 0:
		return sp.bounds[best]
	case latest >= 0:
		return sp.bounds[latest]
	}
	// One word longer than a chunk: cut it between characters.
	i, cost := start, startCost
	for i < end {
		r, size := utf8.DecodeRuneInString(sp.text[i:])
		if cost+runeCost(r)-startCost > room && i > start {
			break
		}
		i += size
		cost += runeCost(r)
	}
	return boundary{cut: i, next: i, cost: cost, nextCost: cost}
}

// overlapStart chooses where the chunk after the one [start, cut.cut)
// starts so that it repeats about want quarter tokens: at the strongest
// boundary whose overlap is between half and one and a half times want,
// the one nearest want among equals. It reports false when no boundary
// fits, and the next chunk starts after the cut.
func (sp *splitter) overlapStart(start int, cut boundary, want int) (boundary, bool) {
	best, bestDist := -1, 0
	from := sort.Search(len(sp.bounds), func(k int) bool { return sp.bounds[k].next > start })
	for k := from; k < len(sp.bounds); k++ {
		b := sp.bounds[k]
		if b.next >= cut.cut {
			break
		}
		o := cut.cost - b.nextCost
		if o < want/2 || o > want*3/2 {
			continue
		}
		dist := max(o-want, want-o)
		if best < 0 || b.level > sp.bounds[best].level || b.level == sp.bounds[best].level && dist < bestDist {
			best, bestDist = k, dist
		}
	}
	if best < 0 {
		return boundary{}, false
	}
	return sp.bounds[best], true
}

// chunk builds the chunk text[start:end] with its place in the document.
func (sp *splitter) chunk(ordinal, start, end int) Chunk {
	t := sp.text[start:end]
	return Chunk{
		Ordinal: ordinal, Page: sp.pageOf(start), LastPage: sp.pageOf(end - 1),
		Start: start, End: end, RuneStart: sp.runeAt.at(start), RuneEnd: sp.runeAt.at(end),
		Text: t, Tokens: chat.EstimateTokens(t),
	}
}

// pageOf returns the number of the page that byte i of the text is on; a
// separator belongs to the page before it.
func (sp *splitter) pageOf(i int) int {
	if len(sp.pageNums) == 0 {
		return 0
	}
	// The last page that starts at or before i.
	k, found := slices.BinarySearch(sp.pageStarts, i)
	if !found {
		k--
	}
	return sp.pageNums[max(k, 0)]
}

// runeCounter turns byte offsets into rune offsets, counting on from the
// last answer when asked in increasing order (as Split does, but for the
// overlaps), from the start otherwise.
type runeCounter struct {
	text      string
	byteAt, n int
}

func (c *runeCounter) at(i int) int {
	if i < c.byteAt {
		c.byteAt, c.n = 0, 0
	}
	c.n += utf8.RuneCountInString(c.text[c.byteAt:i])
	c.byteAt = i
	return c.n
}

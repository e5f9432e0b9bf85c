package search

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/ferryhq/ferry/chat"
)

// englishWords are what the generated English prose is made of.
var englishWords = strings.Fields(`the patient cohort showed a marked reduction in inflammatory markers after
treatment with low dose aspirin while control subjects remained stable over twelve months of follow up
analysis of variance confirmed that the effect was independent of age sex and baseline kidney function`)

// prose returns n sentences of English, deterministically for seed.
func prose(seed uint64, n int) string {
	rng := rand.New(rand.NewPCG(seed, 1))
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(' ')
		}
		words := 8 + rng.IntN(18)
		for w := range words {
			word := englishWords[rng.IntN(len(englishWords))]
			if w == 0 {
				word = strings.ToUpper(word[:1]) + word[1:]
			} else {
				b.WriteByte(' ')
			}
			b.WriteString(word)
		}
		b.WriteByte("........!?"[rng.IntN(10)])
	}
	return b.String()
}

// chinese returns n sentences of Chinese, ending with 。！？ or ；, with no
// spaces anywhere.
func chinese(seed uint64, n int) string {
	parts := []string{"研究", "人员", "发现", "该药物", "能够", "显著", "降低", "患者", "的", "血压", "水平",
		"并且", "在", "十二个月", "随访", "期间", "没有", "观察到", "严重", "不良反应"}
	ends := []string{"。", "！", "？", "；"}
	rng := rand.New(rand.NewPCG(seed, 2))
	var b strings.Builder
	for range n {
		for range 6 + rng.IntN(10) {
			b.WriteString(parts[rng.IntN(len(parts))])
		}
		if rng.IntN(4) == 0 {
			b.WriteString("，")
			b.WriteString(parts[rng.IntN(len(parts))])
		}
		b.WriteString(ends[rng.IntN(len(ends))])
	}
	return b.String()
}

// checkChunks asserts what every split must hold: each chunk is the text
// between its offsets, within its size, cut between words; the chunks
// cover the text in order; page numbers say where each one lies.
func checkChunks(t *testing.T, pages []Page, chunks []Chunk, size int) {
	t.Helper()
	text := JoinPages(pages)
	covered := 0 // the text before this is in some chunk, or whitespace
	for i, c := range chunks {
		if c.Ordinal != i {
			t.Errorf("chunk %d: ordinal %d", i, c.Ordinal)
		}
		if c.Text != text[c.Start:c.End] {
			t.Fatalf("chunk %d: text is not text[%d:%d]", i, c.Start, c.End)
		}
		if c.RuneStart != utf8.RuneCountInString(text[:c.Start]) || c.RuneEnd != utf8.RuneCountInString(text[:c.End]) {
			t.Errorf("chunk %d: runes %d..%d, want %d..%d", i, c.RuneStart, c.RuneEnd,
				utf8.RuneCountInString(text[:c.Start]), utf8.RuneCountInString(text[:c.End]))
		}
		if c.Tokens != chat.EstimateTokens(c.Text) || c.Tokens > size {
			t.Errorf("chunk %d: %d tokens (estimate %d), want at most %d", i, c.Tokens, chat.EstimateTokens(c.Text), size)
		}
		if strings.TrimSpace(c.Text) != c.Text || c.Text == "" {
			t.Errorf("chunk %d: %q is empty or not trimmed", i, c.Text)
		}
		if midWord(text, c.Start) || midWord(text, c.End) {
			t.Errorf("chunk %d: [%d:%d] cuts a word: …%q|%q…", i, c.Start, c.End,
				text[max(0, c.Start-10):c.Start], text[c.Start:min(len(text), c.Start+10)])
		}
		if c.Start > covered && strings.TrimSpace(text[covered:c.Start]) != "" {
			t.Errorf("chunk %d starts at %d, leaving %q before it uncovered", i, c.Start, text[covered:c.Start])
		}
		if i > 0 && (c.Start <= chunks[i-1].Start || c.End <= chunks[i-1].End) {
			t.Errorf("chunk %d [%d:%d] does not move on from [%d:%d]", i, c.Start, c.End, chunks[i-1].Start, chunks[i-1].End)
		}
		covered = max(covered, c.End)
		if want := pageAt(pages, c.Start); c.Page != want {
			t.Errorf("chunk %d starts on page %d, want %d", i, c.Page, want)
		}
		if want := pageAt(pages, c.End-1); c.LastPage != want {
			t.Errorf("chunk %d ends on page %d, want %d", i, c.LastPage, want)
		}
	}
	if strings.TrimSpace(text[covered:]) != "" {
		t.Errorf("text after %d is in no chunk", covered)
	}
}

// pageAt finds the page of byte i of JoinPages(pages) by walking the pages.
func pageAt(pages []Page, i int) int {
	off := 0
	for k, p := range pages {
		off += len(p.Text) + len(PageSeparator)
		if i < off || k == len(pages)-1 {
			if p.Number == 0 {
				return k + 1
			}
			return p.Number
		}
	}
	return 0
}

// overlapTokens is how many tokens chunk b repeats of chunk a.
func overlapTokens(text string, a, b Chunk) int {
	if b.Start >= a.End {
		return 0
	}
	return chat.EstimateTokens(text[b.Start:a.End])
}

func TestSplitEnglishProse(t *testing.T) {
	var paras []string
	for i := range 12 {
		paras = append(paras, prose(uint64(i), 6+i%5))
	}
	pages := []Page{{Text: strings.Join(paras, "\n\n")}}
	chunks := Split(pages, ChunkOptions{})
	checkChunks(t, pages, chunks, DefaultChunkTokens)
	if len(chunks) < 3 {
		t.Fatalf("%d chunks of %d tokens of text, want several", len(chunks), chat.EstimateTokens(pages[0].Text))
	}
	text := JoinPages(pages)
	for i, c := range chunks[:len(chunks)-1] {
		// Paragraphs are 200–400 tokens, so a blank line is always in
		// the last half of a chunk's room.
		if !strings.HasPrefix(text[c.End:], "\n\n") {
			t.Errorf("chunk %d ends at %q, not at a paragraph", i, text[c.End:min(len(text), c.End+20)])
		}
		if c.Tokens < DefaultChunkTokens/2 {
			t.Errorf("chunk %d: %d tokens, want at least half of %d", i, c.Tokens, DefaultChunkTokens)
		}
		next := chunks[i+1]
		o := overlapTokens(text, c, next)
		if o < DefaultChunkTokens*6/100 || o > DefaultChunkTokens*18/100 {
			t.Errorf("chunks %d and %d share %d tokens, want about 12%% of %d", i, i+1, o, DefaultChunkTokens)
		}
		if !endsSentence(strings.TrimSpace(text[:next.Start])) {
			t.Errorf("chunk %d starts mid-sentence: %q", i+1, text[max(0, next.Start-30):next.Start+20])
		}
	}
}

func TestSplitSentencesWithoutParagraphs(t *testing.T) {
	pages := []Page{{Text: prose(7, 200)}}
	chunks := Split(pages, ChunkOptions{Tokens: 300})
	checkChunks(t, pages, chunks, 300)
	for i, c := range chunks[:len(chunks)-1] {
		if !endsSentence(c.Text) {
			t.Errorf("chunk %d ends mid-sentence: %q", i, c.Text[max(0, len(c.Text)-30):])
		}
	}
}

func TestSplitHeadings(t *testing.T) {
	var b strings.Builder
	for i := range 6 {
		// Each section is about 500 tokens: one fits in a chunk, two do not.
		fmt.Fprintf(&b, "# Section %d\n\n%s\n\n%s\n\n", i+1, prose(uint64(10+i), 9), prose(uint64(20+i), 9))
	}
	// A title-like line counts too: short, apart, not ending as a sentence.
	fmt.Fprintf(&b, "Results and discussion\n\n%s\n\n%s", prose(30, 9), prose(31, 9))
	pages := []Page{{Text: b.String()}}
	chunks := Split(pages, ChunkOptions{})
	checkChunks(t, pages, chunks, DefaultChunkTokens)
	want := []string{"# Section 1", "# Section 2", "# Section 3", "# Section 4", "# Section 5", "# Section 6", "Results and discussion"}
	if len(chunks) != len(want) {
		t.Fatalf("%d chunks, want one per section (%d)", len(chunks), len(want))
	}
	for i, c := range chunks {
		if !strings.HasPrefix(c.Text, want[i]+"\n") {
			t.Errorf("chunk %d starts %q, want its section's heading %q", i, c.Text[:min(30, len(c.Text))], want[i])
		}
	}
}

func TestSplitChinese(t *testing.T) {
	pages := []Page{{Text: chinese(1, 120)}}
	chunks := Split(pages, ChunkOptions{Tokens: 400})
	checkChunks(t, pages, chunks, 400)
	if len(chunks) < 3 {
		t.Fatalf("%d chunks of %d tokens, want several", len(chunks), chat.EstimateTokens(pages[0].Text))
	}
	text := pages[0].Text
	for i, c := range chunks[:len(chunks)-1] {
		last, _ := utf8.DecodeLastRuneInString(c.Text)
		if !isCJKSentenceEnd(last) {
			t.Errorf("chunk %d ends with %q, not 。！？ or ；", i, c.Text[max(0, len(c.Text)-12):])
		}
		if c.Tokens < 200 {
			t.Errorf("chunk %d: %d tokens, want at least half of 400", i, c.Tokens)
		}
		next := chunks[i+1]
		before, _ := utf8.DecodeLastRuneInString(text[:next.Start])
		if !isCJKSentenceEnd(before) {
			t.Errorf("chunk %d starts mid-sentence after %q", i+1, text[max(0, next.Start-9):next.Start])
		}
		if o := overlapTokens(text, c, next); o < 400*6/100 || o > 400*18/100 {
			t.Errorf("chunks %d and %d share %d tokens, want about 12%% of 400", i, i+1, o)
		}
	}
}

func TestSplitPages(t *testing.T) {
	// Pages numbered from 5 (an excerpt), with sentences running across
	// page ends as they do in PDFs, one empty page, and a Chinese one.
	pages := []Page{
		{Number: 5, Text: prose(1, 30) + " The trial continued"},
		{Number: 6, Text: "into the next year. " + prose(2, 25)},
		{Number: 7, Text: ""},
		{Number: 8, Text: chinese(3, 30)},
		{Number: 9, Text: prose(4, 40)},
	}
	chunks := Split(pages, ChunkOptions{Tokens: 500})
	checkChunks(t, pages, chunks, 500)
	seen := map[int]bool{}
	spans := 0
	for _, c := range chunks {
		for p := c.Page; p <= c.LastPage; p++ {
			seen[p] = true
		}
		if c.LastPage > c.Page {
			spans++
		}
	}
	for _, p := range []int{5, 6, 8, 9} {
		if !seen[p] {
			t.Errorf("no chunk covers page %d", p)
		}
	}
	if spans == 0 {
		t.Error("no chunk spans two pages, though sentences run across them")
	}
	text := JoinPages(pages)
	for i, c := range chunks[:len(chunks)-1] {
		// The sentence that runs from page 5 onto page 6 is never cut at
		// the page end.
		if strings.HasSuffix(c.Text, "The trial continued") {
			t.Errorf("chunk %d ends at the page end, mid-sentence", i)
		}
		if !endsSentence(c.Text) {
			t.Errorf("chunk %d ends mid-sentence: %q", i, text[max(0, c.End-20):c.End])
		}
	}
}

func TestSplitEdgeCases(t *testing.T) {
	if c := Split([]Page{{Text: " \n\n\t "}, {Text: ""}}, ChunkOptions{}); len(c) != 0 {
		t.Errorf("whitespace only: %d chunks, want none", len(c))
	}
	if c := Split(nil, ChunkOptions{}); len(c) != 0 {
		t.Errorf("no pages: %d chunks, want none", len(c))
	}
	pages := []Page{{Text: "\n  A short note.  \n"}}
	c := Split(pages, ChunkOptions{})
	if len(c) != 1 || c[0].Text != "A short note." || c[0].Page != 1 || c[0].Start != 3 {
		t.Errorf("short text: %+v, want one trimmed chunk on page 1 at byte 3", c)
	}
	// One word longer than a chunk is cut between characters rather than
	// kept whole past the size.
	long := []Page{{Text: "start " + strings.Repeat("x", 5000) + " end"}}
	c = Split(long, ChunkOptions{Tokens: 100, Overlap: -1})
	for i, ch := range c {
		if ch.Tokens > 100 {
			t.Errorf("long word: chunk %d has %d tokens", i, ch.Tokens)
		}
	}
	if got := c[len(c)-1].End; got != len(long[0].Text) {
		t.Errorf("long word: chunks end at %d, want %d", got, len(long[0].Text))
	}
	// No overlap when asked for none.
	pages = []Page{{Text: prose(9, 80)}}
	c = Split(pages, ChunkOptions{Tokens: 200, Overlap: -1})
	checkChunks(t, pages, c, 200)
	for i := 1; i < len(c); i++ {
		if c[i].Start < c[i-1].End {
			t.Errorf("overlap -1: chunk %d starts at %d, before %d", i, c[i].Start, c[i-1].End)
		}
	}
}

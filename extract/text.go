package extract

import (
	"fmt"
	"strings"
	"unicode"
)

// Text returns a text upload as a one-page Document: mediaType is
// PlainType, MarkdownType or HTMLType, as Detect says. Plain text and
// Markdown keep their lines (line ends made "\n", control characters
// dropped); HTML becomes its visible text (see htmlText), with its <title>
// as the title. It returns UnsupportedMediaType when data is not text (see
// Detect) or mediaType is not one of the three.
func Text(data []byte, mediaType string) (*Document, error) {
	text, err := decodeText(data)
	if err != nil {
		return nil, err
	}
	doc := &Document{MediaType: mediaType, PageCount: 1}
	switch mediaType {
	case PlainType:
		text = cleanText(text)
	case MarkdownType:
		text = cleanText(text)
		doc.Title = markdownTitle(text)
	case HTMLType:
		doc.Title, text = htmlText(text)
	default:
		return nil, unsupported(fmt.Sprintf("%s is not a text format", mediaType))
	}
	doc.Pages = []Page{{Number: 1, Text: text, HasText: hasLetters(text)}}
	return doc, nil
}

// cleanText makes line ends "\n", drops the characters no reader shows
// (see dropped), trims the ends of lines, keeps at most one blank line
// between paragraphs and drops blank lines at both ends.
func cleanText(s string) string {
	s = lineEnds.Replace(s)
	var b strings.Builder
	b.Grow(len(s))
	blank := false
	for line := range strings.Lines(s) {
		line = strings.TrimRightFunc(strings.Map(keep, line), unicode.IsSpace)
		if strings.TrimSpace(line) == "" {
			blank = b.Len() > 0
			continue
		}
		if b.Len() > 0 {
			b.WriteString("\n")
			if blank {
				b.WriteString("\n")
			}
		}
		blank = false
		b.WriteString(line)
	}
	return b.String()
}

// lineEnds makes every way of ending a line "\n".
var lineEnds = strings.NewReplacer("\r\n", "\n", "\r", "\n", "\f", "\n", "\v", "\n", "\u2028", "\n", "\u2029", "\n\n")

// keep is r, or -1 (drop it) when dropped(r); for strings.Map.
func keep(r rune) rune {
	if r != '\n' && dropped(r) {
		return -1
	}
	return r
}

// dropped reports whether r is a character no reader shows and text is
// better without: a control character other than tab, a noncharacter
// (PDFium marks a hyphen it joined with U+FFFE), or a private-use code
// point (a symbol font's glyph without a Unicode mapping).
func dropped(r rune) bool {
	switch {
	case r == '\t':
		return false
	case r < 0x20, r >= 0x7F && r < 0xA0:
		return true
	case r >= 0xE000 && r <= 0xF8FF, r >= 0xF0000:
		return true
	case r >= 0xFDD0 && r <= 0xFDEF, r&0xFFFE == 0xFFFE:
		return true
	}
	return false
}

// markdownTitle is the text of the first level-one ATX heading ("# …") in
// text, or "".
func markdownTitle(text string) string {
	for line := range strings.Lines(text) {
		if t, ok := strings.CutPrefix(line, "# "); ok {
			return strings.TrimSpace(strings.TrimRight(strings.TrimSpace(t), "#"))
		}
	}
	return ""
}

// hasLetters reports whether s has a letter or a digit.
func hasLetters(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool { return unicode.IsLetter(r) || unicode.IsNumber(r) }) >= 0
}

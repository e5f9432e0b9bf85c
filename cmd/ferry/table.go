package main

import (
	"io"
	"strings"
	"unicode"

	"golang.org/x/text/width"
)

// table is rows of cells printed in aligned columns. Unlike text/tabwriter,
// which counts characters, it measures each cell by the columns a terminal
// gives it, so that a row holding Chinese (two columns a character) lines
// up with the others.
type table struct {
	rows [][]string
}

// row adds a row.
func (t *table) row(cells ...string) {
	t.rows = append(t.rows, cells)
}

// write prints the rows, each after indent, the columns gap spaces apart;
// the last cell of a row is not padded.
func (t *table) write(w io.Writer, indent string, gap int) error {
	var widths []int
	for _, r := range t.rows {
		for i, cell := range r[:max(len(r)-1, 0)] {
			if i == len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], displayWidth(cell))
		}
	}
	var b strings.Builder
	for _, r := range t.rows {
		b.WriteString(indent)
		for i, cell := range r {
			b.WriteString(cell)
			if i < len(r)-1 {
				b.WriteString(strings.Repeat(" ", widths[i]-displayWidth(cell)+gap))
			}
		}
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// displayWidth is how many columns a terminal gives s: two for each wide or
// fullwidth character (CJK, fullwidth punctuation), none for combining
// marks and format characters, one for the rest. Ambiguous characters
// (such as …) count one, as terminals outside East Asian locales show
// them.
func displayWidth(s string) int {
	n := 0
	for _, r := range s {
		switch {
		case unicode.In(r, unicode.Mn, unicode.Me, unicode.Cf):
		case isWide(r):
			n += 2
		default:
			n++
		}
	}
	return n
}

func isWide(r rune) bool {
	switch width.LookupRune(r).Kind() {
	case width.EastAsianWide, width.EastAsianFullwidth:
		return true
	}
	return false
}

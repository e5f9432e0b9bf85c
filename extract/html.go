package extract

import (
	"strings"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// htmlText returns the title of an HTML document and its visible text:
// scripts, styles and other parts no reader sees are left out; headings
// are lines of their own that begin with one "#" per level, as Markdown's,
// so a chunker splits HTML and Markdown alike; paragraphs and other blocks
// are apart by a blank line; list items begin with "- "; a table's cells
// are apart by " | ", one row a line; <pre> keeps its spacing. Broken HTML
// is read as browsers read it.
func htmlText(src string) (title, text string) {
	root, err := html.Parse(strings.NewReader(src))
	if err != nil {
		// html.Parse fails only when reading fails, which a string does not.
		return "", cleanText(src)
	}
	w := &htmlWriter{}
	w.walk(root)
	return strings.Join(strings.Fields(titleOf(root)), " "), cleanText(w.b.String())
}

// htmlWriter gathers an HTML document's text as walk visits its nodes.
type htmlWriter struct {
	b     strings.Builder
	space bool // a blank is due before the next word
	pre   int  // depth inside <pre>
}

// hidden are the elements whose content is not text a reader sees.
var hidden = map[atom.Atom]bool{
	atom.Script: true, atom.Style: true, atom.Noscript: true, atom.Template: true,
	atom.Head: true, atom.Svg: true, atom.Canvas: true, atom.Iframe: true,
	atom.Object: true, atom.Embed: true, atom.Select: true, atom.Button: true,
}

// paragraphs are the elements set apart by a blank line; lines are those
// on a line of their own.
var (
	paragraphs = map[atom.Atom]bool{
		atom.P: true, atom.Blockquote: true, atom.Pre: true, atom.Table: true,
		atom.Ul: true, atom.Ol: true, atom.Dl: true, atom.Figure: true,
		atom.Section: true, atom.Article: true, atom.Aside: true, atom.Header: true,
		atom.Footer: true, atom.Main: true, atom.Nav: true, atom.Address: true,
		atom.Form: true, atom.Fieldset: true, atom.Details: true, atom.Hr: true,
	}
	lines = map[atom.Atom]bool{
		atom.Div: true, atom.Tr: true, atom.Dt: true, atom.Dd: true,
		atom.Figcaption: true, atom.Caption: true, atom.Summary: true,
		atom.Legend: true, atom.Li: true, atom.Tbody: true, atom.Thead: true, atom.Tfoot: true,
	}
	headings = map[atom.Atom]int{atom.H1: 1, atom.H2: 2, atom.H3: 3, atom.H4: 4, atom.H5: 5, atom.H6: 6}
)

// walk writes n and its descendants.
func (w *htmlWriter) walk(n *html.Node) {
	switch n.Type {
	case html.TextNode:
		w.text(n.Data)
		return
	case html.ElementNode:
		if hidden[n.DataAtom] || hasAttr(n, "hidden") {
			return
		}
	case html.DocumentNode:
	default:
		return // comments, doctype
	}
	a := n.DataAtom
	switch {
	case headings[a] > 0:
		w.breakLines(2)
		w.b.WriteString(strings.Repeat("#", headings[a]) + " ")
	case paragraphs[a]:
		w.breakLines(2)
	case lines[a]:
		w.breakLines(1)
	case a == atom.Br:
		w.breakLines(1)
	case (a == atom.Td || a == atom.Th) && n.PrevSibling != nil:
		w.b.WriteString(" | ")
		w.space = false
	}
	if a == atom.Li {
		w.b.WriteString("- ")
	}
	if a == atom.Pre {
		w.pre++
	}
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		w.walk(c)
	}
	if a == atom.Pre {
		w.pre--
	}
	switch {
	case headings[a] > 0, paragraphs[a]:
		w.breakLines(2)
	case lines[a]:
		w.breakLines(1)
	}
}

// text writes a text node: its runs of blanks as one space, except in
// <pre>.
func (w *htmlWriter) text(s string) {
	if w.pre > 0 {
		w.b.WriteString(s)
		return
	}
	words := strings.Fields(s)
	if len(words) == 0 {
		w.space = w.space || s != ""
		return
	}
	if (w.space || startsBlank(s)) && w.b.Len() > 0 && !endsBlank(w.b.String()) {
		w.b.WriteByte(' ')
	}
	w.b.WriteString(strings.Join(words, " "))
	w.space = endsBlank(s)
}

// breakLines ends the current line with n line breaks in all (1: a new
// line, 2: a blank line), counting those already written.
func (w *htmlWriter) breakLines(n int) {
	w.space = false
	s := w.b.String()
	have := len(s) - len(strings.TrimRight(s, "\n"))
	for ; have < n && len(s) > 0; have++ {
		w.b.WriteByte('\n')
	}
}

// startsBlank and endsBlank report whether s begins or ends with a blank.
func startsBlank(s string) bool { return s != "" && strings.TrimLeft(s[:1], " \t\n\r\f") == "" }
func endsBlank(s string) bool   { return s != "" && strings.TrimRight(s[len(s)-1:], " \t\n\r\f") == "" }

// titleOf is the text of the first <title> in n, or "".
func titleOf(n *html.Node) string {
	if n.Type == html.ElementNode && n.DataAtom == atom.Title {
		var b strings.Builder
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			if c.Type == html.TextNode {
				b.WriteString(c.Data)
			}
		}
		return b.String()
	}
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if t := titleOf(c); t != "" {
			return t
		}
	}
	return ""
}

// hasAttr reports whether n has the attribute key.
func hasAttr(n *html.Node, key string) bool {
	for _, a := range n.Attr {
		if a.Key == key {
			return true
		}
	}
	return false
}

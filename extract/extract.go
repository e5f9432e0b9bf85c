// Package extract turns uploaded documents into the text of their pages:
// PDFs through PDFium compiled to WebAssembly (see PDF), and plain text,
// Markdown and HTML as one page each (see Text). Detect decides which of
// them an upload is from its bytes, not from the type it was declared as.
//
// Every refusal is a *ferry.Error that says what to do: a file that is
// neither a PDF nor text is UnsupportedMediaType (415); an encrypted PDF
// without the right password, a damaged one and an empty file are Invalid
// (400, the password ones naming the "password" field); a PDF with more
// pages than the caller allows is TooLarge (413). A PDF without a text
// layer is not refused: Document says which pages have text, and
// RequireText refuses for callers whose model cannot read images.
package extract

import (
	"fmt"

	"github.com/ferryhq/ferry"
)

// The media types Detect tells apart and Document.MediaType holds.
const (
	PDFType      = "application/pdf"
	PlainType    = "text/plain"
	MarkdownType = "text/markdown"
	HTMLType     = "text/html"
)

// Document is the text of one uploaded file, page by page.
type Document struct {
	MediaType string // PDFType, PlainType, MarkdownType or HTMLType
	Title     string // from the PDF's metadata, the HTML <title> or the first Markdown "# " heading; may be ""
	Author    string // from the PDF's metadata; may be ""
	PageCount int    // pages in the file; text formats have one
	Pages     []Page // one per page, in order; nil from PDF.Inspect
	Encrypted bool   // the PDF is encrypted (it opened with the password given, or needs none)
}

// Page is the text of one page.
type Page struct {
	Number int // from 1
	// Text is the page's visible text in reading order: lines end in
	// "\n", paragraphs are apart by a blank line, words hyphenated across
	// lines are joined, and control and private-use characters (symbol
	// fonts without a Unicode mapping) are gone. From HTML, headings are
	// lines of their own that begin with "#" as in Markdown, so a chunker
	// splits every format on the same marks.
	Text string
	// HasText says whether the page shows text: a letter or a digit
	// inside its visible box. A scanned page without an OCR layer has
	// none, nor has a page PDFium cannot load; their Text is "".
	HasText bool
}

// HasTextLayer reports whether any page has text. A PDF without one is
// scanned images: only a model that reads images can use it.
func (d *Document) HasTextLayer() bool {
	for _, p := range d.Pages {
		if p.HasText {
			return true
		}
	}
	return false
}

// PagesWithoutText returns the numbers of the pages that have no text
// (images only), in order.
func (d *Document) PagesWithoutText() []int {
	var out []int
	for _, p := range d.Pages {
		if !p.HasText {
			out = append(out, p.Number)
		}
	}
	return out
}

// RequireText returns nil when d has a text layer, and otherwise an
// Invalid error that says what to do: send it to a model that reads
// images (Anthropic's read the pages of a PDF as images), or OCR it. A
// caller whose model reads only text calls it before spending anything.
func (d *Document) RequireText() error {
	if d.HasTextLayer() {
		return nil
	}
	what := "the PDF has no text layer"
	if d.PageCount > 0 {
		what = fmt.Sprintf("the PDF has no text layer on any of its %d pages", d.PageCount)
	}
	return &ferry.Error{Code: ferry.Invalid, Fields: map[string]string{"file": "no text layer"},
		Message: what + " (it is scanned images), and this model reads only text: " +
			"ask a model that reads images (an Anthropic model reads PDF pages as images), or run OCR on the file and upload the result"}
}

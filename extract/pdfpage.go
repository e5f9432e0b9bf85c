package extract

import (
	"context"
	"fmt"
	"strings"
	"unicode"

	"github.com/klippa-app/go-pdfium/references"
	"github.com/klippa-app/go-pdfium/requests"
)

// reader reads one document on one instance.
type reader struct {
	inst *instance
	ctx  context.Context
	doc  references.FPDF_DOCUMENT
}

// read opens data, checks it against o and, withText, reads every page.
func (r *reader) read(data []byte, o Options, withText bool) (*Document, error) {
	open := &requests.OpenDocument{File: &data}
	if o.Password != "" {
		open.Password = &o.Password
	}
	opened, err := r.inst.OpenDocument(open)
	if err != nil {
		return nil, openError(err, o.Password)
	}
	r.doc = opened.Document
	defer r.inst.FPDF_CloseDocument(&requests.FPDF_CloseDocument{Document: r.doc})

	count, err := r.inst.FPDF_GetPageCount(&requests.FPDF_GetPageCount{Document: r.doc})
	if err != nil {
		return nil, fmt.Errorf("extract: count pages: %w", err)
	}
	if count.PageCount <= 0 {
		return nil, damaged(fmt.Errorf("%d pages", count.PageCount))
	}
	if o.MaxPages > 0 && count.PageCount > o.MaxPages {
		return nil, tooManyPages(count.PageCount, o.MaxPages)
	}
	doc := &Document{MediaType: PDFType, PageCount: count.PageCount}
	if rev, err := r.inst.FPDF_GetSecurityHandlerRevision(&requests.FPDF_GetSecurityHandlerRevision{Document: r.doc}); err == nil {
		doc.Encrypted = rev.SecurityHandlerRevision >= 0 // -1: not encrypted
	}
	tags := []string{"Title", "Author"}
	if meta, err := r.inst.GetMetaData(&requests.GetMetaData{Document: r.doc, Tags: &tags}); err == nil {
		for _, t := range meta.Tags {
			v := strings.Join(strings.Fields(strings.Map(keep, t.Value)), " ")
			switch t.Tag {
			case "Title":
				doc.Title = v
			case "Author":
				doc.Author = v
			}
		}
	}
	if !withText {
		return doc, nil
	}
	doc.Pages = make([]Page, count.PageCount)
	for i := range doc.Pages {
		if err := r.ctx.Err(); err != nil {
			return nil, err
		}
		page, err := r.page(i)
		if err != nil {
			return nil, fmt.Errorf("extract: page %d: %w", i+1, err)
		}
		doc.Pages[i] = page
	}
	return doc, nil
}

// page reads the page at index i.
func (r *reader) page(i int) (Page, error) {
	loaded, err := r.inst.FPDF_LoadPage(&requests.FPDF_LoadPage{Document: r.doc, Index: i})
	if err != nil {
		// A page PDFium cannot load is a damaged page; the others
		// still count.
		return Page{Number: i + 1}, nil
	}
	defer r.inst.FPDF_ClosePage(&requests.FPDF_ClosePage{Page: loaded.Page})
	pageRef := requests.Page{ByReference: &loaded.Page}
	tp, err := r.inst.FPDFText_LoadPage(&requests.FPDFText_LoadPage{Page: pageRef})
	if err != nil {
		return Page{}, fmt.Errorf("load text: %w", err)
	}
	defer r.inst.FPDFText_ClosePage(&requests.FPDFText_ClosePage{TextPage: tp.TextPage})
	n, err := r.inst.FPDFText_CountChars(&requests.FPDFText_CountChars{TextPage: tp.TextPage})
	if err != nil {
		return Page{}, fmt.Errorf("count characters: %w", err)
	}
	if n.Count <= 0 {
		return Page{Number: i + 1}, nil
	}
	// Text outside the page's visible box (an image's caption left off
	// the page by its maker) is no text layer: a page has text when its
	// box shows a letter or digit.
	box, err := r.inst.FPDF_GetPageBoundingBox(&requests.FPDF_GetPageBoundingBox{Page: pageRef})
	if err != nil {
		return Page{}, fmt.Errorf("page box: %w", err)
	}
	visible, err := r.inst.FPDFText_GetBoundedText(&requests.FPDFText_GetBoundedText{TextPage: tp.TextPage,
		Left: float64(box.Rect.Left), Top: float64(box.Rect.Top), Right: float64(box.Rect.Right), Bottom: float64(box.Rect.Bottom)})
	if err != nil {
		return Page{}, fmt.Errorf("visible text: %w", err)
	}
	if !hasLetters(visible.Text) {
		return Page{Number: i + 1}, nil
	}
	all, err := r.inst.FPDFText_GetText(&requests.FPDFText_GetText{TextPage: tp.TextPage, StartIndex: 0, Count: n.Count})
	if err != nil {
		return Page{}, fmt.Errorf("text: %w", err)
	}
	text := all.Text
	if hasRTL(text) {
		if text, err = r.rtlText(tp.TextPage, n.Count); err != nil {
			return Page{}, err
		}
	}
	text = cleanText(text)
	return Page{Number: i + 1, Text: text, HasText: hasLetters(text)}, nil
}

// rtlText is the text of a page with right-to-left script, character by
// character: PDFium reverses the characters of a glyph that maps to
// several (a ligature of a whole Arabic word, say) as if they were in
// visual order, though a ToUnicode map holds them in logical order; this
// puts them back. The characters of one glyph share their box; those of
// different glyphs do not.
func (r *reader) rtlText(tp references.FPDF_TEXTPAGE, count int) (string, error) {
	type char struct {
		r   rune
		box [4]float64
	}
	chars := make([]char, count)
	for i := range chars {
		u, err := r.inst.FPDFText_GetUnicode(&requests.FPDFText_GetUnicode{TextPage: tp, Index: i})
		if err != nil {
			return "", fmt.Errorf("character %d: %w", i, err)
		}
		b, err := r.inst.FPDFText_GetCharBox(&requests.FPDFText_GetCharBox{TextPage: tp, Index: i})
		if err != nil {
			return "", fmt.Errorf("character %d box: %w", i, err)
		}
		chars[i] = char{rune(u.Unicode), [4]float64{b.Left, b.Right, b.Bottom, b.Top}}
	}
	out := make([]rune, 0, count)
	for start := 0; start < len(chars); {
		end := start + 1
		for end < len(chars) && chars[end].box == chars[start].box && chars[start].box[0] != chars[start].box[1] {
			end++
		}
		glyph := make([]rune, 0, end-start)
		for _, c := range chars[start:end] {
			glyph = append(glyph, c.r)
		}
		if len(glyph) > 1 && hasRTL(string(glyph)) {
			for i, j := 0, len(glyph)-1; i < j; i, j = i+1, j-1 {
				glyph[i], glyph[j] = glyph[j], glyph[i]
			}
		}
		out = append(out, glyph...)
		start = end
	}
	return string(out), nil
}

// hasRTL reports whether s has a letter of a right-to-left script.
func hasRTL(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool {
		return unicode.In(r, unicode.Arabic, unicode.Hebrew, unicode.Syriac, unicode.Thaana, unicode.Nko)
	}) >= 0
}

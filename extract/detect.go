package extract

import (
	"bytes"
	"mime"
	"path"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/encoding/unicode"

	"github.com/ferryhq/ferry"
)

// pdfHeaderWindow is how far into a file its "%PDF-" header may start:
// readers accept junk before it (a mail header, a BOM), as Acrobat does
// within the first 1024 bytes.
const pdfHeaderWindow = 1024

// IsPDF reports whether data is a PDF: "%PDF-" within its first 1024
// bytes.
func IsPDF(data []byte) bool {
	return bytes.Contains(data[:min(len(data), pdfHeaderWindow+len("%PDF-"))], []byte("%PDF-"))
}

// sendWhat is the end of every refusal of an upload's format.
const sendWhat = "send a PDF, or plain text, Markdown or HTML in UTF-8"

// Detect says what an upload is, from its bytes: PDFType when it has a PDF
// header, whatever it was declared as (browsers send PDFs as
// application/octet-stream); otherwise, when it is text (UTF-8, or UTF-16
// with a byte order mark), HTMLType, MarkdownType or PlainType after the
// declared media type, then the file name's extension, then whether it
// begins like an HTML document. declared and filename may be "".
//
// It returns UnsupportedMediaType for a file declared or named a PDF
// without a PDF header, and for a binary file (a NUL byte, or bytes that
// are not UTF-8); Invalid for an empty one.
func Detect(data []byte, declared, filename string) (string, error) {
	if len(data) == 0 {
		return "", &ferry.Error{Code: ferry.Invalid, Message: "the file is empty: " + sendWhat,
			Fields: map[string]string{"file": "empty"}}
	}
	if IsPDF(data) {
		return PDFType, nil
	}
	declared = baseType(declared)
	ext := strings.ToLower(path.Ext(filename))
	if declared == PDFType || ext == ".pdf" {
		return "", unsupported("the file is not a PDF: it has no %PDF- header in its first 1024 bytes")
	}
	text, err := decodeText(data)
	if err != nil {
		return "", err
	}
	switch {
	case declared == HTMLType || declared == "application/xhtml+xml":
		return HTMLType, nil
	case declared == MarkdownType || declared == "text/x-markdown":
		return MarkdownType, nil
	}
	switch ext {
	case ".html", ".htm", ".xhtml":
		return HTMLType, nil
	case ".md", ".markdown", ".mdown", ".mkd":
		return MarkdownType, nil
	}
	if looksLikeHTML(text) {
		return HTMLType, nil
	}
	return PlainType, nil
}

// baseType is the media type of a Content-Type value, lower case and
// without parameters; "" when it does not parse.
func baseType(contentType string) string {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return ""
	}
	return mt
}

// looksLikeHTML reports whether text begins, after blanks and comments,
// like an HTML document.
func looksLikeHTML(text string) bool {
	head := strings.ToLower(strings.TrimSpace(text[:min(len(text), 512)]))
	for strings.HasPrefix(head, "<!--") {
		end := strings.Index(head, "-->")
		if end < 0 {
			return false
		}
		head = strings.TrimSpace(head[end+3:])
	}
	return strings.HasPrefix(head, "<!doctype html") || strings.HasPrefix(head, "<html")
}

// decodeText returns data as a string when it is text: UTF-8 (its byte
// order mark dropped), or UTF-16 with a byte order mark (as Windows
// editors save "Unicode" text), without NUL bytes. Anything else is
// UnsupportedMediaType.
func decodeText(data []byte) (string, error) {
	switch {
	case bytes.HasPrefix(data, []byte{0xEF, 0xBB, 0xBF}):
		data = data[3:]
	case bytes.HasPrefix(data, []byte{0xFF, 0xFE}), bytes.HasPrefix(data, []byte{0xFE, 0xFF}):
		dec := unicode.UTF16(unicode.LittleEndian, unicode.ExpectBOM).NewDecoder()
		out, err := dec.Bytes(data)
		if err != nil {
			return "", unsupported("the file begins like UTF-16 text but is not")
		}
		data = out
	}
	if i := bytes.IndexByte(data, 0); i >= 0 {
		return "", unsupported("the file is binary (it has a NUL byte), neither a PDF nor text")
	}
	if !utf8.Valid(data) {
		return "", unsupported("the file is neither a PDF nor UTF-8 text (convert other encodings to UTF-8)")
	}
	return string(data), nil
}

// unsupported is the UnsupportedMediaType refusal of an upload: what is
// wrong, then what to send.
func unsupported(what string) *ferry.Error {
	return &ferry.Error{Code: ferry.UnsupportedMediaType, Message: what + "; " + sendWhat,
		Fields: map[string]string{"file": "unsupported format"}}
}

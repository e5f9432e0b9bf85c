package extract

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/ferryhq/ferry"
)

// TestDetect checks that an upload's format comes from its bytes: a PDF
// is recognised by its header whatever it was declared as, a file declared
// or named a PDF without one is refused with 415, binary files are refused
// with 415, and text is told apart by declared type, then extension, then
// content.
func TestDetect(t *testing.T) {
	pdf := readPDF(t, "pypdf-resources/crazyones.pdf")
	png := []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10")
	utf16 := []byte{0xFF, 0xFE, 'h', 0, 'i', 0, '\n', 0, 0x60, 0x4F, 0x7D, 0x59} // "hi\n你好", UTF-16LE with a BOM
	for _, tc := range []struct {
		name, declared, filename string
		data                     []byte
		want                     string
		code                     ferry.Code // refusals
		says                     string
	}{
		{name: "PDF sent as octet-stream", declared: "application/octet-stream", filename: "report.bin", data: pdf, want: PDFType},
		{name: "PDF declared as text", declared: "text/plain", data: pdf, want: PDFType},
		{name: "PDF after junk", data: append([]byte("junk before the header\n"), pdf...), want: PDFType},
		{name: "PDF header at byte 1024", data: append(bytes.Repeat([]byte{' '}, 1024), pdf...), want: PDFType},
		{name: "PDF header past byte 1024", declared: "application/pdf", data: append(bytes.Repeat([]byte{' '}, 1025), pdf...),
			code: ferry.UnsupportedMediaType, says: "not a PDF"},
		{name: "text declared as PDF", declared: "application/pdf", data: []byte("hello"), code: ferry.UnsupportedMediaType, says: "%PDF-"},
		{name: "text named .pdf", filename: "Report.PDF", data: []byte("hello"), code: ferry.UnsupportedMediaType, says: "not a PDF"},
		{name: "PNG", declared: "image/png", data: png, code: ferry.UnsupportedMediaType, says: "binary"},
		{name: "Latin-1 text", declared: "text/plain", data: []byte("caf\xe9 cr\xe8me"), code: ferry.UnsupportedMediaType, says: "UTF-8"},
		{name: "empty", data: nil, code: ferry.Invalid, says: "empty"},
		{name: "UTF-16 with a BOM", filename: "notes.txt", data: utf16, want: PlainType},
		{name: "HTML by type", declared: "text/html; charset=utf-8", data: []byte("<p>hi"), want: HTMLType},
		{name: "XHTML by type", declared: "application/xhtml+xml", data: []byte("<p>hi"), want: HTMLType},
		{name: "HTML by extension", declared: "application/octet-stream", filename: "page.HTM", data: []byte("<p>hi"), want: HTMLType},
		{name: "HTML by content", data: []byte("\n <!-- saved --> <!DOCTYPE html><html><body>hi"), want: HTMLType},
		{name: "Markdown by type", declared: "text/markdown", data: []byte("# Hi"), want: MarkdownType},
		{name: "Markdown by extension", declared: "application/octet-stream", filename: "README.md", data: []byte("# Hi"), want: MarkdownType},
		{name: "Markdown named .md sent as text/plain", declared: "text/plain", filename: "notes.md", data: []byte("# Hi"), want: MarkdownType},
		{name: "plain text", declared: "", data: []byte("just words, <b>not</b> a page"), want: PlainType},
		{name: "JSON is text", declared: "application/json", data: []byte(`{"a": 1}`), want: PlainType},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Detect(tc.data, tc.declared, tc.filename)
			if tc.code == "" {
				if err != nil || got != tc.want {
					t.Fatalf("Detect = %q, %v; want %q", got, err, tc.want)
				}
				return
			}
			var fe *ferry.Error
			if !errors.As(err, &fe) || fe.Code != tc.code || !strings.Contains(fe.Message, tc.says) || fe.Fields["file"] == "" {
				t.Fatalf("Detect = %q, %v; want a %s refusal naming the file field that says %q", got, err, tc.code, tc.says)
			}
			if tc.code == ferry.UnsupportedMediaType && !strings.Contains(fe.Message, "send a PDF, or plain text, Markdown or HTML") {
				t.Errorf("the refusal %q does not say what to send", fe.Message)
			}
		})
	}
}

// TestTextFormats checks what Text makes of each text format.
func TestTextFormats(t *testing.T) {
	for _, tc := range []struct {
		name, mediaType, in string
		title, text         string
	}{
		{name: "plain text", mediaType: PlainType,
			in:   "\ufeffFirst line  \r\nsecond\tline\x07\x1b\r\n\r\n\r\n\r\nnext paragraph\flast\u2028end\n\n",
			text: "First line\nsecond\tline\n\nnext paragraph\nlast\nend"},
		{name: "Markdown keeps its marks and indentation", mediaType: MarkdownType,
			in:    "Intro\n\n# Guide #\n\n## Install\n\n    go install\n\n- one\n- two\n",
			title: "Guide", text: "Intro\n\n# Guide #\n\n## Install\n\n    go install\n\n- one\n- two"},
		{name: "HTML", mediaType: HTMLType,
			in: `<!DOCTYPE html><html><head><title> The  Guide </title><style>p{color:red}</style>
<script>var secret = "do not index";</script></head>
<body><nav hidden>menu</nav><h1>Guide</h1><p>Read   this <b>first</b>,
then <a href="#">that</a>.</p><h2>Install <small>(v2)</small></h2>
<ul><li>one</li><li>two <i>items</i></li></ul>
<table><tr><th>Name</th><th>Size</th></tr><tr><td>a</td><td>1</td></tr></table>
<pre>  keep
    spacing</pre><div>tail<br>line</div><noscript>enable JS</noscript><template><p>never</p></template>
<p>中文。句子！</p></body></html>`,
			title: "The Guide",
			text: "# Guide\n\nRead this first, then that.\n\n## Install (v2)\n\n- one\n- two items\n\nName | Size\na | 1\n\n" +
				"  keep\n    spacing\n\ntail\nline\n\n中文。句子！"},
		{name: "HTML fragment", mediaType: HTMLType, in: "just <em>text</em> &amp; an entity", text: "just text & an entity"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc, err := Text([]byte(tc.in), tc.mediaType)
			if err != nil {
				t.Fatal(err)
			}
			if doc.MediaType != tc.mediaType || doc.PageCount != 1 || len(doc.Pages) != 1 || doc.Pages[0].Number != 1 || !doc.Pages[0].HasText {
				t.Errorf("document %+v; want one page with text", doc)
			}
			if doc.Title != tc.title {
				t.Errorf("title %q; want %q", doc.Title, tc.title)
			}
			if got := doc.Pages[0].Text; got != tc.text {
				t.Errorf("text:\n%q\nwant:\n%q", got, tc.text)
			}
		})
	}
}

// TestTextRefusals checks that Text refuses what is not text, and a media
// type it does not read.
func TestTextRefusals(t *testing.T) {
	for _, tc := range []struct {
		name, mediaType string
		data            []byte
	}{
		{"binary", PlainType, []byte("PK\x03\x04\x14\x00\x06\x00")},
		{"not UTF-8", HTMLType, []byte("<p>caf\xe9</p>")},
		{"a PDF", PDFType, []byte("%PDF-1.7\n")},
		{"an image type", "image/png", []byte("text")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Text(tc.data, tc.mediaType)
			if ferry.ErrorCode(err) != ferry.UnsupportedMediaType {
				t.Errorf("Text = %v; want UnsupportedMediaType", err)
			}
		})
	}
	doc, err := Text([]byte("  \n\t\n"), PlainType)
	if err != nil || doc.Pages[0].HasText || doc.HasTextLayer() {
		t.Errorf("blank text: %+v, %v; want a page without text", doc, err)
	}
}

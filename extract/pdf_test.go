package extract

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"unicode"

	"golang.org/x/text/unicode/norm"

	"github.com/ferryhq/ferry"
)

// TestPDFPagesAndText reads every shared PDF and checks it against what
// poppler measured (manifest.json): the page count, and the amount of text,
// non-blank characters within 2 % (or 5 characters) of pdftotext's, so
// that no page's text is lost or doubled. Files tagged text have a text
// layer; image-only ones are flagged as having none on every page.
func TestPDFPagesAndText(t *testing.T) {
	p := testPDF(t)
	for _, e := range readManifest(t) {
		t.Run(e.File, func(t *testing.T) {
			doc, err := p.Extract(context.Background(), readPDF(t, e.File), Options{Password: e.userPassword()})
			if err != nil {
				t.Fatal(err)
			}
			if doc.PageCount != e.PopplerPages || len(doc.Pages) != e.PopplerPages {
				t.Errorf("%d pages (%d read); poppler counts %d", doc.PageCount, len(doc.Pages), e.PopplerPages)
			}
			for i, pg := range doc.Pages {
				if pg.Number != i+1 {
					t.Errorf("page %d is numbered %d", i+1, pg.Number)
				}
			}
			chars := nonBlank(doc)
			if diff := abs(chars - e.PopplerChars); diff > max(5, e.PopplerChars/50) {
				t.Errorf("%d non-blank characters; pdftotext finds %d", chars, e.PopplerChars)
			}
			if doc.MediaType != PDFType {
				t.Errorf("media type %q", doc.MediaType)
			}
			switch {
			case e.has("image-only"):
				if doc.HasTextLayer() || len(doc.PagesWithoutText()) != doc.PageCount {
					t.Errorf("an image-only PDF has text on pages other than %v", doc.PagesWithoutText())
				}
				var fe *ferry.Error
				if err := doc.RequireText(); !errors.As(err, &fe) || fe.Code != ferry.Invalid || !strings.Contains(fe.Message, "no text layer") ||
					!strings.Contains(fe.Message, "reads images") {
					t.Errorf("RequireText = %v; want an Invalid error that says there is no text layer and what to do", err)
				}
			case e.has("text") || e.has("ocr-text-layer"):
				if err := doc.RequireText(); err != nil {
					t.Errorf("RequireText = %v", err)
				}
				if none := doc.PagesWithoutText(); len(none) > 0 {
					t.Errorf("pages %v have no text", none)
				}
			}
			if !e.has("encrypted") && doc.Encrypted {
				t.Error("an unencrypted PDF is said to be encrypted")
			}
		})
	}
}

// nonBlank counts the characters of doc's text that are not blanks.
func nonBlank(doc *Document) int {
	n := 0
	for _, pg := range doc.Pages {
		for _, r := range pg.Text {
			if !unicode.IsSpace(r) {
				n++
			}
		}
	}
	return n
}

func abs(n int) int { return max(n, -n) }

// assertions is expected/pypdf/assertions.json: what pypdf's own tests
// expect of some of the PDFs.
type assertions map[string]struct {
	Page               int               `json:"page"`
	Pages              json.RawMessage   `json:"pages"`
	MustContain        []string          `json:"must_contain"`
	MustContainEach    []string          `json:"must_contain_each_page"`
	ExpectedFile       string            `json:"expected_file"`
	Comparison         string            `json:"comparison"`
	ExpectedMetadata   map[string]string `json:"expected_metadata"`
	PasswordsInEnglish string            `json:"password"`
}

func readAssertions(t *testing.T) assertions {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(pdfDir, "expected", "pypdf", "assertions.json"))
	if err != nil {
		t.Fatal(err)
	}
	var a assertions
	if err := json.Unmarshal(raw, &a); err != nil {
		t.Fatal(err)
	}
	return a
}

// TestPDFExpectedText compares the text of the PDFs whose expected text
// pypdf's tests publish. The text is compared as words (NFKC, lower case,
// letters and digits): pypdf and PDFium place spaces and line breaks
// differently, so equality of strings is not the measure; instead at
// least 99 % of pypdf's words must be, in order, in the longest sequence
// of words both texts share. pypdf's layout mode (multicolumn, forms)
// lays a page out as fixed-width lines, the two columns side by side,
// while PDFium reads one column, then the other, joining words hyphenated
// across lines: such expected text is first put in that reading order
// (see readingOrder). The PDF/A copy of crazyones has crazyones' text, as
// the manifest says.
func TestPDFExpectedText(t *testing.T) {
	p := testPDF(t)
	checked := map[string]bool{}
	for file, a := range readAssertions(t) {
		if a.ExpectedFile == "" {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(pdfDir, filepath.FromSlash(a.ExpectedFile)))
		if err != nil {
			t.Fatal(err)
		}
		expected := string(raw)
		if strings.Contains(a.Comparison, "layout") {
			expected = readingOrder(expected)
		}
		files := []string{file}
		if file == "pypdf-resources/crazyones.pdf" {
			files = append(files, "pypdf-sample-files/021-pdfa/crazyones-pdfa.pdf")
		}
		for _, f := range files {
			checked[f] = true
			t.Run(f, func(t *testing.T) {
				doc, err := p.Extract(context.Background(), readPDF(t, f), Options{})
				if err != nil {
					t.Fatal(err)
				}
				got, want := words(doc.Pages[a.Page-1].Text), words(expected)
				if r := float64(lcs(got, want)) / float64(len(want)); r < 0.99 {
					t.Errorf("%.3f of pypdf's %d words are in order in PDFium's %d; want ≥ 0.99\ngot:  %s\nwant: %s", r, len(want), len(got), strings.Join(got, " "), strings.Join(want, " "))
				} else {
					t.Logf("%.3f of pypdf's %d words are in order in PDFium's %d", r, len(want), len(got))
				}
			})
		}
	}
	if len(checked) < 4 {
		t.Errorf("compared %d files with expected text; want 4 (crazyones, its PDF/A copy, multicolumn, forms)", len(checked))
	}
}

// layoutGutter is the column of pypdf's layout-mode text that falls in the
// gutter between the two columns of the multicolumn page (the left column
// ends by column 63, the right one begins at 70).
const layoutGutter = 66

// readingOrder turns pypdf's layout-mode text into reading order: the left
// column's lines, then the right column's, each line split where it has a
// blank at the gutter, and words hyphenated at the end of a column's line
// joined. A line with no blank there (a centred heading) is the left
// column's.
func readingOrder(layout string) string {
	var left, right []string
	for line := range strings.Lines(layout) {
		r := []rune(strings.TrimRight(line, "\n"))
		if len(r) > layoutGutter && r[layoutGutter] == ' ' {
			left, right = append(left, string(r[:layoutGutter])), append(right, string(r[layoutGutter:]))
		} else {
			left = append(left, string(r))
		}
	}
	var b strings.Builder
	for _, line := range append(left, right...) {
		line = strings.TrimSpace(line)
		if before, ok := strings.CutSuffix(line, "-"); ok && before != "" {
			b.WriteString(before) // the word goes on on the next line
			continue
		}
		b.WriteString(line + "\n")
	}
	return b.String()
}

// words are the lower-case runs of letters and digits in s, in NFKC (a
// ligature such as "ﬁ" is its letters).
func words(s string) []string {
	return strings.FieldsFunc(strings.ToLower(norm.NFKC.String(s)), func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsNumber(r) })
}

// lcs is the length of the longest common subsequence of a and b.
func lcs(a, b []string) int {
	prev, cur := make([]int, len(b)+1), make([]int, len(b)+1)
	for i := range a {
		for j := range b {
			if a[i] == b[j] {
				cur[j+1] = prev[j] + 1
			} else {
				cur[j+1] = max(cur[j], prev[j+1])
			}
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// TestPDFScripts checks the pages whose text pypdf's tests pin down: the
// multilingual page yields its Chinese, Japanese, Arabic, Russian and
// Thai, and every page of the Arabic file, each rotated differently
// (0, 90, 180 and 270 degrees), yields both its Latin and its Arabic
// word, the Arabic in logical order.
func TestPDFScripts(t *testing.T) {
	p := testPDF(t)
	checked := 0
	for file, a := range readAssertions(t) {
		if len(a.MustContain) == 0 && len(a.MustContainEach) == 0 {
			continue
		}
		checked++
		t.Run(file, func(t *testing.T) {
			doc, err := p.Extract(context.Background(), readPDF(t, file), Options{})
			if err != nil {
				t.Fatal(err)
			}
			if len(a.MustContain) > 0 {
				text := doc.Pages[a.Page-1].Text
				for _, s := range a.MustContain {
					if !strings.Contains(text, s) {
						t.Errorf("page %d lacks %q:\n%s", a.Page, s, text)
					}
				}
			}
			for _, pg := range doc.Pages {
				for _, s := range a.MustContainEach {
					if !strings.Contains(pg.Text, s) {
						t.Errorf("page %d lacks %q:\n%s", pg.Number, s, pg.Text)
					}
				}
			}
		})
	}
	if checked < 3 {
		t.Errorf("checked %d files; want 3 (multilang, habibi, habibi-rotated)", checked)
	}
}

// TestPDFRotatedPages reads the PDFs tagged rotated: each page, whatever
// its /Rotate, has text, and the rotations are the ones poppler saw.
func TestPDFRotatedPages(t *testing.T) {
	p := testPDF(t)
	n := 0
	for _, e := range readManifest(t) {
		if !e.has("rotated") && !e.has("rotation-edge-case") {
			continue
		}
		n++
		doc, err := p.Extract(context.Background(), readPDF(t, e.File), Options{})
		if err != nil {
			t.Fatalf("%s: %v", e.File, err)
		}
		if none := doc.PagesWithoutText(); len(none) > 0 || len(doc.Pages) != e.PopplerPages {
			t.Errorf("%s (rotations %v): pages %v of %d have no text", e.File, e.Rotations, none, len(doc.Pages))
		}
	}
	if n < 2 {
		t.Errorf("%d rotated PDFs in the manifest; want 2", n)
	}
}

// TestPDFEncrypted opens every encrypted PDF: without a password, one
// that has a user password is refused with a message that asks for the
// password field; a wrong password is refused as wrong; the right one
// (the owner password too, where it is known) opens it, and its text and
// metadata are what pypdf's tests expect. A PDF with an empty user
// password opens without one and is still said to be encrypted.
func TestPDFEncrypted(t *testing.T) {
	p := testPDF(t)
	a := readAssertions(t)["pypdf-resources/encryption/*.pdf"]
	n := 0
	for _, e := range readManifest(t) {
		if !e.has("encrypted") {
			continue
		}
		n++
		t.Run(e.File, func(t *testing.T) {
			data := readPDF(t, e.File)
			password := e.userPassword()
			doc, err := p.Extract(context.Background(), data, Options{})
			if password == "" {
				if err != nil {
					t.Fatalf("a PDF without a user password: %v", err)
				}
			} else {
				wantRefusal(t, err, ferry.Invalid, "password", "encrypted", "send its password in the password field")
				_, err = p.Extract(context.Background(), data, Options{Password: password + "x"})
				wantRefusal(t, err, ferry.Invalid, "password", "does not open", "password field")
				if doc, err = p.Extract(context.Background(), data, Options{Password: password}); err != nil {
					t.Fatalf("with password %q: %v", password, err)
				}
			}
			// Unlocked with its password, it reads without one, the same.
			if _, err := p.Unlock(context.Background(), data, password+"x"); password != "" {
				wantRefusal(t, err, ferry.Invalid, "password", "does not open")
			}
			plain, err := p.Unlock(context.Background(), data, password)
			if err != nil {
				t.Fatalf("unlock: %v", err)
			}
			if again, err := p.Extract(context.Background(), plain, Options{}); err != nil {
				t.Errorf("the unlocked copy: %v", err)
			} else if again.Encrypted || again.PageCount != doc.PageCount || again.Pages[0].Text != doc.Pages[0].Text {
				t.Errorf("the unlocked copy: encrypted %v, %d pages, page 1 %.60q; want not encrypted, %d pages, %.60q",
					again.Encrypted, again.PageCount, again.Pages[0].Text, doc.PageCount, doc.Pages[0].Text)
			}
			if !doc.Encrypted || doc.PageCount != e.PopplerPages || !doc.HasTextLayer() {
				t.Errorf("encrypted %v, %d pages, text layer %v; want encrypted, %d pages, text", doc.Encrypted, doc.PageCount, doc.HasTextLayer(), e.PopplerPages)
			}
			if strings.HasPrefix(e.File, "pypdf-resources/encryption/") {
				if !strings.Contains(doc.Pages[0].Text, "pdf encryption test") {
					t.Errorf("text %q", doc.Pages[0].Text)
				}
				if doc.Author != a.ExpectedMetadata["/Author"] {
					t.Errorf("author %q; want %q", doc.Author, a.ExpectedMetadata["/Author"])
				}
			}
			if strings.Contains(*e.Password, "owner bar") {
				if _, err := p.Extract(context.Background(), data, Options{Password: "bar"}); err != nil {
					t.Errorf("the owner password does not open it: %v", err)
				}
			}
		})
	}
	if n < 7 {
		t.Errorf("%d encrypted PDFs in the manifest; want 7", n)
	}
}

// wantRefusal fails t unless err is a *ferry.Error with code, naming
// field, whose message has each of words.
func wantRefusal(t *testing.T, err error, code ferry.Code, field string, words ...string) {
	t.Helper()
	var fe *ferry.Error
	if !errors.As(err, &fe) {
		t.Fatalf("err = %v; want a *ferry.Error %s", err, code)
	}
	if fe.Code != code || fe.Fields[field] == "" {
		t.Errorf("%s %q naming %v; want %s naming %s", fe.Code, fe.Message, fe.Fields, code, field)
	}
	for _, w := range words {
		if !strings.Contains(fe.Message, w) {
			t.Errorf("message %q does not say %q", fe.Message, w)
		}
	}
}

// TestPDFRefusals checks the refusals of item 2 that do not need an
// encrypted file: a file that is not a PDF, a damaged one, and one with
// more pages than the caller allows, refused before any text is read;
// and a PDF whose header comes after some junk, which readers accept.
func TestPDFRefusals(t *testing.T) {
	p := testPDF(t)
	ctx := context.Background()
	crazy := readPDF(t, "pypdf-resources/crazyones.pdf")

	_, err := p.Extract(ctx, []byte("Just some text, not a PDF."), Options{})
	wantRefusal(t, err, ferry.UnsupportedMediaType, "file", "not a PDF", "%PDF-")
	_, err = p.Inspect(ctx, append(bytes.Repeat([]byte{' '}, 1100), crazy...), Options{})
	wantRefusal(t, err, ferry.UnsupportedMediaType, "file", "not a PDF")

	_, err = p.Extract(ctx, []byte("%PDF-1.7\nthis is not what a PDF holds\n%%EOF\n"), Options{})
	wantRefusal(t, err, ferry.Invalid, "file", "damaged", "save or print it as a new PDF")

	geo := readPDF(t, "pypdf-sample-files/009-pdflatex-geotopo/GeoTopo-komprimiert.pdf")
	_, err = p.Extract(ctx, geo, Options{MaxPages: 100})
	wantRefusal(t, err, ferry.TooLarge, "file", "117 pages", "100")
	doc, err := p.Inspect(ctx, geo, Options{MaxPages: 117})
	if err != nil || doc.PageCount != 117 || doc.Pages != nil || doc.Title != "Geometrie und Topologie" || doc.Author != "Martin Thoma" {
		t.Errorf("Inspect = %+v, %v; want 117 pages, its title and author, no text", doc, err)
	}

	junk := append([]byte("From: a mail header before the PDF\n\n"), crazy...)
	doc, err = p.Extract(ctx, junk, Options{})
	if err != nil || !strings.Contains(doc.Pages[0].Text, "The Crazy Ones") {
		t.Errorf("a PDF after 36 bytes of junk: %v", err)
	}
}

// TestPDFMemoryLimit checks that a PDF needing more memory than
// MemoryLimit is refused as too large, and that the reader then reads the
// next one.
func TestPDFMemoryLimit(t *testing.T) {
	p, err := NewPDF(PDFOptions{CacheDir: testCacheDir(t), Instances: 1, MemoryLimit: 24 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	crazy := readPDF(t, "pypdf-resources/crazyones.pdf")
	big := append(bytes.Clone(crazy), bytes.Repeat([]byte("% a comment line\n"), 2<<20)...) // 34 MB
	_, err = p.Extract(context.Background(), big, Options{})
	wantRefusal(t, err, ferry.TooLarge, "file", "24 MiB", "split it")
	if doc, err := p.Extract(context.Background(), crazy, Options{}); err != nil || !doc.HasTextLayer() {
		t.Errorf("after a PDF too large for memory: %v", err)
	}
}

// TestPDFConcurrent reads every shared PDF from several goroutines at once
// through two instances recycled after every seven documents: each
// result is the same as reading it alone.
func TestPDFConcurrent(t *testing.T) {
	p := testPDF(t)
	entries := readManifest(t)
	want := map[string]string{}
	for _, e := range entries {
		doc, err := p.Extract(context.Background(), readPDF(t, e.File), Options{Password: e.userPassword()})
		if err != nil {
			t.Fatal(err)
		}
		want[e.File] = fmt.Sprint(doc)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range entries {
				e := entries[(i+g*7)%len(entries)]
				doc, err := p.Extract(context.Background(), readPDF(t, e.File), Options{Password: e.userPassword()})
				if err != nil {
					t.Errorf("%s: %v", e.File, err)
				} else if fmt.Sprint(doc) != want[e.File] {
					t.Errorf("%s reads differently at the same time as others", e.File)
				}
			}
		})
	}
	wg.Wait()
}

// TestPDFCancel checks that a cancelled context stops a read with its
// error, and that the reader still works afterwards.
func TestPDFCancel(t *testing.T) {
	p := testPDF(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	geo := readPDF(t, "pypdf-sample-files/009-pdflatex-geotopo/GeoTopo-komprimiert.pdf")
	if _, err := p.Extract(ctx, geo, Options{}); !errors.Is(err, context.Canceled) {
		t.Errorf("with a cancelled context: %v", err)
	}
	if doc, err := p.Extract(context.Background(), geo, Options{}); err != nil || len(doc.Pages) != 117 {
		t.Errorf("after a cancelled read: %v", err)
	}
}

// TestPDFClose checks that Close waits for nothing when idle, that a
// closed reader refuses to read, and that closing twice is harmless.
func TestPDFClose(t *testing.T) {
	p, err := NewPDF(PDFOptions{CacheDir: testCacheDir(t), Instances: 1})
	if err != nil {
		t.Fatal(err)
	}
	crazy := readPDF(t, "pypdf-resources/crazyones.pdf")
	if _, err := p.Extract(context.Background(), crazy, Options{}); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Extract(context.Background(), crazy, Options{}); !errors.Is(err, errClosed) {
		t.Errorf("after Close: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestPDFCacheDir checks that the compilation cache is where the caller
// said: NewPDF fails when CacheDir cannot be a folder, and the shared
// reader's folder holds PDFium's compiled code.
func TestPDFCacheDir(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewPDF(PDFOptions{CacheDir: file}); err == nil || !strings.Contains(err.Error(), "compilation cache") {
		t.Errorf("NewPDF with a file for CacheDir: %v", err)
	}
	testPDF(t)
	var size int64
	filepath.WalkDir(testCacheDir(t), func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if info, err := d.Info(); err == nil {
				size += info.Size()
			}
		}
		return nil
	})
	if size < 1<<20 {
		t.Errorf("the cache folder holds %d bytes; want PDFium's compiled code (megabytes)", size)
	}
}

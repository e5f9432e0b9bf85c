package extract

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// pdfDir is the shared real-world PDFs (see its README and manifest.json):
// CI always has ../shared beside the clone, so a missing folder fails the
// tests rather than skipping them.
var pdfDir = filepath.Join("..", "..", "shared", "data", "pdfs")

// manifestEntry is one PDF of manifest.json, with what poppler measured.
type manifestEntry struct {
	File         string   `json:"file"`
	Tags         []string `json:"tags"`
	Password     *string  `json:"password"`
	PopplerPages int      `json:"poppler_pages"`
	// PopplerChars counts the non-blank characters pdftotext found.
	PopplerChars int      `json:"poppler_text_nonspace_chars"`
	Rotations    []string `json:"poppler_page_rotations"`
	ExpectedText *string  `json:"expected_text"`
}

// has reports whether e is tagged tag.
func (e manifestEntry) has(tag string) bool {
	for _, t := range e.Tags {
		if t == tag {
			return true
		}
	}
	return false
}

// userPassword is the password that opens e, read from the manifest's
// words for it ("user asdfzxcv, owner empty", "openpassword (user
// password; …)", "empty user and owner password …"): "" when it opens
// without one.
func (e manifestEntry) userPassword() string {
	if e.Password == nil || strings.HasPrefix(*e.Password, "empty") {
		return ""
	}
	words := strings.Fields(strings.NewReplacer(",", " ", "(", " ").Replace(*e.Password))
	if words[0] == "user" {
		return words[1]
	}
	return words[0]
}

// readManifest returns the shared PDFs' manifest, failing t when the
// shared data is missing or a PDF in the folder is not in it.
func readManifest(t testing.TB) []manifestEntry {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(pdfDir, "manifest.json"))
	if err != nil {
		t.Fatalf("the shared PDFs must be at %s (../shared beside the clone): %v", pdfDir, err)
	}
	var entries []manifestEntry
	if err := json.Unmarshal(raw, &entries); err != nil {
		t.Fatalf("manifest.json: %v", err)
	}
	listed := map[string]bool{}
	for _, e := range entries {
		listed[e.File] = true
	}
	var onDisk int
	err = filepath.WalkDir(pdfDir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".pdf") {
			return err
		}
		onDisk++
		rel, _ := filepath.Rel(pdfDir, path)
		if !listed[filepath.ToSlash(rel)] {
			t.Errorf("%s is not in manifest.json, so no test checks it", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if onDisk != len(entries) || len(entries) < 25 {
		t.Fatalf("%d PDFs on disk, %d in manifest.json; want the same, at least 25", onDisk, len(entries))
	}
	return entries
}

// readPDF returns the bytes of a shared PDF.
func readPDF(t testing.TB, file string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(pdfDir, filepath.FromSlash(file)))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// testCacheDir keeps PDFium's compiled code between test runs, as
// FERRY_DATA_DIR does between restarts: compiling it takes tens of
// seconds, and minutes under the race detector.
func testCacheDir(t testing.TB) string {
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = os.TempDir()
	}
	return filepath.Join(dir, "ferry-test", "pdfium")
}

// shared is the one PDF reader the tests share.
var shared struct {
	once sync.Once
	pdf  *PDF
	err  error
}

// testPDF returns the shared PDF reader, two instances recycled often so
// that the tests go through recycling too.
func testPDF(t testing.TB) *PDF {
	t.Helper()
	shared.once.Do(func() {
		shared.pdf, shared.err = NewPDF(PDFOptions{CacheDir: testCacheDir(t), Instances: 2, RecycleAfter: 7})
	})
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.pdf
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.pdf != nil {
		shared.pdf.Close()
	}
	os.Exit(code)
}

package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/ferryhq/ferry/extract"
)

// pdfiumCache is PDFium's compiled code, made once per machine for the
// tests (under the user's cache directory, kept between runs).
var pdfiumCache struct {
	once sync.Once
	dir  string
	err  error
}

// withPDFiumCache gives env's data directory a copy of PDFium's compiled
// code, as a server's data directory keeps it between restarts: each test
// starts on a fresh directory, and compiling PDFium again for each costs
// tens of seconds under -race on a busy machine.
func withPDFiumCache(t testing.TB, env fakeEnv) fakeEnv {
	t.Helper()
	pdfiumCache.once.Do(func() {
		dir, err := os.UserCacheDir()
		if err != nil {
			dir = os.TempDir()
		}
		pdfiumCache.dir = filepath.Join(dir, "ferry-test", "pdfium-serve")
		var p *extract.PDF
		if p, pdfiumCache.err = extract.NewPDF(extract.PDFOptions{CacheDir: pdfiumCache.dir, Instances: 1}); p != nil {
			p.Close()
		}
	})
	if pdfiumCache.err != nil {
		t.Fatal(pdfiumCache.err)
	}
	to := filepath.Join(env.vars["FERRY_DATA_DIR"], "wazero-cache")
	err := filepath.WalkDir(pdfiumCache.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(pdfiumCache.dir, path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(to, rel), 0o700)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(to, rel), b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
	return env
}

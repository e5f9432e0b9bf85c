package main

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/store/storetest"
)

// TestServeIngests checks the wiring of ingestion in serve: River's
// migrations run at start, the workers index a posted document, and a
// second start on the same database finds it (and migrates again without
// harm).
func TestServeIngests(t *testing.T) {
	for _, engine := range storetest.Engines(t) {
		t.Run(engine, func(t *testing.T) {
			env := engineEnv(t, engine)
			in := start(t, env)
			access, _ := in.signUp(t, "ann@example.com", "correct horse battery")
			m := in.must(t, http.StatusAccepted, "POST", "/collections/default/documents", access,
				map[string]string{"external_id": "k", "title": "Tides", "text": "The moon pulls the oceans into tides."})
			id := m["items"].([]any)[0].(map[string]any)["id"].(string)
			waitStatus(t, in, access, id, "indexed")
			if err := in.stop(t); err != nil {
				t.Fatal(err)
			}
			again := start(t, env)
			access, _ = again.login(t, "ann@example.com", "correct horse battery")
			waitStatus(t, again, access, id, "indexed")
		})
	}
}

// waitStatus polls the document of the default collection until it has
// status.
func waitStatus(t *testing.T, in *instance, access, id, status string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		m := in.must(t, http.StatusOK, "GET", "/collections/default/documents/"+id, access, nil)
		if m["status"] == status {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("document %s is %v, want %s", id, m, status)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestIngestCommand runs ferry ingest against a server over a folder of
// real PDFs (one of them encrypted), a Markdown file and a file of
// another type, twice: the second run replaces the documents rather than
// adding them again.
func TestIngestCommand(t *testing.T) {
	for _, engine := range storetest.Engines(t) {
		t.Run(engine, func(t *testing.T) {
			in := start(t, withPDFiumCache(t, engineEnv(t, engine)))
			access, _ := in.signUp(t, "ann@example.com", "correct horse battery")
			created := in.must(t, http.StatusCreated, "POST", "/auth/api-keys", access, map[string]string{"name": "ingest"})
			key, keyID := created["key"].(string), created["id"].(string)
			root := ingestFolder(t)
			client := fakeEnv{vars: map[string]string{"FERRY_API_KEY": key}}

			stdout, stderr, err := command(t, client, "", "ingest", root, "--collection", "papers", "--url", in.url)
			checkIngestRun(t, key, stdout, stderr, err)
			first := ingestedDocuments(t, in, key)
			m := in.must(t, http.StatusOK, "GET", "/collections/papers", key, nil)
			if m["documents"] != 4.0 || fmt.Sprint(m["status"]) != "map[failed:1 indexed:3]" {
				t.Fatalf("collection after the first run: %v", m)
			}

			// Again, the key from standard input and the flags first.
			stdout, stderr, err = command(t, fakeEnv{}, key+"\n", "ingest", "--api-key-stdin", "--collection=papers", "--url", in.url, root)
			checkIngestRun(t, key, stdout, stderr, err)
			if again := ingestedDocuments(t, in, key); fmt.Sprint(again) != fmt.Sprint(first) {
				t.Fatalf("second run: documents %v, want the same as the first run's %v", again, first)
			}

			// A revoked key stops the run before any upload.
			in.must(t, http.StatusNoContent, "DELETE", "/auth/api-keys/"+keyID, access, nil)
			stdout, stderr, err = command(t, client, "", "ingest", root, "--collection", "other", "--url", in.url)
			if err == nil || errors.Is(err, errUsage) || !strings.Contains(err.Error(), "refused the API key") ||
				strings.Contains(fmt.Sprint(stdout, stderr, err), key) {
				t.Fatalf("revoked key: %v\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
			}
		})
	}
}

// ingestFolder copies three real PDFs (one encrypted) and a Markdown file
// into a temporary folder, with a file of another type and a hidden
// folder, and returns the folder.
func ingestFolder(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	const pdfs = "../../../shared/data/pdfs/"
	for from, to := range map[string]string{
		"pypdf-resources/crazyones.pdf":                       "crazyones.pdf",
		"pypdf-sample-files/001-trivial/minimal-document.pdf": "sub/minimal.PDF",
		"pypdf-resources/encryption/r2-user-password.pdf":     "locked.pdf",
	} {
		b, err := os.ReadFile(pdfs + from)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(root, to), b)
	}
	writeFile(t, filepath.Join(root, "sub", "notes.md"), []byte("# Tides\n\nThe moon pulls the oceans into tides.\n"))
	writeFile(t, filepath.Join(root, "sub", "picture.png"), []byte("\x89PNG\r\n\x1a\n"))
	writeFile(t, filepath.Join(root, ".git", "HEAD.txt"), []byte("ref: refs/heads/main\n"))
	return root
}

func writeFile(t *testing.T, name string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// checkIngestRun checks what a run of ingestFolder printed and returned:
// three indexed, the encrypted one failed with its reason, the picture
// skipped, the key nowhere.
func checkIngestRun(t *testing.T, key, stdout, stderr string, err error) {
	t.Helper()
	if err == nil || errors.Is(err, errUsage) || err.Error() != "1 of 4 documents failed" {
		t.Fatalf("ingest returned %v, want 1 of 4 failed\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
	}
	for _, want := range []string{
		`collection "papers": 3 indexed, 1 failed, 3 pages, 3 chunks in `,
		"; 1 skipped (not PDF, text, Markdown or HTML)\n",
		"failed: locked.pdf: ", "password",
		// Plain lines, stdout being no terminal.
		"4/4 files, ",
		"sub/notes.md indexed\n",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}
	if strings.Contains(stdout+stderr, key) {
		t.Error("the API key was printed")
	}
}

// ingestedDocuments returns the papers collection's documents as
// "external_id id status" lines, sorted.
func ingestedDocuments(t *testing.T, in *instance, key string) []string {
	t.Helper()
	var out []string
	for _, it := range in.must(t, http.StatusOK, "GET", "/collections/papers/documents", key, nil)["items"].([]any) {
		d := it.(map[string]any)
		out = append(out, fmt.Sprint(d["external_id"], " ", d["id"], " ", d["status"]))
	}
	slices.Sort(out)
	want := []string{"crazyones.pdf", "locked.pdf", "sub/minimal.PDF", "sub/notes.md"}
	if len(out) != len(want) {
		t.Fatalf("documents %v, want %v", out, want)
	}
	for i, w := range want {
		if !strings.HasPrefix(out[i], w+" ") {
			t.Fatalf("documents %v, want %v", out, want)
		}
	}
	return out
}

// TestIngestUsage checks that a wrong command line is a usage error
// (exit 2) that names what is wrong, before anything is sent.
func TestIngestUsage(t *testing.T) {
	dir := t.TempDir()
	keyed := fakeEnv{vars: map[string]string{"FERRY_API_KEY": "fk_test"}}
	for _, c := range []struct {
		name  string
		env   fakeEnv
		stdin string
		args  []string
		want  string
	}{
		{"no path", keyed, "", []string{"--collection", "x"}, "ferry ingest: PATH is required"},
		{"no key", fakeEnv{}, "", []string{dir}, "set FERRY_API_KEY, or pipe it in with --api-key-stdin"},
		{"empty stdin", keyed, "\n", []string{dir, "--api-key-stdin"}, "standard input held no API key"},
		{"missing path", keyed, "", []string{filepath.Join(dir, "nope")}, "nope: no such file or directory"},
		{"bad url", keyed, "", []string{dir, "--url", "127.0.0.1:8000"}, `--url "127.0.0.1:8000" is not an http:// or https:// address`},
		{"concurrency", keyed, "", []string{dir, "--concurrency", "0"}, "--concurrency must be at least 1"},
		{"unknown flag", keyed, "", []string{dir, "--api-key", "fk_x"}, "flag provided but not defined: -api-key"},
	} {
		t.Run(c.name, func(t *testing.T) {
			stdout, stderr, err := command(t, c.env, c.stdin, append([]string{"ingest"}, c.args...)...)
			if !errors.Is(err, errUsage) || !strings.Contains(stderr, c.want) ||
				!strings.Contains(stderr, `Run "ferry ingest --help" for its flags.`) || stdout != "" {
				t.Fatalf("err %v\nstdout:\n%s\nstderr:\n%s\nwant a usage error with %q", err, stdout, stderr, c.want)
			}
		})
	}
	stdout, _, err := command(t, fakeEnv{}, "", "ingest", "--help")
	if err != nil || !strings.Contains(stdout, "Usage: ferry ingest PATH...") || !strings.Contains(stdout, "--collection NAME") {
		t.Fatalf("ingest --help: %v\n%s", err, stdout)
	}
	stdout, _, _ = command(t, fakeEnv{}, "", "--help")
	if !strings.Contains(stdout, "\n  ingest ") {
		t.Fatalf("ferry --help does not list ingest:\n%s", stdout)
	}
}

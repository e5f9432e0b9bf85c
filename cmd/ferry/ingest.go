package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// ferry ingest is a client of a running server's API, as a script with
// curl would be: it needs an API key, never the database.

var ingestCommand = &cliCommand{
	name:    "ingest",
	args:    "PATH... [--collection NAME] [--url URL] [--api-key-stdin] [--concurrency N]",
	summary: "upload files and folders into a collection of a running server",
	about: `Ingest uploads files, and the files of folders (recursively), into a
collection of a running Ferry and follows them until each is indexed or has
failed, then prints a summary. It takes PDF, .txt, .md, .markdown, .html and
.htm files and skips the others (and folders whose name starts with a dot).

A document's external_id is its path relative to the argument it was found
under (a file given by name: its name), so running ingest again replaces the
documents instead of adding them twice. The collection is created if missing.

The API key comes from FERRY_API_KEY, or from the first line of standard
input with --api-key-stdin; never from the command line:

  export FERRY_API_KEY=fk_...
  ferry ingest ./papers --collection papers

Exits 0 when every document was indexed, 1 when some failed, 2 for a wrong
command line.`,
	run: ingestRun,
}

// ingestTypes are the file extensions ingest uploads.
var ingestTypes = []string{".pdf", ".txt", ".md", ".markdown", ".html", ".htm"}

// ingestPollInterval is how often pending documents are asked for their
// status.
const ingestPollInterval = 250 * time.Millisecond

// ingestFile is a file to upload.
type ingestFile struct {
	// path is where it is read from.
	path string
	// externalID is its path relative to its argument, with slashes.
	externalID string
}

// ingestResult is where one file ended.
type ingestResult struct {
	file   ingestFile
	id     string // the document's id, "" when the upload was refused
	status string // indexed or failed
	reason string
	pages  int
	chunks int
}

func ingestRun(ctx context.Context, c *cli, f *flagSet, args []string) error {
	collection := f.String("collection", "default", "add the documents to the collection `NAME`")
	base := f.String("url", "http://127.0.0.1:8000", "the server's address, as `URL`")
	keyStdin := f.Bool("api-key-stdin", false, "read the API key from the first line of standard input instead of FERRY_API_KEY")
	concurrency := f.Int("concurrency", 4, "upload `N` files at once")
	paths, err := f.parsePaths(args)
	if err != nil {
		return err
	}
	if len(paths) == 0 {
		return f.usage("PATH is required: the files or folders to ingest")
	}
	if *concurrency < 1 {
		return f.usage("--concurrency must be at least 1")
	}
	u, err := url.Parse(*base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return f.usage("--url %q is not an http:// or https:// address", *base)
	}
	key, err := c.ingestKey(*keyStdin)
	if err != nil {
		return f.usage("%v", err)
	}
	files, skipped, err := ingestFiles(paths)
	if err != nil {
		return f.usage("%v", err)
	}
	cl := &ingestClient{base: strings.TrimRight(*base, "/"), key: key, collection: *collection, http: &http.Client{}}
	if err := cl.ensureCollection(ctx); err != nil {
		return err
	}
	p := newIngestProgress(c.stdout, len(files))
	started := time.Now()
	results, err := cl.ingest(ctx, files, *concurrency, p)
	p.finish()
	if err != nil {
		return err
	}
	return printIngestSummary(c.stdout, *collection, results, skipped, time.Since(started))
}

// parsePaths parses args as flags with the positional arguments (the
// paths) among them, as in "ferry ingest docs --collection x"; after "--"
// everything is a path.
func (f *flagSet) parsePaths(args []string) ([]string, error) {
	var paths []string
	if i := slices.Index(args, "--"); i >= 0 {
		args, paths = args[:i], args[i+1:]
	}
	var found []string
	for {
		if err := f.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				f.printHelp(f.c.stdout)
				return nil, errHelp
			}
			return nil, f.usage("%v", err)
		}
		if f.NArg() == 0 {
			break
		}
		found = append(found, f.Arg(0))
		args = f.Args()[1:]
	}
	return append(found, paths...), nil
}

// ingestKey returns the API key: the first line of standard input with
// fromStdin, else FERRY_API_KEY. Its error says how to give one.
func (c *cli) ingestKey(fromStdin bool) (string, error) {
	if fromStdin {
		line, err := bufio.NewReader(c.stdin).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", fmt.Errorf("--api-key-stdin: %v", err)
		}
		if key := strings.TrimSpace(line); key != "" {
			return key, nil
		}
		return "", errors.New("--api-key-stdin: standard input held no API key")
	}
	if key := strings.TrimSpace(c.env.getenv("FERRY_API_KEY")); key != "" {
		return key, nil
	}
	return "", errors.New("an API key is required: set FERRY_API_KEY, or pipe it in with --api-key-stdin")
}

// ingestFiles lists the files to upload under paths, and how many files
// were skipped for their type. A path that cannot be read, or two files
// that would have the same external_id, is an error.
func ingestFiles(paths []string) ([]ingestFile, int, error) {
	var files []ingestFile
	skipped := 0
	seen := map[string]string{}
	add := func(path, id string) error {
		if !slices.Contains(ingestTypes, strings.ToLower(filepath.Ext(path))) {
			skipped++
			return nil
		}
		if other, ok := seen[id]; ok {
			return fmt.Errorf("%s and %s would both be external_id %q: ingest them in separate runs", other, path, id)
		}
		seen[id] = path
		files = append(files, ingestFile{path: path, externalID: id})
		return nil
	}
	for _, root := range paths {
		info, err := os.Stat(root)
		if err != nil {
			return nil, 0, err
		}
		if !info.IsDir() {
			if err := add(root, filepath.Base(root)); err != nil {
				return nil, 0, err
			}
			continue
		}
		err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if path != root && strings.HasPrefix(d.Name(), ".") {
					return filepath.SkipDir
				}
				return nil
			}
			if !d.Type().IsRegular() {
				return nil
			}
			rel, err := filepath.Rel(root, path)
			if err != nil {
				return err
			}
			return add(path, filepath.ToSlash(rel))
		})
		if err != nil {
			return nil, 0, err
		}
	}
	return files, skipped, nil
}

// ingestClient calls the server's collection API with an API key.
type ingestClient struct {
	base       string
	key        string
	collection string
	http       *http.Client
}

// apiError is an answer other than the one wanted.
type apiError struct {
	status int
	detail string
}

func (e *apiError) Error() string {
	if e.detail == "" {
		return fmt.Sprintf("%d %s", e.status, http.StatusText(e.status))
	}
	return fmt.Sprintf("%d %s: %s", e.status, http.StatusText(e.status), e.detail)
}

// fatal says whether err stops the whole run rather than one file: the
// server is unreachable or refuses the key.
func fatal(err error) bool {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.status == http.StatusUnauthorized || ae.status == http.StatusForbidden
	}
	return err != nil
}

// do sends a request built by newBody (called again for each attempt)
// and decodes a JSON answer of status want into out. A 429 or 503 is
// retried after its Retry-After, a few times.
func (cl *ingestClient) do(ctx context.Context, method, path string, want int, contentType string, newBody func() io.Reader, out any) error {
	for attempt := 1; ; attempt++ {
		var body io.Reader
		if newBody != nil {
			body = newBody()
		}
		req, err := http.NewRequestWithContext(ctx, method, cl.base+path, body)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+cl.key)
		req.Header.Set("Accept", "application/json")
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		res, err := cl.http.Do(req)
		if err != nil {
			return fmt.Errorf("%s %s: %w", method, cl.base+path, err)
		}
		raw, err := io.ReadAll(io.LimitReader(res.Body, 16<<20))
		res.Body.Close()
		if err != nil {
			return fmt.Errorf("%s %s: %w", method, cl.base+path, err)
		}
		if res.StatusCode == want {
			if out == nil {
				return nil
			}
			return json.Unmarshal(raw, out)
		}
		if (res.StatusCode == http.StatusTooManyRequests || res.StatusCode == http.StatusServiceUnavailable) && attempt < 6 {
			wait := time.Duration(attempt) * time.Second
			if s, err := strconv.Atoi(res.Header.Get("Retry-After")); err == nil && s >= 0 && s <= 60 {
				wait = time.Duration(s) * time.Second
			}
			select {
			case <-time.After(wait):
				continue
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		var problem struct {
			Detail string `json:"detail"`
		}
		json.Unmarshal(raw, &problem)
		return &apiError{status: res.StatusCode, detail: problem.Detail}
	}
}

// ensureCollection creates the collection when the server has none of
// that name. It is also the first call, so a wrong key or address shows
// here, before any file is read.
func (cl *ingestClient) ensureCollection(ctx context.Context) error {
	err := cl.do(ctx, "GET", "/collections/"+url.PathEscape(cl.collection), http.StatusOK, "", nil, nil)
	var ae *apiError
	if errors.As(err, &ae) && ae.status == http.StatusNotFound {
		body, _ := json.Marshal(map[string]string{"name": cl.collection})
		err = cl.do(ctx, "POST", "/collections", http.StatusCreated, "application/json",
			func() io.Reader { return bytes.NewReader(body) }, nil)
		if errors.As(err, &ae) && ae.status == http.StatusConflict {
			err = nil // made meanwhile by someone else
		}
	}
	if errors.As(err, &ae) && ae.status == http.StatusUnauthorized {
		return fmt.Errorf("%s refused the API key (%v): check FERRY_API_KEY", cl.base, err)
	}
	if err != nil {
		return fmt.Errorf("collection %q: %w", cl.collection, err)
	}
	return nil
}

// document is the part of the API's document this command reads.
type document struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Error  string `json:"error"`
	Pages  int    `json:"pages"`
	Chunks int    `json:"chunks"`
}

// upload posts one file as a multipart form with its external_id and
// returns the queued document.
func (cl *ingestClient) upload(ctx context.Context, f ingestFile) (*document, error) {
	data, err := os.ReadFile(f.path)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	w.WriteField("external_id", f.externalID)
	part, err := w.CreateFormFile("file", filepath.Base(f.path))
	if err != nil {
		return nil, err
	}
	part.Write(data)
	if err := w.Close(); err != nil {
		return nil, err
	}
	var out struct{ Items []document }
	err = cl.do(ctx, "POST", "/collections/"+url.PathEscape(cl.collection)+"/documents", http.StatusAccepted,
		w.FormDataContentType(), func() io.Reader { return bytes.NewReader(buf.Bytes()) }, &out)
	if err != nil {
		return nil, err
	}
	if len(out.Items) != 1 {
		return nil, fmt.Errorf("the server answered %d documents for one file", len(out.Items))
	}
	return &out.Items[0], nil
}

// status reads a document's status.
func (cl *ingestClient) status(ctx context.Context, id string) (*document, error) {
	var d document
	err := cl.do(ctx, "GET", "/collections/"+url.PathEscape(cl.collection)+"/documents/"+url.PathEscape(id),
		http.StatusOK, "", nil, &d)
	return &d, err
}

// ingest uploads files, concurrency at a time, and polls the documents
// the server took until each is indexed or failed. A file the server
// refused is failed with the server's reason; an unreachable server or a
// refused key ends the run with an error.
func (cl *ingestClient) ingest(ctx context.Context, files []ingestFile, concurrency int, p *ingestProgress) ([]*ingestResult, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	results := make([]*ingestResult, len(files))
	var mu sync.Mutex
	var pending []*ingestResult // uploaded, not yet indexed or failed
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range concurrency {
		wg.Go(func() {
			for i := range jobs {
				r := &ingestResult{file: files[i]}
				d, err := cl.upload(ctx, files[i])
				if fatal(err) && !errors.As(err, new(*fs.PathError)) {
					cancel(err)
					return
				}
				mu.Lock()
				results[i] = r
				if err != nil {
					r.status, r.reason = "failed", err.Error()
					p.done(r)
				} else {
					r.id = d.ID
					pending = append(pending, r)
				}
				mu.Unlock()
			}
		})
	}
	uploaded := make(chan struct{})
	go func() {
		defer close(uploaded)
		defer wg.Wait()
		defer close(jobs)
		for i := range files {
			select {
			case jobs <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	tick := time.NewTicker(ingestPollInterval)
	defer tick.Stop()
	for done := false; ; {
		select {
		case <-uploaded:
			done, uploaded = true, nil
		case <-tick.C:
		case <-ctx.Done():
			if uploaded != nil {
				<-uploaded
			}
			return nil, context.Cause(ctx)
		}
		mu.Lock()
		batch := slices.Clone(pending)
		mu.Unlock()
		if err := cl.poll(ctx, batch, concurrency, p); err != nil {
			cancel(err)
			continue
		}
		mu.Lock()
		// Only poll sets a status on what is pending; uploads may have
		// added more meanwhile.
		pending = slices.DeleteFunc(pending, func(r *ingestResult) bool { return r.status != "" })
		finished := done && len(pending) == 0
		mu.Unlock()
		if finished {
			return results, nil
		}
	}
}

// poll asks for the status of each of batch, concurrency at a time, and
// sets the status of those indexed or failed.
func (cl *ingestClient) poll(ctx context.Context, batch []*ingestResult, concurrency int, p *ingestProgress) error {
	var mu sync.Mutex
	var firstErr error
	sem := make(chan struct{}, concurrency)
	var wg sync.WaitGroup
	for _, r := range batch {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			d, err := cl.status(ctx, r.id)
			var ae *apiError
			if errors.As(err, &ae) && ae.status == http.StatusNotFound {
				d, err = &document{Status: "failed", Error: "deleted while it was ingested"}, nil
			}
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				if firstErr == nil {
					firstErr = err
				}
			case d.Status == "indexed" || d.Status == "failed":
				r.status, r.reason, r.pages, r.chunks = d.Status, d.Error, d.Pages, d.Chunks
				p.done(r)
			}
		})
	}
	wg.Wait()
	return firstErr
}

// ingestProgress shows how far ingestion is: a bar on a terminal, else a
// line each time a document is done.
type ingestProgress struct {
	mu       sync.Mutex
	w        io.Writer
	bar      *progressbar.ProgressBar // nil when w is no terminal
	total    int
	finished int
	failed   int
	pages    int
	started  time.Time
}

// newIngestProgress shows the progress of total files on w.
func newIngestProgress(w io.Writer, total int) *ingestProgress {
	p := &ingestProgress{w: w, total: total, started: time.Now()}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.bar = progressbar.NewOptions(total,
			progressbar.OptionSetWriter(w),
			progressbar.OptionSetDescription("indexing"),
			progressbar.OptionShowCount(),
			progressbar.OptionShowIts(),
			progressbar.OptionSetItsString("files"),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionSetElapsedTime(true),
			progressbar.OptionFullWidth(),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionClearOnFinish(),
		)
	}
	return p
}

// done counts r, indexed or failed.
func (p *ingestProgress) done(r *ingestResult) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.finished++
	p.pages += r.pages
	if r.status == "failed" {
		p.failed++
	}
	if p.bar != nil {
		p.bar.Describe(fmt.Sprintf("%d pages, %d failed", p.pages, p.failed))
		p.bar.Add(1)
		return
	}
	elapsed := time.Since(p.started)
	rate := float64(p.finished) / max(elapsed.Seconds(), 0.001)
	eta := "0s"
	if p.finished < p.total {
		eta = (time.Duration(float64(p.total-p.finished)/rate) * time.Second).Round(time.Second).String()
	}
	fmt.Fprintf(p.w, "%d/%d files, %d pages, %d failed, %.1f files/s, ETA %s: %s %s\n",
		p.finished, p.total, p.pages, p.failed, rate, eta, r.file.externalID, r.status)
}

// finish takes the bar off the terminal.
func (p *ingestProgress) finish() {
	if p.bar != nil {
		p.bar.Finish()
	}
}

// printIngestSummary prints what became of each file, failures with
// their reasons, and returns an error when some failed.
func printIngestSummary(w io.Writer, collection string, results []*ingestResult, skipped int, took time.Duration) error {
	indexed, pages, chunks := 0, 0, 0
	var failed []*ingestResult
	for _, r := range results {
		pages += r.pages
		chunks += r.chunks
		if r.status == "indexed" {
			indexed++
		} else {
			failed = append(failed, r)
		}
	}
	fmt.Fprintf(w, "collection %q: %d indexed, %d failed, %d pages, %d chunks in %s", collection,
		indexed, len(failed), pages, chunks, took.Round(10*time.Millisecond))
	if skipped > 0 {
		fmt.Fprintf(w, "; %d skipped (not PDF, text, Markdown or HTML)", skipped)
	}
	fmt.Fprintln(w)
	for _, r := range failed {
		reason := r.reason
		if reason == "" {
			reason = "(the server gave no reason)"
		}
		fmt.Fprintf(w, "failed: %s: %s\n", r.file.externalID, reason)
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d of %d documents failed", len(failed), len(results))
	}
	return nil
}

package extract

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"

	"github.com/klippa-app/go-pdfium"
	pdfiumerrors "github.com/klippa-app/go-pdfium/errors"
	"github.com/klippa-app/go-pdfium/webassembly"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"

	"github.com/ferryhq/ferry"
)

// PDFOptions configure NewPDF. The zero value is usable: no compilation
// cache on disk, the default number of instances, recycling and memory
// limit.
type PDFOptions struct {
	// CacheDir is where wazero keeps PDFium compiled to machine code
	// (22 MB), so that a restart does not compile it again: compiling
	// takes about 5 s of CPU (a minute under the race detector), loading
	// it from the cache 0.2 s. It is created when missing. Ferry passes a folder under FERRY_DATA_DIR. "": compile at
	// every start. Entries are per wazero version; an upgrade leaves the
	// old ones behind.
	CacheDir string
	// Instances is how many PDFium instances run at once, each reading one
	// document at a time. Default: 2, or 1 with a single CPU.
	Instances int
	// RecycleAfter is how many documents an instance reads before it is
	// replaced by a fresh one: a WebAssembly instance never gives memory
	// back, and a fresh one also sheds whatever a hostile file left
	// behind. Default: 50 (a new instance costs tens of milliseconds).
	RecycleAfter int
	// MemoryLimit caps each instance's memory, in bytes: at least 19 MiB
	// (PDFium's own), at most 4 GiB (WebAssembly's limit). A document
	// that needs more is refused as TooLarge rather than taking the
	// machine's memory. Default: 1 GiB.
	MemoryLimit int64
}

// Defaults of PDFOptions.
const (
	defaultRecycleAfter = 50
	defaultMemoryLimit  = 1 << 30
	wasmPageSize        = 64 << 10
)

// withDefaults returns o with its zero fields set to the defaults.
func (o PDFOptions) withDefaults() PDFOptions {
	if o.Instances <= 0 {
		o.Instances = min(2, runtime.GOMAXPROCS(0))
	}
	if o.RecycleAfter <= 0 {
		o.RecycleAfter = defaultRecycleAfter
	}
	if o.MemoryLimit <= 0 {
		o.MemoryLimit = defaultMemoryLimit
	}
	o.MemoryLimit = min(o.MemoryLimit, 1<<32)
	return o
}

// PDF reads PDFs with PDFium compiled to WebAssembly and run by wazero: no
// cgo, and the document runs in a sandbox that has no files, no network
// and a memory limit. It keeps a small pool of PDFium instances (see
// PDFOptions) and is safe for concurrent use; a call waits for a free
// instance. Close it when done.
type PDF struct {
	opts  PDFOptions
	cache wazero.CompilationCache // nil without CacheDir
	pool  pdfium.Pool
	// slots holds one entry per instance the pool may run: an idle
	// instance, or nil where one is still to be made. Taking an entry is
	// the right to read one document.
	slots     chan *instance
	done      chan struct{} // closed by Close
	closeOnce sync.Once
}

// instance is one PDFium instance and how many documents it has read.
type instance struct {
	pdfium.Pdfium
	docs int
}

// NewPDF compiles PDFium (or loads it from opts.CacheDir) and returns a
// PDF ready to read documents. Instances are made on first use.
func NewPDF(opts PDFOptions) (*PDF, error) {
	opts = opts.withDefaults()
	// The bundled PDFium lowers setjmp/longjmp to WebAssembly exception
	// handling, which wazero has as an experimental feature. Closing on a
	// cancelled context is left off: it costs PDFium about three times
	// the CPU, so cancellation is checked between pages instead.
	rc := wazero.NewRuntimeConfig().
		WithCoreFeatures(api.CoreFeaturesV2 | experimental.CoreFeaturesExceptionHandling).
		WithMemoryLimitPages(uint32(opts.MemoryLimit / wasmPageSize))
	p := &PDF{opts: opts, slots: make(chan *instance, opts.Instances), done: make(chan struct{})}
	if opts.CacheDir != "" {
		cache, err := wazero.NewCompilationCacheWithDir(opts.CacheDir)
		if err != nil {
			return nil, fmt.Errorf("extract: PDFium compilation cache in %s: %w", opts.CacheDir, err)
		}
		p.cache = cache
		rc = rc.WithCompilationCache(cache)
	}
	pool, err := webassembly.Init(webassembly.Config{
		MaxTotal:      opts.Instances,
		MaxIdle:       opts.Instances,
		RuntimeConfig: rc,
		// No mounts: PDFium reads documents from memory and sees no
		// files (go-pdfium mounts / by default).
		FSConfig: wazero.NewFSConfig(),
		Stdout:   io.Discard,
		Stderr:   io.Discard,
	})
	if err != nil {
		if p.cache != nil {
			p.cache.Close(context.Background())
		}
		return nil, fmt.Errorf("extract: start PDFium: %w", err)
	}
	p.pool = pool
	for range opts.Instances {
		p.slots <- nil
	}
	return p, nil
}

// errClosed is what a PDF answers after Close.
var errClosed = errors.New("extract: the PDF reader is closed")

// Close waits for the documents being read, then releases every instance
// and the compiled module. Calls after Close fail.
func (p *PDF) Close() error {
	var err error
	p.closeOnce.Do(func() {
		close(p.done)
		for range p.opts.Instances {
			if in := <-p.slots; in != nil {
				in.Close()
			}
		}
		err = p.pool.Close()
		if p.cache != nil {
			err = errors.Join(err, p.cache.Close(context.Background()))
		}
	})
	return err
}

// acquire takes an instance, making a fresh one where its slot is empty or
// its instance has read RecycleAfter documents. Give it back with release.
func (p *PDF) acquire(ctx context.Context) (*instance, error) {
	var in *instance
	select {
	case <-p.done:
		return nil, errClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	case in = <-p.slots:
	}
	select {
	case <-p.done:
		// Close is waiting for this slot.
		p.release(in, true)
		return nil, errClosed
	default:
	}
	if in != nil && in.docs >= p.opts.RecycleAfter {
		in.Close()
		in = nil
	}
	if in == nil {
		pi, err := p.pool.GetInstanceWithContext(ctx)
		if err != nil {
			p.slots <- nil
			return nil, fmt.Errorf("extract: start a PDFium instance: %w", err)
		}
		in = &instance{Pdfium: pi}
	}
	return in, nil
}

// release gives in back to the pool after a document; one that failed in a
// way that may have left it broken (healthy false) is closed, and the next
// acquire makes a fresh one.
func (p *PDF) release(in *instance, healthy bool) {
	if in != nil && !healthy {
		in.Close()
		in = nil
	}
	p.slots <- in
}

// Options say how one PDF is read.
type Options struct {
	// Password opens an encrypted PDF: its user or its owner password.
	Password string
	// MaxPages refuses a PDF with more pages, before any text is read
	// (Anthropic reads at most 100 pages of a PDF). 0: no limit.
	MaxPages int
}

// Extract reads a PDF: its page count, title and author, and the text of
// every page (see Page). It refuses before reading any text a file that
// is not a PDF (UnsupportedMediaType), an encrypted one without its
// password (Invalid, naming the "password" field), a damaged one
// (Invalid) and one with more than o.MaxPages pages (TooLarge); see the
// package documentation. A PDF without a text layer is not an error: see
// Document.RequireText. Cancelling ctx stops it between pages.
func (p *PDF) Extract(ctx context.Context, data []byte, o Options) (*Document, error) {
	return p.read(ctx, data, o, true)
}

// Inspect is Extract without the text: the page count, title, author and
// whether the PDF is encrypted, with the same refusals. It is for a caller
// that sends the PDF itself on (to Anthropic) and only checks it.
func (p *PDF) Inspect(ctx context.Context, data []byte, o Options) (*Document, error) {
	return p.read(ctx, data, o, false)
}

// read is Extract, or Inspect without withText.
func (p *PDF) read(ctx context.Context, data []byte, o Options, withText bool) (doc *Document, err error) {
	err = p.with(ctx, data, func(in *instance) error {
		doc, err = (&reader{inst: in, ctx: ctx}).read(data, o, withText)
		return err
	})
	return doc, err
}

// with runs fn with an instance for the PDF data, refusing first what is
// not a PDF. It gives the instance back, or closes it when fn may have
// left it broken (a panic, a failure other than a refusal of the
// document or a cancellation), and turns running out of the instance's
// memory into a TooLarge refusal.
func (p *PDF) with(ctx context.Context, data []byte, fn func(*instance) error) (err error) {
	if !IsPDF(data) {
		return unsupported("the file is not a PDF: it has no %PDF- header in its first 1024 bytes")
	}
	in, err := p.acquire(ctx)
	if err != nil {
		return err
	}
	healthy := false
	defer func() {
		// PDFium runs in a sandbox, but go-pdfium may still panic on
		// what a hostile file makes it return; that instance is done.
		if r := recover(); r != nil {
			err = fmt.Errorf("extract: PDFium failed: %v", r)
			healthy = false
		}
		p.release(in, healthy)
	}()
	in.docs++
	err = fn(in)
	var fe *ferry.Error
	if err != nil && strings.Contains(err.Error(), outOfMemory) {
		// The instance's memory is spent; a fresh one starts empty.
		return &ferry.Error{Code: ferry.TooLarge, Err: err, Fields: map[string]string{"file": "too large to read"},
			Message: fmt.Sprintf("the PDF needs more than the %d MiB of memory a document may use: split it and send the parts", p.opts.MemoryLimit>>20)}
	}
	// A refusal of the document or a cancellation leaves the instance as
	// good as it was; any other failure may not have.
	healthy = err == nil || errors.As(err, &fe) || ctx.Err() != nil
	return err
}

// outOfMemory is how go-pdfium v1.21.4 says that an instance's memory
// (PDFOptions.MemoryLimit) cannot hold what PDFium needs.
const outOfMemory = "could not allocate memory"

// openError turns go-pdfium's failure to open a document into the
// refusal the client hears, or returns err as it is when the document is
// not to blame.
func openError(err error, password string) error {
	switch {
	case errors.Is(err, pdfiumerrors.ErrPassword) && password == "":
		return &ferry.Error{Code: ferry.Invalid, Err: err, Fields: map[string]string{"password": "required"},
			Message: "the PDF is encrypted: send its password in the password field"}
	case errors.Is(err, pdfiumerrors.ErrPassword):
		return &ferry.Error{Code: ferry.Invalid, Err: err, Fields: map[string]string{"password": "wrong"},
			Message: "the password does not open this PDF: send its user or owner password in the password field"}
	case errors.Is(err, pdfiumerrors.ErrSecurity):
		return &ferry.Error{Code: ferry.UnsupportedMediaType, Err: err, Fields: map[string]string{"file": "unsupported encryption"},
			Message: "the PDF is protected by a security handler Ferry cannot open: remove the protection (print or save it as a new PDF) and upload that"}
	case errors.Is(err, pdfiumerrors.ErrFormat), errors.Is(err, pdfiumerrors.ErrFile), errors.Is(err, pdfiumerrors.ErrUnknown):
		return damaged(err)
	}
	return fmt.Errorf("extract: open PDF: %w", err)
}

// damaged is the refusal of a PDF that PDFium cannot read.
func damaged(err error) *ferry.Error {
	return &ferry.Error{Code: ferry.Invalid, Err: err, Fields: map[string]string{"file": "damaged"},
		Message: "the PDF is damaged and cannot be read: open it in a viewer, save or print it as a new PDF and upload that"}
}

// tooManyPages is the refusal of a PDF longer than o.MaxPages.
func tooManyPages(pages, limit int) *ferry.Error {
	return &ferry.Error{Code: ferry.TooLarge, Fields: map[string]string{"file": "too many pages"},
		Message: fmt.Sprintf("the PDF has %d pages, more than the %d that can be read here: split it and send the parts", pages, limit)}
}

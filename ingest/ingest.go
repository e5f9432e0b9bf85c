// Package ingest takes documents into collections as durable background
// work: Submit stores a document as queued, with its uploaded bytes, and
// enqueues its job in the same transaction; a job then extracts the text
// (package extract), cuts it into chunks and indexes them (package
// search), updating the document's status, pages and chunks on the way.
//
// Jobs run on River, on SQLite and PostgreSQL alike (see queue.go): they
// survive a crash and are worked at the next start, by any instance. A
// stage that fails is retried up to Options.MaxAttempts times in all, with
// a growing delay; a refusal that cannot pass on retry (a damaged or
// encrypted PDF, a file with no text) is not retried. Either way the
// document ends failed with the reason.
package ingest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/riverqueue/river"

	"github.com/ferryhq/ferry/config"
	"github.com/ferryhq/ferry/extract"
	"github.com/ferryhq/ferry/search"
	"github.com/ferryhq/ferry/store"
)

// PDFReader reads the text of PDFs; *extract.PDF is one. Its errors are
// extract's refusals (*ferry.Error) or its own failures.
type PDFReader interface {
	Extract(ctx context.Context, data []byte, o extract.Options) (*extract.Document, error)
	// Unlock returns an encrypted PDF without its encryption (see
	// extract.PDF.Unlock).
	Unlock(ctx context.Context, data []byte, password string) ([]byte, error)
}

// Options configure a Service. Zero fields take the defaults.
type Options struct {
	// Workers is how many documents this instance ingests at once.
	// Default: 2.
	Workers int
	// MaxAttempts is how many times a job runs before its document is
	// marked failed. Default: 5.
	MaxAttempts int
	// RetryDelay is the wait before the second attempt; each later one
	// waits twice as long as the one before, at most 10 minutes. Default:
	// 5 s.
	RetryDelay time.Duration
	// JobTimeout bounds one attempt. A job whose instance died while
	// running it is run again a minute after this. Default: 5 minutes.
	JobTimeout time.Duration
	// PollInterval is how often workers look for new jobs when nothing
	// woke them (on SQLite always; PostgreSQL wakes them at once).
	// Default: 1 s.
	PollInterval time.Duration
	// Embed is the embedding stage, run between chunking and indexing
	// with the document's chunks; the document's status is "embedding"
	// while it runs. It sets each chunk's Embedding
	// (search.Retriever.EmbedChunks), which is stored once the chunks are.
	// Nil skips the stage.
	Embed func(ctx context.Context, doc *search.Document, chunks []search.Chunk) error
	// Register adds other packages' workers (package jobs') to the River
	// client's registry, so that one client works every kind of job;
	// Queues are the queues they run on, beside ingestion's. Nil: none.
	Register func(*river.Workers)
	Queues   map[string]river.QueueConfig
}

// withDefaults returns o with its zero fields set to the defaults.
func (o Options) withDefaults() Options {
	if o.Workers <= 0 {
		o.Workers = 2
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 5
	}
	if o.RetryDelay <= 0 {
		o.RetryDelay = 5 * time.Second
	}
	if o.JobTimeout <= 0 {
		o.JobTimeout = 5 * time.Minute
	}
	if o.PollInterval <= 0 {
		o.PollInterval = time.Second
	}
	return o
}

// Service ingests documents. Its methods take ctx first and return
// *ferry.Error with code Invalid for bad input and NotFound for a
// collection or document that does not exist or is another user's.
type Service struct {
	st   *store.Store
	ix   *search.Index
	pdf  PDFReader
	opts Options
	log  *slog.Logger
	q    *queue

	mu      sync.Mutex
	started bool
}

// New runs the job queue's migrations on st's database (described by db,
// from which the PostgreSQL workers open a pool of their own) and returns
// a Service that indexes into ix and reads PDFs with pdf. Jobs are worked
// between Start and Stop; Submit works without Start (another instance
// may work the jobs).
func New(ctx context.Context, st *store.Store, db config.Database, ix *search.Index, pdf PDFReader,
	opts Options, log *slog.Logger) (*Service, error) {
	s := &Service{st: st, ix: ix, pdf: pdf, opts: opts.withDefaults(), log: log}
	workers := river.NewWorkers()
	river.AddWorker(workers, &worker{s: s})
	if s.opts.Register != nil {
		s.opts.Register(workers)
	}
	q, err := newQueue(ctx, st, db, workers, s.opts, log)
	if err != nil {
		return nil, err
	}
	s.q = q
	return s, nil
}

// Enqueue inserts a job of another kind (see Options.Register) in tx, a
// Store transaction, so that it is queued if and only if tx commits.
func (s *Service) Enqueue(ctx context.Context, tx *sql.Tx, args river.JobArgs, opts *river.InsertOpts) error {
	_, err := s.q.insert.InsertTx(ctx, tx, args, opts)
	return err
}

// Index is the search index documents go into.
func (s *Service) Index() *search.Index { return s.ix }

// Start starts working jobs, those left from before included, until Stop.
func (s *Service) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return nil
	}
	if err := s.q.start(ctx); err != nil {
		return fmt.Errorf("ingest: start workers: %w", err)
	}
	s.started = true
	return nil
}

// Stop stops taking jobs and waits for the running ones until ctx ends;
// then it cancels them, and they run again at the next start (an attempt
// counts). It releases the queue's connections; the Service must not be
// used after.
func (s *Service) Stop(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.q.close()
	if !s.started {
		return nil
	}
	s.started = false
	err := s.q.stop(ctx)
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		// Jobs still running: cancel them and wait a little for them to
		// say so, so that their attempts are recorded.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		err = s.q.cancel(cctx)
	}
	if err != nil {
		return fmt.Errorf("ingest: stop workers: %w", err)
	}
	return nil
}

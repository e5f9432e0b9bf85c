package ingest

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/riverqueue/river"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/extract"
	"github.com/ferryhq/ferry/search"
)

// worker runs ingestion jobs.
type worker struct {
	river.WorkerDefaults[jobArgs]
	s *Service
}

// Work runs one attempt of a job. A refusal that another attempt cannot
// change (see permanent) fails the document at once; any other error
// fails it on the last attempt, and is retried before.
func (w *worker) Work(ctx context.Context, job *river.Job[jobArgs]) error {
	err := w.s.ingest(ctx, job.Args)
	if err == nil {
		return nil
	}
	last := job.Attempt >= job.MaxAttempts
	perm := permanent(err)
	reason := failure(err)
	if perm || last {
		if ferr := w.s.fail(context.WithoutCancel(ctx), job.Args, reason); ferr != nil {
			// The document stays as it was; River retries the job while
			// attempts remain.
			return errors.Join(err, ferr)
		}
		if perm {
			return river.JobCancel(err)
		}
		return err
	}
	w.s.note(context.WithoutCancel(ctx), job.Args,
		fmt.Sprintf("attempt %d of %d failed, retrying: %s", job.Attempt, job.MaxAttempts, reason))
	return err
}

// permanent reports whether err is a refusal of the document itself
// (invalid, unsupported, too large), which another attempt would repeat.
func permanent(err error) bool {
	switch ferry.ErrorCode(err) {
	case ferry.Invalid, ferry.UnsupportedMediaType, ferry.TooLarge:
		return true
	}
	return false
}

// failure is the reason a document failed, as its error field says it:
// a *ferry.Error's message (written for the client), and for anything
// else the error's text without internals a client cannot act on.
func failure(err error) string {
	var fe *ferry.Error
	if errors.As(err, &fe) {
		return fe.Message
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "ingestion took too long"
	}
	if errors.Is(err, context.Canceled) {
		return "ingestion was interrupted"
	}
	return err.Error()
}

// source is what a job reads: the document as queued and its bytes.
type source struct {
	doc       search.Document
	mediaType string
	filename  string
	content   []byte
}

// errSuperseded says that the job's document was deleted, or submitted
// again (a later job ingests it), so this job has nothing to do.
var errSuperseded = errors.New("ingest: document deleted or submitted again")

// load reads the job's source; errSuperseded when it is gone or newer.
func (s *Service) load(ctx context.Context, a jobArgs) (*source, error) {
	var src source
	var token, metadata string
	var ext sql.NullString
	err := s.st.Reader().QueryRowContext(ctx, `SELECT s.token, s.media_type, s.filename, s.content, d.user_id, c.name,
		d.external_id, d.title, d.metadata, d.pages FROM document_sources s JOIN documents d ON d.id = s.document_id
		JOIN collections c ON c.id = d.collection_id WHERE s.document_id = $1`, a.DocumentID).Scan(
		&token, &src.mediaType, &src.filename, &src.content, &src.doc.UserID, &src.doc.Collection, &ext,
		&src.doc.Title, &metadata, &src.doc.Pages)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && token != a.Token) {
		return nil, errSuperseded
	}
	if err != nil {
		return nil, fmt.Errorf("read document source: %w", err)
	}
	src.doc.ID, src.doc.ExternalID, src.doc.Metadata = a.DocumentID, ext.String, json.RawMessage(metadata)
	return &src, nil
}

// ingest runs the stages of a job: extract, chunk, embed (when there is
// an embedder), index. Every stage is run again by a retry; only the
// last writes the chunks, in one transaction.
func (s *Service) ingest(ctx context.Context, a jobArgs) error {
	src, err := s.load(ctx, a)
	if errors.Is(err, errSuperseded) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := s.setStatus(ctx, a, search.StatusExtracting, 0); err != nil {
		return err
	}
	pages, title, err := s.extract(ctx, src)
	if err != nil {
		return err
	}
	doc := &src.doc
	if doc.Title == "" {
		doc.Title = title
	}
	doc.Pages = len(pages)
	if err := s.setStatus(ctx, a, search.StatusChunking, doc.Pages); err != nil {
		return err
	}
	chunks := search.Split(pages, search.ChunkOptions{})
	if s.opts.Embed != nil {
		if err := s.setStatus(ctx, a, search.StatusEmbedding, doc.Pages); err != nil {
			return err
		}
		if err := s.opts.Embed(ctx, doc, chunks); err != nil {
			return fmt.Errorf("embed: %w", err)
		}
	}
	// Deleted or submitted again while this ran: adding it now would bring
	// it back, or overwrite the newer version.
	if _, err := s.load(ctx, a); err != nil {
		if errors.Is(err, errSuperseded) {
			return nil
		}
		return err
	}
	doc.Status, doc.Error = search.StatusIndexed, ""
	// Add replaces the queued row (found by its external_id, so the id
	// stays), and the source goes with it; the chunks' vectors are stored
	// in the same transaction, so a crash never leaves a document indexed
	// without them.
	if _, err := s.ix.Add(ctx, doc.UserID, doc.Collection, *doc, chunks); err != nil {
		return fmt.Errorf("index: %w", err)
	}
	return nil
}

// extract returns the source's pages for the chunker and the title the
// file gives, or else its file name.
func (s *Service) extract(ctx context.Context, src *source) ([]search.Page, string, error) {
	var d *extract.Document
	var err error
	if src.mediaType == extract.PDFType {
		d, err = s.pdf.Extract(ctx, src.content, extract.Options{})
	} else {
		d, err = extract.Text(src.content, src.mediaType)
	}
	if err != nil {
		return nil, "", err
	}
	if !d.HasTextLayer() {
		if src.mediaType != extract.PDFType {
			return nil, "", ferry.InvalidField("text", "the document has no text")
		}
		return nil, "", &ferry.Error{Code: ferry.Invalid, Fields: map[string]string{"file": "no text layer"},
			Message: "the PDF has no text layer (it is scanned images): run OCR on it and upload the result"}
	}
	pages := make([]search.Page, len(d.Pages))
	for i, p := range d.Pages {
		pages[i] = search.Page{Number: p.Number, Text: p.Text}
	}
	// PostgreSQL cannot store NUL in text; a PDF's metadata may hold one.
	title := strings.TrimSpace(strings.ReplaceAll(d.Title, "\x00", ""))
	if title == "" && src.filename != "" {
		title = strings.TrimSuffix(src.filename, path.Ext(src.filename))
	}
	return pages, title, nil
}

// setStatus moves the job's document to status with its page count,
// unless the job was superseded.
func (s *Service) setStatus(ctx context.Context, a jobArgs, status search.Status, pages int) error {
	return s.st.Tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE documents SET status = $1, pages = $2, updated_at = $3 WHERE id = $4
			AND EXISTS (SELECT 1 FROM document_sources WHERE document_id = $4 AND token = $5)`,
			string(status), pages, now(), a.DocumentID, a.Token)
		return err
	})
}

// note records why an attempt failed while the job is retried: the
// document keeps its status, and its error says what happened.
func (s *Service) note(ctx context.Context, a jobArgs, reason string) {
	err := s.st.Tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE documents SET error = $1, updated_at = $2 WHERE id = $3
			AND EXISTS (SELECT 1 FROM document_sources WHERE document_id = $3 AND token = $4)`,
			reason, now(), a.DocumentID, a.Token)
		return err
	})
	if err != nil {
		s.log.Warn("ingest: record a failed attempt", "document", a.DocumentID, "error", err)
	}
}

// fail marks the job's document failed with reason. Its chunks leave the
// index (a failed new version does not leave the old one searchable under
// a failed status), and its source goes.
func (s *Service) fail(ctx context.Context, a jobArgs, reason string) error {
	src, err := s.load(ctx, a)
	if errors.Is(err, errSuperseded) {
		return nil
	}
	if err != nil {
		return err
	}
	doc := src.doc
	doc.Status, doc.Error = search.StatusFailed, reason
	if _, err := s.ix.Add(ctx, doc.UserID, doc.Collection, doc, nil); err != nil {
		return fmt.Errorf("mark document failed: %w", err)
	}
	return nil
}

// now is the time to store, to the microsecond as PostgreSQL keeps it.
func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

package ingest

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/riverqueue/river"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/extract"
	"github.com/ferryhq/ferry/search"
	"github.com/ferryhq/ferry/store"
)

// Package search owns the documents table; this file adds what ingestion
// needs beside search.Index's methods: a document row inserted as queued
// in the transaction that enqueues its job, its status moved along, and
// lists and counts by status. Indexing itself, and so every change to the
// chunks and the collection's statistics, goes through search.Index.

// Limits on an upload's fields, as search.Index checks them.
const (
	maxExternalID = 512
	maxTitle      = 1000
)

// Upload is one document to ingest: a file's bytes, or text.
type Upload struct {
	// ExternalID is the client's own id: submitting it again to the
	// collection replaces that document. Empty: the document's id is
	// used, so that the document can be replaced by it later.
	ExternalID string
	Title      string
	// Metadata is a JSON object, or nil.
	Metadata json.RawMessage
	// Content is the file's bytes, or the text.
	Content []byte
	// MediaType is one of extract's types, as extract.Detect says.
	MediaType string
	// Filename is the uploaded file's name, the title when there is none
	// and the file gives none. May be "".
	Filename string
	// Password opens an encrypted PDF. Submit stores the PDF without its
	// encryption, and never the password.
	Password string
}

// check returns the Invalid error for what is wrong with u, or nil.
func (u *Upload) check() error {
	switch {
	case len(u.ExternalID) > maxExternalID:
		return ferry.InvalidField("external_id", fmt.Sprintf("must be at most %d bytes", maxExternalID))
	case !utf8.ValidString(u.ExternalID):
		return ferry.InvalidField("external_id", "must be UTF-8 text")
	case utf8.RuneCountInString(u.Title) > maxTitle:
		return ferry.InvalidField("title", fmt.Sprintf("must be at most %d characters", maxTitle))
	case !utf8.ValidString(u.Title):
		return ferry.InvalidField("title", "must be UTF-8 text")
	case len(u.Content) == 0:
		return ferry.InvalidField("text", "must not be empty")
	case u.Password != "" && u.MediaType != extract.PDFType:
		return ferry.InvalidField("password", "only for a PDF")
	}
	switch u.MediaType {
	case extract.PDFType, extract.PlainType, extract.MarkdownType, extract.HTMLType:
	default:
		return ferry.Errorf(ferry.UnsupportedMediaType, "%s cannot be ingested: send a PDF, or plain text, Markdown or HTML", u.MediaType)
	}
	if len(u.Metadata) > 0 {
		var obj map[string]any
		if err := json.Unmarshal(u.Metadata, &obj); err != nil || obj == nil {
			return ferry.InvalidField("metadata", "must be a JSON object")
		}
	}
	return nil
}

// jobArgs is an ingestion job: the document, and the upload's token so
// that a job superseded by a later upload of the document stops.
type jobArgs struct {
	DocumentID string `json:"document_id"`
	Token      string `json:"token"`
}

// Kind implements river.JobArgs.
func (jobArgs) Kind() string { return "ferry.ingest_document" }

// Submit stores the uploads in the user's collection as queued documents
// and enqueues a job for each, all in one transaction: all or none. An
// upload whose ExternalID the collection holds replaces that document: it
// keeps its id, and its old chunks stay searchable until the new version
// is indexed. The collection must exist, except search.DefaultCollection,
// which Submit creates. An Invalid error about upload i of several names
// its field as "documents[i].field".
func (s *Service) Submit(ctx context.Context, userID, collection string, uploads []Upload) ([]*search.Document, error) {
	for i := range uploads {
		if err := uploads[i].check(); err != nil {
			if len(uploads) > 1 {
				return nil, search.ItemError(i, err)
			}
			return nil, err
		}
	}
	collID, err := s.collectionID(ctx, userID, collection)
	if err != nil {
		return nil, err
	}
	for i := range uploads {
		if uploads[i].Password == "" {
			continue
		}
		// A wrong password is refused now, and the job reads the PDF
		// without one.
		plain, err := s.pdf.Unlock(ctx, uploads[i].Content, uploads[i].Password)
		if err != nil {
			if len(uploads) > 1 {
				return nil, search.ItemError(i, err)
			}
			return nil, err
		}
		uploads[i].Content, uploads[i].Password = plain, ""
	}
	// A concurrent Submit of the same external_id can insert between this
	// one's look-up and its insert; the unique index stops it, and the
	// retry then replaces what the other one added.
	for attempt := 1; ; attempt++ {
		var docs []*search.Document
		err = s.st.Tx(ctx, func(tx *sql.Tx) error {
			docs = docs[:0]
			for _, u := range uploads {
				d, err := s.submit(ctx, tx, userID, collection, collID, u)
				if err != nil {
					return err
				}
				docs = append(docs, d)
			}
			return nil
		})
		if err == nil {
			return docs, nil
		}
		if !store.IsUnique(err) || attempt == 3 {
			return nil, fmt.Errorf("ingest: submit: %w", err)
		}
	}
}

// submit is one upload of Submit's transaction.
func (s *Service) submit(ctx context.Context, tx *sql.Tx, userID, collection string, collID int64, u Upload) (*search.Document, error) {
	at := time.Now().UTC().Truncate(time.Microsecond)
	d := &search.Document{UserID: userID, Collection: collection, ExternalID: u.ExternalID, Title: u.Title,
		Metadata: u.Metadata, Status: search.StatusQueued, CreatedAt: at, UpdatedAt: at}
	if len(d.Metadata) == 0 {
		d.Metadata = json.RawMessage("{}")
	}
	found := false
	if u.ExternalID != "" {
		err := tx.QueryRowContext(ctx, `SELECT id, created_at, chunks FROM documents WHERE collection_id = $1 AND external_id = $2`,
			collID, u.ExternalID).Scan(&d.ID, &d.CreatedAt, &d.Chunks)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return nil, err
		}
		found = err == nil
	}
	if found {
		if _, err := tx.ExecContext(ctx, `UPDATE documents SET title = $1, metadata = $2, status = $3, error = '', pages = 0,
			updated_at = $4 WHERE id = $5`, d.Title, string(d.Metadata), string(d.Status), at, d.ID); err != nil {
			return nil, fmt.Errorf("update document: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM document_sources WHERE document_id = $1`, d.ID); err != nil {
			return nil, fmt.Errorf("replace document source: %w", err)
		}
	} else {
		d.ID = uuid.Must(uuid.NewV7()).String()
		if d.ExternalID == "" {
			d.ExternalID = d.ID
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO documents (id, user_id, collection_id, external_id, title, metadata,
			status, error, pages, chunks, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, '', 0, 0, $8, $8)`,
			d.ID, userID, collID, d.ExternalID, d.Title, string(d.Metadata), string(d.Status), at); err != nil {
			return nil, fmt.Errorf("insert document: %w", err)
		}
	}
	token := uuid.NewString()
	if _, err := tx.ExecContext(ctx, `INSERT INTO document_sources (document_id, token, media_type, filename, content, created_at)
		VALUES ($1, $2, $3, $4, $5, $6)`, d.ID, token, u.MediaType, u.Filename, u.Content, at); err != nil {
		return nil, fmt.Errorf("insert document source: %w", err)
	}
	if _, err := s.q.insert.InsertTx(ctx, tx, jobArgs{DocumentID: d.ID, Token: token},
		&river.InsertOpts{MaxAttempts: s.opts.MaxAttempts}); err != nil {
		return nil, fmt.Errorf("enqueue ingestion: %w", err)
	}
	return d, nil
}

// collectionID returns the id of the user's collection, creating
// search.DefaultCollection when it does not exist yet.
func (s *Service) collectionID(ctx context.Context, userID, name string) (int64, error) {
	if _, err := s.ix.Collection(ctx, userID, name); err != nil {
		return 0, err
	}
	for range 2 {
		var id int64
		err := s.st.Reader().QueryRowContext(ctx, `SELECT id FROM collections WHERE user_id = $1 AND name = $2`,
			userID, name).Scan(&id)
		if err == nil {
			return id, nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return 0, fmt.Errorf("ingest: read collection: %w", err)
		}
		// Only the default collection is found without a row: create it
		// (a concurrent Submit creating it is as good).
		if _, err := s.ix.CreateCollection(ctx, userID, name); err != nil && ferry.ErrorCode(err) != ferry.Conflict {
			return 0, err
		}
	}
	return 0, ferry.Errorf(ferry.NotFound, "collection %q not found", name)
}

// Document returns the user's document id of the collection. Another
// collection's or user's is NotFound, like one that does not exist.
func (s *Service) Document(ctx context.Context, userID, collection, id string) (*search.Document, error) {
	d, err := s.ix.Document(ctx, userID, id)
	if err != nil {
		return nil, err
	}
	if d.Collection != collection {
		return nil, ferry.Errorf(ferry.NotFound, "document not found")
	}
	return d, nil
}

// Delete deletes the user's document id of the collection: its chunks
// leave search at once, and a job still to run for it finds nothing to
// do.
func (s *Service) Delete(ctx context.Context, userID, collection, id string) error {
	if _, err := s.Document(ctx, userID, collection, id); err != nil {
		return err
	}
	return s.ix.Delete(ctx, userID, id)
}

// maxList is the most documents List returns at once.
const maxList = 1000

// List returns up to limit (at most 1000) of the user's documents of the
// collection, oldest first, those after the document id after when it is
// not "".
func (s *Service) List(ctx context.Context, userID, collection, after string, limit int) ([]*search.Document, error) {
	if _, err := s.ix.Collection(ctx, userID, collection); err != nil {
		return nil, err
	}
	if limit <= 0 || limit > maxList {
		limit = maxList
	}
	rows, err := s.st.Reader().QueryContext(ctx, `SELECT d.id, d.external_id, d.title, d.metadata, d.status, d.error,
		d.pages, d.chunks, d.created_at, d.updated_at FROM documents d JOIN collections c ON c.id = d.collection_id
		WHERE c.user_id = $1 AND c.name = $2 AND d.id > $3 ORDER BY d.id LIMIT $4`, userID, collection, after, limit)
	if err != nil {
		return nil, fmt.Errorf("ingest: list documents: %w", err)
	}
	defer rows.Close()
	var out []*search.Document
	for rows.Next() {
		d := &search.Document{UserID: userID, Collection: collection}
		var ext sql.NullString
		var metadata, status string
		if err := rows.Scan(&d.ID, &ext, &d.Title, &metadata, &status, &d.Error, &d.Pages, &d.Chunks,
			&d.CreatedAt, &d.UpdatedAt); err != nil {
			return nil, fmt.Errorf("ingest: list documents: %w", err)
		}
		d.ExternalID, d.Metadata, d.Status = ext.String, json.RawMessage(metadata), search.Status(status)
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("ingest: list documents: %w", err)
	}
	return out, nil
}

// Counts returns how many of the collection's documents have each status
// (statuses with none are absent).
func (s *Service) Counts(ctx context.Context, userID, collection string) (map[search.Status]int, error) {
	if _, err := s.ix.Collection(ctx, userID, collection); err != nil {
		return nil, err
	}
	rows, err := s.st.Reader().QueryContext(ctx, `SELECT d.status, COUNT(*) FROM documents d
		JOIN collections c ON c.id = d.collection_id WHERE c.user_id = $1 AND c.name = $2 GROUP BY d.status`, userID, collection)
	if err != nil {
		return nil, fmt.Errorf("ingest: count documents: %w", err)
	}
	defer rows.Close()
	out := map[search.Status]int{}
	for rows.Next() {
		var status string
		var n int
		if err := rows.Scan(&status, &n); err != nil {
			return nil, fmt.Errorf("ingest: count documents: %w", err)
		}
		out[search.Status(status)] = n
	}
	return out, rows.Err()
}

// Collections returns the user's collections by name;
// search.DefaultCollection is among them, empty, before anything was
// added to it.
func (s *Service) Collections(ctx context.Context, userID string) ([]*search.Collection, error) {
	rows, err := s.st.Reader().QueryContext(ctx, `SELECT name, chunks, created_at FROM collections WHERE user_id = $1 ORDER BY name`, userID)
	if err != nil {
		return nil, fmt.Errorf("ingest: list collections: %w", err)
	}
	defer rows.Close()
	var out []*search.Collection
	hasDefault := false
	for rows.Next() {
		c := &search.Collection{}
		if err := rows.Scan(&c.Name, &c.Chunks, &c.CreatedAt); err != nil {
			return nil, fmt.Errorf("ingest: list collections: %w", err)
		}
		hasDefault = hasDefault || c.Name == search.DefaultCollection
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("ingest: list collections: %w", err)
	}
	if !hasDefault {
		out = append([]*search.Collection{{Name: search.DefaultCollection}}, out...)
	}
	return out, nil
}

// Package search turns documents into chunks and finds the chunks that
// answer a query: Split cuts a document's pages into chunks that keep their
// page and position for citations; an Index stores collections of
// documents and their chunks in the Store's database and ranks chunks by
// BM25, with the same terms, the same formula and so the same results on
// SQLite and PostgreSQL.
//
// Why not each engine's own full-text search: SQLite's FTS5 bm25() takes
// its statistics (how many chunks, how long on average, how many hold a
// term) over the whole table, across every user's collections, so one
// user's documents would move another's scores, and it fixes k1 and b;
// PostgreSQL's ts_rank is not BM25 at all (it knows no document
// frequency), so the engines would rank differently; and neither
// tokenizer splits Chinese. So text is analysed once, in Go (see
// DocumentTerms), and the index is a plain postings table, chunk_terms
// (collection, term, chunk, tf, chunk length), read with one range scan
// per query term on both engines; the BM25 sum is computed in SQL, with
// statistics per collection. Measured on BEIR SciFact this matches
// Anserini's Lucene baseline on both engines (nDCG@10 0.682, Recall@100
// 0.926; see BENCHMARKS.md). Every posting of every query term is read, so
// a search costs in proportion to the collection's size.
package search

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/store"
)

// DefaultCollection is the collection every user has without creating it.
const DefaultCollection = "default"

// Limits on what Add accepts.
const (
	maxCollectionName = 64
	maxExternalID     = 512
	maxTitle          = 1000
)

// Status is where a document is on its way into the index.
type Status string

// Document statuses, in the order ingestion goes through them.
const (
	StatusQueued     Status = "queued"
	StatusExtracting Status = "extracting"
	StatusChunking   Status = "chunking"
	StatusEmbedding  Status = "embedding"
	StatusIndexed    Status = "indexed"
	StatusFailed     Status = "failed"
)

// Valid reports whether s is one of the statuses.
func (s Status) Valid() bool {
	switch s {
	case StatusQueued, StatusExtracting, StatusChunking, StatusEmbedding, StatusIndexed, StatusFailed:
		return true
	}
	return false
}

// Document is one document of a collection.
type Document struct {
	ID         string
	UserID     string
	Collection string
	// ExternalID is the client's own id, unique in the collection; adding
	// a document with the same one replaces it. Empty means none.
	ExternalID string
	Title      string
	// Metadata is a JSON object; nil means {}.
	Metadata  json.RawMessage
	Status    Status
	Error     string
	Pages     int
	Chunks    int
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Collection is a user's named set of documents.
type Collection struct {
	Name      string
	Chunks    int64 // chunks in the index
	CreatedAt time.Time
}

// BM25 holds the ranking's parameters: K1 is how fast repeating a term
// stops adding to a chunk's score, B how much a long chunk is penalised.
type BM25 struct {
	K1, B float64
}

// DefaultBM25 is Anserini's setting for BEIR, k1 0.9 and b 0.4. On
// SciFact it gives nDCG@10 0.682 and Recall@100 0.926; FTS5's fixed 1.2
// and 0.75 give 0.686 and 0.925 (BENCHMARKS.md).
var DefaultBM25 = BM25{K1: 0.9, B: 0.4}

// Index stores collections, documents and chunks in a Store's database and
// searches them. Its methods take ctx first; they return *ferry.Error with
// code Invalid for bad input and NotFound for a collection or document that
// does not exist or is another user's.
type Index struct {
	st *store.Store
	pg bool
	// BM25 is the ranking's parameters; set it before the Index is used.
	BM25 BM25
	// LexicalMemory is how many bytes of postings the Index keeps in
	// memory for all its collections (see lexCache); 0 ranks every search
	// in SQL. Set it before the Index is used.
	LexicalMemory int64

	lex *lexCache
}

// New returns an Index over the migrated store st, ranking with
// DefaultBM25 and keeping up to DefaultLexicalMemory of postings in
// memory.
func New(st *store.Store) *Index {
	ix := &Index{st: st, pg: st.Driver() == "postgres", BM25: DefaultBM25, LexicalMemory: DefaultLexicalMemory}
	ix.lex = newLexCache(ix)
	return ix
}

// ValidCollectionName reports what is wrong with name as a collection's
// name, or "" when it is fine: 1 to 64 letters, digits, '-', '_' and '.',
// not starting with '.', so that it can stand in a URL path as it is.
func ValidCollectionName(name string) string {
	if name == "" || utf8.RuneCountInString(name) > maxCollectionName {
		return fmt.Sprintf("must be 1 to %d characters", maxCollectionName)
	}
	if name[0] == '.' {
		return "must not start with '.'"
	}
	for _, r := range name {
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '-' && r != '_' && r != '.' {
			return "may hold only letters, digits, '-', '_' and '.'"
		}
	}
	return ""
}

// CreateCollection creates the user's collection name. It fails with
// Invalid for a bad name and Conflict when the user has one by that name
// (DefaultCollection included, once anything was added to it).
func (ix *Index) CreateCollection(ctx context.Context, userID, name string) (*Collection, error) {
	if p := ValidCollectionName(name); p != "" {
		return nil, ferry.InvalidField("name", p)
	}
	at := now()
	err := ix.st.Tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO collections (user_id, name, created_at, updated_at) VALUES ($1, $2, $3, $3)`,
			userID, name, at)
		return err
	})
	if store.IsUnique(err) {
		return nil, ferry.Errorf(ferry.Conflict, "collection %q already exists", name)
	}
	if err != nil {
		return nil, fmt.Errorf("create collection: %w", err)
	}
	return &Collection{Name: name, CreatedAt: at}, nil
}

// Collection returns the user's collection name. One that does not exist
// is NotFound, except DefaultCollection, which is returned empty.
func (ix *Index) Collection(ctx context.Context, userID, name string) (*Collection, error) {
	c := Collection{Name: name}
	err := ix.st.Reader().QueryRowContext(ctx, `SELECT chunks, created_at FROM collections WHERE user_id = $1 AND name = $2`,
		userID, name).Scan(&c.Chunks, &c.CreatedAt)
	if errors.Is(err, sql.ErrNoRows) {
		if name == DefaultCollection {
			return &c, nil
		}
		return nil, collectionNotFound(name)
	}
	if err != nil {
		return nil, fmt.Errorf("read collection: %w", err)
	}
	return &c, nil
}

// DeleteCollection deletes the user's collection name with its documents;
// they leave search at once. One that does not exist is NotFound (an
// empty DefaultCollection too).
func (ix *Index) DeleteCollection(ctx context.Context, userID, name string) error {
	var n int64
	err := ix.st.Tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM collections WHERE user_id = $1 AND name = $2`, userID, name)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return fmt.Errorf("delete collection: %w", err)
	}
	if n == 0 {
		return collectionNotFound(name)
	}
	return nil
}

func collectionNotFound(name string) error {
	return ferry.Errorf(ferry.NotFound, "collection %q not found", name)
}

// checkDocument returns the Invalid error for what is wrong with doc, or
// nil.
func checkDocument(doc *Document) error {
	if len(doc.ExternalID) > maxExternalID {
		return ferry.InvalidField("external_id", fmt.Sprintf("must be at most %d bytes", maxExternalID))
	}
	if utf8.RuneCountInString(doc.Title) > maxTitle {
		return ferry.InvalidField("title", fmt.Sprintf("must be at most %d characters", maxTitle))
	}
	if !utf8.ValidString(doc.Title) || !utf8.ValidString(doc.ExternalID) {
		return ferry.InvalidField("title", "must be UTF-8 text")
	}
	if len(doc.Metadata) > 0 {
		var obj map[string]any
		if err := json.Unmarshal(doc.Metadata, &obj); err != nil || obj == nil {
			return ferry.InvalidField("metadata", "must be a JSON object")
		}
	}
	if doc.Status != "" && !doc.Status.Valid() {
		return ferry.InvalidField("status", fmt.Sprintf("unknown status %q", doc.Status))
	}
	return nil
}

// indexedChunk is a chunk with its index terms counted.
type indexedChunk struct {
	*Chunk
	tf  map[string]int
	len int
}

// analyzeChunks counts the index terms of each chunk: the document's title
// and the chunk's text, so that a chunk is found by its document's title
// too (a chunk deep in a paper does not repeat what the paper is about).
func analyzeChunks(title string, chunks []Chunk) []indexedChunk {
	titleTerms := DocumentTerms(title)
	out := make([]indexedChunk, len(chunks))
	for i := range chunks {
		terms := append(DocumentTerms(chunks[i].Text), titleTerms...)
		tf := make(map[string]int, len(terms))
		for _, t := range terms {
			tf[t]++
		}
		out[i] = indexedChunk{Chunk: &chunks[i], tf: tf, len: len(terms)}
	}
	return out
}

// Item is a document to add, with its chunks.
type Item struct {
	Document Document
	Chunks   []Chunk
}

// Add stores doc in the user's collection with its chunks and indexes them;
// a search finds them once Add returns. A document with the same
// ExternalID in the collection is replaced: its chunks leave the index in
// the same transaction, and it keeps its ID and CreatedAt. The collection
// must exist, except DefaultCollection, which Add creates. An empty Status
// means StatusIndexed; Chunks is set to len(chunks), and each chunk's ID
// and Ordinal (its place in chunks) are set. It returns the document as
// stored.
func (ix *Index) Add(ctx context.Context, userID, collection string, doc Document, chunks []Chunk) (*Document, error) {
	docs, err := ix.AddAll(ctx, userID, collection, []Item{{Document: doc, Chunks: chunks}})
	if err != nil {
		return nil, err
	}
	return docs[0], nil
}

// AddAll adds the items to the user's collection as Add does, all in one
// transaction: all of them or none. It costs far less than an Add per
// item, since the index's pages are written once for the lot. Of two
// items with the same ExternalID, the later replaces the earlier. An
// Invalid error names the item's field as "documents[i].field".
func (ix *Index) AddAll(ctx context.Context, userID, collection string, items []Item) ([]*Document, error) {
	docs := make([]Document, len(items))
	analyzed := make([][]indexedChunk, len(items))
	for i, it := range items {
		doc := it.Document
		if err := checkDocument(&doc); err != nil {
			if len(items) > 1 {
				return nil, ItemError(i, err)
			}
			return nil, err
		}
		if doc.Status == "" {
			doc.Status = StatusIndexed
		}
		if len(doc.Metadata) == 0 {
			doc.Metadata = json.RawMessage("{}")
		}
		doc.UserID, doc.Collection, doc.Chunks = userID, collection, len(it.Chunks)
		for k := range it.Chunks {
			it.Chunks[k].Ordinal = k
		}
		docs[i] = doc
		analyzed[i] = analyzeChunks(doc.Title, it.Chunks)
	}
	collID, err := ix.collectionForAdd(ctx, userID, collection)
	if err != nil {
		return nil, err
	}
	// A concurrent Add of the same external_id can insert between this
	// one's look-up and its insert; the unique index stops it, and the
	// retry then replaces what the other one added.
	for attempt := 1; ; attempt++ {
		out := make([]*Document, len(docs))
		err = ix.st.Tx(ctx, func(tx *sql.Tx) error {
			for i := range docs {
				d := docs[i]
				out[i] = &d
			}
			return ix.add(ctx, tx, collID, out, analyzed)
		})
		if err == nil {
			return out, nil
		}
		if store.IsUnique(err) && attempt == 3 {
			return nil, &ferry.Error{Code: ferry.Conflict, Message: "a document with this id already exists", Err: err}
		}
		if !store.IsUnique(err) {
			return nil, fmt.Errorf("add documents: %w", err)
		}
	}
}

// ItemError returns err, an Invalid error about item i of a batch of
// documents, with its field named as the item's (documents[i].field).
func ItemError(i int, err error) error {
	var fe *ferry.Error
	if !errors.As(err, &fe) || len(fe.Fields) != 1 {
		return err
	}
	for f, problem := range fe.Fields {
		return ferry.InvalidField(fmt.Sprintf("documents[%d].%s", i, f), problem)
	}
	return err
}

// collectionForAdd returns the id of the user's collection, creating
// DefaultCollection when it does not exist yet.
func (ix *Index) collectionForAdd(ctx context.Context, userID, name string) (int64, error) {
	for {
		var id int64
		err := ix.st.Reader().QueryRowContext(ctx, `SELECT id FROM collections WHERE user_id = $1 AND name = $2`,
			userID, name).Scan(&id)
		if err == nil {
			return id, nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return 0, fmt.Errorf("read collection: %w", err)
		}
		if name != DefaultCollection {
			return 0, collectionNotFound(name)
		}
		// Created by a concurrent Add is as good as created here.
		if _, err := ix.CreateCollection(ctx, userID, name); err != nil && ferry.ErrorCode(err) != ferry.Conflict {
			return 0, err
		}
	}
}

// add is AddAll's transaction: for each document it removes the one the
// document replaces and inserts it and its chunks; then it writes the
// chunks' postings and updates the collection's statistics.
func (ix *Index) add(ctx context.Context, tx *sql.Tx, collID int64, docs []*Document, chunks [][]indexedChunk) error {
	at := now()
	var dChunks, dTerms int64
	// A document that a later one of the batch replaces has no postings
	// to write: its chunks are gone.
	chunks = slices.Clone(chunks)
	inBatch := map[string]int{}
	for i, doc := range docs {
		doc.CreatedAt, doc.UpdatedAt = at, at
		if doc.ID == "" {
			doc.ID = uuid.Must(uuid.NewV7()).String()
		}
		if doc.ExternalID != "" {
			var oldID string
			var created time.Time
			err := tx.QueryRowContext(ctx, `SELECT id, created_at FROM documents WHERE collection_id = $1 AND external_id = $2`,
				collID, doc.ExternalID).Scan(&oldID, &created)
			switch {
			case err == nil:
				n, terms, err := deleteDocument(ctx, tx, oldID)
				if err != nil {
					return err
				}
				dChunks, dTerms = dChunks-n, dTerms-terms
				doc.ID, doc.CreatedAt = oldID, created
				if k, ok := inBatch[oldID]; ok {
					chunks[k] = nil
				}
			case !errors.Is(err, sql.ErrNoRows):
				return err
			}
		}
		inBatch[doc.ID] = i
		var externalID any
		if doc.ExternalID != "" {
			externalID = doc.ExternalID
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO documents (id, user_id, collection_id, external_id, title, metadata,
			status, error, pages, chunks, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
			doc.ID, doc.UserID, collID, externalID, doc.Title, string(doc.Metadata), string(doc.Status), doc.Error,
			doc.Pages, doc.Chunks, doc.CreatedAt, doc.UpdatedAt); err != nil {
			return fmt.Errorf("insert document: %w", err)
		}
		for _, c := range chunks[i] {
			// A chunk's vector, when it has one, is stored with it: a
			// document is never indexed without the vectors it was given.
			var embedding any // NULL without one
			if len(c.Embedding) > 0 {
				v := slices.Clone(c.Embedding)
				normalize(v)
				embedding = EncodeVector(v)
			}
			if err := tx.QueryRowContext(ctx, `INSERT INTO chunks (document_id, ordinal, page, last_page, start_byte, end_byte,
				start_rune, end_rune, text, tokens, terms, embedding) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id`,
				doc.ID, c.Ordinal, c.Page, c.LastPage, c.Start, c.End, c.RuneStart, c.RuneEnd, c.Text, c.Tokens, c.len, embedding).Scan(&c.ID); err != nil {
				return fmt.Errorf("insert chunk: %w", err)
			}
			dChunks++
			dTerms += int64(c.len)
		}
	}
	if err := ix.insertPostings(ctx, tx, collID, chunks); err != nil {
		return fmt.Errorf("index chunks: %w", err)
	}
	_, err := tx.ExecContext(ctx, `UPDATE collections SET chunks = chunks + $1, terms = terms + $2, updated_at = $3 WHERE id = $4`,
		dChunks, dTerms, at, collID)
	return err
}

// insertPostings writes the chunks' rows of the lexical index: on
// PostgreSQL in one statement (arrays, unnested), on SQLite, which runs in
// this process, row by row through one prepared statement.
func (ix *Index) insertPostings(ctx context.Context, tx *sql.Tx, collID int64, docs [][]indexedChunk) error {
	if ix.pg {
		var terms []string
		var ids []int64
		var tfs, lens []int32
		for _, chunks := range docs {
			for _, c := range chunks {
				for t, n := range c.tf {
					terms = append(terms, t)
					ids = append(ids, c.ID)
					tfs = append(tfs, int32(n))
					lens = append(lens, int32(c.len))
				}
			}
		}
		if len(terms) == 0 {
			return nil
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO chunk_terms (collection_id, term, chunk_id, tf, len)
			SELECT $1, t, c, f, l FROM unnest($2::text[], $3::bigint[], $4::int[], $5::int[]) AS u(t, c, f, l)`,
			collID, terms, ids, tfs, lens)
		return err
	}
	var b strings.Builder
	b.WriteByte('[')
	for _, chunks := range docs {
		for _, c := range chunks {
			for t, n := range c.tf {
				if b.Len() > 1 {
					b.WriteByte(',')
				}
				tj, _ := json.Marshal(t)
				fmt.Fprintf(&b, "[%s,%d,%d,%d]", tj, c.ID, n, c.len)
			}
		}
	}
	b.WriteByte(']')
	if b.Len() == 2 {
		return nil
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO chunk_terms (collection_id, term, chunk_id, tf, len)
		SELECT $1, value ->> 0, value ->> 1, value ->> 2, value ->> 3 FROM json_each($2)`, collID, b.String())
	return err
}

// deleteDocument deletes the document with id, its chunks and their
// postings (by cascade), and returns how many chunks and terms it had.
func deleteDocument(ctx context.Context, tx *sql.Tx, id string) (chunks, terms int64, err error) {
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*), COALESCE(SUM(terms), 0) FROM chunks WHERE document_id = $1`,
		id).Scan(&chunks, &terms); err != nil {
		return 0, 0, err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM documents WHERE id = $1`, id); err != nil {
		return 0, 0, err
	}
	return chunks, terms, nil
}

// Delete deletes the user's document with id and its chunks; they leave
// search when Delete returns. Another user's document is NotFound, like
// one that does not exist.
func (ix *Index) Delete(ctx context.Context, userID, id string) error {
	found := false
	err := ix.st.Tx(ctx, func(tx *sql.Tx) error {
		var collID int64
		err := tx.QueryRowContext(ctx, `SELECT collection_id FROM documents WHERE id = $1 AND user_id = $2`, id, userID).Scan(&collID)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		found = true
		chunks, terms, err := deleteDocument(ctx, tx, id)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE collections SET chunks = chunks - $1, terms = terms - $2, updated_at = $3 WHERE id = $4`,
			chunks, terms, now(), collID)
		return err
	})
	if err != nil {
		return fmt.Errorf("delete document: %w", err)
	}
	if !found {
		return ferry.Errorf(ferry.NotFound, "document not found")
	}
	return nil
}

// Document returns the user's document with id. Another user's document is
// NotFound, like one that does not exist.
func (ix *Index) Document(ctx context.Context, userID, id string) (*Document, error) {
	var d Document
	var externalID sql.NullString
	var metadata, status string
	err := ix.st.Reader().QueryRowContext(ctx, `SELECT d.id, d.user_id, c.name, d.external_id, d.title, d.metadata, d.status,
		d.error, d.pages, d.chunks, d.created_at, d.updated_at
		FROM documents d JOIN collections c ON c.id = d.collection_id WHERE d.id = $1 AND d.user_id = $2`, id, userID).Scan(
		&d.ID, &d.UserID, &d.Collection, &externalID, &d.Title, &metadata, &status, &d.Error, &d.Pages, &d.Chunks,
		&d.CreatedAt, &d.UpdatedAt)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ferry.Errorf(ferry.NotFound, "document not found")
	}
	if err != nil {
		return nil, fmt.Errorf("read document: %w", err)
	}
	d.ExternalID, d.Metadata, d.Status = externalID.String, json.RawMessage(metadata), Status(status)
	return &d, nil
}

// trimSpaces collapses runs of whitespace in s to one space.
func trimSpaces(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// now is the time to store, to the microsecond: PostgreSQL keeps no finer,
// so a document reads back as it was returned on both engines.
func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

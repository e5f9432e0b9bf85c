-- Collections of documents, their chunks, and the lexical index over the
-- chunks (package search). The index is a postings table, the same on both
-- engines: the terms come from Go (search.DocumentTerms), so SQLite and
-- PostgreSQL rank the same terms with the same BM25.

-- A user's named set of documents. chunks and terms are BM25's collection
-- statistics (how many chunks, how many terms in all), kept with every
-- change so that a search need not count them.
CREATE TABLE collections (
    id         INTEGER PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    chunks     INTEGER NOT NULL DEFAULT 0,
    terms      INTEGER NOT NULL DEFAULT 0,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    UNIQUE (user_id, name)
);

-- external_id is the client's own id for a document: adding it again
-- replaces the document. metadata is a JSON object.
CREATE TABLE documents (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    collection_id INTEGER NOT NULL REFERENCES collections (id) ON DELETE CASCADE,
    external_id   TEXT,
    title         TEXT NOT NULL DEFAULT '',
    metadata      TEXT NOT NULL DEFAULT '{}',
    status        TEXT NOT NULL CHECK (status IN ('queued', 'extracting', 'chunking', 'embedding', 'indexed', 'failed')),
    error         TEXT NOT NULL DEFAULT '',
    pages         INTEGER NOT NULL DEFAULT 0,
    chunks        INTEGER NOT NULL DEFAULT 0,
    created_at    TIMESTAMP NOT NULL,
    updated_at    TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX documents_external ON documents (collection_id, external_id) WHERE external_id IS NOT NULL;
CREATE INDEX documents_collection ON documents (collection_id, created_at, id);
CREATE INDEX documents_user ON documents (user_id);

-- A chunk's place in its document: pages page..last_page, bytes
-- start_byte..end_byte and characters start_rune..end_rune of the text
-- its pages make (search.JoinPages). tokens is its estimated size for a
-- model, terms its length for BM25; embedding is filled in by an embedder.
CREATE TABLE chunks (
    id          INTEGER PRIMARY KEY,
    document_id TEXT NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    ordinal     INTEGER NOT NULL,
    page        INTEGER NOT NULL,
    last_page   INTEGER NOT NULL,
    start_byte  INTEGER NOT NULL,
    end_byte    INTEGER NOT NULL,
    start_rune  INTEGER NOT NULL,
    end_rune    INTEGER NOT NULL,
    text        TEXT NOT NULL,
    tokens      INTEGER NOT NULL,
    terms       INTEGER NOT NULL,
    embedding   BLOB,
    UNIQUE (document_id, ordinal)
);

-- The lexical index: one row per term of a chunk, with its count there (tf)
-- and the chunk's length in terms (len, copied so that ranking reads this
-- table alone). Rows are clustered by collection and term: a search reads
-- one contiguous range per query term.
CREATE TABLE chunk_terms (
    collection_id INTEGER NOT NULL,
    term          TEXT NOT NULL,
    chunk_id      INTEGER NOT NULL REFERENCES chunks (id) ON DELETE CASCADE,
    tf            INTEGER NOT NULL,
    len           INTEGER NOT NULL,
    PRIMARY KEY (collection_id, term, chunk_id)
) WITHOUT ROWID;
CREATE INDEX chunk_terms_chunk ON chunk_terms (chunk_id);

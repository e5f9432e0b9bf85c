-- What an ingestion job reads (package ingest): a document's uploaded
-- bytes until the job has indexed it (or given up), when the row goes.
-- token is the upload's: a job whose token no longer matches was
-- superseded by a later upload of the same external_id and stops.
CREATE TABLE document_sources (
    document_id TEXT PRIMARY KEY REFERENCES documents (id) ON DELETE CASCADE,
    token       TEXT NOT NULL,
    media_type  TEXT NOT NULL,
    filename    TEXT NOT NULL DEFAULT '',
    content     BLOB NOT NULL,
    created_at  TIMESTAMP NOT NULL
);

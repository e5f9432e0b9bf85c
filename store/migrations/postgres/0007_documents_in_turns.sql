-- The file a user's turn carried (POST /analyze/pdf), kept so that a
-- follow-up turn in the conversation still sees it: the PDF itself, sent
-- again to a model that reads PDFs (Anthropic), and its text page by page,
-- sent to one that reads only text. One row per user message that carried
-- a file. message_id has no foreign key to messages, as on SQLite (whose
-- migrations rebuild messages by rename); the conversation's key removes
-- the row with its conversation.
CREATE TABLE turn_documents (
    message_id      TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    media_type      TEXT NOT NULL,
    pages           INTEGER NOT NULL,
    size_bytes      BIGINT NOT NULL,
    sha256          TEXT NOT NULL,
    text            TEXT NOT NULL,
    data            BYTEA NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX turn_documents_conversation ON turn_documents (conversation_id, created_at, message_id);

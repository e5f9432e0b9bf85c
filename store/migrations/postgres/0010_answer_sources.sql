-- The sources a retrieval answer (POST /rag/query) was given, numbered as
-- the prompt numbered them, so that the answer's [n] citations can be
-- read back. One row per source of an answer. message_id has no foreign
-- key to messages, as turn_documents (0007) has none; the conversation's
-- key removes the rows with their conversation. document_id has none
-- either: a document deleted later leaves the citation as it was made.
CREATE TABLE answer_sources (
    message_id      TEXT NOT NULL,
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    n               INTEGER NOT NULL,
    chunk_id        BIGINT NOT NULL,
    document_id     TEXT NOT NULL,
    external_id     TEXT NOT NULL,
    title           TEXT NOT NULL,
    page            INTEGER NOT NULL,
    last_page       INTEGER NOT NULL,
    snippet         TEXT NOT NULL,
    score           DOUBLE PRECISION NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (message_id, n)
);
CREATE INDEX answer_sources_conversation ON answer_sources (conversation_id);

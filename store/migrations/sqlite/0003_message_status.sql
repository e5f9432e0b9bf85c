-- An assistant message is stored when its stream starts ('streaming') and
-- finished when it ends; one a restart cut off is 'interrupted'. SQLite
-- cannot change a CHECK constraint in place, so messages is rebuilt. No
-- table references messages, so dropping the old one cascades nothing, and
-- the rename leaves the foreign key to conversations as it is.
CREATE TABLE messages_new (
    id              TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    role            TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
    content         TEXT NOT NULL,
    model           TEXT NOT NULL DEFAULT '',
    provider        TEXT NOT NULL DEFAULT '',
    input_tokens    INTEGER NOT NULL DEFAULT 0,
    output_tokens   INTEGER NOT NULL DEFAULT 0,
    stop_reason     TEXT NOT NULL DEFAULT '',
    status          TEXT NOT NULL CHECK (status IN ('complete', 'cancelled', 'failed', 'streaming', 'interrupted')),
    error           TEXT NOT NULL DEFAULT '',
    latency_ms      INTEGER NOT NULL DEFAULT 0,
    first_token_ms  INTEGER NOT NULL DEFAULT 0,
    created_at      TIMESTAMP NOT NULL
);

INSERT INTO messages_new (id, conversation_id, role, content, model, provider, input_tokens, output_tokens,
    stop_reason, status, error, latency_ms, first_token_ms, created_at)
SELECT id, conversation_id, role, content, model, provider, input_tokens, output_tokens,
    stop_reason, status, error, latency_ms, first_token_ms, created_at
FROM messages;

DROP TABLE messages;
ALTER TABLE messages_new RENAME TO messages;
CREATE INDEX messages_conversation ON messages (conversation_id, created_at, id);

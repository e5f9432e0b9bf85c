-- A message that is not an answer (a user's) came from no model call: its
-- token counts and timings are NULL rather than a meaningless 0. SQLite
-- cannot drop NOT NULL in place, so messages is rebuilt, as in 0003 (no
-- table references messages; the rename keeps the foreign key to
-- conversations).
CREATE TABLE messages_new (
    id              TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    role            TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
    content         TEXT NOT NULL,
    model           TEXT NOT NULL DEFAULT '',
    provider        TEXT NOT NULL DEFAULT '',
    input_tokens    INTEGER DEFAULT 0,
    output_tokens   INTEGER DEFAULT 0,
    stop_reason     TEXT NOT NULL DEFAULT '',
    status          TEXT NOT NULL CHECK (status IN ('complete', 'cancelled', 'failed', 'streaming', 'interrupted')),
    error           TEXT NOT NULL DEFAULT '',
    latency_ms      INTEGER DEFAULT 0,
    first_token_ms  INTEGER DEFAULT 0,
    created_at      TIMESTAMP NOT NULL,
    updated_at      TIMESTAMP
);

-- Models are stored by their routed name, provider/name, as a stream's
-- start event shows it. An answer stored the name its upstream reported,
-- without the provider.
INSERT INTO messages_new (id, conversation_id, role, content, model, provider, input_tokens, output_tokens,
    stop_reason, status, error, latency_ms, first_token_ms, created_at, updated_at)
SELECT id, conversation_id, role, content,
    CASE WHEN provider <> '' AND model <> '' AND substr(model, 1, length(provider) + 1) <> provider || '/'
        THEN provider || '/' || model ELSE model END,
    provider,
    CASE WHEN role = 'assistant' THEN input_tokens END,
    CASE WHEN role = 'assistant' THEN output_tokens END,
    stop_reason, status, error,
    CASE WHEN role = 'assistant' THEN latency_ms END,
    CASE WHEN role = 'assistant' THEN first_token_ms END,
    created_at, updated_at
FROM messages;

DROP TABLE messages;
ALTER TABLE messages_new RENAME TO messages;
CREATE INDEX messages_conversation ON messages (conversation_id, created_at, id);
CREATE INDEX messages_streaming ON messages (updated_at) WHERE status = 'streaming';

-- A conversation stored the model as the client named it: a bare name, or
-- nothing for the default. Its first answer's provider says where it was
-- routed, and for the default, which model that was. One without an
-- answer keeps what it has: without the routing settings in force when it
-- was created, nothing says where a bare name went.
UPDATE conversations SET model = COALESCE((
    SELECT CASE WHEN conversations.model = '' THEN m.model ELSE m.provider || '/' || conversations.model END
    FROM messages m
    WHERE m.conversation_id = conversations.id AND m.role = 'assistant' AND m.provider <> ''
    ORDER BY m.created_at, m.id
    LIMIT 1), model)
WHERE substr(model, 1, 10) <> 'anthropic/' AND substr(model, 1, 7) <> 'openai/' AND substr(model, 1, 7) <> 'ollama/';

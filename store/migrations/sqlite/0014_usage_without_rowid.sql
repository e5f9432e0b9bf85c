-- Every model call adds a row to the usage log. Keyed by a TEXT id in an
-- ordinary table, a row went into three B-trees: the table's rowid tree,
-- the id's implicit unique index and usage_log_user_created. WITHOUT ROWID
-- keeps the row in its id's tree, so an insert writes two trees and each
-- id is stored once. Its rows are small, as such a table's should be; the
-- ids are UUIDv7, so inserts append. Nothing references usage_log, so it
-- is rebuilt in place. PostgreSQL has no rowid: nothing to do there.
CREATE TABLE usage_log_new (
    id            TEXT PRIMARY KEY,
    user_id       TEXT REFERENCES users (id) ON DELETE SET NULL,
    api_key_id    TEXT NOT NULL DEFAULT '',
    endpoint      TEXT NOT NULL,
    model         TEXT NOT NULL DEFAULT '',
    provider      TEXT NOT NULL DEFAULT '',
    input_tokens  INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    latency_ms    INTEGER NOT NULL DEFAULT 0,
    status        TEXT NOT NULL,
    created_at    TIMESTAMP NOT NULL,
    cached        BOOLEAN NOT NULL DEFAULT FALSE
) WITHOUT ROWID;
INSERT INTO usage_log_new (id, user_id, api_key_id, endpoint, model, provider, input_tokens, output_tokens,
    latency_ms, status, created_at, cached)
SELECT id, user_id, api_key_id, endpoint, model, provider, input_tokens, output_tokens,
    latency_ms, status, created_at, cached FROM usage_log;
DROP TABLE usage_log;
ALTER TABLE usage_log_new RENAME TO usage_log;
CREATE INDEX usage_log_user_created ON usage_log (user_id, created_at);

-- Background chat jobs (POST /ai/jobs): one row per job, with the request
-- it runs and, once it has run, its outcome. The job itself is a River job
-- (kind ferry.chat_job) inserted in the same transaction; this row is what
-- the client sees and what a running job checks for its cancellation.
-- heartbeat_at is written by the instance running the job every few
-- seconds: a running job whose heartbeat stopped had its process die, and
-- is marked failed (interrupted).
CREATE TABLE chat_jobs (
    id              TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    api_key_id      TEXT NOT NULL DEFAULT '',
    session_id      TEXT NOT NULL DEFAULT '',
    request         TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    conversation_id TEXT NOT NULL DEFAULT '',
    message_id      TEXT NOT NULL DEFAULT '',
    model           TEXT NOT NULL DEFAULT '',
    answer          TEXT NOT NULL DEFAULT '',
    stop_reason     TEXT NOT NULL DEFAULT '',
    input_tokens    INTEGER NOT NULL DEFAULT 0,
    output_tokens   INTEGER NOT NULL DEFAULT 0,
    error_code      TEXT NOT NULL DEFAULT '',
    error           TEXT NOT NULL DEFAULT '',
    created_at      TIMESTAMP NOT NULL,
    started_at      TIMESTAMP,
    finished_at     TIMESTAMP,
    heartbeat_at    TIMESTAMP
);
CREATE INDEX chat_jobs_user ON chat_jobs (user_id, created_at DESC);
CREATE INDEX chat_jobs_state ON chat_jobs (state, heartbeat_at);

-- Every write to a message sets updated_at, the periodic saves of a
-- streaming answer's text included, so an answer still 'streaming' whose
-- updated_at is old was left by a process that died: it is marked
-- 'interrupted'. SQLite cannot add a NOT NULL column without a default;
-- the writer always sets it.
ALTER TABLE messages ADD COLUMN updated_at TIMESTAMP;
UPDATE messages SET updated_at = created_at;
CREATE INDEX messages_streaming ON messages (updated_at) WHERE status = 'streaming';

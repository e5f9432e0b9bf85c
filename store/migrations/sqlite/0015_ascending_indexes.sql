-- conversations_user_updated and chat_jobs_user were declared newest
-- first (DESC). Every new entry then goes in at the left end of its user's
-- range, where SQLite's B-tree splits pages half full and rebalances three
-- of them at a time: a chat turn's commit wrote three or four of that
-- index's pages where one would do. Ascending, new entries append at the
-- right end, which SQLite fills pages for; "ORDER BY updated_at DESC, id
-- DESC" reads the same index backwards, with no sort. PostgreSQL's B-tree
-- has no such bias: its indexes stay as they are.
DROP INDEX conversations_user_updated;
CREATE INDEX conversations_user_updated ON conversations (user_id, updated_at, id);
DROP INDEX chat_jobs_user;
CREATE INDEX chat_jobs_user ON chat_jobs (user_id, created_at);

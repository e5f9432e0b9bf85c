-- Whether a usage-log entry was answered by the answer cache (a stored
-- answer, or an identical call it followed) rather than an upstream call
-- of its own; such entries have zero tokens.
ALTER TABLE usage_log ADD COLUMN cached BOOLEAN NOT NULL DEFAULT FALSE;

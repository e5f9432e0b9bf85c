-- Rate limit overrides (issue 10): an admin's per user, a key's own per API
-- key (which can only narrow its user's). Calls (rpm) and tokens (tpm) a
-- minute; 0 means not set here (the default, or the user's, applies), a
-- negative value, on a user, no limit at all.
ALTER TABLE users ADD COLUMN rate_limit_rpm BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN rate_limit_tpm BIGINT NOT NULL DEFAULT 0;
ALTER TABLE api_keys ADD COLUMN rate_limit_rpm BIGINT NOT NULL DEFAULT 0;
ALTER TABLE api_keys ADD COLUMN rate_limit_tpm BIGINT NOT NULL DEFAULT 0;

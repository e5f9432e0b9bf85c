-- An assistant message is stored when its stream starts ('streaming') and
-- finished when it ends; one a restart cut off is 'interrupted'.
ALTER TABLE messages DROP CONSTRAINT messages_status_check;
ALTER TABLE messages ADD CONSTRAINT messages_status_check
    CHECK (status IN ('complete', 'cancelled', 'failed', 'streaming', 'interrupted'));

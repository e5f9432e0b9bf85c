-- A message that is not an answer (a user's) came from no model call: its
-- token counts and timings are NULL rather than a meaningless 0.
ALTER TABLE messages
    ALTER COLUMN input_tokens DROP NOT NULL,
    ALTER COLUMN output_tokens DROP NOT NULL,
    ALTER COLUMN latency_ms DROP NOT NULL,
    ALTER COLUMN first_token_ms DROP NOT NULL;
UPDATE messages SET input_tokens = NULL, output_tokens = NULL, latency_ms = NULL, first_token_ms = NULL
WHERE role <> 'assistant';

-- Models are stored by their routed name, provider/name, as a stream's
-- start event shows it. An answer stored the name its upstream reported,
-- without the provider.
UPDATE messages SET model = provider || '/' || model
WHERE provider <> '' AND model <> '' AND substr(model, 1, length(provider) + 1) <> provider || '/';

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

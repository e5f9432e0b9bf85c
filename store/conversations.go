package store

import (
	"context"
	"database/sql"
	"time"

	"github.com/ferryhq/ferry"
)

const conversationColumns = "id, user_id, title, model, created_at, updated_at"

func scanConversation(row scanner) (*ferry.Conversation, error) {
	var c ferry.Conversation
	if err := row.Scan(&c.ID, &c.UserID, &c.Title, &c.Model, &c.CreatedAt, &c.UpdatedAt); err != nil {
		return nil, err
	}
	return &c, nil
}

// CreateConversation stores c, setting its timestamps, and returns once it
// is committed (through Submit, after the writes submitted before).
func (s *Store) CreateConversation(ctx context.Context, c *ferry.Conversation) error {
	now := time.Now().UTC()
	c.CreatedAt, c.UpdatedAt = now, now
	return s.Submit(InsertConversation(c)).Wait(ctx)
}

// Conversation returns the user's conversation with id. Another user's
// conversation is NotFound, like one that does not exist.
func (s *Store) Conversation(ctx context.Context, userID, id string) (*ferry.Conversation, error) {
	c, err := scanConversation(s.rdb.QueryRowContext(ctx,
		`SELECT `+conversationColumns+` FROM conversations WHERE id = $1 AND user_id = $2`, id, userID))
	return c, notFound(err, "conversation")
}

// Conversations returns one page of the user's conversations, most recently
// active first, and how many they have in all.
func (s *Store) Conversations(ctx context.Context, userID string, p ferry.Page) ([]*ferry.Conversation, int, error) {
	var total int
	if err := s.rdb.QueryRowContext(ctx, `SELECT COUNT(*) FROM conversations WHERE user_id = $1`, userID).Scan(&total); err != nil {
		return nil, 0, err
	}
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+conversationColumns+` FROM conversations WHERE user_id = $1
		ORDER BY updated_at DESC, id DESC LIMIT $2 OFFSET $3`, userID, p.Limit, p.Offset)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	list := []*ferry.Conversation{}
	for rows.Next() {
		c, err := scanConversation(rows)
		if err != nil {
			return nil, 0, err
		}
		list = append(list, c)
	}
	return list, total, rows.Err()
}

// RenameConversation sets the title of the user's conversation.
func (s *Store) RenameConversation(ctx context.Context, userID, id, title string) error {
	res, err := s.db.ExecContext(ctx, `UPDATE conversations SET title = $1, updated_at = $2 WHERE id = $3 AND user_id = $4`,
		title, time.Now().UTC(), id, userID)
	return affected(res, err, "conversation")
}

// DeleteConversation deletes the user's conversation and its messages.
func (s *Store) DeleteConversation(ctx context.Context, userID, id string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM conversations WHERE id = $1 AND user_id = $2`, id, userID)
	return affected(res, err, "conversation")
}

const messageColumns = "id, conversation_id, role, content, model, provider, input_tokens, output_tokens, stop_reason, status, error, latency_ms, first_token_ms, created_at"

// Messages returns the conversation's messages, oldest first. The caller
// has checked the conversation is the user's.
func (s *Store) Messages(ctx context.Context, conversationID string) ([]*ferry.Message, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+messageColumns+` FROM messages WHERE conversation_id = $1
		ORDER BY created_at, id`, conversationID)
	if err != nil {
		return nil, err
	}
	return scanMessages(rows)
}

// scanMessages reads messages; the NULL token counts and timings of a
// message that is not an answer read as zero.
func scanMessages(rows *sql.Rows) ([]*ferry.Message, error) {
	defer rows.Close()
	list := []*ferry.Message{}
	for rows.Next() {
		var m ferry.Message
		var in, out, latency, firstToken sql.NullInt64
		if err := rows.Scan(&m.ID, &m.ConversationID, &m.Role, &m.Content, &m.Model, &m.Provider, &in, &out,
			&m.StopReason, &m.Status, &m.Error, &latency, &firstToken, &m.CreatedAt); err != nil {
			return nil, err
		}
		m.InputTokens, m.OutputTokens = int(in.Int64), int(out.Int64)
		m.LatencyMS, m.FirstTokenMS = latency.Int64, firstToken.Int64
		list = append(list, &m)
	}
	return list, rows.Err()
}

// costColumns are the token counts and timings stored for m: its own for
// an answer, which alone comes from a model call; NULL for any other
// message, which costs nothing and takes no time to produce.
func costColumns(m *ferry.Message) (in, out, latency, firstToken any) {
	if m.Role != ferry.RoleAssistant {
		return nil, nil, nil, nil
	}
	return m.InputTokens, m.OutputTokens, m.LatencyMS, m.FirstTokenMS
}

// StaleAnswers returns up to limit answers still streaming whose row was
// last written before before, oldest first: those a process that died left
// behind, when before is far enough back that a live stream would have
// saved its progress since (see SaveProgress and TouchMessages).
func (s *Store) StaleAnswers(ctx context.Context, before time.Time, limit int) ([]*ferry.Message, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+messageColumns+` FROM messages
		WHERE status = 'streaming' AND updated_at < $1 ORDER BY updated_at, id LIMIT $2`, before.UTC(), limit)
	if err != nil {
		return nil, err
	}
	return scanMessages(rows)
}

// StartConversation stores a new conversation c with its first message m,
// setting their timestamps, in one group: a turn's one write before the
// model is asked. It returns once both are committed; ctx bounds only the
// wait (see Pending.Wait).
func (s *Store) StartConversation(ctx context.Context, c *ferry.Conversation, m *ferry.Message) error {
	now := time.Now().UTC()
	c.CreatedAt, c.UpdatedAt = now, now
	m.CreatedAt = now
	return s.Submit(InsertConversation(c), InsertMessage(m)).Wait(ctx)
}

// AddMessage stores m (setting CreatedAt unless set) and marks its
// conversation as active at m.CreatedAt. When u is not nil, the usage-log
// entry of the call that produced m commits with it. It returns once they
// are committed; ctx bounds only the wait (see Pending.Wait).
func (s *Store) AddMessage(ctx context.Context, m *ferry.Message, u *ferry.Usage) error {
	if u == nil {
		return s.Submit(InsertMessage(m)).Wait(ctx)
	}
	return s.Submit(InsertMessage(m), InsertUsage(u)).Wait(ctx)
}

// LogUsage appends one entry to the usage log, setting its CreatedAt unless
// set, and returns once it is committed; ctx bounds only the wait.
func (s *Store) LogUsage(ctx context.Context, u *ferry.Usage) error {
	return s.Submit(InsertUsage(u)).Wait(ctx)
}

// UsageFor returns the user's usage log entries, oldest first.
func (s *Store) UsageFor(ctx context.Context, userID string) ([]*ferry.Usage, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT id, api_key_id, endpoint, model, provider, input_tokens, output_tokens,
		latency_ms, status, created_at, cached FROM usage_log WHERE user_id = $1 ORDER BY created_at, id`, userID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	list := []*ferry.Usage{}
	for rows.Next() {
		u := ferry.Usage{UserID: userID}
		if err := rows.Scan(&u.ID, &u.APIKeyID, &u.Endpoint, &u.Model, &u.Provider, &u.InputTokens, &u.OutputTokens,
			&u.LatencyMS, &u.Status, &u.CreatedAt, &u.Cached); err != nil {
			return nil, err
		}
		list = append(list, &u)
	}
	return list, rows.Err()
}

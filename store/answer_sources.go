package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// AnswerSource is one numbered source a retrieval answer (POST /rag/query)
// was given: the chunk the prompt showed the model as [N], kept with the
// answer so that its citations can be read back.
type AnswerSource struct {
	MessageID      string // the answer's message
	ConversationID string
	N              int // the source's number in the prompt, from 1
	ChunkID        int64
	DocumentID     string
	ExternalID     string
	Title          string
	Page, LastPage int
	Snippet        string
	Score          float64
	CreatedAt      time.Time
}

const answerSourceColumns = "message_id, conversation_id, n, chunk_id, document_id, external_id, title, page, last_page, snippet, score, created_at"

// InsertAnswerSources inserts srcs in one transaction, first setting each
// one's CreatedAt to now where it is zero. Their conversation must be
// committed already (see Sync).
func (s *Store) InsertAnswerSources(ctx context.Context, srcs []AnswerSource) error {
	now := time.Now().UTC()
	return s.tx(ctx, func(tx *sql.Tx) error {
		for _, a := range srcs {
			if a.CreatedAt.IsZero() {
				a.CreatedAt = now
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO answer_sources (`+answerSourceColumns+`)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
				a.MessageID, a.ConversationID, a.N, a.ChunkID, a.DocumentID, a.ExternalID, a.Title,
				a.Page, a.LastPage, a.Snippet, a.Score, a.CreatedAt); err != nil {
				return fmt.Errorf("insert source %d of message %s: %w", a.N, a.MessageID, err)
			}
		}
		return nil
	})
}

// AnswerSources returns the sources the answer with messageID was given,
// by number; none for a message that had none. The caller has checked the
// message is the user's.
func (s *Store) AnswerSources(ctx context.Context, messageID string) ([]AnswerSource, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+answerSourceColumns+` FROM answer_sources
		WHERE message_id = $1 ORDER BY n`, messageID)
	if err != nil {
		return nil, fmt.Errorf("read answer sources: %w", err)
	}
	defer rows.Close()
	list := []AnswerSource{}
	for rows.Next() {
		var a AnswerSource
		if err := rows.Scan(&a.MessageID, &a.ConversationID, &a.N, &a.ChunkID, &a.DocumentID, &a.ExternalID, &a.Title,
			&a.Page, &a.LastPage, &a.Snippet, &a.Score, &a.CreatedAt); err != nil {
			return nil, fmt.Errorf("read answer sources: %w", err)
		}
		list = append(list, a)
	}
	return list, rows.Err()
}

// ConversationAnswerSources returns the sources of every answer in the
// conversation, by message and number. The caller has checked the
// conversation is the user's.
func (s *Store) ConversationAnswerSources(ctx context.Context, conversationID string) ([]AnswerSource, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+answerSourceColumns+` FROM answer_sources
		WHERE conversation_id = $1 ORDER BY message_id, n`, conversationID)
	if err != nil {
		return nil, fmt.Errorf("read answer sources: %w", err)
	}
	defer rows.Close()
	var list []AnswerSource
	for rows.Next() {
		var a AnswerSource
		if err := rows.Scan(&a.MessageID, &a.ConversationID, &a.N, &a.ChunkID, &a.DocumentID, &a.ExternalID, &a.Title,
			&a.Page, &a.LastPage, &a.Snippet, &a.Score, &a.CreatedAt); err != nil {
			return nil, fmt.Errorf("read answer sources: %w", err)
		}
		list = append(list, a)
	}
	return list, rows.Err()
}

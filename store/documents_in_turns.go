package store

import (
	"context"
	"time"
)

// TurnDocument is a file a user's message carried to the model (a PDF sent
// to POST /analyze/pdf), kept with its conversation so that later turns
// still see it.
type TurnDocument struct {
	MessageID      string // the user message that carried it
	ConversationID string
	Name           string // the file name the client gave; may be ""
	MediaType      string // "application/pdf"
	Pages          int
	Size           int64  // bytes
	SHA256         string // of Data, in lower-case hex
	// Text is the document's text page by page, each page after a
	// "--- page N ---" line: what a model that reads only text is sent.
	Text string
	// Data is the file itself, sent again to a model that reads it whole
	// (Anthropic). It is as large as the upload, up to
	// FERRY_MAX_UPLOAD_BYTES.
	Data      []byte
	CreatedAt time.Time
}

// InsertTurnDocument inserts d, first setting its CreatedAt to now where it
// is zero. Submit it in the same group as, or after, the InsertMessage of
// d.MessageID's conversation. It holds d's Data as is, not a copy: leave
// it unchanged.
func InsertTurnDocument(d *TurnDocument) Op {
	if d.CreatedAt.IsZero() {
		d.CreatedAt = time.Now().UTC()
	}
	dc := *d
	return Op{kind: opInsertTurnDocument, d: &dc}
}

const turnDocumentColumns = "message_id, conversation_id, name, media_type, pages, size_bytes, sha256, text, data, created_at"

// turnDocumentStep is the writer's step of an InsertTurnDocument.
func turnDocumentStep(d *TurnDocument) step {
	return step{stmt: stmtInsertTurnDocument, what: "insert document of message", id: d.MessageID,
		args: []any{d.MessageID, d.ConversationID, d.Name, d.MediaType, d.Pages, d.Size, d.SHA256, d.Text, d.Data, d.CreatedAt}}
}

// TurnDocuments returns the documents the conversation's messages carried,
// oldest first, with their text and data. The caller has checked the
// conversation is the user's.
func (s *Store) TurnDocuments(ctx context.Context, conversationID string) ([]*TurnDocument, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+turnDocumentColumns+` FROM turn_documents
		WHERE conversation_id = $1 ORDER BY created_at, message_id`, conversationID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var list []*TurnDocument
	for rows.Next() {
		var d TurnDocument
		if err := rows.Scan(&d.MessageID, &d.ConversationID, &d.Name, &d.MediaType, &d.Pages, &d.Size, &d.SHA256,
			&d.Text, &d.Data, &d.CreatedAt); err != nil {
			return nil, err
		}
		list = append(list, &d)
	}
	return list, rows.Err()
}

// TurnDocumentInfos returns what TurnDocuments does without each
// document's Text and Data: what a listing of the conversation shows.
func (s *Store) TurnDocumentInfos(ctx context.Context, conversationID string) ([]*TurnDocument, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT message_id, conversation_id, name, media_type, pages, size_bytes, sha256,
		created_at FROM turn_documents WHERE conversation_id = $1 ORDER BY created_at, message_id`, conversationID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var list []*TurnDocument
	for rows.Next() {
		var d TurnDocument
		if err := rows.Scan(&d.MessageID, &d.ConversationID, &d.Name, &d.MediaType, &d.Pages, &d.Size, &d.SHA256,
			&d.CreatedAt); err != nil {
			return nil, err
		}
		list = append(list, &d)
	}
	return list, rows.Err()
}

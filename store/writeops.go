package store

// The writes the writer commits: each Op is one or more steps, each step
// one of the writer's prepared statements.

import (
	"fmt"
	"slices"
	"time"

	"github.com/ferryhq/ferry"
)

type opKind uint8

const (
	opInsertConversation opKind = iota + 1
	opInsertMessage
	opFinishMessage
	opInsertUsage
	opSaveProgress
	opTouchMessages
	opInterruptMessage
	opInsertTurnDocument
)

// Op is one write for Submit; build it with InsertConversation,
// InsertMessage, FinishMessage, InsertUsage, SaveProgress, TouchMessages,
// InterruptMessage or InsertTurnDocument. It holds a copy of the values it
// writes, taken when it is built: changing the struct afterwards does not
// change the write.
type Op struct {
	kind   opKind
	c      *ferry.Conversation
	m      *ferry.Message
	u      *ferry.Usage
	at     time.Time // when the Op was built: the new updated_at
	ids    []string  // TouchMessages
	more   string    // SaveProgress: the text to append
	before time.Time // InterruptMessage: how old the message must be
	d      *TurnDocument
}

// InsertConversation inserts c, first setting its CreatedAt and UpdatedAt
// to now where they are zero.
func InsertConversation(c *ferry.Conversation) Op {
	now := time.Now().UTC()
	if c.CreatedAt.IsZero() {
		c.CreatedAt = now
	}
	if c.UpdatedAt.IsZero() {
		c.UpdatedAt = now
	}
	cc := *c
	return Op{kind: opInsertConversation, c: &cc}
}

// InsertMessage inserts m, first setting its CreatedAt to now where it is
// zero, and sets its conversation's updated_at to m.CreatedAt. The
// message's own updated_at is m.CreatedAt too. Only an answer (role
// assistant) stores token counts and timings; other messages store NULL.
func InsertMessage(m *ferry.Message) Op {
	if m.CreatedAt.IsZero() {
		m.CreatedAt = time.Now().UTC()
	}
	mc := *m
	return Op{kind: opInsertMessage, m: &mc}
}

// FinishMessage saves how the message with m.ID ended: its content, model,
// provider, token counts, stop reason, status, error and timings (its role,
// conversation and CreatedAt stay). Its updated_at and its conversation's
// become now. No message with m.ID fails the Op's group with NotFound.
func FinishMessage(m *ferry.Message) Op {
	mc := *m
	return Op{kind: opFinishMessage, m: &mc, at: time.Now().UTC()}
}

// InsertUsage appends u to the usage log, first setting its CreatedAt to now
// where it is zero. An empty UserID is stored as NULL, and so is the id of
// a user who no longer exists (deleted while the call ran): the entry is
// kept for accounting, as the entries of a deleted user are.
func InsertUsage(u *ferry.Usage) Op {
	if u.CreatedAt.IsZero() {
		u.CreatedAt = time.Now().UTC()
	}
	uc := *u
	return Op{kind: opInsertUsage, u: &uc}
}

// SaveProgress appends more to the text of the message with id while it
// is streaming, and sets its updated_at to now: what a crash would
// otherwise lose. A message that is no longer streaming, or no longer
// exists, is left as it is (its group does not fail).
func SaveProgress(id, more string) Op {
	return Op{kind: opSaveProgress, m: &ferry.Message{ID: id}, more: more, at: time.Now().UTC()}
}

// TouchMessages sets updated_at to now on those of the messages with ids
// that are still streaming: the sign that their streams are alive, for a
// model that is silent for long. Others are left as they are.
func TouchMessages(ids ...string) Op {
	return Op{kind: opTouchMessages, ids: slices.Clone(ids), at: time.Now().UTC()}
}

// InterruptMessage marks the message with m.ID interrupted, with m's token
// counts, if it is still streaming and was last written before before (it
// is a leftover of a process that died). Otherwise, a stream that is alive
// after all or has finished, it is left as it is; its group does not
// fail.
func InterruptMessage(m *ferry.Message, before time.Time) Op {
	mc := *m
	return Op{kind: opInterruptMessage, m: &mc, before: before.UTC(), at: time.Now().UTC()}
}

// The writer's statements, prepared once per Store.
const (
	stmtInsertConversation = iota
	stmtInsertMessage
	stmtTouchConversation
	stmtFinishMessage
	stmtTouchMessageConversation
	stmtInsertUsage
	stmtSaveProgress
	stmtTouchMessage
	stmtInterruptMessage
	stmtInsertTurnDocument
	stmtCount
)

var writerSQL = [stmtCount]string{
	stmtInsertConversation: `INSERT INTO conversations (` + conversationColumns + `) VALUES ($1, $2, $3, $4, $5, $6)`,
	stmtInsertMessage: `INSERT INTO messages (` + messageColumns + `, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14)`,
	stmtTouchConversation: `UPDATE conversations SET updated_at = $1 WHERE id = $2`,
	stmtFinishMessage: `UPDATE messages SET content = $1, model = $2, provider = $3, input_tokens = $4, output_tokens = $5,
		stop_reason = $6, status = $7, error = $8, latency_ms = $9, first_token_ms = $10, updated_at = $11 WHERE id = $12`,
	stmtTouchMessageConversation: `UPDATE conversations SET updated_at = $1
		WHERE id = (SELECT conversation_id FROM messages WHERE id = $2)`,
	// The user may have been deleted while the call ran: the entry is kept
	// with no user rather than failing its foreign key.
	stmtInsertUsage: `INSERT INTO usage_log (id, user_id, api_key_id, endpoint, model, provider,
		input_tokens, output_tokens, latency_ms, status, created_at, cached)
		VALUES ($1, (SELECT id FROM users WHERE id = $2), $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
	stmtSaveProgress: `UPDATE messages SET content = content || $1, updated_at = $2
		WHERE id = $3 AND status = 'streaming'`,
	stmtTouchMessage: `UPDATE messages SET updated_at = $1 WHERE id = $2 AND status = 'streaming'`,
	stmtInterruptMessage: `UPDATE messages SET status = 'interrupted', input_tokens = $1, output_tokens = $2, updated_at = $3
		WHERE id = $4 AND status = 'streaming' AND updated_at < $5`,
	stmtInsertTurnDocument: `INSERT INTO turn_documents (` + turnDocumentColumns + `)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
}

// step is one statement of an Op.
type step struct {
	stmt int
	args []any
	what string // names the write in errors, with id
	id   string
	one  bool // the statement must change a row
}

// check turns a step's outcome (n rows changed, or err) into its error.
func (st step) check(n int64, err error) error {
	if err != nil {
		return fmt.Errorf("%s %s: %w", st.what, st.id, err)
	}
	if st.one && n == 0 {
		return fmt.Errorf("%s %s: %w", st.what, st.id, ferry.Errorf(ferry.NotFound, "message not found"))
	}
	return nil
}

func (op Op) appendSteps(steps []step) []step {
	switch op.kind {
	case opInsertConversation:
		c := op.c
		return append(steps, step{stmt: stmtInsertConversation, what: "insert conversation", id: c.ID,
			args: []any{c.ID, c.UserID, c.Title, c.Model, c.CreatedAt, c.UpdatedAt}})
	case opInsertMessage:
		m := op.m
		in, out, latency, firstToken := costColumns(m)
		return append(steps,
			step{stmt: stmtInsertMessage, what: "insert message", id: m.ID,
				args: []any{m.ID, m.ConversationID, m.Role, m.Content, m.Model, m.Provider, in, out,
					m.StopReason, m.Status, m.Error, latency, firstToken, m.CreatedAt}},
			step{stmt: stmtTouchConversation, what: "touch conversation", id: m.ConversationID,
				args: []any{m.CreatedAt, m.ConversationID}})
	case opFinishMessage:
		m := op.m
		return append(steps,
			step{stmt: stmtFinishMessage, what: "finish message", id: m.ID, one: true,
				args: []any{m.Content, m.Model, m.Provider, m.InputTokens, m.OutputTokens,
					m.StopReason, m.Status, m.Error, m.LatencyMS, m.FirstTokenMS, op.at, m.ID}},
			step{stmt: stmtTouchMessageConversation, what: "touch conversation of message", id: m.ID,
				args: []any{op.at, m.ID}})
	case opInsertUsage:
		u := op.u
		var userID any
		if u.UserID != "" {
			userID = u.UserID
		}
		return append(steps, step{stmt: stmtInsertUsage, what: "insert usage", id: u.ID,
			args: []any{u.ID, userID, u.APIKeyID, u.Endpoint, u.Model, u.Provider,
				u.InputTokens, u.OutputTokens, u.LatencyMS, u.Status, u.CreatedAt, u.Cached}})
	case opSaveProgress:
		return append(steps, step{stmt: stmtSaveProgress, what: "save progress of message", id: op.m.ID,
			args: []any{op.more, op.at, op.m.ID}})
	case opTouchMessages:
		for _, id := range op.ids {
			steps = append(steps, step{stmt: stmtTouchMessage, what: "touch message", id: id, args: []any{op.at, id}})
		}
		return steps
	case opInterruptMessage:
		m := op.m
		return append(steps, step{stmt: stmtInterruptMessage, what: "interrupt message", id: m.ID,
			args: []any{m.InputTokens, m.OutputTokens, op.at, m.ID, op.before}})
	case opInsertTurnDocument:
		return append(steps, turnDocumentStep(op.d))
	}
	return steps // Submit refuses an Op{}
}

// foldTouches drops the steps of a transaction that change nothing it
// leaves behind: a touch of a conversation that a later step touches again
// (the later one sets updated_at last), and a touch of a conversation that
// the transaction itself inserts, whose time the insert then takes as its
// updated_at, unless a finish (which touches the conversation of a message)
// comes between them. Nothing reads updated_at inside the transaction, so
// each conversation ends with the same updated_at, for one or two
// statements less a turn (and the index on updated_at changed once).
func foldTouches(steps []step) []step {
	if len(steps) < 2 {
		return steps
	}
	lastTouch := make(map[string]int)
	for i, st := range steps {
		if st.stmt == stmtTouchConversation {
			lastTouch[st.args[1].(string)] = i
		}
	}
	if len(lastTouch) == 0 {
		return steps
	}
	// The args are as appendSteps builds them: a touch's are (updated_at,
	// conversation id); an insert's are the conversation's columns, id
	// first and updated_at sixth.
	inserted := make(map[string]int) // conversation id → its insert step
	out := steps[:0]
	for i, st := range steps {
		switch st.stmt {
		case stmtInsertConversation:
			inserted[st.args[0].(string)] = len(out)
		case stmtTouchMessageConversation:
			clear(inserted) // a finish between an insert and a touch keeps the touch
		case stmtTouchConversation:
			id := st.args[1].(string)
			if lastTouch[id] != i {
				continue
			}
			if at, ok := inserted[id]; ok {
				out[at].args[5] = st.args[0]
				continue
			}
		}
		out = append(out, st)
	}
	return out
}

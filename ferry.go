// Package ferry holds Ferry's domain types, its error model and the context
// helpers every other package shares. It depends on the standard library only.
package ferry

import (
	"context"
	"time"
)

// Role is what a user may do beyond their own objects.
type Role string

// Roles a user can have.
const (
	RoleUser  Role = "user"
	RoleAdmin Role = "admin"
)

// Valid reports whether r is one of the known roles.
func (r Role) Valid() bool { return r == RoleUser || r == RoleAdmin }

// User is an account. PasswordHash never leaves the server.
type User struct {
	ID           string
	Email        string
	Name         string
	PasswordHash string
	Role         Role
	Disabled     bool
	CreatedAt    time.Time
	UpdatedAt    time.Time
	// Limits are an admin's override of the default rate limits.
	Limits Limits
}

// Limits are rate limits on model calls: calls (RPM) and tokens (TPM) per
// minute. Zero means "not set here" (the default applies); a negative
// value means no limit.
type Limits struct {
	RPM int64
	TPM int64
}

// IsAdmin reports whether u may manage other users.
func (u *User) IsAdmin() bool { return u.Role == RoleAdmin }

// Session is one sign-in: the refresh tokens it issues rotate within it, and
// revoking it signs that client out.
type Session struct {
	ID        string
	UserID    string
	CreatedAt time.Time
	ExpiresAt time.Time
	RevokedAt *time.Time
}

// APIKey is a long-lived credential for programmatic clients. Only a hash of
// its secret is stored; Prefix is the start of the secret, for recognising it.
type APIKey struct {
	ID         string
	UserID     string
	Name       string
	Prefix     string
	Hash       string
	CreatedAt  time.Time
	ExpiresAt  *time.Time
	LastUsedAt *time.Time
	// Limits narrow the user's rate limits for calls made with this key:
	// a share of the user's budget for one script.
	Limits Limits
}

// Principal is who a request acts as: the user, and the session or API key
// that authenticated it (exactly one of SessionID and APIKeyID is set).
type Principal struct {
	User      *User
	SessionID string
	APIKeyID  string
	// KeyLimits are the API key's own limits (see APIKey.Limits).
	KeyLimits Limits
}

type principalKey struct{}

// WithPrincipal returns a context that carries p.
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the principal stored in ctx, or nil.
func PrincipalFrom(ctx context.Context) *Principal {
	p, _ := ctx.Value(principalKey{}).(*Principal)
	return p
}

// Page asks for one page of a list: at most Limit items after skipping Offset.
type Page struct {
	Limit  int
	Offset int
}

// Conversation is a stored chat thread owned by one user.
type Conversation struct {
	ID        string
	UserID    string
	Title     string
	Model     string
	CreatedAt time.Time
	UpdatedAt time.Time
}

// MessageRole says who wrote a message.
type MessageRole string

// Message roles.
const (
	RoleSystem    MessageRole = "system"
	RoleUserMsg   MessageRole = "user"
	RoleAssistant MessageRole = "assistant"
)

// MessageStatus says how an assistant message ended.
type MessageStatus string

// Message statuses. A user message is always complete.
const (
	StatusComplete  MessageStatus = "complete"
	StatusCancelled MessageStatus = "cancelled"
	StatusFailed    MessageStatus = "failed"
	// StatusStreaming is an answer still being generated: its row is
	// written when the stream starts and finished when the stream ends.
	StatusStreaming MessageStatus = "streaming"
	// StatusInterrupted is an answer whose stream the server stopped
	// (a restart or a crash) before it finished; it keeps what was saved.
	StatusInterrupted MessageStatus = "interrupted"
)

// Message is one turn's text in a conversation, with what producing it cost.
type Message struct {
	ID             string
	ConversationID string
	Role           MessageRole
	Content        string
	Model          string
	Provider       string
	InputTokens    int
	OutputTokens   int
	StopReason     string
	Status         MessageStatus
	Error          string
	LatencyMS      int64
	FirstTokenMS   int64
	CreatedAt      time.Time
}

// Usage is one entry of the usage log: a call to a model through any endpoint.
type Usage struct {
	ID           string
	UserID       string
	APIKeyID     string
	Endpoint     string
	Model        string
	Provider     string
	InputTokens  int
	OutputTokens int
	LatencyMS    int64
	Status       string
	// Cached says the call was answered without an upstream call of its
	// own (the answer cache), its tokens zero.
	Cached    bool
	CreatedAt time.Time
}

package chat

import (
	"context"
	"strings"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/auth"
	"github.com/ferryhq/ferry/store"
)

// Conversations returns one page of the user's conversations, most recently
// active first, and how many there are.
func (s *Service) Conversations(ctx context.Context, userID string, p ferry.Page) ([]*ferry.Conversation, int, error) {
	if err := s.store.Sync(ctx); err != nil {
		return nil, 0, err
	}
	return s.store.Conversations(ctx, userID, p)
}

// CreateConversation starts an empty conversation for the user. A model
// is stored by its routed name (see RoutedName), as a turn stores it;
// Invalid if it cannot be routed.
func (s *Service) CreateConversation(ctx context.Context, userID, title, model string) (*ferry.Conversation, error) {
	title = strings.TrimSpace(title)
	if len(title) > 200 {
		return nil, ferry.InvalidField("title", "at most 200 characters")
	}
	if model != "" {
		p, name, err := s.router.Resolve(model)
		if err != nil {
			return nil, err
		}
		model = RoutedName(p.Name(), name)
	}
	c := &ferry.Conversation{ID: auth.NewID(), UserID: userID, Title: title, Model: model}
	return c, s.store.CreateConversation(ctx, c)
}

// Conversation returns the user's conversation with its messages, oldest
// first. Another user's conversation is NotFound.
func (s *Service) Conversation(ctx context.Context, userID, id string) (*ferry.Conversation, []*ferry.Message, error) {
	// A turn's rows are written after its done event; a client that reads
	// right after must see them.
	if err := s.store.Sync(ctx); err != nil {
		return nil, nil, err
	}
	c, err := s.store.Conversation(ctx, userID, id)
	if err != nil {
		return nil, nil, err
	}
	msgs, err := s.store.Messages(ctx, id)
	return c, msgs, err
}

// RenameConversation sets the title of the user's conversation.
func (s *Service) RenameConversation(ctx context.Context, userID, id, title string) (*ferry.Conversation, error) {
	title = strings.TrimSpace(title)
	if title == "" || len(title) > 200 {
		return nil, ferry.InvalidField("title", "between 1 and 200 characters")
	}
	if err := s.store.RenameConversation(ctx, userID, id, title); err != nil {
		return nil, err
	}
	return s.store.Conversation(ctx, userID, id)
}

// DeleteConversation deletes the user's conversation and its messages.
func (s *Service) DeleteConversation(ctx context.Context, userID, id string) error {
	return s.store.DeleteConversation(ctx, userID, id)
}

// Attachments are what a conversation's messages carried besides their
// text: the documents users sent with a message (POST /analyze/pdf), by
// the user message's id, and the sources an answer was given (POST
// /rag/query), by the answer's id.
type Attachments struct {
	Documents map[string]*store.TurnDocument // without Text and Data
	Sources   map[string][]store.AnswerSource
}

// Attachments returns the attachments of the conversation's messages. The
// caller has checked the conversation is the user's (see Conversation).
func (s *Service) Attachments(ctx context.Context, conversationID string) (*Attachments, error) {
	docs, err := s.store.TurnDocumentInfos(ctx, conversationID)
	if err != nil {
		return nil, err
	}
	srcs, err := s.store.ConversationAnswerSources(ctx, conversationID)
	if err != nil {
		return nil, err
	}
	a := &Attachments{Documents: make(map[string]*store.TurnDocument, len(docs)), Sources: map[string][]store.AnswerSource{}}
	for _, d := range docs {
		a.Documents[d.MessageID] = d
	}
	for _, src := range srcs {
		a.Sources[src.MessageID] = append(a.Sources[src.MessageID], src)
	}
	return a, nil
}

package chat

import (
	"context"
	"strings"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/auth"
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

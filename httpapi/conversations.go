package httpapi

import (
	"context"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/chat"
)

type conversationBody struct {
	ID        string    `json:"id"`
	Title     string    `json:"title"`
	Model     string    `json:"model" doc:"The model it was started with, by its routed name (provider/model); empty for one created without a model."`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

func newConversationBody(c *ferry.Conversation) conversationBody {
	return conversationBody{ID: c.ID, Title: c.Title, Model: c.Model, CreatedAt: c.CreatedAt, UpdatedAt: c.UpdatedAt}
}

// messageBody is a stored message. Model, provider, token counts and
// timings belong to answers, which come from a model call; a user's
// message has none of them.
type messageBody struct {
	ID           string              `json:"id"`
	Role         ferry.MessageRole   `json:"role" enum:"user,assistant,system"`
	Content      string              `json:"content"`
	Status       ferry.MessageStatus `json:"status" enum:"complete,cancelled,failed,streaming,interrupted"`
	Model        string              `json:"model,omitempty" doc:"The routed name, provider/model, as the stream's start event gave it."`
	Provider     string              `json:"provider,omitempty"`
	InputTokens  *int                `json:"input_tokens,omitempty"`
	OutputTokens *int                `json:"output_tokens,omitempty"`
	StopReason   string              `json:"stop_reason,omitempty"`
	Error        string              `json:"error,omitempty"`
	LatencyMS    *int64              `json:"latency_ms,omitempty" doc:"From the call to its end."`
	FirstTokenMS *int64              `json:"first_token_ms,omitempty" doc:"From the call to the first text; 0 if none came."`
	CreatedAt    time.Time           `json:"created_at"`
	Document     *turnDocumentBody   `json:"document,omitempty" doc:"The file the user's message carried (POST /analyze/pdf)."`
	Sources      []sourceBody        `json:"sources,omitempty" doc:"The numbered sources an answer of POST /rag/query was given; it cites them as [n]."`
}

// turnDocumentBody describes a file a message carried, without its content.
type turnDocumentBody struct {
	Name      string `json:"name"`
	MediaType string `json:"media_type"`
	Pages     int    `json:"pages"`
	Size      int64  `json:"size" doc:"In bytes."`
	SHA256    string `json:"sha256"`
}

func newMessageBody(m *ferry.Message) messageBody {
	b := messageBody{ID: m.ID, Role: m.Role, Content: m.Content, Status: m.Status, Model: m.Model, Provider: m.Provider,
		StopReason: m.StopReason, Error: m.Error, CreatedAt: m.CreatedAt}
	if m.Role == ferry.RoleAssistant {
		b.InputTokens, b.OutputTokens, b.LatencyMS, b.FirstTokenMS = &m.InputTokens, &m.OutputTokens, &m.LatencyMS, &m.FirstTokenMS
	}
	return b
}

type conversationOutput struct{ Body conversationBody }

type listConversationsInput struct {
	Limit  int `query:"limit" minimum:"1" maximum:"100" default:"20"`
	Offset int `query:"offset" minimum:"0" default:"0"`
}

type conversationsOutput struct {
	Body struct {
		Items  []conversationBody `json:"items"`
		Total  int                `json:"total"`
		Limit  int                `json:"limit"`
		Offset int                `json:"offset"`
	}
}

func handleListConversations(c *chat.Service) func(context.Context, *listConversationsInput) (*conversationsOutput, error) {
	return func(ctx context.Context, in *listConversationsInput) (*conversationsOutput, error) {
		list, total, err := c.Conversations(ctx, principal(ctx).User.ID, ferry.Page{Limit: in.Limit, Offset: in.Offset})
		if err != nil {
			return nil, err
		}
		out := &conversationsOutput{}
		out.Body.Items = make([]conversationBody, len(list))
		for i, cv := range list {
			out.Body.Items[i] = newConversationBody(cv)
		}
		out.Body.Total, out.Body.Limit, out.Body.Offset = total, in.Limit, in.Offset
		return out, nil
	}
}

type createConversationInput struct {
	Body struct {
		Title string `json:"title,omitempty" maxLength:"200"`
		Model string `json:"model,omitempty" maxLength:"200"`
	}
}

func handleCreateConversation(c *chat.Service) func(context.Context, *createConversationInput) (*conversationOutput, error) {
	return func(ctx context.Context, in *createConversationInput) (*conversationOutput, error) {
		cv, err := c.CreateConversation(ctx, principal(ctx).User.ID, in.Body.Title, in.Body.Model)
		if err != nil {
			return nil, err
		}
		return &conversationOutput{Body: newConversationBody(cv)}, nil
	}
}

type conversationDetailOutput struct {
	Body struct {
		conversationBody
		Messages []messageBody `json:"messages"`
	}
}

func handleGetConversation(c *chat.Service) func(context.Context, *idInput) (*conversationDetailOutput, error) {
	return func(ctx context.Context, in *idInput) (*conversationDetailOutput, error) {
		cv, msgs, err := c.Conversation(ctx, principal(ctx).User.ID, in.ID)
		if err != nil {
			return nil, err
		}
		out := &conversationDetailOutput{}
		out.Body.conversationBody = newConversationBody(cv)
		att, err := c.Attachments(ctx, cv.ID)
		if err != nil {
			return nil, err
		}
		out.Body.Messages = make([]messageBody, len(msgs))
		for i, m := range msgs {
			b := newMessageBody(m)
			if d := att.Documents[m.ID]; d != nil {
				b.Document = &turnDocumentBody{Name: d.Name, MediaType: d.MediaType, Pages: d.Pages, Size: d.Size, SHA256: d.SHA256}
			}
			for _, src := range att.Sources[m.ID] {
				b.Sources = append(b.Sources, newSourceBody(src))
			}
			out.Body.Messages[i] = b
		}
		return out, nil
	}
}

type renameConversationInput struct {
	ID   string `path:"id" maxLength:"64"`
	Body struct {
		Title string `json:"title" minLength:"1" maxLength:"200"`
	}
}

func handleRenameConversation(c *chat.Service) func(context.Context, *renameConversationInput) (*conversationOutput, error) {
	return func(ctx context.Context, in *renameConversationInput) (*conversationOutput, error) {
		cv, err := c.RenameConversation(ctx, principal(ctx).User.ID, in.ID, in.Body.Title)
		if err != nil {
			return nil, err
		}
		return &conversationOutput{Body: newConversationBody(cv)}, nil
	}
}

func handleDeleteConversation(c *chat.Service) func(context.Context, *idInput) (*struct{}, error) {
	return func(ctx context.Context, in *idInput) (*struct{}, error) {
		return nil, c.DeleteConversation(ctx, principal(ctx).User.ID, in.ID)
	}
}

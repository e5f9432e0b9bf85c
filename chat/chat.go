// Package chat runs a chat turn: it loads the conversation's history, streams
// the answer from the model's provider, and stores both sides of the turn
// however it ends (complete, cancelled or failed), with what it cost.
package chat

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/auth"
	"github.com/ferryhq/ferry/llm"
	"github.com/ferryhq/ferry/store"
)

// Service runs chat turns and manages conversations.
type Service struct {
	store  *store.Store
	router *llm.Router
	opts   Options
}

// Options are the chat settings.
type Options struct {
	SystemPrompt    string        // used when a request gives none
	ContextTokens   int           // history budget, in estimated tokens
	UpstreamTimeout time.Duration // longest one model call may take
	MaxTokens       int           // answer length when a request gives none
	Log             *slog.Logger  // for turns that could not be saved
}

// NewService returns a Service storing turns in st and reaching models
// through router.
func NewService(st *store.Store, router *llm.Router, opts Options) *Service {
	if opts.MaxTokens == 0 {
		opts.MaxTokens = 4096
	}
	if opts.ContextTokens == 0 {
		opts.ContextTokens = 100_000
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.UpstreamTimeout == 0 {
		opts.UpstreamTimeout = 10 * time.Minute
	}
	return &Service{store: st, router: router, opts: opts}
}

// Request is one user turn.
type Request struct {
	Message        string
	SystemPrompt   string // empty: the configured default
	Model          string // empty: the configured default
	MaxTokens      int    // 0: the configured default
	ConversationID string // empty: start a new conversation
	Endpoint       string // for the usage log, e.g. "/ai/chat/stream"
}

// maxMessageRunes bounds one message; the body limit bounds it in bytes too.
const maxMessageRunes = 200_000

// Turn is a prepared turn: validated, routed, with the user's message
// stored. Everything that can be refused has been by the time a Turn
// exists, so a stream can start.
type Turn struct {
	ConversationID     string
	UserMessageID      string
	AssistantMessageID string
	Provider           string
	Model              string

	svc       *Service
	principal *ferry.Principal
	endpoint  string
	provider  llm.Provider
	req       llm.Request
}

// Prepare checks req, routes its model, loads the conversation's history
// (creating a conversation when req names none) and stores the user's
// message. Errors: Invalid (bad input, unknown or unconfigured model),
// NotFound (a conversation that is not the user's).
func (s *Service) Prepare(ctx context.Context, p *ferry.Principal, req Request) (*Turn, error) {
	msg := strings.TrimSpace(req.Message)
	if msg == "" {
		return nil, ferry.InvalidField("message", "must not be empty")
	}
	if utf8.RuneCountInString(req.Message) > maxMessageRunes {
		return nil, ferry.InvalidField("message", "too long")
	}
	if req.MaxTokens < 0 {
		return nil, ferry.InvalidField("max_tokens", "must be positive")
	}
	provider, model, err := s.router.Resolve(req.Model)
	if err != nil {
		return nil, err
	}
	system := req.SystemPrompt
	if system == "" {
		system = s.opts.SystemPrompt
	}
	maxTokens := req.MaxTokens
	if maxTokens == 0 {
		maxTokens = s.opts.MaxTokens
	}
	// The user's words are stored before any model is asked, so a turn that
	// fails later still keeps them.
	user := &ferry.Message{ID: auth.NewID(), Role: ferry.RoleUserMsg, Content: req.Message, Status: ferry.StatusComplete}
	var conv *ferry.Conversation
	var history []*ferry.Message
	if req.ConversationID != "" {
		if conv, err = s.store.Conversation(ctx, p.User.ID, req.ConversationID); err != nil {
			return nil, err
		}
		if history, err = s.store.Messages(ctx, conv.ID); err != nil {
			return nil, err
		}
		user.ConversationID = conv.ID
		if err := s.store.AddMessage(ctx, user, nil); err != nil {
			return nil, err
		}
	} else {
		conv = &ferry.Conversation{ID: auth.NewID(), UserID: p.User.ID, Title: Title(msg), Model: req.Model}
		user.ConversationID = conv.ID
		if err := s.store.StartConversation(ctx, conv, user); err != nil {
			return nil, err
		}
	}
	return &Turn{
		ConversationID:     conv.ID,
		UserMessageID:      user.ID,
		AssistantMessageID: auth.NewID(),
		Provider:           provider.Name(),
		Model:              model,
		svc:                s,
		principal:          p,
		endpoint:           req.Endpoint,
		provider:           provider,
		req: llm.Request{
			Model:     model,
			System:    system,
			Messages:  History(history, req.Message, s.opts.ContextTokens-EstimateTokens(system)),
			MaxTokens: maxTokens,
		},
	}, nil
}

// Result is how a turn ended.
type Result struct {
	Text       string
	Status     ferry.MessageStatus
	StopReason string
	Usage      llm.Usage
	Model      string        // the model the upstream used
	Latency    time.Duration // from the call to its end
	FirstToken time.Duration // from the call to the first delta; 0 if none came
}

// Stream asks the model and calls fn with each text delta. However the
// turn ends, the assistant's message is stored with its status, usage and
// timings, and the call is written to the usage log; this happens even when
// ctx is cancelled (the client left), with what had arrived by then. The
// error is the provider's (see llm.Provider), or ctx's when the client left.
func (t *Turn) Stream(ctx context.Context, fn func(text string) error) (*Result, error) {
	res, err := t.svc.run(ctx, t.provider, t.req, fn)
	m := &ferry.Message{
		ID: t.AssistantMessageID, ConversationID: t.ConversationID, Role: ferry.RoleAssistant, Content: res.Text,
		Model: res.Model, Provider: t.Provider, InputTokens: res.Usage.InputTokens, OutputTokens: res.Usage.OutputTokens,
		StopReason: res.StopReason, Status: res.Status, LatencyMS: res.Latency.Milliseconds(), FirstTokenMS: res.FirstToken.Milliseconds(),
	}
	if res.Status == ferry.StatusFailed {
		m.Error = publicMessage(err)
	}
	// Saved after the client may have gone, so not under its cancellation;
	// the answer and its usage entry share one commit.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if serr := t.svc.store.AddMessage(sctx, m, usageEntry(t.principal, t.endpoint, t.Provider, res)); serr != nil {
		t.svc.opts.Log.ErrorContext(ctx, "saving chat turn", "conversation_id", t.ConversationID, "error", serr)
	}
	return res, err
}

// Call makes one model call outside any conversation, as the
// OpenAI-compatible API does: req is sent as it is, and only the usage log
// records it. It calls fn with each text delta; errors are as for
// Turn.Stream.
func (s *Service) Call(ctx context.Context, p *ferry.Principal, endpoint string, provider llm.Provider, req llm.Request, fn func(text string) error) (*Result, error) {
	res, err := s.run(ctx, provider, req, fn)
	s.LogUsage(ctx, p, endpoint, provider.Name(), res)
	return res, err
}

// run streams req from provider, calling fn with each text delta, and says
// how the call ended.
func (s *Service) run(ctx context.Context, provider llm.Provider, req llm.Request, fn func(text string) error) (*Result, error) {
	start := time.Now()
	var first time.Duration
	var text strings.Builder
	var final llm.Delta
	uctx, cancel := context.WithTimeout(ctx, s.opts.UpstreamTimeout)
	defer cancel()
	err := provider.Stream(uctx, req, func(d llm.Delta) error {
		if d.Done {
			final = d
			return nil
		}
		if first == 0 {
			first = time.Since(start)
		}
		text.WriteString(d.Text)
		return fn(d.Text)
	})
	res := &Result{Text: text.String(), Status: ferry.StatusComplete, StopReason: final.StopReason, Usage: final.Usage,
		Model: req.Model, Latency: time.Since(start), FirstToken: first}
	if final.Model != "" {
		res.Model = final.Model
	}
	switch {
	case err == nil:
	case ctx.Err() != nil:
		// The client left (or the server is draining); what arrived is kept.
		res.Status = ferry.StatusCancelled
		err = ctx.Err()
	default:
		res.Status = ferry.StatusFailed
	}
	if !final.Done {
		// The upstream never reported usage (it was cut off): estimate it, so
		// the usage log does not count an interrupted call as free.
		res.Usage = llm.Usage{InputTokens: estimateRequest(req), OutputTokens: EstimateTokens(res.Text)}
	}
	return res, err
}

// LogUsage writes one usage-log entry for a model call that ended as res.
// It runs when the client may have left, so it does not inherit ctx's
// cancellation; a failure is logged, not returned, since the answer has
// been given.
func (s *Service) LogUsage(ctx context.Context, p *ferry.Principal, endpoint, provider string, res *Result) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := s.store.LogUsage(sctx, usageEntry(p, endpoint, provider, res)); err != nil {
		s.opts.Log.ErrorContext(ctx, "writing usage log", "endpoint", endpoint, "error", err)
	}
}

func usageEntry(p *ferry.Principal, endpoint, provider string, res *Result) *ferry.Usage {
	return &ferry.Usage{
		ID: auth.NewID(), UserID: p.User.ID, APIKeyID: p.APIKeyID, Endpoint: endpoint, Model: res.Model, Provider: provider,
		InputTokens: res.Usage.InputTokens, OutputTokens: res.Usage.OutputTokens, LatencyMS: res.Latency.Milliseconds(),
		Status: string(res.Status),
	}
}

// publicMessage is what a failed message records: the client-facing message
// of a *ferry.Error, never an internal error's text.
func publicMessage(err error) string {
	var fe *ferry.Error
	if errors.As(err, &fe) {
		return fe.Message
	}
	return "internal error"
}

func estimateRequest(r llm.Request) int {
	n := EstimateTokens(r.System)
	for _, m := range r.Messages {
		n += EstimateTokens(m.Text())
	}
	return n
}

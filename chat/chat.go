// Package chat runs a chat turn: it loads the conversation's history, streams
// the answer from the model's provider, and stores both sides of the turn
// however it ends (complete, cancelled or failed), with what it cost.
package chat

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/auth"
	"github.com/ferryhq/ferry/cache"
	"github.com/ferryhq/ferry/llm"
	"github.com/ferryhq/ferry/store"
)

// Service runs chat turns and manages conversations. Every model call, a
// conversation turn or a stateless one, enters through Start (see Call).
type Service struct {
	store   *store.Store
	router  *llm.Router
	opts    Options
	active  active  // the calls started and not finished
	flights flights // the calls identical ones may follow (see cache.go)
}

// Options are the chat settings.
type Options struct {
	SystemPrompt        string        // used when a request gives none
	ContextTokens       int           // history budget, in estimated tokens
	UpstreamTimeout     time.Duration // longest one model call may take
	UpstreamIdleTimeout time.Duration // longest silence between two chunks once an answer has begun; zero: 60 s
	MaxTokens           int           // answer length when a request gives none
	Log                 *slog.Logger  // for calls that could not be saved
	Admit               Admit         // nil: every call is admitted
	// Cache keeps complete answers for identical requests of the same
	// user; nil: no answer cache (and no single flight).
	Cache     cache.Store
	Observers []Observer // told of every call that ran
	// SaveInterval is how often a streaming answer's text is saved, so
	// that a crash loses at most about that much of it; zero: 2 s. Live
	// answers are shown alive every 10 intervals, and one not written for
	// 30 is taken for a leftover of a process that died (see
	// MarkInterrupted).
	SaveInterval time.Duration
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
	if opts.UpstreamIdleTimeout == 0 {
		opts.UpstreamIdleTimeout = time.Minute
	}
	if opts.SaveInterval == 0 {
		opts.SaveInterval = 2 * time.Second
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
	// Sampling is passed on to the model; zero: the upstream's defaults.
	Sampling llm.Sampling
	// Document, when not nil, is a file the message carries (see
	// Document); it is stored with the message.
	Document *Document
	// NoCache keeps the turn away from the answer cache (see UseCache).
	NoCache bool
}

// MaxMessageChars bounds one message, in characters (Unicode code
// points); FERRY_MAX_BODY_BYTES bounds its request in bytes too.
const MaxMessageChars = 200_000

// Turn is a prepared turn: validated, routed and admitted, with the
// conversation, the user's message and the answer's row on their way to
// the database. Everything that can be refused has been by the time a Turn
// exists, so a stream can start.
type Turn struct {
	ConversationID     string
	UserMessageID      string
	AssistantMessageID string
	Provider           string
	Model              string
	// Cache says whether the answer comes from the answer cache.
	Cache CacheState

	call  *Call
	saved *store.Pending // the rows written before the model is asked
}

// Prepare checks req, loads the conversation's history (a new
// conversation when req names none), sends the turn through Start, and
// queues the user's message and the answer's row (status streaming). Only
// reads happen before it returns; the writes are waited for before the
// turn ends. Errors: those of Start, Invalid (bad input), NotFound (a
// conversation that is not the user's).
func (s *Service) Prepare(ctx context.Context, p *ferry.Principal, req Request) (*Turn, error) {
	msg := strings.TrimSpace(req.Message)
	if msg == "" {
		// One answer for "" and "  ": neither gives the model anything.
		return nil, ferry.InvalidField("message", "must not be empty or only white space")
	}
	if n := utf8.RuneCountInString(req.Message); n > MaxMessageChars {
		return nil, ferry.InvalidField("message", fmt.Sprintf("at most %d characters; this one has %d", MaxMessageChars, n))
	}
	if req.MaxTokens < 0 {
		return nil, ferry.InvalidField("max_tokens", "must be positive")
	}
	system := req.SystemPrompt
	if system == "" {
		system = s.opts.SystemPrompt
	}
	maxTokens := req.MaxTokens
	if maxTokens == 0 {
		maxTokens = s.opts.MaxTokens
	}
	now := time.Now().UTC()
	user := &ferry.Message{ID: auth.NewID(), Role: ferry.RoleUserMsg, Content: req.Message, Status: ferry.StatusComplete, CreatedAt: now}
	var ops []store.Op
	var history []*ferry.Message
	var docs []*store.TurnDocument
	if req.ConversationID != "" {
		// The previous turn's answer may still be on its way to the
		// database; the history must hold it.
		if err := s.store.Sync(ctx); err != nil {
			return nil, err
		}
		conv, err := s.store.Conversation(ctx, p.User.ID, req.ConversationID)
		if err != nil {
			return nil, err
		}
		if history, err = s.store.Messages(ctx, conv.ID); err != nil {
			return nil, err
		}
		if docs, err = s.store.TurnDocuments(ctx, conv.ID); err != nil {
			return nil, err
		}
		user.ConversationID = conv.ID
	}
	messages, err := s.messages(req, system, history, docs)
	if err != nil {
		return nil, err
	}
	call, err := s.Start(ctx, p, req.Endpoint, req.Model, llm.Request{
		System:    system,
		Messages:  messages,
		MaxTokens: maxTokens,
		Sampling:  req.Sampling,
	}, UseCache(!req.NoCache))
	if err != nil {
		return nil, err
	}
	model := RoutedName(call.Provider, call.Model)
	if user.ConversationID == "" {
		conv := &ferry.Conversation{ID: auth.NewID(), UserID: p.User.ID, Title: Title(msg), Model: model, CreatedAt: now, UpdatedAt: now}
		user.ConversationID = conv.ID
		ops = append(ops, store.InsertConversation(conv))
	}
	// The answer's row exists from the start, so the message_id a client
	// is given always points at something; it is finished when the call is.
	// It keeps the routed name, as the stream's start event shows it; the
	// usage log has the name the upstream reported.
	answer := &ferry.Message{ID: auth.NewID(), ConversationID: user.ConversationID, Role: ferry.RoleAssistant,
		Model: model, Provider: call.Provider, Status: ferry.StatusStreaming, CreatedAt: now.Add(time.Microsecond)}
	ops = append(ops, store.InsertMessage(user), store.InsertMessage(answer))
	if req.Document != nil {
		ops = append(ops, store.InsertTurnDocument(turnDocument(req.Document, user.ID, user.ConversationID)))
	}
	call.mu.Lock() // StopAnswer reads it while other calls run
	call.answerID = answer.ID
	call.mu.Unlock()
	call.answer = func(res *Result, err error) store.Op {
		m := *answer
		m.Content, m.InputTokens, m.OutputTokens = res.Text, res.Usage.InputTokens, res.Usage.OutputTokens
		m.StopReason, m.Status, m.LatencyMS, m.FirstTokenMS = res.StopReason, res.Status, res.Latency.Milliseconds(), res.FirstToken.Milliseconds()
		if res.Status == ferry.StatusFailed {
			m.Error = publicMessage(err)
		}
		return store.FinishMessage(&m)
	}
	return &Turn{
		ConversationID:     user.ConversationID,
		UserMessageID:      user.ID,
		AssistantMessageID: answer.ID,
		Provider:           call.Provider,
		Model:              call.Model,
		Cache:              call.Cache,
		call:               call,
		saved:              s.store.Submit(ops...),
	}, nil
}

// RoutedName is the name a model is stored and shown by, as the stream's
// start event gives it: "provider/name", or the provider alone when name
// is empty (its default).
func RoutedName(provider, name string) string {
	if name == "" {
		return provider
	}
	return provider + "/" + name
}

// errNotSaved is a turn's error when its rows could not be written.
var errNotSaved = ferry.Errorf(ferry.Unavailable, "the conversation could not be saved; send the message again")

// Stream asks the model and calls fn (when not nil) with each text delta.
// However the turn ends, its answer is stored with its status, usage and
// timings, and the call goes to the usage log; this happens even when ctx
// is cancelled (the client left), with what had arrived by then. Before it
// returns, the turn's first rows are known to be saved: if they could not
// be, the error says so (code Unavailable), since the answer's message_id
// would point at nothing. Otherwise the error is the provider's (see
// llm.Provider), or ctx's when the client left.
func (t *Turn) Stream(ctx context.Context, fn func(llm.Delta) error) (*Result, error) {
	res, err := t.call.Stream(ctx, t.saveProgress(fn))
	return t.settle(ctx, res, err)
}

// settle waits for the turn's first rows once its call has ended with
// res and err (Stream's second half, apart to keep the frame a parked
// stream holds small).
func (t *Turn) settle(ctx context.Context, res *Result, err error) (*Result, error) {
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if serr := t.saved.Wait(wctx); serr != nil {
		t.call.svc.opts.Log.ErrorContext(ctx, "saving chat turn", "conversation_id", t.ConversationID, "error", serr)
		if err == nil {
			err = errNotSaved
		}
	}
	return res, err
}

// saveProgress returns fn (which may be nil) wrapped so that the answer's
// text is saved as it grows, at most every SaveInterval: a crash then
// loses at most that much of it. Each save appends what came since the
// one before, and goes only once that one is committed, so the stored
// text is always a beginning of the answer; after a save that failed,
// none follow (the answer's finish writes the whole text anyway).
func (t *Turn) saveProgress(fn func(llm.Delta) error) func(llm.Delta) error {
	sp := &progressSaver{t: t, fn: fn, next: time.Now().Add(t.call.svc.opts.SaveInterval)}
	return sp.delta
}

// progressSaver is saveProgress's state.
type progressSaver struct {
	t       *Turn
	fn      func(llm.Delta) error
	next    time.Time
	unsaved strings.Builder
	last    *store.Pending
	broken  bool
}

func (sp *progressSaver) delta(d llm.Delta) error {
	if !sp.broken {
		sp.unsaved.WriteString(d.Text)
		if sp.unsaved.Len() > 0 && !time.Now().Before(sp.next) {
			sp.save()
		}
	}
	if sp.fn == nil {
		return nil
	}
	return sp.fn(d)
}

// save submits the text not yet saved, unless the save before is still
// being written.
func (sp *progressSaver) save() {
	if sp.last != nil {
		select {
		case <-sp.last.Done():
			sp.broken = sp.last.Wait(context.Background()) != nil
		default:
			return // the writer is behind; the text waits for the next delta
		}
	}
	if !sp.broken {
		sp.last = sp.t.call.svc.store.Submit(store.SaveProgress(sp.t.AssistantMessageID, sp.unsaved.String()))
		sp.next = time.Now().Add(sp.t.call.svc.opts.SaveInterval)
	}
	sp.unsaved = strings.Builder{}
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

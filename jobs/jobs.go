// Package jobs runs chat turns in the background, the seed's celery queue:
// Submit stores a job (a /ai/chat request and the user it runs as) and
// enqueues it on the durable queue that document ingestion runs on
// (River, in the same database, in the same transaction), and a worker on
// any instance runs it later through chat.Service like every other turn,
// so it obeys the same rate limits and concurrency cap, is logged in the
// usage log, and stores its answer in its conversation.
//
// A job is queued, running, then succeeded, failed or cancelled. What
// happens around it:
//
//   - A job refused by admission (a rate limit, a full queue: codes
//     RateLimited and Unavailable) goes back to queued and is snoozed by
//     River until the refusal's Retry-After, for at most Options.MaxWait
//     after it was submitted; then it fails with the refusal's reason.
//   - Cancel ends a running job's model call at once on this instance; a
//     job running on another instance notices at its next heartbeat (every
//     Options.Heartbeat), so without Redis and with many instances too.
//   - The user is checked at every run: deleted or disabled, or the API key
//     the job was submitted with revoked or expired, and the job fails.
//   - A running job whose process died (kill -9, a lost machine) is not
//     run again: its turn's rows were written, and a second run would ask
//     the model twice and store the question twice. Its heartbeat stops;
//     after Options.StaleAfter any instance's MarkInterrupted marks it
//     failed (code unavailable, "interrupted"), at start and then
//     periodically (Maintain); its answer is marked interrupted by chat's
//     own sweep with the text saved so far. A job still queued survives
//     any restart and runs on the next instance that works jobs.
//   - At a graceful shutdown, chat.Service.Stop ends the running calls:
//     those jobs fail with its message ("the server is restarting"); jobs
//     that try to start after it are snoozed and run elsewhere or later.
package jobs

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/riverqueue/river"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/auth"
	"github.com/ferryhq/ferry/chat"
	"github.com/ferryhq/ferry/llm"
	"github.com/ferryhq/ferry/store"
)

// State is where a job is in its life.
type State string

// The states of a job; the last three are final.
const (
	Queued    State = "queued"
	Running   State = "running"
	Succeeded State = "succeeded"
	Failed    State = "failed"
	Cancelled State = "cancelled"
)

// States lists every state, in the order of a job's life.
var States = []State{Queued, Running, Succeeded, Failed, Cancelled}

// Job is one background chat turn as its user sees it.
type Job struct {
	ID     string
	UserID string
	State  State
	// ConversationID, MessageID (the answer's) and Model are set once the
	// job's turn has started.
	ConversationID string
	MessageID      string
	Model          string
	// Answer, StopReason and the token counts are set when it succeeded.
	Answer                    string
	StopReason                string
	InputTokens, OutputTokens int
	// Error is why it failed: a client-facing message, with its code.
	Error *ferry.Error
	// CreatedAt is when it was submitted; StartedAt when it first ran;
	// FinishedAt when it reached a final state.
	CreatedAt  time.Time
	StartedAt  *time.Time
	FinishedAt *time.Time
}

// Queue enqueues River jobs in a Store transaction; *ingest.Service is
// one (its River client works the jobs too).
type Queue interface {
	Enqueue(ctx context.Context, tx *sql.Tx, args river.JobArgs, opts *river.InsertOpts) error
}

// QueueName is the River queue chat jobs run on, apart from ingestion's
// so that a long ingestion does not hold chats back.
const QueueName = "chat"

// Options configure a Service. Zero fields take the defaults.
type Options struct {
	// Workers is how many jobs this instance runs at once; the chat
	// service's admission still caps the model calls. Default 8.
	Workers int
	// Heartbeat is how often a running job shows it is alive and checks
	// whether it was cancelled elsewhere. Default 1 s.
	Heartbeat time.Duration
	// StaleAfter is how long a running job's heartbeat may be silent
	// before the job is taken for a leftover of a process that died.
	// Default 30 s; at least 3 heartbeats.
	StaleAfter time.Duration
	// MaxWait bounds how long after its submission a job refused by
	// admission is tried again; then it fails. Default 30 minutes.
	MaxWait time.Duration
	Log     *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.Workers <= 0 {
		o.Workers = 8
	}
	if o.Heartbeat <= 0 {
		o.Heartbeat = time.Second
	}
	if o.StaleAfter <= 0 {
		o.StaleAfter = 30 * time.Second
	}
	o.StaleAfter = max(o.StaleAfter, 3*o.Heartbeat)
	if o.MaxWait <= 0 {
		o.MaxWait = 30 * time.Minute
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return o
}

// Service submits, shows, cancels and runs background chat jobs. Its
// methods return *ferry.Error: Invalid for bad input, NotFound for a job
// that does not exist or is another user's.
type Service struct {
	st     *store.Store
	chat   *chat.Service
	router *llm.Router
	opts   Options

	mu      sync.Mutex
	q       Queue
	running map[string]context.CancelCauseFunc // jobs running here, by id
}

// New returns a Service that runs jobs through c, routing models with
// router (to check a request when it is submitted). It needs its queue
// (SetQueue) before Submit; Register adds its worker to the River client
// that will run its jobs.
func New(st *store.Store, c *chat.Service, router *llm.Router, opts Options) *Service {
	return &Service{st: st, chat: c, router: router, opts: opts.withDefaults(), running: map[string]context.CancelCauseFunc{}}
}

// Register adds the chat job worker to workers, the registry of the River
// client that runs ingestion.
func (s *Service) Register(workers *river.Workers) {
	river.AddWorker(workers, &worker{s: s})
}

// Queues is the River queue configuration the jobs need.
func (s *Service) Queues() map[string]river.QueueConfig {
	return map[string]river.QueueConfig{QueueName: {MaxWorkers: s.opts.Workers}}
}

// SetQueue sets the queue Submit enqueues on.
func (s *Service) SetQueue(q Queue) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.q = q
}

// jobArgs is the River job: the row it runs.
type jobArgs struct {
	ID string `json:"id"`
}

// Kind implements river.JobArgs.
func (jobArgs) Kind() string { return "ferry.chat_job" }

// request is the stored form of a job's chat.Request.
type request struct {
	Message        string   `json:"message"`
	SystemPrompt   string   `json:"system_prompt,omitempty"`
	Model          string   `json:"model,omitempty"`
	MaxTokens      int      `json:"max_tokens,omitempty"`
	ConversationID string   `json:"conversation_id,omitempty"`
	Temperature    *float64 `json:"temperature,omitempty"`
	TopP           *float64 `json:"top_p,omitempty"`
}

// Endpoint is the endpoint jobs' model calls are logged under.
const Endpoint = "/ai/jobs"

func (r request) chat() chat.Request {
	return chat.Request{Message: r.Message, SystemPrompt: r.SystemPrompt, Model: r.Model, MaxTokens: r.MaxTokens,
		ConversationID: r.ConversationID, Endpoint: Endpoint, Sampling: llm.Sampling{Temperature: r.Temperature, TopP: r.TopP}}
}

var errNoQueue = ferry.Errorf(ferry.Unavailable, "background jobs are not available on this server")

// Submit checks req as a chat turn is checked (its message, model,
// sampling parameters and conversation) and queues it as a job run as p.
// A document attached to req is refused (jobs take text). Errors:
// Invalid, NotFound (a conversation that is not the user's), Unavailable
// (no queue, or the database is down).
func (s *Service) Submit(ctx context.Context, p *ferry.Principal, req chat.Request) (*Job, error) {
	s.mu.Lock()
	q := s.q
	s.mu.Unlock()
	if q == nil {
		return nil, errNoQueue
	}
	if err := s.check(ctx, p, req); err != nil {
		return nil, err
	}
	body, err := json.Marshal(request{Message: req.Message, SystemPrompt: req.SystemPrompt, Model: req.Model,
		MaxTokens: req.MaxTokens, ConversationID: req.ConversationID, Temperature: req.Sampling.Temperature,
		TopP: req.Sampling.TopP})
	if err != nil {
		return nil, err
	}
	j := &Job{ID: auth.NewID(), UserID: p.User.ID, State: Queued, CreatedAt: now()}
	err = s.st.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO chat_jobs (id, user_id, api_key_id, session_id, request, state,
			created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)`, j.ID, j.UserID, p.APIKeyID, p.SessionID, string(body),
			string(Queued), j.CreatedAt); err != nil {
			return err
		}
		return q.Enqueue(ctx, tx, jobArgs{ID: j.ID}, &river.InsertOpts{Queue: QueueName})
	})
	if err != nil {
		return nil, fmt.Errorf("jobs: submit: %w", err)
	}
	return j, nil
}

// check refuses what chat.Service.Prepare would refuse before the model
// is asked, so that the client hears it now rather than in a failed job.
func (s *Service) check(ctx context.Context, p *ferry.Principal, req chat.Request) error {
	if req.Document != nil {
		return ferry.InvalidField("document", "background jobs take text messages only")
	}
	if strings.TrimSpace(req.Message) == "" {
		return ferry.InvalidField("message", "must not be empty or only white space")
	}
	if n := utf8.RuneCountInString(req.Message); n > chat.MaxMessageChars {
		return ferry.InvalidField("message", fmt.Sprintf("at most %d characters; this one has %d", chat.MaxMessageChars, n))
	}
	if req.MaxTokens < 0 {
		return ferry.InvalidField("max_tokens", "must be positive")
	}
	provider, _, err := s.router.Resolve(req.Model)
	if err != nil {
		return err
	}
	if err := req.Sampling.Check(provider.Name(), provider.Supports()); err != nil {
		return err
	}
	if req.ConversationID != "" {
		if _, err := s.st.Conversation(ctx, p.User.ID, req.ConversationID); err != nil {
			return err
		}
	}
	return nil
}

const jobColumns = `id, user_id, state, conversation_id, message_id, model, answer, stop_reason, input_tokens,
	output_tokens, error_code, error, created_at, started_at, finished_at`

func scanJob(row interface{ Scan(...any) error }) (*Job, error) {
	var j Job
	var state, code, msg string
	var started, finished sql.NullTime
	if err := row.Scan(&j.ID, &j.UserID, &state, &j.ConversationID, &j.MessageID, &j.Model, &j.Answer, &j.StopReason,
		&j.InputTokens, &j.OutputTokens, &code, &msg, &j.CreatedAt, &started, &finished); err != nil {
		return nil, err
	}
	j.State = State(state)
	if code != "" {
		j.Error = &ferry.Error{Code: ferry.Code(code), Message: msg}
	}
	if started.Valid {
		t := started.Time
		j.StartedAt = &t
	}
	if finished.Valid {
		t := finished.Time
		j.FinishedAt = &t
	}
	return &j, nil
}

var errNotFound = ferry.Errorf(ferry.NotFound, "job not found")

// Get returns the user's job. Another user's job is NotFound.
func (s *Service) Get(ctx context.Context, userID, id string) (*Job, error) {
	j, err := scanJob(s.st.Reader().QueryRowContext(ctx, `SELECT `+jobColumns+` FROM chat_jobs WHERE id = $1 AND user_id = $2`,
		id, userID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("jobs: read: %w", err)
	}
	return j, nil
}

// errCancelled is the cause a cancelled job's call is ended with.
var errCancelled = ferry.Errorf(ferry.Conflict, "the job was cancelled")

// Cancel cancels the user's job if it is queued or running, and returns
// it. A running job's model call ends at once on this instance, within a
// heartbeat on another; what the model wrote by then stays in the
// conversation, as a cancelled answer. A job already cancelled is
// returned as it is; one that already succeeded or failed is a Conflict.
// Another user's job is NotFound.
func (s *Service) Cancel(ctx context.Context, userID, id string) (*Job, error) {
	var n int64
	err := s.st.Tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE chat_jobs SET state = $1, finished_at = $2 WHERE id = $3 AND user_id = $4
			AND state IN ($5, $6)`, string(Cancelled), now(), id, userID, string(Queued), string(Running))
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("jobs: cancel: %w", err)
	}
	if n > 0 {
		s.mu.Lock()
		cancel := s.running[id]
		s.mu.Unlock()
		if cancel != nil {
			cancel(errCancelled)
		}
	}
	j, err := s.Get(ctx, userID, id)
	if err != nil {
		return nil, err
	}
	if j.State != Cancelled {
		return nil, ferry.Errorf(ferry.Conflict, "the job has already %s", j.State)
	}
	return j, nil
}

// Counts returns how many jobs there are in each state, every state
// present (for metrics).
func (s *Service) Counts(ctx context.Context) (map[State]int, error) {
	rows, err := s.st.Reader().QueryContext(ctx, `SELECT state, COUNT(*) FROM chat_jobs GROUP BY state`)
	if err != nil {
		return nil, fmt.Errorf("jobs: count: %w", err)
	}
	defer rows.Close()
	counts := make(map[State]int, len(States))
	for _, st := range States {
		counts[st] = 0
	}
	for rows.Next() {
		var state string
		var n int
		if err := rows.Scan(&state, &n); err != nil {
			return nil, fmt.Errorf("jobs: count: %w", err)
		}
		counts[State(state)] = n
	}
	return counts, rows.Err()
}

// errInterrupted is why a job whose process died failed.
var errInterrupted = ferry.Errorf(ferry.Unavailable,
	"interrupted: the server running the job stopped; what the model wrote is in the conversation; submit the job again")

// MarkInterrupted marks failed the running jobs whose heartbeat has been
// silent for StaleAfter: their process died. It returns how many.
func (s *Service) MarkInterrupted(ctx context.Context) (int, error) {
	var n int64
	err := s.st.Tx(ctx, func(tx *sql.Tx) error {
		t := now()
		res, err := tx.ExecContext(ctx, `UPDATE chat_jobs SET state = $1, error_code = $2, error = $3, finished_at = $4
			WHERE state = $5 AND heartbeat_at < $6`, string(Failed), string(errInterrupted.Code), errInterrupted.Message, t,
			string(Running), t.Add(-s.opts.StaleAfter))
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("jobs: mark interrupted: %w", err)
	}
	return int(n), nil
}

// Maintain calls MarkInterrupted every StaleAfter until ctx ends, logging
// what it finds.
func (s *Service) Maintain(ctx context.Context) {
	t := time.NewTicker(s.opts.StaleAfter)
	defer t.Stop()
	for {
		if n, err := s.MarkInterrupted(ctx); err != nil && ctx.Err() == nil {
			s.opts.Log.Warn("marking interrupted jobs", "error", err)
		} else if n > 0 {
			s.opts.Log.Info("marked jobs interrupted", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// now is the time to store, to the microsecond as PostgreSQL keeps it.
func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

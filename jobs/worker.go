package jobs

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/riverqueue/river"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/chat"
)

// worker runs chat jobs.
type worker struct {
	river.WorkerDefaults[jobArgs]
	s *Service
}

// Timeout implements river.Worker: no River timeout, since
// FERRY_UPSTREAM_TIMEOUT bounds the model call and admission bounds the
// wait for it.
func (w *worker) Timeout(*river.Job[jobArgs]) time.Duration { return -1 }

// Work runs one attempt of a job. It returns an error only when the
// job's own row could not be read or written (River tries again); the
// job's outcome, whatever it is, is in its row.
func (w *worker) Work(ctx context.Context, job *river.Job[jobArgs]) error {
	return w.s.run(ctx, job.Args.ID)
}

// Errors a job fails with when its user cannot run it any more.
var (
	errUserGone   = ferry.Errorf(ferry.Unauthorized, "the account was disabled or deleted")
	errKeyRevoked = ferry.Errorf(ferry.Unauthorized, "the API key the job was submitted with was revoked or has expired")
)

// stored is what a run reads of its job.
type stored struct {
	userID, apiKeyID, sessionID string
	req                         request
	created                     time.Time
}

// run claims the job (queued -> running), runs its turn and records the
// outcome. See the package comment for the cases.
func (s *Service) run(ctx context.Context, id string) error {
	claimed, err := s.claim(ctx, id)
	if err != nil || !claimed {
		return err
	}
	job, err := s.load(ctx, id)
	if errors.Is(err, sql.ErrNoRows) {
		return nil // deleted with its user
	}
	if err != nil {
		return err
	}
	p, err := s.principal(ctx, job)
	if err != nil {
		if ferry.ErrorCode(err) == ferry.Unauthorized {
			return s.fail(ctx, id, err)
		}
		return err
	}

	// The run's context ends when the job is cancelled: by Cancel here at
	// once, or by the heartbeat when it was cancelled elsewhere.
	rctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	s.mu.Lock()
	s.running[id] = cancel
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.running, id)
		s.mu.Unlock()
	}()
	beat := make(chan struct{})
	defer func() { <-beat }()
	go func() {
		defer close(beat)
		s.heartbeat(rctx, id, cancel)
	}()
	defer cancel(nil) // stops the heartbeat; runs before the wait above

	turn, err := s.chat.Prepare(rctx, p, job.req.chat())
	if err != nil {
		if context.Cause(rctx) == errCancelled {
			return nil
		}
		var fe *ferry.Error
		if errors.As(err, &fe) && (fe.Code == ferry.RateLimited || fe.Code == ferry.Unavailable) &&
			time.Since(job.created) < s.opts.MaxWait {
			// Refused by admission (or the server is stopping): nothing was
			// written; try again when the refusal says.
			if err := s.requeue(ctx, id); err != nil {
				return err
			}
			return river.JobSnooze(max(fe.RetryAfter, time.Second))
		}
		return s.fail(ctx, id, err)
	}
	if err := s.started(ctx, id, turn); err != nil {
		s.opts.Log.Warn("jobs: recording a started job", "job", id, "error", err)
	}
	res, err := turn.Stream(rctx, nil)
	if context.Cause(rctx) == errCancelled {
		return nil // Cancel set the state
	}
	if err != nil {
		return s.fail(ctx, id, err)
	}
	return s.succeed(ctx, id, turn, res)
}

// claim moves the job from queued to running. It reports false when there
// is nothing to run: the job is gone, final, or running elsewhere (then
// River is asked to look again later, in case that process dies).
func (s *Service) claim(ctx context.Context, id string) (bool, error) {
	n, err := s.exec(ctx, `UPDATE chat_jobs SET state = $1, started_at = COALESCE(started_at, $2), heartbeat_at = $2
		WHERE id = $3 AND state = $4`, string(Running), now(), id, string(Queued))
	if err != nil || n == 1 {
		return n == 1, err
	}
	var state string
	var beat sql.NullTime
	err = s.st.Reader().QueryRowContext(ctx, `SELECT state, heartbeat_at FROM chat_jobs WHERE id = $1`, id).Scan(&state, &beat)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("jobs: read job: %w", err)
	}
	if State(state) != Running {
		return false, nil
	}
	// Running: River took the job for stuck (a run longer than its rescue
	// delay) while its process is alive, or the process died. The sweep
	// settles which; look again after it.
	if beat.Valid && time.Since(beat.Time) >= s.opts.StaleAfter {
		if _, err := s.MarkInterrupted(ctx); err != nil {
			return false, err
		}
		return false, nil
	}
	return false, river.JobSnooze(s.opts.StaleAfter)
}

// load reads the job's user and request.
func (s *Service) load(ctx context.Context, id string) (*stored, error) {
	var j stored
	var body string
	err := s.st.Reader().QueryRowContext(ctx, `SELECT user_id, api_key_id, session_id, request, created_at FROM chat_jobs
		WHERE id = $1`, id).Scan(&j.userID, &j.apiKeyID, &j.sessionID, &body, &j.created)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(body), &j.req); err != nil {
		return nil, fmt.Errorf("jobs: stored request: %w", err)
	}
	return &j, nil
}

// principal rebuilds who the job runs as, from the stored user and API
// key: Unauthorized when the user was deleted or disabled, or the key
// revoked or expired since.
func (s *Service) principal(ctx context.Context, j *stored) (*ferry.Principal, error) {
	u, err := s.st.UserByID(ctx, j.userID)
	if ferry.ErrorCode(err) == ferry.NotFound {
		return nil, errUserGone
	}
	if err != nil {
		return nil, err
	}
	if u.Disabled {
		return nil, errUserGone
	}
	p := &ferry.Principal{User: u, APIKeyID: j.apiKeyID, SessionID: j.sessionID}
	if j.apiKeyID == "" {
		return p, nil
	}
	keys, err := s.st.APIKeys(ctx, u.ID)
	if err != nil {
		return nil, err
	}
	for _, k := range keys {
		if k.ID == j.apiKeyID && (k.ExpiresAt == nil || k.ExpiresAt.After(time.Now())) {
			return p, nil
		}
	}
	return nil, errKeyRevoked
}

// heartbeat shows the job alive every Heartbeat until ctx ends; when the
// job is no longer running (cancelled on another instance, or taken for
// dead), it ends the run with cancel.
func (s *Service) heartbeat(ctx context.Context, id string, cancel context.CancelCauseFunc) {
	t := time.NewTicker(s.opts.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n, err := s.exec(ctx, `UPDATE chat_jobs SET heartbeat_at = $1 WHERE id = $2 AND state = $3`, now(), id, string(Running))
		switch {
		case err != nil && ctx.Err() == nil:
			s.opts.Log.Warn("jobs: heartbeat", "job", id, "error", err)
		case err == nil && n == 0:
			cancel(errCancelled)
			return
		}
	}
}

// requeue puts a job refused by admission back to queued.
func (s *Service) requeue(ctx context.Context, id string) error {
	_, err := s.exec(context.WithoutCancel(ctx), `UPDATE chat_jobs SET state = $1 WHERE id = $2 AND state = $3`,
		string(Queued), id, string(Running))
	return err
}

// started records the turn's conversation, answer and model.
func (s *Service) started(ctx context.Context, id string, t *chat.Turn) error {
	_, err := s.exec(ctx, `UPDATE chat_jobs SET conversation_id = $1, message_id = $2, model = $3 WHERE id = $4`,
		t.ConversationID, t.AssistantMessageID, chat.RoutedName(t.Provider, t.Model), id)
	return err
}

// succeed records the answer, unless the job was cancelled meanwhile.
func (s *Service) succeed(ctx context.Context, id string, t *chat.Turn, res *chat.Result) error {
	_, err := s.exec(context.WithoutCancel(ctx), `UPDATE chat_jobs SET state = $1, answer = $2, stop_reason = $3,
		input_tokens = $4, output_tokens = $5, model = $6, finished_at = $7 WHERE id = $8 AND state = $9`,
		string(Succeeded), res.Text, res.StopReason, res.Usage.InputTokens, res.Usage.OutputTokens,
		chat.RoutedName(t.Provider, res.Model), now(), id, string(Running))
	return err
}

// fail records why the job failed, in the words a client is given: a
// *ferry.Error's message, "internal error" for anything else.
func (s *Service) fail(ctx context.Context, id string, cause error) error {
	fe := &ferry.Error{Code: ferry.Internal, Message: "internal error"}
	if !errors.As(cause, &fe) {
		s.opts.Log.Error("jobs: job failed", "job", id, "error", cause)
	}
	_, err := s.exec(context.WithoutCancel(ctx), `UPDATE chat_jobs SET state = $1, error_code = $2, error = $3, finished_at = $4
		WHERE id = $5 AND state = $6`, string(Failed), string(fe.Code), fe.Message, now(), id, string(Running))
	return err
}

// exec runs one statement in a write transaction and returns the rows it
// changed.
func (s *Service) exec(ctx context.Context, query string, args ...any) (int64, error) {
	var n int64
	err := s.st.Tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, query, args...)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("jobs: %w", err)
	}
	return n, nil
}

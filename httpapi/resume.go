package httpapi

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/chat"
	"github.com/ferryhq/ferry/eventlog"
	"github.com/ferryhq/ferry/llm"
)

// The streams of the endpoints that store a conversation turn
// (/ai/chat/stream, /analyze/pdf, /rag/query) survive their client: the
// answer is generated into an event log (eventlog), from which the client
// that asked reads it, as does any client that comes back later with
// GET /conversations/{id}/stream and the id of the last event it got.
// Leaving does not stop the generation; POST /conversations/{id}/stop
// does. /v1/* and /ollama/*, whose clients cannot come back, keep
// stream's cancel-on-disconnect.

// stoppedReason is the stop_reason of the done event of an answer its
// user stopped.
const stoppedReason = "stopped"

// resumable runs a stored turn's stream: run generates it into the
// answer's log, on a context of its own that the client leaving does not
// cancel (chat bounds the call with FERRY_UPSTREAM_TIMEOUT, and the
// server's draining and chat's Stop end it at shutdown). Clients that come
// back read the log; the client that asked is written to directly, by the
// same goroutine, which goes on generating once it has left (one
// goroutine a stream, not two: a parked stream's memory is mostly its
// goroutines' stacks). The handler returns once the answer has ended, so
// that shutdown waits for it. As with stream, a failure before the first
// event gets its own status.
func (s *server) resumable(w http.ResponseWriter, r *http.Request, d dialect, turn *chat.Turn,
	run func(ctx context.Context, emit func(llm.Delta) error) (*chat.Result, error)) {
	log := s.logs.Open(r.Context(), principal(r.Context()).User.ID, turn.ConversationID, turn.AssistantMessageID)
	ctx, cancel := context.WithCancelCause(context.WithoutCancel(r.Context()))
	defer cancel(nil)
	stop := context.AfterFunc(s.opts.Draining, func() { cancel(errDraining) })
	defer stop()
	s.produce(ctx, log, d, run, &asker{left: r.Context(), sw: newStreamWriter(w, d, s.opts.Keepalive, s.work.do)})
}

// asker is the client that asked for an answer, while it is there.
type asker struct {
	left context.Context // done when the client has gone
	sw   *streamWriter
}

// write sends frames, which the upstream has more after when more is
// set; false when the client has gone.
func (a *asker) write(frames []byte, more bool) bool {
	if a.left.Err() != nil || a.sw.frames(frames, more) != nil {
		a.sw.stop()
		return false
	}
	return true
}

// end sends the last frames; early, when set, is the failure that ended
// the answer before its first event, which gets its own status instead.
func (a *asker) end(frames []byte, early *ferry.Error) {
	if a.left.Err() != nil {
		a.sw.stop()
		return
	}
	if !a.sw.finish(frames, early) {
		writeError(a.sw.w, a.sw.d.errors(), early)
	}
}

// produce runs the answer into log, in d's frames, and to the client that
// asked (nil: none) while it is there.
func (s *server) produce(ctx context.Context, log *eventlog.Answer, d dialect,
	run func(ctx context.Context, emit func(llm.Delta) error) (*chat.Result, error), to *asker) {
	buf := make([]byte, 0, 512)
	texts := false
	res, err := run(ctx, func(delta llm.Delta) error {
		buf = d.text(buf[:0], delta, !texts)
		texts = true
		log.Append(buf)
		if to != nil && !to.write(buf, delta.More) {
			to = nil
		}
		return nil
	})
	if res == nil {
		res = &chat.Result{}
	}
	var early *ferry.Error
	switch {
	case errors.Is(err, chat.ErrStopped):
		// Stopped by its user: the answer ends as one that ended, with
		// what was written.
		done := *res
		done.StopReason = stoppedReason
		buf = d.done(buf[:0], &done, texts)
	case err != nil:
		if errors.Is(err, context.Canceled) {
			err = context.Cause(ctx)
		}
		fe := s.public(ctx, err)
		if !texts {
			early = fe
		}
		buf = d.fail(buf[:0], fe, texts)
	default:
		buf = d.done(buf[:0], res, texts)
	}
	log.End(buf)
	if to != nil {
		to.end(buf, early)
	}
	wctx, cancelWait := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancelWait()
	log.Wait(wctx)
}

// follow writes the events cur reads to the client, in d's headers, with
// d's keepalive after a silence, until the answer's end or the client
// leaves.
func (s *server) follow(w http.ResponseWriter, r *http.Request, d dialect, cur *eventlog.Cursor) {
	ctx := r.Context()
	sw := newStreamWriter(w, d, s.opts.Keepalive, s.work.do)
	for {
		b, err := cur.Next(ctx)
		if err != nil {
			if ctx.Err() == nil {
				// The log went away (its instance died) or Redis failed:
				// the client hears it, and may come back.
				fe := ferry.Errorf(ferry.Unavailable, "the answer can no longer be followed; its conversation holds what was saved of it")
				if errors.Is(err, eventlog.ErrGone) {
					s.log.WarnContext(ctx, "following an answer", "request_id", RequestID(ctx), "error", err)
				}
				sw.finish(goneFrames(fe), nil)
				return
			}
			sw.stop()
			return
		}
		if !b.Done {
			if sw.frames(b.Events, false) != nil {
				sw.stop()
				return // the client left
			}
			continue
		}
		sw.finish(b.Events, nil)
		return
	}
}

// goneFrames end a followed stream whose log went away: an error event,
// then done, without ids, since they are no events of the answer.
func goneFrames(fe *ferry.Error) []byte {
	var f sseFrames
	b := f.data(nil, errorEvent{Error: errorBody{Code: fe.Code, Message: fe.Message, Status: statusOf[fe.Code]}})
	return f.data(b, doneEvent{Done: true})
}

// frames writes whole frames, flushing them as text does a delta: at once
// unless the upstream has already sent more (more), the first ones always.
func (sw *streamWriter) frames(b []byte, more bool) error {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	if sw.err != nil {
		return sw.err
	}
	first := !sw.texts
	sw.texts = true
	sw.buf = append(sw.buf, b...)
	if more && !first && len(sw.buf) < 16<<10 {
		return nil
	}
	return sw.flush()
}

// finish stops the keepalive and writes the last frames, as end does:
// when fe is set and nothing was committed yet it writes nothing and
// reports false, for the caller to answer with fe's own status.
func (sw *streamWriter) finish(b []byte, fe *ferry.Error) (committed bool) {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	sw.ended = true
	if sw.keepalive != nil {
		sw.keepalive.Stop()
	}
	if sw.err != nil {
		return true
	}
	if fe != nil && !sw.started {
		return false
	}
	sw.buf = append(sw.buf, b...)
	sw.flush()
	return true
}

// resumeInput is GET /conversations/{id}/stream.
type resumeInput struct {
	ID          string `path:"id" maxLength:"64"`
	LastEventID string `header:"Last-Event-ID" maxLength:"20" doc:"The id of the last event received; the stream resumes after it. Absent: from the answer's first event."`
	LastEventQ  string `query:"last_event_id" maxLength:"20" doc:"Last-Event-ID, for clients that cannot set headers; the header wins."`
}

func resumeOperation() huma.Operation {
	return huma.Operation{OperationID: "resume-stream", Method: "GET", Path: "/conversations/{id}/stream", Tags: []string{"conversations"},
		Summary: "Resume the answer being generated in a conversation, as server-sent events",
		Description: "The events of the answer that /ai/chat/stream, /analyze/pdf or /rag/query is generating in the conversation, " +
			"on this instance or another, after Last-Event-ID (header, or the last_event_id query parameter): those missed, " +
			"then the live ones, then done, as the request that started it streams them. An EventSource sends Last-Event-ID " +
			"itself when it reconnects. 204 when nothing is being generated: without Last-Event-ID, when no answer is being " +
			"generated (GET /conversations/{id} holds the answers); with it, when none is or was in the last minute, or when " +
			"nothing follows that event, so that a client that comes back late still gets the end.",
		Responses: map[string]*huma.Response{
			"200": {Description: "An event stream.", Content: map[string]*huma.MediaType{"text/event-stream": {Schema: &huma.Schema{Type: "string"}}}},
			"204": {Description: "Nothing is being generated in the conversation."},
		},
	}
}

// handleResumeStream follows the conversation's answer from the event
// after Last-Event-ID.
func handleResumeStream(s *server) func(context.Context, *resumeInput) (*huma.StreamResponse, error) {
	return func(ctx context.Context, in *resumeInput) (*huma.StreamResponse, error) {
		field, raw := "Last-Event-ID", in.LastEventID
		if raw == "" {
			field, raw = "last_event_id", in.LastEventQ
		}
		after := int64(-1) // none of the answer's events yet
		if raw != "" {
			n, err := strconv.ParseInt(raw, 10, 64)
			if err != nil || n < 0 {
				return nil, ferry.InvalidField(field, "must be an event id: a whole number, 0 or more")
			}
			after = n
		}
		userID := principal(ctx).User.ID
		cur, owner, err := s.logs.Follow(ctx, in.ID, after)
		if err != nil {
			return nil, err
		}
		if err := s.ownConversation(ctx, userID, in.ID, owner); err != nil {
			return nil, err
		}
		if cur == nil {
			return &huma.StreamResponse{Body: func(hctx huma.Context) { hctx.SetStatus(http.StatusNoContent) }}, nil
		}
		return streamed(func(w http.ResponseWriter, r *http.Request) {
			// A client of an answer another instance generates waits on
			// Redis; at shutdown it is let go, to come back elsewhere.
			fctx, cancel := context.WithCancel(r.Context())
			defer cancel()
			stop := context.AfterFunc(s.opts.Draining, cancel)
			defer stop()
			s.follow(w, r.WithContext(fctx), &seedDialect{}, cur)
		}), nil
	}
}

// ownConversation checks that conversation convID is userID's: owner is
// the user an answer's log names ("" when there is no log, and the
// database is asked). Another user's conversation is NotFound.
func (s *server) ownConversation(ctx context.Context, userID, convID, owner string) error {
	if owner != "" {
		if owner != userID {
			return ferry.Errorf(ferry.NotFound, "conversation not found")
		}
		return nil
	}
	st := s.svc.Store
	if err := st.Sync(ctx); err != nil {
		return err
	}
	_, err := st.Conversation(ctx, userID, convID)
	return err
}

func stopOperation() huma.Operation {
	return huma.Operation{OperationID: "stop-answer", Method: "POST", Path: "/conversations/{id}/stop", Tags: []string{"conversations"},
		Summary: "Stop the answer being generated in a conversation", DefaultStatus: http.StatusNoContent,
		Description: "The model call is cancelled at once, on whichever instance runs it; what the model wrote is saved " +
			"(status cancelled), and the answer's streams end with done, stop_reason \"stopped\". 204 whether or not " +
			"anything was being generated."}
}

// handleStopAnswer stops the conversation's answer here, and tells the
// other instances (Options.AnswerStopped).
func handleStopAnswer(s *server) func(context.Context, *idInput) (*struct{}, error) {
	return func(ctx context.Context, in *idInput) (*struct{}, error) {
		userID := principal(ctx).User.ID
		answerID, owner, err := s.logs.Active(ctx, in.ID)
		if err != nil {
			return nil, err
		}
		if err := s.ownConversation(ctx, userID, in.ID, owner); err != nil {
			return nil, err
		}
		if answerID == "" {
			return nil, nil
		}
		if !s.svc.Chat.StopAnswer(answerID) && s.opts.AnswerStopped != nil {
			s.opts.AnswerStopped(answerID)
		}
		return nil, nil
	}
}

package httpapi

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/ingest"
	"github.com/ferryhq/ferry/search"
)

// progressPoll is how often a document's event stream reads its status.
const progressPoll = 200 * time.Millisecond

// progressEvent is one event of a document's progress stream: the
// document as it is now, with done set on the last one (indexed or
// failed).
type progressEvent struct {
	documentBody
	Done bool `json:"done,omitempty"`
}

// documentEventsOperation is GET /collections/{name}/documents/{id}/events.
func documentEventsOperation() huma.Operation {
	return huma.Operation{OperationID: "document-events", Method: "GET", Path: "/collections/{name}/documents/{id}/events",
		Tags: []string{"collections"}, Summary: "A document's progress, streamed as server-sent events",
		Description: "An event with the document (as GET …/documents/{id} answers it) at once and whenever its status, pages, " +
			"chunks or error change; the last one, once it is indexed or failed, also has \"done\": true, and the stream ends. " +
			"A document deleted meanwhile ends the stream with {\"error\": {…}} then {\"done\": true}.",
		Responses: map[string]*huma.Response{"200": {Description: "An event stream.",
			Content: map[string]*huma.MediaType{"text/event-stream": {Schema: &huma.Schema{Type: "string"}}}}},
	}
}

// handleDocumentEvents streams a document's progress by reading its status
// every progressPoll. A missing document is a 404 before the first byte.
func handleDocumentEvents(s *server, ing *ingest.Service) func(context.Context, *documentPath) (*huma.StreamResponse, error) {
	return func(ctx context.Context, in *documentPath) (*huma.StreamResponse, error) {
		userID := principal(ctx).User.ID
		d, err := ing.Document(ctx, userID, in.Name, in.ID)
		if err != nil {
			return nil, err
		}
		return streamed(func(w http.ResponseWriter, r *http.Request) {
			s.streamProgress(w, r, d, func(ctx context.Context) (*search.Document, error) {
				return ing.Document(ctx, userID, in.Name, in.ID)
			})
		}), nil
	}
}

// streamProgress writes d, then d as read again whenever it changed,
// until it is final, the client leaves or the server drains. A keepalive
// comment goes after s.opts.Keepalive of silence.
func (s *server) streamProgress(w http.ResponseWriter, r *http.Request, d *search.Document,
	read func(context.Context) (*search.Document, error)) {
	setSSEHeaders(w.Header())
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	var frames sseFrames
	var buf []byte
	write := func(b []byte) bool {
		rc.SetWriteDeadline(time.Now().Add(eventWriteTimeout))
		if _, err := w.Write(b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	final := func(d *search.Document) bool {
		return d.Status == search.StatusIndexed || d.Status == search.StatusFailed
	}
	last := newDocumentBody(d)
	if !write(frames.event(buf[:0], progressEvent{documentBody: last, Done: final(d)})) || final(d) {
		return
	}
	tick := time.NewTicker(progressPoll)
	defer tick.Stop()
	quiet := time.Now()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-s.opts.Draining.Done():
			s.endProgress(write, &frames, ferry.Errorf(ferry.Unavailable, "the server is shutting down; follow the document again"))
			return
		case <-tick.C:
		}
		d, err := read(r.Context())
		if err != nil {
			if r.Context().Err() != nil {
				return
			}
			var fe *ferry.Error
			if !errors.As(err, &fe) {
				s.log.ErrorContext(r.Context(), "document events", "request_id", RequestID(r.Context()), "error", err)
				fe = ferry.Errorf(ferry.Internal, "internal error")
			}
			s.endProgress(write, &frames, fe)
			return
		}
		now := newDocumentBody(d)
		if now.Status != last.Status || now.Pages != last.Pages || now.Chunks != last.Chunks || now.Error != last.Error {
			last, quiet = now, time.Now()
			if !write(frames.event(buf[:0], progressEvent{documentBody: now, Done: final(d)})) || final(d) {
				return
			}
			continue
		}
		if time.Since(quiet) >= s.opts.Keepalive {
			quiet = time.Now()
			if !write(sseKeepalive) {
				return
			}
		}
	}
}

// endProgress writes a failure as an error event, then the done event.
func (s *server) endProgress(write func([]byte) bool, frames *sseFrames, fe *ferry.Error) {
	type errorBody struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Status  int    `json:"status"`
	}
	b := frames.event(nil, map[string]errorBody{"error": {Code: string(fe.Code), Message: fe.Message, Status: statusOf[fe.Code]}})
	write(frames.event(b, map[string]bool{"done": true}))
}

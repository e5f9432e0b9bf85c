package httpapi

import (
	"context"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/jobs"
)

// jobBody is a background chat job as /ai/jobs shows it.
type jobBody struct {
	ID    string     `json:"id"`
	State jobs.State `json:"state" enum:"queued,running,succeeded,failed,cancelled" doc:"queued, running, then succeeded, failed or cancelled."`
	// Set once the turn has started.
	ConversationID string `json:"conversation_id,omitempty" doc:"The conversation the job's turn is in, once it has started."`
	MessageID      string `json:"message_id,omitempty" doc:"The answer's message, once the turn has started."`
	Model          string `json:"model,omitempty"`
	// Set when it succeeded.
	Text       string     `json:"text,omitempty" doc:"The answer, when the job succeeded."`
	StopReason string     `json:"stop_reason,omitempty"`
	Usage      *usageBody `json:"usage,omitempty"`
	// Set when it failed.
	Error      *errorBody `json:"error,omitempty" doc:"Why the job failed: code, message and the HTTP status the same error has elsewhere."`
	CreatedAt  time.Time  `json:"created_at"`
	StartedAt  *time.Time `json:"started_at,omitempty"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
}

func jobOf(j *jobs.Job) jobBody {
	b := jobBody{ID: j.ID, State: j.State, ConversationID: j.ConversationID, MessageID: j.MessageID, Model: j.Model,
		CreatedAt: j.CreatedAt, StartedAt: j.StartedAt, FinishedAt: j.FinishedAt}
	if j.State == jobs.Succeeded {
		b.Text, b.StopReason = j.Answer, j.StopReason
		b.Usage = &usageBody{InputTokens: j.InputTokens, OutputTokens: j.OutputTokens}
	}
	if j.Error != nil {
		b.Error = &errorBody{Code: j.Error.Code, Message: j.Error.Message, Status: statusOf[j.Error.Code]}
	}
	return b
}

type jobOutput struct {
	Body jobBody
}

type submitJobOutput struct {
	Location string `header:"Location" doc:"Where to poll the job."`
	Body     jobBody
}

// handleSubmitJob queues an /ai/chat request as a background job.
func handleSubmitJob(js *jobs.Service) func(context.Context, *chatInput) (*submitJobOutput, error) {
	return func(ctx context.Context, in *chatInput) (*submitJobOutput, error) {
		j, err := js.Submit(ctx, principal(ctx), in.Body.request(jobs.Endpoint))
		if err != nil {
			return nil, err
		}
		return &submitJobOutput{Location: "/ai/jobs/" + j.ID, Body: jobOf(j)}, nil
	}
}

type jobInput struct {
	ID string `path:"id" maxLength:"64"`
}

func handleGetJob(js *jobs.Service) func(context.Context, *jobInput) (*jobOutput, error) {
	return func(ctx context.Context, in *jobInput) (*jobOutput, error) {
		j, err := js.Get(ctx, principal(ctx).User.ID, in.ID)
		if err != nil {
			return nil, err
		}
		return &jobOutput{Body: jobOf(j)}, nil
	}
}

func handleCancelJob(js *jobs.Service) func(context.Context, *jobInput) (*jobOutput, error) {
	return func(ctx context.Context, in *jobInput) (*jobOutput, error) {
		j, err := js.Cancel(ctx, principal(ctx).User.ID, in.ID)
		if err != nil {
			return nil, err
		}
		return &jobOutput{Body: jobOf(j)}, nil
	}
}

// errNoJobs answers /ai/jobs on a server built without a job service.
var errNoJobs = ferry.Errorf(ferry.Unavailable, "background jobs are not available on this server")

// needJobs answers 503 when there is no job service.
func needJobs[I, O any](js *jobs.Service, h func(context.Context, *I) (*O, error)) func(context.Context, *I) (*O, error) {
	if js != nil {
		return h
	}
	return func(context.Context, *I) (*O, error) { return nil, errNoJobs }
}

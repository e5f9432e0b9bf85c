package httpapi

import (
	"context"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/store"
)

type healthOutput struct {
	Body struct {
		Status string `json:"status" example:"ok"`
	}
}

// handleHealthz answers while the process is alive.
func handleHealthz() func(context.Context, *struct{}) (*healthOutput, error) {
	return func(context.Context, *struct{}) (*healthOutput, error) {
		out := &healthOutput{}
		out.Body.Status = "ok"
		return out, nil
	}
}

// handleReadyz answers 200 when the database answers and 503 otherwise, so a
// load balancer sends traffic only to instances that can serve it; and 503
// once stopping is cancelled (shutdown began), so that it moves away while
// this instance still serves what it was sent.
func handleReadyz(st *store.Store, stopping context.Context) func(context.Context, *struct{}) (*healthOutput, error) {
	return func(ctx context.Context, _ *struct{}) (*healthOutput, error) {
		if stopping.Err() != nil {
			return nil, ferry.Errorf(ferry.Unavailable, "shutting down")
		}
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if err := st.Ping(ctx); err != nil {
			return nil, &ferry.Error{Code: ferry.Unavailable, Message: "database is not reachable", Err: err}
		}
		out := &healthOutput{}
		out.Body.Status = "ready"
		return out, nil
	}
}

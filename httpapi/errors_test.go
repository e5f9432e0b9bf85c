package httpapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/store"
)

// TestPublicErrors checks what public lets a client hear: an error nobody
// classified is "internal error" (and logged with its cause), a database
// that cannot be reached is Unavailable with a Retry-After, and every
// Unavailable error says when to come back.
func TestPublicErrors(t *testing.T) {
	var logs bytes.Buffer
	s := &server{log: slog.New(slog.NewJSONHandler(&logs, nil))}
	ctx := context.WithValue(context.Background(), requestIDKey, &requestInfo{id: "req-1"})
	for _, tc := range []struct {
		name       string
		err        error
		code       ferry.Code
		message    string
		retryAfter time.Duration
	}{
		{"unclassified", errors.New("secret detail"), ferry.Internal, "internal error", 0},
		{"store closed", fmt.Errorf("load user: %w", store.ErrClosed), ferry.Unavailable, "the database cannot be reached; try again shortly", store.OutageRetryAfter},
		{"unavailable without a time", ferry.Errorf(ferry.Unavailable, "busy"), ferry.Unavailable, "busy", defaultRetryAfter},
		{"unavailable with a time", &ferry.Error{Code: ferry.Unavailable, Message: "busy", RetryAfter: 9 * time.Second}, ferry.Unavailable, "busy", 9 * time.Second},
		{"not found", ferry.Errorf(ferry.NotFound, "no such thing"), ferry.NotFound, "no such thing", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fe := s.public(ctx, tc.err)
			if fe.Code != tc.code || fe.Message != tc.message || fe.RetryAfter != tc.retryAfter {
				t.Errorf("public = %s %q Retry-After %s; want %s %q %s", fe.Code, fe.Message, fe.RetryAfter, tc.code, tc.message, tc.retryAfter)
			}
		})
	}
	if !strings.Contains(logs.String(), `"request_id":"req-1","error":"secret detail"`) {
		t.Errorf("the unclassified error is not logged with its request id:\n%s", logs.String())
	}
}

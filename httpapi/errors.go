package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/ferryhq/ferry"
)

// statusOf is the one table from error codes to HTTP statuses.
var statusOf = map[ferry.Code]int{
	ferry.Invalid:      http.StatusBadRequest,
	ferry.Unauthorized: http.StatusUnauthorized,
	ferry.Forbidden:    http.StatusForbidden,
	ferry.NotFound:     http.StatusNotFound,
	ferry.Conflict:     http.StatusConflict,
	ferry.TooLarge:     http.StatusRequestEntityTooLarge,
	ferry.RateLimited:  http.StatusTooManyRequests,
	ferry.Unavailable:  http.StatusServiceUnavailable,
	ferry.Upstream:     http.StatusBadGateway,
	ferry.Timeout:      http.StatusGatewayTimeout,
	ferry.Internal:     http.StatusInternalServerError,
}

// problem turns any error from domain code into the API's error: a
// *ferry.Error becomes its status and message; anything else is logged with
// the request id and answered "internal error", so no internal detail
// reaches the client.
func (s *server) problem(ctx context.Context, err error) error {
	var se huma.StatusError
	if errors.As(err, &se) {
		return err // already shaped by huma (validation) or by us
	}
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		// The client left; nobody reads this answer.
		return huma.NewError(499, "client closed request")
	}
	fe := s.public(ctx, err)
	var out error = huma.NewError(statusOf[fe.Code], fe.Message, fieldErrors(fe.Fields)...)
	if fe.RetryAfter > 0 {
		out = huma.ErrorWithHeaders(out, http.Header{"Retry-After": {retryAfter(fe.RetryAfter)}})
	}
	return out
}

// public returns what the client may hear of err: the *ferry.Error in it,
// or for anything else a plain Internal error, after logging the real one
// with the request id.
func (s *server) public(ctx context.Context, err error) *ferry.Error {
	var fe *ferry.Error
	if !errors.As(err, &fe) || fe.Code == ferry.Internal {
		s.log.ErrorContext(ctx, "internal error", "request_id", RequestID(ctx), "error", err)
		return &ferry.Error{Code: ferry.Internal, Message: "internal error"}
	}
	if fe.Err != nil {
		s.log.WarnContext(ctx, "request failed", "request_id", RequestID(ctx), "code", fe.Code, "error", fe.Err)
	}
	return fe
}

func fieldErrors(fields map[string]string) []error {
	names := make([]string, 0, len(fields))
	for f := range fields {
		names = append(names, f)
	}
	sort.Strings(names)
	errs := make([]error, len(names))
	for i, f := range names {
		errs[i] = &huma.ErrorDetail{Location: "body." + f, Message: fields[f]}
	}
	return errs
}

// retryAfter renders d as whole seconds, rounded up so a client that waits
// exactly that long is not refused again.
func retryAfter(d time.Duration) string {
	secs := int64((d + time.Second - 1) / time.Second)
	return strconv.FormatInt(max(secs, 1), 10)
}

// writeProblem writes a problem body outside huma (middleware, fallbacks).
func writeProblem(w http.ResponseWriter, status int, detail string, header http.Header) {
	for k, v := range header {
		w.Header()[k] = v
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(&huma.ErrorModel{Title: http.StatusText(status), Status: status, Detail: detail})
}

// dropErrorValues removes the offending values huma copies into validation
// errors: they can be a password, or a whole body with one in it, and the
// location and message already say what was wrong. It also points errors
// about missing properties at the property.
func dropErrorValues(_ huma.Context, _ string, v any) (any, error) {
	if em, ok := v.(*huma.ErrorModel); ok {
		for _, d := range em.Errors {
			if d == nil {
				continue
			}
			d.Value = nil
			// huma puts a missing property at its parent; name the field
			// itself, as for every other validation error.
			if name, ok := strings.CutPrefix(d.Message, "expected required property "); ok {
				if name, ok = strings.CutSuffix(name, " to be present"); ok {
					d.Location += "." + name
				}
			}
		}
	}
	return v, nil
}

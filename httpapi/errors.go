package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/store"
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

	ferry.UnsupportedMediaType: http.StatusUnsupportedMediaType,
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
	var out error = huma.NewError(statusOf[fe.Code], fe.Message, detailsOf(fe.Fields)...)
	if fe.RetryAfter > 0 {
		out = huma.ErrorWithHeaders(out, http.Header{"Retry-After": {retryAfter(fe.RetryAfter)}})
	}
	return out
}

// public returns what the client may hear of err: the *ferry.Error in it;
// an Unavailable one for a database that cannot be reached (see
// store.Outage); or for anything else a plain Internal error, after
// logging the real one with the request id. An Unavailable error always
// says when to come back: defaultRetryAfter when nothing gave a time.
func (s *server) public(ctx context.Context, err error) *ferry.Error {
	var fe *ferry.Error
	if !errors.As(err, &fe) {
		if fe = store.Outage(err); fe != nil {
			s.log.ErrorContext(ctx, "database unavailable", "request_id", RequestID(ctx), "error", err)
			return fe
		}
	}
	if fe == nil || fe.Code == ferry.Internal {
		s.log.ErrorContext(ctx, "internal error", "request_id", RequestID(ctx), "error", err)
		return &ferry.Error{Code: ferry.Internal, Message: "internal error"}
	}
	if fe.Err != nil {
		s.log.WarnContext(ctx, "request failed", "request_id", RequestID(ctx), "code", fe.Code, "error", fe.Err)
	}
	if fe.Code == ferry.Unavailable && fe.RetryAfter == 0 {
		c := *fe
		c.RetryAfter = defaultRetryAfter
		fe = &c
	}
	return fe
}

// defaultRetryAfter is the Retry-After of a 503 when nothing (an upstream's
// own header, the store) said how long to wait.
const defaultRetryAfter = 5 * time.Second

func detailsOf(fields map[string]string) []error {
	details := fieldDetails(fields)
	errs := make([]error, len(details))
	for i, d := range details {
		errs[i] = d
	}
	return errs
}

// fieldDetails are a problem body's errors for fields, in name order.
func fieldDetails(fields map[string]string) []*huma.ErrorDetail {
	names := make([]string, 0, len(fields))
	for f := range fields {
		names = append(names, f)
	}
	sort.Strings(names)
	details := make([]*huma.ErrorDetail, len(names))
	for i, f := range names {
		details[i] = &huma.ErrorDetail{Location: "body." + f, Message: fields[f]}
	}
	return details
}

// retryAfter renders d as whole seconds, rounded up so a client that waits
// exactly that long is not refused again.
func retryAfter(d time.Duration) string {
	secs := int64((d + time.Second - 1) / time.Second)
	return strconv.FormatInt(max(secs, 1), 10)
}

// errorShape is how one wire format words an error: RFC 9457 problems for
// Ferry's own API, and each compatible API's own shape, so that its SDKs
// show the message. Every operation has one, chosen at register (see
// withErrors); handlers' errors, huma's own (validation, 401) and a
// stream's failure before its first byte all take it.
type errorShape interface {
	contentType() string
	// body is the JSON body for fe answered with status.
	body(status int, fe *ferry.Error) any
}

// errorShapeKey is the operation metadata key that holds its errorShape.
const errorShapeKey = "error-shape"

// withErrors gives op the error shape e.
func withErrors(op huma.Operation, e errorShape) huma.Operation {
	if op.Metadata == nil {
		op.Metadata = map[string]any{}
	}
	op.Metadata[errorShapeKey] = e
	return op
}

// shapeOf returns op's error shape: problems unless withErrors said else.
func shapeOf(op *huma.Operation) errorShape {
	if op != nil {
		if e, ok := op.Metadata[errorShapeKey].(errorShape); ok {
			return e
		}
	}
	return problemShape{}
}

// problemShape is RFC 9457's problem details, Ferry's own.
type problemShape struct{}

func (problemShape) contentType() string { return "application/problem+json" }

func (problemShape) body(status int, fe *ferry.Error) any {
	return &huma.ErrorModel{Title: http.StatusText(status), Status: status, Detail: fe.Message, Errors: fieldDetails(fe.Fields)}
}

// writeError answers fe in shape e outside huma (middleware, fallbacks, a
// stream that failed before its first byte).
func writeError(w http.ResponseWriter, e errorShape, fe *ferry.Error) {
	status := statusOf[fe.Code]
	if fe.RetryAfter > 0 {
		w.Header().Set("Retry-After", retryAfter(fe.RetryAfter))
	}
	w.Header().Set("Content-Type", e.contentType())
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(e.body(status, fe))
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

// reshapeErrors is a huma transformer: on an operation whose error shape
// is not the problem, it rewrites the problem bodies huma writes (the
// handlers' errors mapped by problem, authenticate's 401, validation
// failures, a body over the limit) into that shape. Status and headers
// such as Retry-After stay.
func reshapeErrors(ctx huma.Context, _ string, v any) (any, error) {
	em, ok := v.(*huma.ErrorModel)
	if !ok {
		return v, nil
	}
	e := shapeOf(ctx.Operation())
	if _, ok := e.(problemShape); ok {
		return v, nil
	}
	ctx.SetHeader("Content-Type", e.contentType())
	return e.body(em.Status, errorOfModel(em)), nil
}

// errorOfModel reads a problem body back as a *ferry.Error: its detail,
// with each field error's location and message added where the detail
// does not already say it, and the fields named.
func errorOfModel(em *huma.ErrorModel) *ferry.Error {
	fe := &ferry.Error{Code: codeForStatus[em.Status], Message: em.Detail}
	if fe.Code == "" {
		fe.Code = ferry.Internal
	}
	var details []string
	for _, d := range em.Errors {
		if d == nil {
			continue
		}
		field := strings.TrimPrefix(strings.TrimPrefix(d.Location, "body"), ".")
		if field != "" {
			if fe.Fields == nil {
				fe.Fields = map[string]string{}
			}
			fe.Fields[field] = d.Message
		}
		// A *ferry.Error's fields are already in its message.
		if d.Message != "" && !strings.Contains(fe.Message, d.Message) {
			details = append(details, strings.TrimPrefix(d.Location+": ", ": ")+d.Message)
		}
	}
	if len(details) > 0 {
		fe.Message += ": " + strings.Join(details, "; ")
	}
	return fe
}

// codeForStatus is statusOf read backwards, which it can be: every code has
// its own status. Huma's 422 for a body that fails its schema is Invalid;
// its 415 for a body in a content type it does not read is
// UnsupportedMediaType, as statusOf says.
var codeForStatus = func() map[int]ferry.Code {
	m := map[int]ferry.Code{http.StatusUnprocessableEntity: ferry.Invalid}
	for c, status := range statusOf {
		m[status] = c
	}
	return m
}()

// firstField names the first of fields in sorted order, or "".
func firstField(fields map[string]string) string {
	first := ""
	for f := range fields {
		if first == "" || f < first {
			first = f
		}
	}
	return first
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

// jsonFormat is huma's JSON format, whose decoding errors say where the
// JSON went wrong (see ferry.InvalidJSON).
var jsonFormat = huma.Format{
	Marshal: huma.DefaultJSONFormat.Marshal,
	Unmarshal: func(data []byte, v any) error {
		if err := huma.DefaultJSONFormat.Unmarshal(data, v); err != nil {
			if fe := ferry.InvalidJSON(data, err); fe != nil {
				return errors.New(fe.Message)
			}
			return err
		}
		return nil
	},
}

// sendJSON is the message of a 415: which content types the operation
// reads (accepted, application/json first) and which the request sent.
func sendJSON(contentType string, accepted ...string) string {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		mt = contentType
	}
	msg := "send " + strings.Join(accepted, " or ") + "; the body was sent as " + mt
	if mt == "application/x-www-form-urlencoded" {
		msg += " (as curl -d does without -H 'Content-Type: application/json')"
	}
	return msg
}

// acceptedTypes are the content types op's body may have,
// application/json first.
func acceptedTypes(op *huma.Operation) []string {
	types := []string{"application/json"}
	if op != nil && op.RequestBody != nil {
		for ct := range op.RequestBody.Content {
			if ct != "application/json" {
				types = append(types, ct)
			}
		}
	}
	sort.Strings(types[1:])
	return types
}

// maxBodySetting names the setting behind every operation's body limit,
// but for those whose Metadata names another under bodyLimitKey.
const maxBodySetting = "FERRY_MAX_BODY_BYTES"

// bodyLimitKey is the key of an operation's Metadata that names the
// setting behind its MaxBodyBytes, when that is not maxBodySetting.
const bodyLimitKey = "bodyLimitSetting"

// bodyLimitSetting names the setting behind op's body limit.
func bodyLimitSetting(op *huma.Operation) string {
	if name, ok := op.Metadata[bodyLimitKey].(string); ok {
		return name
	}
	return maxBodySetting
}

// explainBodyErrors is a huma transformer that words huma's own refusals
// of a body so that people know what to do: a body in a content type the
// operation does not read (415, naming the one to send), a body that is
// not JSON (400, "invalid JSON at byte N: …", instead of "validation
// failed"), and a body over the limit (413, naming FERRY_MAX_BODY_BYTES
// and the limit). It runs before reshapeErrors, so every error shape gets
// the same words.
func explainBodyErrors(ctx huma.Context, _ string, v any) (any, error) {
	em, ok := v.(*huma.ErrorModel)
	if !ok {
		return v, nil
	}
	switch {
	case em.Status == http.StatusUnsupportedMediaType && em.Detail == "validation failed":
		em.Detail, em.Errors = sendJSON(ctx.Header("Content-Type"), acceptedTypes(ctx.Operation())...), nil
	case em.Status == http.StatusBadRequest && em.Detail == "validation failed" && len(em.Errors) == 1 &&
		em.Errors[0] != nil && em.Errors[0].Location == "body":
		// One error about the whole body: it could not be decoded. It
		// is the whole story.
		em.Detail, em.Errors = em.Errors[0].Message, nil
	case em.Status == http.StatusRequestEntityTooLarge && strings.HasPrefix(em.Detail, "request body is too large"):
		if op := ctx.Operation(); op != nil && op.MaxBodyBytes > 0 {
			em.Detail = fmt.Sprintf("the body is too large: %s is %d bytes", bodyLimitSetting(op), op.MaxBodyBytes)
		}
	}
	return v, nil
}

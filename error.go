package ferry

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
	"unicode/utf8"
)

// Code classifies an Error. The set is fixed; httpapi maps each code to one
// HTTP status.
type Code string

// The error codes domain code may return.
const (
	Invalid      Code = "invalid"
	Unauthorized Code = "unauthorized"
	Forbidden    Code = "forbidden"
	NotFound     Code = "not_found"
	Conflict     Code = "conflict"
	TooLarge     Code = "too_large"
	RateLimited  Code = "rate_limited"
	Unavailable  Code = "unavailable"
	Upstream     Code = "upstream"
	Timeout      Code = "timeout"
	Internal     Code = "internal"

	// UnsupportedMediaType: the body is in a format Ferry does not read,
	// whatever its declared type (an upload that is neither a PDF nor
	// text).
	UnsupportedMediaType Code = "unsupported_media_type"
)

// Error is the one error type domain code returns for anything a client
// should hear about. Message is safe to show to the client; Fields names the
// input that was wrong (field name -> what is wrong with it).
type Error struct {
	Code       Code
	Message    string
	Fields     map[string]string
	RetryAfter time.Duration // for RateLimited and Unavailable: when to try again
	Err        error         // the cause, for logs only
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with code c and a formatted message.
func Errorf(c Code, format string, args ...any) *Error {
	return &Error{Code: c, Message: fmt.Sprintf(format, args...)}
}

// InvalidField returns an Invalid error naming one bad field.
func InvalidField(field, problem string) *Error {
	return &Error{Code: Invalid, Message: field + ": " + problem, Fields: map[string]string{field: problem}}
}

// ErrorCode returns the code of the *Error in err's chain, or Internal when
// there is none.
func ErrorCode(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return Internal
}

// InvalidJSON returns an Invalid error that says where body stopped being
// JSON, "invalid JSON at byte N: …" (N counting from 1, with the line and
// column when body has several lines), when err is a syntax error from
// decoding it: a *json.SyntaxError, or io.ErrUnexpectedEOF from a
// json.Decoder. For any other err, nil included, it returns nil.
func InvalidJSON(body []byte, err error) *Error {
	var se *json.SyntaxError
	var at int64
	what := "the body ends before the JSON does"
	switch {
	case errors.As(err, &se):
		at = se.Offset
		if se.Error() != "unexpected end of JSON input" {
			what = se.Error()
		}
	case errors.Is(err, io.ErrUnexpectedEOF):
		at = int64(len(body))
	default:
		return nil
	}
	at = min(max(at, 1), int64(len(body)))
	msg := fmt.Sprintf("invalid JSON at byte %d", at)
	if bytes.IndexByte(body, '\n') >= 0 {
		before := body[:max(at-1, 0)]
		line := bytes.Count(before, []byte("\n")) + 1
		col := utf8.RuneCount(before[bytes.LastIndexByte(before, '\n')+1:]) + 1
		msg += fmt.Sprintf(" (line %d, column %d)", line, col)
	}
	return &Error{Code: Invalid, Message: msg + ": " + what, Err: err}
}

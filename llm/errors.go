package llm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ferryhq/ferry"
)

// Upstream names one upstream in the errors its adapter returns, so that
// every adapter words and classifies failures alike.
type Upstream struct {
	// Name is the provider's routing prefix, as in "anthropic".
	Name string
	// KeySetting is the setting that holds the API key, as in
	// "ANTHROPIC_API_KEY"; empty for an upstream that takes none.
	KeySetting string
	// URLSetting is the setting that holds the upstream's address, as in
	// "OLLAMA_BASE_URL".
	URLSetting string
}

// clientFault maps the upstream statuses that mean the request itself was
// wrong to the code the client gets.
var clientFault = map[int]ferry.Code{
	http.StatusBadRequest:            ferry.Invalid,
	http.StatusNotFound:              ferry.NotFound,
	http.StatusRequestEntityTooLarge: ferry.TooLarge,
	http.StatusUnprocessableEntity:   ferry.Invalid,
}

// maxMessage bounds how much of an upstream's error message reaches a
// client: a proxy in front of the upstream may answer with a whole HTML page.
const maxMessage = 300

// HTTPError returns the *ferry.Error for an error response from the
// upstream: status and header are the response's, message the upstream's
// own explanation (may be empty), cause the client library's error, kept
// for logs.
//
//   - 401 and 403: Upstream, naming the setting to check, never the key.
//   - 429: RateLimited, with RetryAfter from the response when it says.
//   - 408, 5xx and Anthropic's 529: Unavailable, with RetryAfter when given.
//   - 400 and 422: Invalid; 404: NotFound; 413: TooLarge, with the
//     upstream's message: the request was the client's to fix.
//   - any other status: Upstream, with the upstream's message.
//
// WithRetry retries RateLimited and Unavailable.
func (u Upstream) HTTPError(status int, header http.Header, message string, cause error) *ferry.Error {
	message = clip(message)
	if message == "" {
		message = http.StatusText(status)
	}
	retryAfter, _ := RetryAfter(header, time.Now())
	e := &ferry.Error{Err: cause}
	switch {
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		e.Code = ferry.Upstream
		if u.KeySetting != "" {
			e.Message = fmt.Sprintf("%s rejected the API key; check %s", u.Name, u.KeySetting)
		} else {
			e.Message = fmt.Sprintf("%s refused the request (%d %s); check %s", u.Name, status, http.StatusText(status), u.URLSetting)
		}
	case status == http.StatusTooManyRequests:
		e.Code, e.RetryAfter = ferry.RateLimited, retryAfter
		e.Message = fmt.Sprintf("%s is rate limiting requests: %s", u.Name, message)
	case status == http.StatusRequestTimeout || status >= 500:
		e.Code, e.RetryAfter = ferry.Unavailable, retryAfter
		e.Message = fmt.Sprintf("%s is unavailable (%d): %s", u.Name, status, message)
	case clientFault[status] != "":
		// The request was wrong (an unknown model, a bad parameter, too
		// long a prompt): the client's to fix, in the upstream's words.
		e.Code = clientFault[status]
		e.Message = fmt.Sprintf("%s: %s", u.Name, message)
	default:
		e.Code = ferry.Upstream
		e.Message = fmt.Sprintf("%s: %s", u.Name, message)
	}
	return e
}

// EventError returns the *ferry.Error for an error the upstream reported
// inside a stream that had started well: code Upstream with the upstream's
// message.
func (u Upstream) EventError(message string, cause error) *ferry.Error {
	message = clip(message)
	if message == "" {
		message = "error in the stream"
	}
	return &ferry.Error{Code: ferry.Upstream, Message: fmt.Sprintf("%s: %s", u.Name, message), Err: cause}
}

// Truncated returns the error for a stream that ended without the upstream's
// closing event: code Upstream.
func (u Upstream) Truncated() *ferry.Error {
	return &ferry.Error{Code: ferry.Upstream, Message: u.Name + " ended the answer without finishing it"}
}

// TransportError returns what a call that got no usable response from the
// upstream reports: ctx.Err() itself when ctx was cancelled, Timeout when
// ctx's deadline passed or the connection timed out, else Unavailable (a
// refused, reset or dropped connection), which WithRetry retries. Only a
// failure to connect names the URL setting to check.
func (u Upstream) TransportError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ContextError(ctx, u.Name)
	}
	if isTimeout(err) {
		return &ferry.Error{Code: ferry.Timeout, Message: u.Name + " did not answer in time", Err: err}
	}
	msg := "lost the connection to " + u.Name
	if isDialError(err) {
		msg = fmt.Sprintf("could not reach %s; check %s", u.Name, u.URLSetting)
	}
	return &ferry.Error{Code: ferry.Unavailable, Message: msg, Err: err}
}

// isDialError reports whether err happened before a connection was made
// (DNS, refused, unreachable), which points at a wrong address rather than
// an upstream in trouble.
func isDialError(err error) bool {
	var op *net.OpError
	var dns *net.DNSError
	return (errors.As(err, &op) && op.Op == "dial") || errors.As(err, &dns)
}

// ContextError returns the error for a call that stopped because ctx is
// done: ctx.Err() unwrapped when the caller cancelled it, so callers can
// tell a client that left, or a Timeout *ferry.Error (wrapping
// context.DeadlineExceeded) when its deadline passed.
func ContextError(ctx context.Context, provider string) error {
	err := ctx.Err()
	if errors.Is(err, context.DeadlineExceeded) {
		return &ferry.Error{Code: ferry.Timeout, Message: provider + " did not answer in time", Err: err}
	}
	return err
}

// RetryAfter reads how long an upstream asked to wait from the
// retry-after-ms header (milliseconds, which OpenAI and Anthropic send) or
// Retry-After (seconds or an HTTP date), relative to now. ok is false when
// neither header holds a valid value; a date in the past reads as 0.
func RetryAfter(h http.Header, now time.Time) (d time.Duration, ok bool) {
	if v := h.Get("Retry-After-Ms"); v != "" {
		if ms, err := strconv.ParseFloat(v, 64); err == nil && ms >= 0 {
			return time.Duration(ms * float64(time.Millisecond)), true
		}
	}
	v := h.Get("Retry-After")
	if v == "" {
		return 0, false
	}
	if s, err := strconv.ParseFloat(v, 64); err == nil && s >= 0 {
		return time.Duration(s * float64(time.Second)), true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, os.ErrDeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout())
}

// clip readies an upstream's message for a client and the database:
// trimmed, without NUL characters (which PostgreSQL cannot store), and cut
// to maxMessage bytes on a character boundary.
func clip(s string) string {
	s = strings.TrimSpace(strings.ReplaceAll(s, "\x00", ""))
	if len(s) <= maxMessage {
		return s
	}
	cut := maxMessage
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// Do sends req through hc and returns the response when its status is 2xx.
// Otherwise it returns the error llm.Provider promises: TransportError for
// no response, ContextError when ctx ended while the error body was read,
// else HTTPError with the message that message reads from the upstream's
// error body (the body itself, clipped, when it reads none).
func (u Upstream) Do(ctx context.Context, hc *http.Client, req *http.Request, message func(body []byte) string) (*http.Response, error) {
	resp, err := hc.Do(req)
	if err != nil {
		return nil, u.TransportError(ctx, err)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	return nil, u.refused(ctx, req, resp, message)
}

// refused is Do's error for resp, an answer that is not 2xx. It is apart
// from Do to keep Do's frame, under a stream's first request, small.
func (u Upstream) refused(ctx context.Context, req *http.Request, resp *http.Response, message func(body []byte) string) error {
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil && ctx.Err() != nil {
		return ContextError(ctx, u.Name)
	}
	msg := message(raw)
	if msg == "" {
		msg = string(raw)
	}
	cause := fmt.Errorf("%s: %s %s: status %d", u.Name, req.Method, req.URL.Path, resp.StatusCode)
	return u.HTTPError(resp.StatusCode, resp.Header, msg, cause)
}

// DecodeJSON decodes at most limit bytes of body, an upstream's answer
// (what names it, as in "a model list"), into v. The error is ContextError
// when ctx ended meanwhile, else an Upstream error saying the upstream sent
// what was not JSON.
func (u Upstream) DecodeJSON(ctx context.Context, body io.Reader, limit int64, what string, v any) error {
	if err := json.NewDecoder(io.LimitReader(body, limit)).Decode(v); err != nil {
		if ctx.Err() != nil {
			return ContextError(ctx, u.Name)
		}
		return u.EventError("sent "+what+" that is not JSON", err)
	}
	return nil
}

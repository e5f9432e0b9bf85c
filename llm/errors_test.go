package llm_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/llm"
)

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		header http.Header
		want   time.Duration
		ok     bool
	}{
		{http.Header{"Retry-After": {"7"}}, 7 * time.Second, true},
		{http.Header{"Retry-After": {"0"}}, 0, true},
		{http.Header{"Retry-After": {"1.5"}}, 1500 * time.Millisecond, true},
		{http.Header{"Retry-After": {now.Add(90 * time.Second).Format(http.TimeFormat)}}, 90 * time.Second, true},
		{http.Header{"Retry-After": {now.Add(-time.Hour).Format(http.TimeFormat)}}, 0, true},
		{http.Header{"Retry-After-Ms": {"250"}, "Retry-After": {"9"}}, 250 * time.Millisecond, true},
		{http.Header{"Retry-After-Ms": {"junk"}, "Retry-After": {"9"}}, 9 * time.Second, true},
		{http.Header{"Retry-After": {"soon"}}, 0, false},
		{http.Header{"Retry-After": {"-3"}}, 0, false},
		{nil, 0, false},
	} {
		got, ok := llm.RetryAfter(tc.header, now)
		if got != tc.want || ok != tc.ok {
			t.Errorf("RetryAfter(%v) = %v, %v; want %v, %v", tc.header, got, ok, tc.want, tc.ok)
		}
	}
}

var anthropicUp = llm.Upstream{Name: "anthropic", KeySetting: "ANTHROPIC_API_KEY", URLSetting: "ANTHROPIC_BASE_URL"}

func TestHTTPError(t *testing.T) {
	ollamaUp := llm.Upstream{Name: "ollama", URLSetting: "OLLAMA_BASE_URL"}
	retry := http.Header{"Retry-After": {"3"}}
	for _, tc := range []struct {
		up         llm.Upstream
		status     int
		header     http.Header
		message    string
		code       ferry.Code
		retryAfter time.Duration
		contains   string
	}{
		{anthropicUp, 401, nil, "invalid x-api-key sk-ant-123", ferry.Upstream, 0, "anthropic rejected the API key; check ANTHROPIC_API_KEY"},
		{anthropicUp, 403, nil, "", ferry.Upstream, 0, "check ANTHROPIC_API_KEY"},
		{ollamaUp, 401, nil, "", ferry.Upstream, 0, "check OLLAMA_BASE_URL"},
		{anthropicUp, 429, retry, "too many", ferry.RateLimited, 3 * time.Second, "too many"},
		{anthropicUp, 529, nil, "Overloaded", ferry.Unavailable, 0, "Overloaded"},
		{anthropicUp, 503, retry, "", ferry.Unavailable, 3 * time.Second, "Service Unavailable"},
		{anthropicUp, 408, nil, "", ferry.Unavailable, 0, "Request Timeout"},
		{anthropicUp, 404, nil, "model: claude-9 not found", ferry.NotFound, 0, "anthropic: model: claude-9 not found"},
		{anthropicUp, 400, nil, strings.Repeat("长", 1000), ferry.Invalid, 0, "…"},
		{anthropicUp, 422, nil, "bad temperature", ferry.Invalid, 0, "anthropic: bad temperature"},
		{anthropicUp, 413, nil, "prompt too long", ferry.TooLarge, 0, "anthropic: prompt too long"},
		{anthropicUp, 409, nil, "conflict", ferry.Upstream, 0, "anthropic: conflict"},
	} {
		cause := errors.New("sdk error")
		e := tc.up.HTTPError(tc.status, tc.header, tc.message, cause)
		if e.Code != tc.code || e.RetryAfter != tc.retryAfter || !strings.Contains(e.Message, tc.contains) || e.Err != cause {
			t.Errorf("%d %q: got %s %q (RetryAfter %v); want %s containing %q (RetryAfter %v)",
				tc.status, tc.message, e.Code, e.Message, e.RetryAfter, tc.code, tc.contains, tc.retryAfter)
		}
		if strings.Contains(e.Message, "sk-ant") {
			t.Errorf("%d: message %q shows the key", tc.status, e.Message)
		}
		if len(e.Message) > 400 {
			t.Errorf("%d: message is %d bytes long", tc.status, len(e.Message))
		}
	}
}

type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

func TestTransportError(t *testing.T) {
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	if err := anthropicUp.TransportError(cancelled, errors.New("read: use of closed connection")); err != context.Canceled {
		t.Errorf("cancelled ctx: got %v, want context.Canceled itself", err)
	}

	expired, cancel2 := context.WithTimeout(t.Context(), -time.Second)
	defer cancel2()
	err := anthropicUp.TransportError(expired, context.DeadlineExceeded)
	if ferry.ErrorCode(err) != ferry.Timeout || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("expired ctx: got %v, want Timeout wrapping DeadlineExceeded", err)
	}

	var netErr net.Error = timeoutError{}
	if err := anthropicUp.TransportError(t.Context(), &net.OpError{Op: "read", Err: netErr}); ferry.ErrorCode(err) != ferry.Timeout {
		t.Errorf("net timeout: got %v, want Timeout", err)
	}

	refused := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connect: connection refused")}
	err = anthropicUp.TransportError(t.Context(), refused)
	var fe *ferry.Error
	if !errors.As(err, &fe) || fe.Code != ferry.Unavailable || !strings.Contains(fe.Message, "ANTHROPIC_BASE_URL") || !errors.Is(err, refused) {
		t.Errorf("refused: got %v, want Unavailable naming ANTHROPIC_BASE_URL, wrapping the cause", err)
	}

	err = anthropicUp.TransportError(t.Context(), io.ErrUnexpectedEOF)
	if !errors.As(err, &fe) || fe.Code != ferry.Unavailable || fe.Message != "lost the connection to anthropic" {
		t.Errorf("dropped: got %v, want Unavailable: lost the connection", err)
	}
}

func TestEventError(t *testing.T) {
	e := anthropicUp.EventError("Overloaded", nil)
	if e.Code != ferry.Upstream || e.Message != "anthropic: Overloaded" {
		t.Errorf("EventError = %v", e)
	}
}

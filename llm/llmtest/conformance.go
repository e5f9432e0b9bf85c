package llmtest

import (
	"context"
	"errors"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/llm"
)

// Adapter describes a provider adapter to RunConformance.
type Adapter struct {
	// Name is the provider's routing prefix: "anthropic", "openai" or
	// "ollama". It picks the default model list the fake serves.
	Name string
	// New returns the adapter under test, talking to s through hc with
	// apiKey (which an adapter without keys ignores).
	New func(s *Server, hc *http.Client, apiKey string) llm.Provider
	// Model is a model name to request.
	Model string
	// DefaultModel is the model the adapter asks for when the request names
	// none.
	DefaultModel string
	// StopReason is the stop reason of a complete answer.
	StopReason string
	// OverloadStatus is the upstream's "overloaded" status: 529 for
	// Anthropic, 503 for the others.
	OverloadStatus int
	// Setting is the setting a 401 error must name, as in
	// "ANTHROPIC_API_KEY".
	Setting string
}

// RunConformance checks, through a's adapter and its client library against
// the fake, everything llm.Provider promises: complete answers with usage,
// exact text, error mapping, retries only before the first delta,
// cancellation that reaches the upstream, and no leaked goroutines.
func RunConformance(t *testing.T, a Adapter) {
	t.Helper()
	c := &conformance{a: a}
	t.Run("FullAnswer", c.fullAnswer)
	t.Run("ExactText", c.exactText)
	t.Run("ExactTextAcrossReads", c.exactTextAcrossReads)
	t.Run("LongDelta", c.longDelta)
	t.Run("DefaultModel", c.defaultModel)
	t.Run("Models", c.models)
	t.Run("ErrorMidStream", c.errorMidStream)
	t.Run("DroppedMidStreamNotRetried", c.droppedMidStream)
	t.Run("DroppedBeforeTextRetried", c.droppedBeforeText)
	t.Run("RateLimitedThenSuccess", c.rateLimitedThenSuccess)
	t.Run("OverloadedThenSuccess", c.overloadedThenSuccess)
	t.Run("RateLimitedAfterRetries", c.rateLimitedAfterRetries)
	t.Run("Unauthorized", c.unauthorized)
	t.Run("BadRequestNotRetried", c.badRequest)
	t.Run("ClientCancels", c.clientCancels)
	t.Run("ClientCancelsDuringPause", c.clientCancelsDuringPause)
	t.Run("CallbackErrorStopsUpstream", c.callbackError)
	t.Run("Deadline", c.deadline)
	t.Run("NoGoroutineLeak", c.noLeak)
}

type conformance struct{ a Adapter }

// setup starts a fake with sc and returns it and the adapter, which has its
// own transport so that connections and goroutines are the test's alone.
func (c *conformance) setup(t *testing.T, sc Script) (*Server, llm.Provider) {
	s := Start(t)
	s.SetScript(sc)
	hc := &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	t.Cleanup(hc.CloseIdleConnections)
	return s, c.a.New(s, hc, "sk-test-secret-1234")
}

// collected is what one Stream call delivered.
type collected struct {
	text   strings.Builder
	deltas int
	done   []llm.Delta
	after  bool // a text delta arrived after the Done delta
}

func (got *collected) fn(d llm.Delta) error {
	if d.Done {
		got.done = append(got.done, d)
		return nil
	}
	if len(got.done) > 0 {
		got.after = true
	}
	got.deltas++
	got.text.WriteString(d.Text)
	return nil
}

func request(model string) llm.Request {
	return llm.Request{
		Model:    model,
		System:   "be brief",
		Messages: []llm.Message{llm.TextMessage("user", "say something"), llm.TextMessage("assistant", "ok"), llm.TextMessage("user", "more please")},
	}
}

// fastRetry retries without waiting, recording the waits asked for.
func fastRetry(p llm.Provider, waits *[]time.Duration) llm.Provider {
	var mu sync.Mutex
	return llm.WithRetry(p, llm.RetryPolicy{Sleep: func(ctx context.Context, d time.Duration) error {
		mu.Lock()
		*waits = append(*waits, d)
		mu.Unlock()
		return ctx.Err()
	}})
}

func wantCode(t *testing.T, err error, code ferry.Code) *ferry.Error {
	t.Helper()
	var fe *ferry.Error
	if !errors.As(err, &fe) {
		t.Fatalf("error = %v (%T), want a *ferry.Error with code %s", err, err, code)
	}
	if fe.Code != code {
		t.Fatalf("error code = %s (%v), want %s", fe.Code, err, code)
	}
	return fe
}

func (c *conformance) fullAnswer(t *testing.T) {
	s, p := c.setup(t, Script{InputTokens: 42, OutputTokens: 100})
	var got collected
	if err := p.Stream(t.Context(), request(c.a.Model), got.fn); err != nil {
		t.Fatalf("Stream: %v", err)
	}
	if want := strings.Join(Deltas(100), ""); got.text.String() != want {
		t.Errorf("text = %q, want %q", got.text.String(), want)
	}
	if got.deltas != 100 {
		t.Errorf("got %d text deltas, want 100", got.deltas)
	}
	if len(got.done) != 1 || got.after {
		t.Fatalf("got %d Done deltas (text after Done: %v), want exactly one, last", len(got.done), got.after)
	}
	d := got.done[0]
	if d.Usage != (llm.Usage{InputTokens: 42, OutputTokens: 100}) {
		t.Errorf("usage = %+v, want 42 in, 100 out", d.Usage)
	}
	if d.StopReason != c.a.StopReason {
		t.Errorf("stop reason = %q, want %q", d.StopReason, c.a.StopReason)
	}
	if d.Model != c.a.Model {
		t.Errorf("model = %q, want %q", d.Model, c.a.Model)
	}
	body := string(s.Last().Body)
	for _, want := range []string{c.a.Model, "be brief", "say something", "more please"} {
		if !strings.Contains(body, want) {
			t.Errorf("request body lacks %q: %s", want, body)
		}
	}
	if h := s.Last().Header; h.Get("Authorization") != "" && h.Get("Authorization") != "REDACTED" {
		t.Errorf("recorded Authorization header is not redacted")
	}
}

// special holds what JSON and SSE encoders get wrong: newlines, quotes,
// backslashes, characters outside ASCII and HTML-escaped ones.
var special = []string{"第一行\n", "\"引号\"", "\\ 中文", "\n\n", "data: not an event\n", " <&> ", "emoji 🙂", "\t end"}

func (c *conformance) exactText(t *testing.T) {
	_, p := c.setup(t, Script{Deltas: special})
	var got collected
	if err := p.Stream(t.Context(), request(c.a.Model), got.fn); err != nil {
		t.Fatalf("Stream: %v", err)
	}
	if want := strings.Join(special, ""); got.text.String() != want {
		t.Errorf("text = %q, want %q", got.text.String(), want)
	}
}

func (c *conformance) exactTextAcrossReads(t *testing.T) {
	_, p := c.setup(t, Script{Deltas: special, Fragment: true})
	var got collected
	if err := p.Stream(t.Context(), request(c.a.Model), got.fn); err != nil {
		t.Fatalf("Stream: %v", err)
	}
	if want := strings.Join(special, ""); got.text.String() != want {
		t.Errorf("text = %q, want %q", got.text.String(), want)
	}
}

func (c *conformance) longDelta(t *testing.T) {
	long := strings.Repeat("长文本 with words ", 20_000) // ~440 KB on one line
	_, p := c.setup(t, Script{Deltas: []string{"a", long, "z"}})
	var got collected
	if err := p.Stream(t.Context(), request(c.a.Model), got.fn); err != nil {
		t.Fatalf("Stream: %v", err)
	}
	if got.text.String() != "a"+long+"z" {
		t.Errorf("long delta did not round-trip (got %d bytes, want %d)", got.text.Len(), len(long)+2)
	}
}

func (c *conformance) defaultModel(t *testing.T) {
	s, p := c.setup(t, Script{})
	var got collected
	if err := p.Stream(t.Context(), request(""), got.fn); err != nil {
		t.Fatalf("Stream: %v", err)
	}
	var body struct {
		Model string `json:"model"`
	}
	if err := s.Last().JSON(&body); err != nil {
		t.Fatal(err)
	}
	if body.Model != c.a.DefaultModel {
		t.Errorf("asked upstream for model %q, want %q", body.Model, c.a.DefaultModel)
	}
}

func (c *conformance) models(t *testing.T) {
	_, p := c.setup(t, Script{})
	models, err := p.Models(t.Context())
	if err != nil {
		t.Fatalf("Models: %v", err)
	}
	var ids []string
	for _, m := range models {
		if m.Provider != c.a.Name || m.ID != c.a.Name+"/"+m.Name {
			t.Errorf("model %+v: want Provider %q and ID %q/Name", m, c.a.Name, c.a.Name)
		}
		ids = append(ids, m.Name)
	}
	if want := DefaultModels(c.a.Name); !slices.Equal(ids, want) {
		t.Errorf("models = %v, want %v", ids, want)
	}
}

func (c *conformance) errorMidStream(t *testing.T) {
	s, p := c.setup(t, Script{Break: ErrorEvent, BreakAfter: 3, ErrorMessage: "Overloaded right now"})
	var waits []time.Duration
	var got collected
	err := fastRetry(p, &waits).Stream(t.Context(), request(c.a.Model), got.fn)
	fe := wantCode(t, err, ferry.Upstream)
	if !strings.Contains(fe.Message, "Overloaded right now") {
		t.Errorf("message = %q, want the upstream's", fe.Message)
	}
	if got.deltas != 3 || got.text.String() != "tok0 tok1 tok2 " || len(got.done) != 0 {
		t.Errorf("delivered %d deltas %q and %d Done, want the 3 before the error and no Done", got.deltas, got.text.String(), len(got.done))
	}
	if n := len(s.Requests()); n != 1 {
		t.Errorf("upstream saw %d requests, want 1: no retry after text was delivered", n)
	}
}

func (c *conformance) droppedMidStream(t *testing.T) {
	s, p := c.setup(t, Script{Break: Drop, BreakAfter: 3})
	var waits []time.Duration
	var got collected
	err := fastRetry(p, &waits).Stream(t.Context(), request(c.a.Model), got.fn)
	if err == nil {
		t.Fatal("Stream succeeded over a dropped connection")
	}
	if got.deltas != 3 {
		t.Errorf("delivered %d deltas, want 3", got.deltas)
	}
	if n := len(s.Requests()); n != 1 {
		t.Errorf("upstream saw %d requests, want 1: no retry after text was delivered", n)
	}
}

func (c *conformance) droppedBeforeText(t *testing.T) {
	s, p := c.setup(t, Script{Break: Drop, BreakAfter: 0})
	var waits []time.Duration
	var got collected
	err := fastRetry(p, &waits).Stream(t.Context(), request(c.a.Model), got.fn)
	wantCode(t, err, ferry.Unavailable)
	if n := len(s.Requests()); n != 3 {
		t.Errorf("upstream saw %d requests, want 3 (retried while nothing was delivered)", n)
	}
}

func (c *conformance) rateLimitedThenSuccess(t *testing.T) {
	s, p := c.setup(t, Script{
		Deltas:    []string{"hello"},
		FailFirst: 2, FailStatus: http.StatusTooManyRequests, FailHeader: http.Header{"Retry-After": {"1"}},
	})
	var waits []time.Duration
	var got collected
	if err := fastRetry(p, &waits).Stream(t.Context(), request(c.a.Model), got.fn); err != nil {
		t.Fatalf("Stream: %v", err)
	}
	if got.text.String() != "hello" || len(got.done) != 1 {
		t.Errorf("got %q and %d Done, want hello and one Done", got.text.String(), len(got.done))
	}
	if !slices.Equal(waits, []time.Duration{time.Second, time.Second}) {
		t.Errorf("waits = %v, want Retry-After's 1s twice", waits)
	}
	if n := len(s.Requests()); n != 3 {
		t.Errorf("upstream saw %d requests, want 3", n)
	}
}

func (c *conformance) overloadedThenSuccess(t *testing.T) {
	s, p := c.setup(t, Script{
		Deltas:    []string{"hello"},
		FailFirst: 1, FailStatus: c.a.OverloadStatus, FailHeader: http.Header{"Retry-After-Ms": {"25"}},
	})
	var waits []time.Duration
	var got collected
	if err := fastRetry(p, &waits).Stream(t.Context(), request(c.a.Model), got.fn); err != nil {
		t.Fatalf("Stream: %v", err)
	}
	if !slices.Equal(waits, []time.Duration{25 * time.Millisecond}) {
		t.Errorf("waits = %v, want retry-after-ms's 25ms", waits)
	}
	if n := len(s.Requests()); n != 2 {
		t.Errorf("upstream saw %d requests, want 2", n)
	}
}

func (c *conformance) rateLimitedAfterRetries(t *testing.T) {
	s, p := c.setup(t, Script{FailFirst: 100, FailStatus: http.StatusTooManyRequests, FailHeader: http.Header{"Retry-After": {"2"}}})
	var waits []time.Duration
	var got collected
	err := fastRetry(p, &waits).Stream(t.Context(), request(c.a.Model), got.fn)
	fe := wantCode(t, err, ferry.RateLimited)
	if fe.RetryAfter != 2*time.Second {
		t.Errorf("RetryAfter = %v, want 2s", fe.RetryAfter)
	}
	if n := len(s.Requests()); n != 3 {
		t.Errorf("upstream saw %d requests, want 3 (MaxAttempts)", n)
	}
	if got.deltas != 0 || len(got.done) != 0 {
		t.Errorf("callback was called on a failed request")
	}
}

func (c *conformance) unauthorized(t *testing.T) {
	s, p := c.setup(t, Script{FailFirst: 1, FailStatus: http.StatusUnauthorized})
	var waits []time.Duration
	var got collected
	err := fastRetry(p, &waits).Stream(t.Context(), request(c.a.Model), got.fn)
	fe := wantCode(t, err, ferry.Upstream)
	if !strings.Contains(fe.Message, c.a.Setting) {
		t.Errorf("message = %q, want it to name %s", fe.Message, c.a.Setting)
	}
	if strings.Contains(fe.Message, "sk-test-secret") {
		t.Errorf("message = %q shows the API key", fe.Message)
	}
	if n := len(s.Requests()); n != 1 {
		t.Errorf("upstream saw %d requests, want 1: a bad key is not retried", n)
	}
}

func (c *conformance) badRequest(t *testing.T) {
	s, p := c.setup(t, Script{FailFirst: 1, FailStatus: http.StatusBadRequest, FailMessage: "messages: roles must alternate"})
	var waits []time.Duration
	var got collected
	err := fastRetry(p, &waits).Stream(t.Context(), request(c.a.Model), got.fn)
	// The adapter passes the status to llm.Upstream.HTTPError, which
	// decides what a 400 means to Ferry's clients.
	fe := wantCode(t, err, llm.Upstream{}.HTTPError(http.StatusBadRequest, nil, "", nil).Code)
	if !strings.Contains(fe.Message, "roles must alternate") {
		t.Errorf("message = %q, want the upstream's", fe.Message)
	}
	if n := len(s.Requests()); n != 1 {
		t.Errorf("upstream saw %d requests, want 1", n)
	}
}

// cancelAfter streams with a ctx that fn cancels after n deltas, and checks
// that Stream returns context.Canceled itself and the upstream saw the
// client leave.
func (c *conformance) cancelAfter(t *testing.T, sc Script, n int) {
	s, p := c.setup(t, sc)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var waits []time.Duration
	seen := 0
	err := fastRetry(p, &waits).Stream(ctx, request(c.a.Model), func(d llm.Delta) error {
		if seen++; seen == n {
			cancel()
		}
		return nil
	})
	if err != context.Canceled {
		t.Errorf("Stream = %v (%T), want context.Canceled itself", err, err)
	}
	if !s.WaitCancelled(5 * time.Second) {
		t.Errorf("upstream did not see the request cancelled")
	}
	if len(s.Requests()) != 1 {
		t.Errorf("upstream saw %d requests, want 1", len(s.Requests()))
	}
}

func (c *conformance) clientCancels(t *testing.T) {
	c.cancelAfter(t, Script{Break: Hang, BreakAfter: 5}, 5)
}

func (c *conformance) clientCancelsDuringPause(t *testing.T) {
	c.cancelAfter(t, Script{Delay: 20 * time.Millisecond}, 2)
}

func (c *conformance) callbackError(t *testing.T) {
	s, p := c.setup(t, Script{Break: Hang, BreakAfter: 10})
	stop := errors.New("client went away")
	seen := 0
	err := p.Stream(t.Context(), request(c.a.Model), func(llm.Delta) error {
		if seen++; seen == 2 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) {
		t.Errorf("Stream = %v, want the callback's error", err)
	}
	if !s.WaitCancelled(5 * time.Second) {
		t.Errorf("upstream request still open after the callback failed")
	}
}

func (c *conformance) deadline(t *testing.T) {
	s, p := c.setup(t, Script{Break: Hang, BreakAfter: 1})
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	var got collected
	err := p.Stream(ctx, request(c.a.Model), got.fn)
	wantCode(t, err, ferry.Timeout)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Stream = %v, want it to wrap context.DeadlineExceeded", err)
	}
	if !s.WaitCancelled(5 * time.Second) {
		t.Errorf("upstream did not see the request end")
	}
}

func (c *conformance) noLeak(t *testing.T) {
	s := Start(t)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	hc := &http.Client{Transport: tr}
	p := c.a.New(s, hc, "sk-test-secret-1234")
	settle := func() int {
		tr.CloseIdleConnections()
		runtime.GC()
		return runtime.NumGoroutine()
	}
	before := settle()
	for i := range 20 {
		ctx, cancel := context.WithCancel(t.Context())
		script := Script{Break: Hang, BreakAfter: 3}
		if i%2 == 1 {
			script = Script{Deltas: Deltas(10)}
		}
		s.SetScript(script)
		seen := 0
		_ = p.Stream(ctx, request(c.a.Model), func(llm.Delta) error {
			if seen++; seen == 3 {
				cancel()
			}
			return nil
		})
		cancel()
		<-s.Last().Done()
	}
	after := settle()
	for deadline := time.Now().Add(5 * time.Second); after > before && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		after = settle()
	}
	if after > before {
		buf := make([]byte, 1<<20)
		t.Errorf("goroutines: %d before, %d after 20 streams\n%s", before, after, buf[:runtime.Stack(buf, true)])
	}
}

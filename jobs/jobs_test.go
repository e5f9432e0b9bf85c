package jobs

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/chat"
	"github.com/ferryhq/ferry/config"
	"github.com/ferryhq/ferry/ingest"
	"github.com/ferryhq/ferry/llm"
	"github.com/ferryhq/ferry/llm/anthropic"
	"github.com/ferryhq/ferry/llm/llmtest"
	"github.com/ferryhq/ferry/search"
	"github.com/ferryhq/ferry/store"
	"github.com/ferryhq/ferry/store/storetest"
)

// The tests run real River clients (through package ingest, as the server
// does) on real databases, against the fake Anthropic of llmtest.

const model = "claude-sonnet-4-6"

// testOptions are fast heartbeats, so that cancellations across instances
// and dead runners show within a test's patience; StaleAfter leaves room
// for a loaded machine (and the race detector) to delay a heartbeat's
// write, which would otherwise take a live job for dead.
var testOptions = Options{Heartbeat: 100 * time.Millisecond, StaleAfter: 3 * time.Second}

// instance is one Ferry process's worth of services on a database.
type instance struct {
	st   *store.Store
	chat *chat.Service
	jobs *Service
	ing  *ingest.Service
}

// openInstance opens the services on db, reaching the fake Anthropic at
// url; with work, its River client works jobs. close stops it cleanly.
func openInstance(ctx context.Context, db config.Database, url string, work bool, co chat.Options, o Options) (*instance, func(), error) {
	st, err := store.Open(ctx, db)
	if err != nil {
		return nil, nil, err
	}
	if err := st.Migrate(ctx); err != nil {
		st.Close()
		return nil, nil, err
	}
	router, err := llm.NewRouter("", anthropic.New(anthropic.Config{APIKey: "sk-ant-test", BaseURL: url}))
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	co.SaveInterval = 50 * time.Millisecond
	c := chat.NewService(st, router, co)
	js := New(st, c, router, o)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ing, err := ingest.New(ctx, st, db, search.New(st), nil, ingest.Options{PollInterval: 50 * time.Millisecond,
		Register: js.Register, Queues: js.Queues()}, log)
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	js.SetQueue(ing)
	maintained, stopMaintaining := context.WithCancel(context.Background())
	maintainDone := make(chan struct{})
	if work {
		if err := ing.Start(context.Background()); err != nil {
			stopMaintaining()
			ing.Stop(context.Background())
			st.Close()
			return nil, nil, err
		}
		go func() {
			defer close(maintainDone)
			js.Maintain(maintained)
		}()
	} else {
		close(maintainDone)
	}
	return &instance{st: st, chat: c, jobs: js, ing: ing}, func() {
		stopMaintaining()
		<-maintainDone
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c.Stop()
		ing.Stop(sctx)
		st.Close()
	}, nil
}

// env is a fresh database of one engine with a fake upstream.
type env struct {
	db   config.Database
	fake *llmtest.Server
}

func newEnv(t *testing.T, engine string) *env {
	t.Helper()
	return &env{db: storetest.Database(t, engine), fake: llmtest.Start(t)}
}

func eachEngine(t *testing.T, fn func(t *testing.T, e *env)) {
	for _, engine := range storetest.Engines(t) {
		t.Run(engine, func(t *testing.T) { fn(t, newEnv(t, engine)) })
	}
}

// instance opens an instance that stops when the test ends.
func (e *env) instance(t *testing.T, work bool, co chat.Options) *instance {
	t.Helper()
	in, closeFn, err := openInstance(context.Background(), e.db, e.fake.AnthropicURL(), work, co, testOptions)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(closeFn)
	return in
}

// user stores a user and returns it as a principal.
func (in *instance) user(t testing.TB, name string) *ferry.Principal {
	t.Helper()
	u := &ferry.User{ID: "u-" + name, Email: name + "@example.com", PasswordHash: "h", Role: ferry.RoleUser}
	if err := in.st.CreateUser(context.Background(), u); err != nil {
		t.Fatal(err)
	}
	return &ferry.Principal{User: u, SessionID: "s-" + name}
}

func (in *instance) submit(t *testing.T, p *ferry.Principal, msg string) *Job {
	t.Helper()
	j, err := in.jobs.Submit(context.Background(), p, chat.Request{Message: msg, Model: model})
	if err != nil {
		t.Fatal(err)
	}
	if j.State != Queued {
		t.Fatalf("submitted job is %s, want queued", j.State)
	}
	return j
}

// wait polls the job until cond holds, failing the test after timeout.
func (in *instance) wait(t *testing.T, userID, id string, timeout time.Duration, cond func(*Job) bool) *Job {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		j, err := in.jobs.Get(context.Background(), userID, id)
		if err != nil {
			t.Fatal(err)
		}
		if cond(j) {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s still %s after %s: %+v", id, j.State, timeout, j)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func final(j *Job) bool { return j.State == Succeeded || j.State == Failed || j.State == Cancelled }

func TestSubmitRunSucceed(t *testing.T) {
	eachEngine(t, func(t *testing.T, e *env) {
		e.fake.SetScript(llmtest.Script{Deltas: []string{"Hello", ", ", "world"}})
		in := e.instance(t, true, chat.Options{})
		p := in.user(t, "ann")
		j := in.submit(t, p, "say hello")
		j = in.wait(t, p.User.ID, j.ID, 20*time.Second, final)
		if j.State != Succeeded || j.Answer != "Hello, world" || j.Error != nil {
			t.Fatalf("job = %+v, want succeeded with the answer", j)
		}
		if j.ConversationID == "" || j.MessageID == "" || j.Model != "anthropic/"+model || j.StartedAt == nil || j.FinishedAt == nil {
			t.Fatalf("job lacks its turn: %+v", j)
		}
		if j.OutputTokens != 3 {
			t.Errorf("output tokens %d, want 3", j.OutputTokens)
		}
		// The answer is in the conversation, as a turn's.
		_, msgs, err := in.chat.Conversation(context.Background(), p.User.ID, j.ConversationID)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) != 2 || msgs[0].Content != "say hello" || msgs[1].ID != j.MessageID || msgs[1].Content != "Hello, world" ||
			msgs[1].Status != ferry.StatusComplete {
			t.Fatalf("conversation holds %+v", msgs)
		}
		if got := e.fake.Last(); got == nil || !strings.Contains(string(got.Body), "say hello") {
			t.Fatalf("the upstream was not asked the message")
		}
		// A second job continues the conversation, with its history.
		j2, err := in.jobs.Submit(context.Background(), p, chat.Request{Message: "again", Model: model, ConversationID: j.ConversationID})
		if err != nil {
			t.Fatal(err)
		}
		j2 = in.wait(t, p.User.ID, j2.ID, 20*time.Second, final)
		if j2.State != Succeeded || j2.ConversationID != j.ConversationID {
			t.Fatalf("second job = %+v", j2)
		}
		if body := string(e.fake.Last().Body); !strings.Contains(body, "say hello") || !strings.Contains(body, "Hello, world") {
			t.Fatalf("second call lacks the history: %s", body)
		}
		counts, err := in.jobs.Counts(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if counts[Succeeded] != 2 || counts[Queued] != 0 || len(counts) != len(States) {
			t.Fatalf("counts %v", counts)
		}
	})
}

func TestSubmitRefusesBadInput(t *testing.T) {
	eachEngine(t, func(t *testing.T, e *env) {
		in := e.instance(t, false, chat.Options{})
		p, q := in.user(t, "ann"), in.user(t, "bob")
		j := in.submit(t, p, "hi")
		for _, tc := range []struct {
			name string
			req  chat.Request
			code ferry.Code
		}{
			{"empty", chat.Request{Message: "  "}, ferry.Invalid},
			{"unknown model", chat.Request{Message: "hi", Model: "gpt-4o"}, ferry.Invalid},
			{"negative max_tokens", chat.Request{Message: "hi", MaxTokens: -1}, ferry.Invalid},
			{"someone else's conversation", chat.Request{Message: "hi", ConversationID: "c-none"}, ferry.NotFound},
		} {
			if _, err := in.jobs.Submit(context.Background(), q, tc.req); ferry.ErrorCode(err) != tc.code {
				t.Errorf("%s: error %v, want %s", tc.name, err, tc.code)
			}
		}
		// Another user's job does not exist for them.
		if _, err := in.jobs.Get(context.Background(), q.User.ID, j.ID); ferry.ErrorCode(err) != ferry.NotFound {
			t.Errorf("other user's Get: %v, want not found", err)
		}
		if _, err := in.jobs.Cancel(context.Background(), q.User.ID, j.ID); ferry.ErrorCode(err) != ferry.NotFound {
			t.Errorf("other user's Cancel: %v, want not found", err)
		}
		if got, _ := in.jobs.Get(context.Background(), p.User.ID, j.ID); got.State != Queued {
			t.Errorf("other user's Cancel changed the job: %+v", got)
		}
	})
}

func TestUpstreamFailureFailsTheJob(t *testing.T) {
	eachEngine(t, func(t *testing.T, e *env) {
		e.fake.SetScript(llmtest.Script{FailFirst: 1, FailStatus: 400, FailMessage: "prompt is too long"})
		in := e.instance(t, true, chat.Options{})
		p := in.user(t, "ann")
		j := in.submit(t, p, "hi")
		j = in.wait(t, p.User.ID, j.ID, 20*time.Second, final)
		if j.State != Failed || j.Error == nil || !strings.Contains(j.Error.Message, "prompt is too long") {
			t.Fatalf("job = %+v (error %v), want failed with the upstream's reason", j, j.Error)
		}
		if j.Answer != "" || j.FinishedAt == nil {
			t.Fatalf("failed job = %+v", j)
		}
	})
}

func TestCancelRunningJob(t *testing.T) {
	eachEngine(t, func(t *testing.T, e *env) {
		e.fake.SetScript(llmtest.Script{Deltas: llmtest.Deltas(200), Delay: 50 * time.Millisecond})
		in := e.instance(t, true, chat.Options{})
		p := in.user(t, "ann")
		j := in.submit(t, p, "a long answer")
		in.wait(t, p.User.ID, j.ID, 20*time.Second, func(j *Job) bool { return j.State == Running && j.MessageID != "" })
		waitFor(t, "the upstream call", func() bool { r := e.fake.Last(); return r != nil && r.DeltasSent() > 0 })
		got, err := in.jobs.Cancel(context.Background(), p.User.ID, j.ID)
		if err != nil || got.State != Cancelled {
			t.Fatalf("Cancel: %+v, %v", got, err)
		}
		if !e.fake.WaitCancelled(2 * time.Second) {
			t.Fatal("the upstream call went on after the job was cancelled")
		}
		// Cancelled again: the same answer; the job stays cancelled.
		if got, err := in.jobs.Cancel(context.Background(), p.User.ID, j.ID); err != nil || got.State != Cancelled {
			t.Fatalf("second Cancel: %+v, %v", got, err)
		}
		waitFor(t, "the answer to be saved cancelled", func() bool {
			_, msgs, err := in.chat.Conversation(context.Background(), p.User.ID, got.ConversationID)
			return err == nil && len(msgs) == 2 && msgs[1].Status == ferry.StatusCancelled
		})
		time.Sleep(200 * time.Millisecond)
		if j, _ := in.jobs.Get(context.Background(), p.User.ID, j.ID); j.State != Cancelled {
			t.Fatalf("the job's run overwrote its cancellation: %+v", j)
		}
	})
}

func TestCancelFinishedIsConflict(t *testing.T) {
	eachEngine(t, func(t *testing.T, e *env) {
		e.fake.SetScript(llmtest.Script{Deltas: []string{"ok"}})
		in := e.instance(t, true, chat.Options{})
		p := in.user(t, "ann")
		j := in.submit(t, p, "hi")
		in.wait(t, p.User.ID, j.ID, 20*time.Second, final)
		if _, err := in.jobs.Cancel(context.Background(), p.User.ID, j.ID); ferry.ErrorCode(err) != ferry.Conflict {
			t.Fatalf("Cancel of a finished job: %v, want conflict", err)
		}
	})
}

func TestCancelQueuedJobNeverRuns(t *testing.T) {
	eachEngine(t, func(t *testing.T, e *env) {
		submitter := e.instance(t, false, chat.Options{})
		p := submitter.user(t, "ann")
		j := submitter.submit(t, p, "hi")
		if _, err := submitter.jobs.Cancel(context.Background(), p.User.ID, j.ID); err != nil {
			t.Fatal(err)
		}
		runner := e.instance(t, true, chat.Options{})
		time.Sleep(500 * time.Millisecond)
		if got, _ := runner.jobs.Get(context.Background(), p.User.ID, j.ID); got.State != Cancelled || got.StartedAt != nil {
			t.Fatalf("cancelled job = %+v", got)
		}
		if n := len(e.fake.Requests()); n != 0 {
			t.Fatalf("a cancelled job reached the upstream %d times", n)
		}
	})
}

func TestDisabledUserJobFails(t *testing.T) {
	eachEngine(t, func(t *testing.T, e *env) {
		submitter := e.instance(t, false, chat.Options{})
		p := submitter.user(t, "ann")
		j := submitter.submit(t, p, "hi")
		u := *p.User
		u.Disabled = true
		if err := submitter.st.UpdateUser(context.Background(), &u); err != nil {
			t.Fatal(err)
		}
		runner := e.instance(t, true, chat.Options{})
		got := runner.wait(t, p.User.ID, j.ID, 20*time.Second, final)
		if got.State != Failed || got.Error == nil || got.Error.Code != ferry.Unauthorized {
			t.Fatalf("job of a disabled user = %+v", got)
		}
		if n := len(e.fake.Requests()); n != 0 {
			t.Fatalf("a disabled user's job reached the upstream %d times", n)
		}
	})
}

func TestRevokedAPIKeyJobFails(t *testing.T) {
	eachEngine(t, func(t *testing.T, e *env) {
		submitter := e.instance(t, false, chat.Options{})
		p := submitter.user(t, "ann")
		ctx := context.Background()
		for _, id := range []string{"k-kept", "k-revoked"} {
			if err := submitter.st.CreateAPIKey(ctx, &ferry.APIKey{ID: id, UserID: p.User.ID, Name: id, Prefix: id, Hash: "h-" + id}); err != nil {
				t.Fatal(err)
			}
		}
		kept, err := submitter.jobs.Submit(ctx, &ferry.Principal{User: p.User, APIKeyID: "k-kept"}, chat.Request{Message: "hi", Model: model})
		if err != nil {
			t.Fatal(err)
		}
		revoked, err := submitter.jobs.Submit(ctx, &ferry.Principal{User: p.User, APIKeyID: "k-revoked"}, chat.Request{Message: "hi", Model: model})
		if err != nil {
			t.Fatal(err)
		}
		if err := submitter.st.DeleteAPIKey(ctx, p.User.ID, "k-revoked"); err != nil {
			t.Fatal(err)
		}
		runner := e.instance(t, true, chat.Options{})
		if got := runner.wait(t, p.User.ID, kept.ID, 20*time.Second, final); got.State != Succeeded {
			t.Fatalf("job of a live key = %+v", got)
		}
		got := runner.wait(t, p.User.ID, revoked.ID, 20*time.Second, final)
		if got.State != Failed || got.Error == nil || got.Error.Code != ferry.Unauthorized || !strings.Contains(got.Error.Message, "API key") {
			t.Fatalf("job of a revoked key = %+v (%v)", got, got.Error)
		}
		if n := len(e.fake.Requests()); n != 1 {
			t.Fatalf("upstream asked %d times, want 1 (the live key's job)", n)
		}
	})
}

// refuse is an admission hook that refuses the first n calls with a rate
// limit of one second.
func refuse(n int32) (chat.Admit, *atomic.Int32) {
	var calls atomic.Int32
	return func(ctx context.Context, c *chat.Call) (func(*chat.Result), error) {
		if calls.Add(1) <= n {
			return nil, &ferry.Error{Code: ferry.RateLimited, Message: "rate limit: 10 requests a minute", RetryAfter: time.Second}
		}
		return func(*chat.Result) {}, nil
	}, &calls
}

func TestRateLimitedJobWaitsItsTurn(t *testing.T) {
	eachEngine(t, func(t *testing.T, e *env) {
		e.fake.SetScript(llmtest.Script{Deltas: []string{"late"}})
		admit, calls := refuse(2)
		in := e.instance(t, true, chat.Options{Admit: admit})
		p := in.user(t, "ann")
		j := in.submit(t, p, "hi")
		// Refused: back to queued, not failed.
		in.wait(t, p.User.ID, j.ID, 5*time.Second, func(j *Job) bool { return calls.Load() >= 1 && j.State == Queued })
		got := in.wait(t, p.User.ID, j.ID, 20*time.Second, final)
		if got.State != Succeeded || got.Answer != "late" || calls.Load() != 3 {
			t.Fatalf("job = %+v after %d admissions, want succeeded on the third", got, calls.Load())
		}
		if n := len(e.fake.Requests()); n != 1 {
			t.Fatalf("upstream asked %d times, want 1", n)
		}
	})
}

func TestRateLimitedJobGivesUp(t *testing.T) {
	eachEngine(t, func(t *testing.T, e *env) {
		admit, _ := refuse(1000)
		in, closeFn, err := openInstance(context.Background(), e.db, e.fake.AnthropicURL(), true, chat.Options{Admit: admit},
			Options{Heartbeat: 50 * time.Millisecond, MaxWait: 1500 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(closeFn)
		p := in.user(t, "ann")
		j := in.submit(t, p, "hi")
		got := in.wait(t, p.User.ID, j.ID, 20*time.Second, final)
		if got.State != Failed || got.Error == nil || got.Error.Code != ferry.RateLimited ||
			!strings.Contains(got.Error.Message, "10 requests a minute") {
			t.Fatalf("job = %+v (%v), want failed with the rate limit", got, got.Error)
		}
	})
}

// TestAnotherInstanceRunsIt: submitted where no jobs are worked, run by
// another instance on the same database; cancelled from the first while
// the second runs it.
func TestAnotherInstanceRunsIt(t *testing.T) {
	eachEngine(t, func(t *testing.T, e *env) {
		e.fake.SetScript(llmtest.Script{Deltas: []string{"from", " afar"}})
		front := e.instance(t, false, chat.Options{})
		p := front.user(t, "ann")
		j := front.submit(t, p, "hi")
		time.Sleep(300 * time.Millisecond)
		if got, _ := front.jobs.Get(context.Background(), p.User.ID, j.ID); got.State != Queued {
			t.Fatalf("job ran without workers: %+v", got)
		}
		back := e.instance(t, true, chat.Options{})
		got := front.wait(t, p.User.ID, j.ID, 20*time.Second, final)
		if got.State != Succeeded || got.Answer != "from afar" {
			t.Fatalf("job = %+v", got)
		}

		// Cancelled on the front, running on the back: the back's heartbeat
		// notices and ends the call.
		e.fake.SetScript(llmtest.Script{Deltas: llmtest.Deltas(200), Delay: 50 * time.Millisecond})
		j = front.submit(t, p, "long")
		front.wait(t, p.User.ID, j.ID, 20*time.Second, func(j *Job) bool { return j.State == Running && j.MessageID != "" })
		waitFor(t, "the upstream call", func() bool { return len(e.fake.Requests()) == 2 && e.fake.Last().DeltasSent() > 0 })
		if _, err := front.jobs.Cancel(context.Background(), p.User.ID, j.ID); err != nil {
			t.Fatal(err)
		}
		if !e.fake.WaitCancelled(2 * time.Second) {
			t.Fatal("the other instance's upstream call went on after the job was cancelled")
		}
		_ = back
	})
}

// TestKilledRunner: the instance running a job is killed (SIGKILL, no
// clean-up); another instance marks the job failed, interrupted, with the
// answer's text so far in the conversation, and runs the next jobs.
func TestKilledRunner(t *testing.T) {
	eachEngine(t, func(t *testing.T, e *env) {
		e.fake.SetScript(llmtest.Script{Deltas: llmtest.Deltas(400), Delay: 25 * time.Millisecond})
		// The front only submits; the child runs.
		front := e.instance(t, false, chat.Options{})
		p := front.user(t, "ann")
		j := front.submit(t, p, "a long answer")
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "FERRY_JOBS_CHILD=1", "FERRY_JOBS_CHILD_DRIVER="+e.db.Driver,
			"FERRY_JOBS_CHILD_DSN="+e.db.DSN, "FERRY_JOBS_CHILD_URL="+e.fake.AnthropicURL())
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		out := &strings.Builder{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		t.Cleanup(func() { cmd.Process.Kill(); <-exited })
		running := front.wait(t, p.User.ID, j.ID, 30*time.Second, func(j *Job) bool { return j.State == Running && j.MessageID != "" })
		// Killed once part of the answer is saved, as it is every
		// SaveInterval while it streams.
		waitFor(t, "part of the answer to be saved", func() bool {
			_, msgs, err := front.chat.Conversation(context.Background(), p.User.ID, running.ConversationID)
			return err == nil && len(msgs) == 2 && strings.HasPrefix(msgs[1].Content, "tok0 tok1 ")
		})
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-exited

		runner := e.instance(t, true, chat.Options{})
		got := runner.wait(t, p.User.ID, j.ID, 20*time.Second, final)
		if got.State != Failed || got.Error == nil || got.Error.Code != ferry.Unavailable ||
			!strings.Contains(got.Error.Message, "interrupted") {
			t.Fatalf("killed job = %+v (%v), want failed, interrupted", got, got.Error)
		}
		if n := len(e.fake.Requests()); n != 1 {
			t.Fatalf("the upstream was asked %d times; a killed job must not run twice", n)
		}
		// The text saved before the kill stays in the conversation.
		_, msgs, err := runner.chat.Conversation(context.Background(), p.User.ID, got.ConversationID)
		if err != nil || len(msgs) != 2 || !strings.HasPrefix(msgs[1].Content, "tok0 tok1 ") {
			t.Fatalf("conversation after the kill: %+v, %v\nchild:\n%s", msgs, err, out)
		}
		// The new runner works new jobs.
		e.fake.SetScript(llmtest.Script{Deltas: []string{"fine"}})
		j2 := runner.submit(t, p, "still there?")
		if got := runner.wait(t, p.User.ID, j2.ID, 20*time.Second, final); got.State != Succeeded {
			t.Fatalf("next job = %+v", got)
		}
	})
}

func TestMain(m *testing.M) {
	if os.Getenv("FERRY_JOBS_CHILD") == "1" {
		runChild()
		return
	}
	os.Exit(m.Run())
}

// runChild is an instance working jobs until it is killed.
func runChild() {
	db := config.Database{Driver: os.Getenv("FERRY_JOBS_CHILD_DRIVER"), DSN: os.Getenv("FERRY_JOBS_CHILD_DSN")}
	_, _, err := openInstance(context.Background(), db, os.Getenv("FERRY_JOBS_CHILD_URL"), true, chat.Options{}, testOptions)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(1)
	}
	select {}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

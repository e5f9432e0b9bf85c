package chat_test

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/chat"
	"github.com/ferryhq/ferry/config"
	"github.com/ferryhq/ferry/llm"
	"github.com/ferryhq/ferry/llm/anthropic"
	"github.com/ferryhq/ferry/llm/llmtest"
	"github.com/ferryhq/ferry/store"
	"github.com/ferryhq/ferry/store/storetest"
)

// env is a chat service on a real database of one engine, reaching a fake
// Anthropic, with a user.
type env struct {
	svc  *chat.Service
	st   *store.Store
	raw  *sql.DB // the same database, for what no store method reads
	fake *llmtest.Server
	who  *ferry.Principal
}

func newEnv(t *testing.T, engine string, opts chat.Options) *env {
	t.Helper()
	fake := llmtest.Start(t)
	router, err := llm.NewRouter("", anthropic.New(anthropic.Config{APIKey: "sk-ant-test", BaseURL: fake.AnthropicURL()}))
	if err != nil {
		t.Fatal(err)
	}
	d := storetest.Database(t, engine)
	st, err := store.Open(context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	u := &ferry.User{ID: "u-" + engine, Email: engine + "@example.com", PasswordHash: "h", Role: ferry.RoleUser}
	if err := st.CreateUser(context.Background(), u); err != nil {
		t.Fatal(err)
	}
	return &env{svc: chat.NewService(st, router, opts), st: st, raw: rawDB(t, d), fake: fake, who: &ferry.Principal{User: u}}
}

func rawDB(t *testing.T, d config.Database) *sql.DB {
	t.Helper()
	driver, dsn := "pgx", d.DSN
	if d.Driver == "sqlite" {
		driver, dsn = "sqlite", "file:"+d.DSN+"?_pragma=busy_timeout(5000)"
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// stream starts a turn and streams it in the background; first is closed
// with the first delta, and the turn's end comes on done.
func (e *env) stream(t *testing.T, ctx context.Context) (turn *chat.Turn, first chan struct{}, done chan error) {
	t.Helper()
	turn, err := e.svc.Prepare(ctx, e.who, chat.Request{Message: "hi", Model: "claude-sonnet-4-6", Endpoint: "/test"})
	if err != nil {
		t.Fatal(err)
	}
	first, done = make(chan struct{}), make(chan error, 1)
	go func() {
		n := 0
		_, err := turn.Stream(ctx, func(llm.Delta) error {
			if n++; n == 1 {
				close(first)
			}
			return nil
		})
		done <- err
	}()
	return turn, first, done
}

// TestDeletedUsersCallEndsAndItsUsageIsKept checks that deleting a user in
// the middle of their answer ends the call (CancelUser) and keeps its
// usage in the log, with no user, although the answer's row went with the
// user's conversations.
func TestDeletedUsersCallEndsAndItsUsageIsKept(t *testing.T) {
	t.Parallel()
	for _, engine := range storetest.Engines(t) {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, engine, chat.Options{})
			e.fake.SetScript(llmtest.Script{Deltas: llmtest.Deltas(400), Delay: 50 * time.Millisecond})
			_, first, done := e.stream(t, context.Background())
			<-first
			if err := e.st.DeleteUser(context.Background(), e.who.User.ID); err != nil {
				t.Fatal(err)
			}
			if n := e.svc.CancelUser(e.who.User.ID); n != 1 {
				t.Errorf("CancelUser ended %d calls, want 1", n)
			}
			select {
			case err := <-done:
				if ferry.ErrorCode(err) != ferry.Unauthorized {
					t.Errorf("the call ended with %v, want Unauthorized", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the call runs on after CancelUser")
			}
			if !e.fake.WaitCancelled(5 * time.Second) {
				t.Error("the upstream request was not cancelled")
			}
			if err := e.st.Sync(context.Background()); err != nil {
				t.Fatal(err)
			}
			var n, out int
			if err := e.raw.QueryRow(`SELECT COUNT(*), COALESCE(SUM(output_tokens), 0) FROM usage_log
				WHERE user_id IS NULL AND status = 'cancelled'`).Scan(&n, &out); err != nil {
				t.Fatal(err)
			}
			if n != 1 || out == 0 {
				t.Errorf("%d usage entries with no user (%d output tokens), want the deleted user's one", n, out)
			}
		})
	}
}

// TestLiveAnswersStayAlive checks that a model silent for longer than the
// leftover threshold does not get its answer marked interrupted while its
// call runs (Maintain touches it), whereas an answer no process runs is
// marked by Maintain's sweep.
func TestLiveAnswersStayAlive(t *testing.T) {
	t.Parallel()
	for _, engine := range storetest.Engines(t) {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			// Touches every 0.5 s, leftovers after 1.5 s, sweeps every 0.75 s.
			e := newEnv(t, engine, chat.Options{SaveInterval: 50 * time.Millisecond})
			e.fake.SetScript(llmtest.Script{Break: llmtest.Hang, BreakAfter: 0}) // thinks, silently, for ever
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			live, _, done := e.stream(t, ctx)

			// An answer whose process died: written once, then never again.
			t0 := time.Now().UTC()
			conv := &ferry.Conversation{ID: "c-dead", UserID: e.who.User.ID}
			question := &ferry.Message{ID: "m-q", ConversationID: conv.ID, Role: ferry.RoleUserMsg, Content: "are you there?",
				Status: ferry.StatusComplete, CreatedAt: t0}
			dead := &ferry.Message{ID: "m-dead", ConversationID: conv.ID, Role: ferry.RoleAssistant, Content: "I was saying",
				Status: ferry.StatusStreaming, CreatedAt: t0.Add(time.Millisecond)}
			if err := e.st.Submit(store.InsertConversation(conv), store.InsertMessage(question), store.InsertMessage(dead)).Wait(ctx); err != nil {
				t.Fatal(err)
			}

			maintained := make(chan struct{})
			mctx, stop := context.WithCancel(ctx)
			go func() {
				defer close(maintained)
				e.svc.Maintain(mctx)
			}()
			time.Sleep(3 * time.Second)
			stop()
			<-maintained

			msgs, err := e.st.Messages(ctx, conv.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got := msgs[1]; got.Status != ferry.StatusInterrupted || got.Content != "I was saying" ||
				got.OutputTokens != chat.EstimateTokens("I was saying") || got.InputTokens == 0 {
				t.Errorf("the dead process's answer: %s, %q, %d in, %d out; want interrupted with its text and estimates",
					got.Status, got.Content, got.InputTokens, got.OutputTokens)
			}
			msgs, err = e.st.Messages(ctx, live.ConversationID)
			if err != nil {
				t.Fatal(err)
			}
			if got := msgs[1]; got.Status != ferry.StatusStreaming {
				t.Errorf("the live answer of a silent model was marked %s", got.Status)
			}
			cancel()
			<-done
		})
	}
}

// TestStopEndsCallsAndRefusesNew checks the funnel's part of a shutdown:
// Stop ends the calls running with Unavailable and a Retry-After, keeping
// what the model wrote, and refuses calls that start after it.
func TestStopEndsCallsAndRefusesNew(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "sqlite", chat.Options{})
	e.fake.SetScript(llmtest.Script{Deltas: llmtest.Deltas(400), Delay: 50 * time.Millisecond})
	turn, first, done := e.stream(t, context.Background())
	<-first
	e.svc.Stop()
	var err error
	select {
	case err = <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the call runs on after Stop")
	}
	var fe *ferry.Error
	if !errors.As(err, &fe) || fe.Code != ferry.Unavailable || fe.RetryAfter <= 0 {
		t.Errorf("the call ended with %v, want Unavailable with a Retry-After", err)
	}
	if err := e.st.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	msgs, err := e.st.Messages(context.Background(), turn.ConversationID)
	if err != nil {
		t.Fatal(err)
	}
	if got := msgs[1]; got.Status != ferry.StatusCancelled || got.Content == "" {
		t.Errorf("the answer was saved %s: %q; want cancelled with what was written", got.Status, got.Content)
	}
	if _, err := e.svc.Prepare(context.Background(), e.who, chat.Request{Message: "hi", Model: "claude-sonnet-4-6"}); ferry.ErrorCode(err) != ferry.Unavailable {
		t.Errorf("a turn after Stop: %v, want Unavailable", err)
	}
}

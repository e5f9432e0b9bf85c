package store_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/config"
	"github.com/ferryhq/ferry/store"
	"github.com/ferryhq/ferry/store/storetest"
)

var seq atomic.Int64

// id returns an id unique within the test binary.
func id(prefix string) string { return fmt.Sprintf("%s%d", prefix, seq.Add(1)) }

// openDB returns a migrated store on a fresh database of the engine, and
// the database, for tests that reopen it or write to it from outside.
func openDB(tb testing.TB, engine string) (*store.Store, config.Database) {
	tb.Helper()
	d := storetest.Database(tb, engine)
	return migrated(tb, d), d
}

// migrated opens a store on d, closed when the test ends, and migrates it.
func migrated(tb testing.TB, d config.Database) *store.Store {
	tb.Helper()
	s, err := store.Open(ctx, d)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	if err := s.Migrate(ctx); err != nil {
		tb.Fatal(err)
	}
	return s
}

// eachDB is storetest.Each for tests that need the database too.
func eachDB(t *testing.T, fn func(t *testing.T, s *store.Store, d config.Database)) {
	for _, engine := range storetest.Engines(t) {
		t.Run(engine, func(t *testing.T) {
			s, d := openDB(t, engine)
			fn(t, s, d)
		})
	}
}

// rawDB opens d outside the store, set up as the store sets up its writer.
func rawDB(tb testing.TB, d config.Database) *sql.DB {
	tb.Helper()
	var db *sql.DB
	var err error
	if d.Driver == "sqlite" {
		db, err = sql.Open("sqlite", "file:"+d.DSN+"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)"+
			"&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)&_txlock=immediate")
		db.SetMaxOpenConns(1)
	} else {
		db, err = sql.Open("pgx", d.DSN)
		db.SetMaxOpenConns(20)
		db.SetMaxIdleConns(20)
	}
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

// holdWrites stops the store's writer from committing until release is
// called: from outside the store it takes SQLite's write lock, or on
// PostgreSQL locks usage_log, which the writer's first batch must write.
// Submit InsertUsage first to make the writer block.
func holdWrites(t *testing.T, d config.Database) (release func()) {
	t.Helper()
	db := rawDB(t, d)
	tx, err := db.BeginTx(ctx, nil) // BEGIN IMMEDIATE on SQLite
	if err != nil {
		t.Fatal(err)
	}
	if d.Driver == "postgres" {
		if _, err := tx.ExecContext(ctx, "LOCK TABLE usage_log IN ACCESS EXCLUSIVE MODE"); err != nil {
			t.Fatal(err)
		}
	}
	var once sync.Once
	release = func() { once.Do(func() { tx.Rollback() }) }
	t.Cleanup(release)
	return release
}

func newConversation(t testing.TB, s *store.Store, userID string) *ferry.Conversation {
	t.Helper()
	c := &ferry.Conversation{ID: id("c"), UserID: userID, Title: "T"}
	if err := s.Submit(store.InsertConversation(c)).Wait(ctx); err != nil {
		t.Fatal(err)
	}
	return c
}

func message(convID string, role ferry.MessageRole, status ferry.MessageStatus) *ferry.Message {
	return &ferry.Message{ID: id("m"), ConversationID: convID, Role: role, Content: "hi", Status: status}
}

func usage(userID string) *ferry.Usage {
	return &ferry.Usage{ID: id("g"), UserID: userID, Endpoint: "chat", Model: "m", Status: "complete", InputTokens: 3, OutputTokens: 5}
}

func mustMessages(t *testing.T, s *store.Store, convID string) []*ferry.Message {
	t.Helper()
	list, err := s.Messages(ctx, convID)
	if err != nil {
		t.Fatal(err)
	}
	return list
}

func mustUsage(t *testing.T, s *store.Store, userID string) []*ferry.Usage {
	t.Helper()
	list, err := s.UsageFor(ctx, userID)
	if err != nil {
		t.Fatal(err)
	}
	return list
}

// waitAll waits for every pending and fails the test on the first error.
func waitAll(t *testing.T, ps []*store.Pending) {
	t.Helper()
	for i, p := range ps {
		if err := p.Wait(ctx); err != nil {
			t.Fatalf("group %d: %v", i, err)
		}
	}
}

// An insert and a finish of the same message, submitted one after the other
// without waiting, commit in that order: the finish finds its row.
func TestWriterKeepsOrder(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		newUser(t, s, "u1", "a@example.com")
		c := newConversation(t, s, "u1")
		var ps []*store.Pending
		for i := range 200 {
			m := message(c.ID, ferry.RoleAssistant, ferry.StatusStreaming)
			m.Content = ""
			ps = append(ps, s.Submit(store.InsertMessage(m)))
			m.Content, m.Status, m.OutputTokens = fmt.Sprint("answer ", i), ferry.StatusComplete, i
			ps = append(ps, s.Submit(store.FinishMessage(m)))
		}
		waitAll(t, ps)
		list := mustMessages(t, s, c.ID)
		if len(list) != 200 {
			t.Fatalf("%d messages, want 200", len(list))
		}
		for _, m := range list {
			if m.Status != ferry.StatusComplete || m.Content != fmt.Sprint("answer ", m.OutputTokens) {
				t.Fatalf("message not finished: %+v", m)
			}
		}
	})
}

// Many goroutines submitting at once all land, each turn whole.
func TestWriterConcurrentSubmitters(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		newUser(t, s, "u1", "a@example.com")
		const streams, turns = 64, 10
		convs := make([]*ferry.Conversation, streams)
		for i := range convs {
			convs[i] = newConversation(t, s, "u1")
		}
		errs := make(chan error, streams*turns)
		var wg sync.WaitGroup
		for _, c := range convs {
			wg.Go(func() {
				for range turns {
					err := s.Submit(store.InsertMessage(message(c.ID, ferry.RoleUserMsg, ferry.StatusComplete)),
						store.InsertMessage(message(c.ID, ferry.RoleAssistant, ferry.StatusComplete)),
						store.InsertUsage(usage("u1"))).Wait(ctx)
					if err != nil {
						errs <- err
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		for _, c := range convs {
			if n := len(mustMessages(t, s, c.ID)); n != 2*turns {
				t.Fatalf("conversation %s has %d messages, want %d", c.ID, n, 2*turns)
			}
		}
		if n := len(mustUsage(t, s, "u1")); n != streams*turns {
			t.Fatalf("%d usage entries, want %d", n, streams*turns)
		}
		t.Logf("%+v", s.WriteStats())
	})
}

// A group that cannot commit fails alone: the groups batched with it
// commit, and none of its own ops stay.
func TestWriterBadGroupFailsAlone(t *testing.T) {
	eachDB(t, func(t *testing.T, s *store.Store, d config.Database) {
		newUser(t, s, "u1", "a@example.com")
		c := newConversation(t, s, "u1")
		release := holdWrites(t, d)
		// The writer takes this first group and blocks on the lock, so the
		// ones after it queue up and go in one batch.
		first := s.Submit(store.InsertUsage(usage("u1")))
		good1 := message(c.ID, ferry.RoleUserMsg, ferry.StatusComplete)
		orphan := message("no-such-conversation", ferry.RoleUserMsg, ferry.StatusComplete)
		badUsage := usage("u1")
		good2 := message(c.ID, ferry.RoleAssistant, ferry.StatusComplete)
		ps := []*store.Pending{
			s.Submit(store.InsertMessage(good1)),
			s.Submit(store.InsertUsage(badUsage), store.InsertMessage(orphan)),
			s.Submit(store.InsertMessage(good2), store.InsertUsage(usage("u1"))),
		}
		release()
		if err := first.Wait(ctx); err != nil {
			t.Fatal(err)
		}
		if err := ps[0].Wait(ctx); err != nil {
			t.Fatalf("good group before the bad one: %v", err)
		}
		if err := ps[2].Wait(ctx); err != nil {
			t.Fatalf("good group after the bad one: %v", err)
		}
		err := ps[1].Wait(ctx)
		if err == nil || !strings.Contains(err.Error(), orphan.ID) {
			t.Fatalf("bad group: error %v, want one about message %s", err, orphan.ID)
		}
		list := mustMessages(t, s, c.ID)
		if len(list) != 2 || list[0].ID != good1.ID || list[1].ID != good2.ID {
			t.Fatalf("messages = %v", list)
		}
		for _, u := range mustUsage(t, s, "u1") {
			if u.ID == badUsage.ID {
				t.Fatal("the bad group's usage entry was committed without its message")
			}
		}
		if n := len(mustUsage(t, s, "u1")); n != 2 {
			t.Fatalf("%d usage entries, want 2", n)
		}
		if st := s.WriteStats(); st.Splits != 1 || st.Failed != 1 {
			t.Fatalf("stats %+v: want the batch split once and one group failed", st)
		}
	})
}

// A transaction that fails for a transient reason is tried again: here
// PostgreSQL aborts the writer's batch to break a deadlock with another
// transaction, and the retry commits it.
func TestWriterRetriesDeadlock(t *testing.T) {
	s, d := openDB(t, "postgres")
	newUser(t, s, "u1", "a@example.com")
	c := newConversation(t, s, "u1")
	// Warm the writer's connection, so its statements are prepared and the
	// next batch waits for usage_log at execution, after its other writes.
	if err := s.Submit(store.InsertMessage(message(c.ID, ferry.RoleUserMsg, ferry.StatusComplete)),
		store.InsertUsage(usage("u1"))).Wait(ctx); err != nil {
		t.Fatal(err)
	}
	other, err := rawDB(t, d).BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Rollback()
	if _, err := other.ExecContext(ctx, "LOCK TABLE usage_log IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	// The writer touches the conversation, then waits for usage_log ...
	p := s.Submit(store.InsertMessage(message(c.ID, ferry.RoleUserMsg, ferry.StatusComplete)), store.InsertUsage(usage("u1")))
	time.Sleep(200 * time.Millisecond)
	// ... while the other transaction, holding usage_log, waits for the
	// conversation: PostgreSQL aborts the writer, which waited first.
	if _, err := other.ExecContext(ctx, "UPDATE conversations SET title = 'x' WHERE id = $1", c.ID); err != nil {
		t.Fatal(err)
	}
	other.Rollback()
	if err := p.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if st := s.WriteStats(); st.Retries == 0 {
		t.Fatalf("stats %+v: want a retry", st)
	}
	if n := len(mustMessages(t, s, c.ID)); n != 2 {
		t.Fatalf("%d messages, want 2", n)
	}
}

// Close commits everything queued before it closes the database.
func TestWriterCloseDrains(t *testing.T) {
	eachDB(t, func(t *testing.T, s *store.Store, d config.Database) {
		newUser(t, s, "u1", "a@example.com")
		c := newConversation(t, s, "u1")
		release := holdWrites(t, d)
		ps := []*store.Pending{s.Submit(store.InsertUsage(usage("u1")))}
		for range 1000 {
			ps = append(ps, s.Submit(store.InsertMessage(message(c.ID, ferry.RoleUserMsg, ferry.StatusComplete))))
		}
		// Close starts while every write is still held up.
		time.AfterFunc(50*time.Millisecond, release)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		done, cancel := context.WithCancel(ctx)
		cancel() // Wait must answer from what is already known
		for i, p := range ps {
			if err := p.Wait(done); err != nil {
				t.Fatalf("group %d after Close: %v", i, err)
			}
		}
		again, err := store.Open(ctx, d)
		if err != nil {
			t.Fatal(err)
		}
		defer again.Close()
		if n := len(mustMessages(t, again, c.ID)); n != 1000 {
			t.Fatalf("%d messages after reopening, want 1000", n)
		}
	})
}

func TestWriterSubmitAfterClose(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		newUser(t, s, "u1", "a@example.com")
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		// A write nobody will commit must fail, not hang.
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := s.Submit(store.InsertUsage(usage("u1"))).Wait(ctx); !errors.Is(err, store.ErrClosed) {
			t.Fatalf("Submit after Close: %v, want ErrClosed", err)
		}
		c := &ferry.Conversation{ID: id("c"), UserID: "u1"}
		if err := s.StartConversation(ctx, c, message(c.ID, ferry.RoleUserMsg, ferry.StatusComplete)); !errors.Is(err, store.ErrClosed) {
			t.Fatalf("StartConversation after Close: %v, want ErrClosed", err)
		}
		if err := s.Sync(ctx); err != nil {
			t.Fatalf("Sync after Close: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
	})
}

// After Sync, a read sees every write submitted before it.
func TestWriterSync(t *testing.T) {
	eachDB(t, func(t *testing.T, s *store.Store, d config.Database) {
		cancelled, cancel := context.WithCancel(ctx)
		cancel()
		if err := s.Sync(cancelled); err != nil {
			t.Fatalf("Sync with nothing submitted: %v", err)
		}
		newUser(t, s, "u1", "a@example.com")
		c := newConversation(t, s, "u1")
		if err := s.Sync(cancelled); err != nil {
			t.Fatalf("Sync with everything committed: %v", err)
		}

		release := holdWrites(t, d)
		s.Submit(store.InsertUsage(usage("u1")))
		for range 300 {
			s.Submit(store.InsertMessage(message(c.ID, ferry.RoleUserMsg, ferry.StatusComplete)))
		}
		short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		defer cancel()
		if err := s.Sync(short); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Sync while writes are held: %v, want DeadlineExceeded", err)
		}
		time.AfterFunc(50*time.Millisecond, release)
		if err := s.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		if n := len(mustMessages(t, s, c.ID)); n != 300 {
			t.Fatalf("%d messages after Sync, want 300", n)
		}
	})
}

// An answer's row is written when its stream starts and finished when it
// ends; the finish keeps the values it was built with.
func TestWriterStreamingMessage(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		newUser(t, s, "u1", "a@example.com")
		start := time.Now().UTC().Add(-time.Minute)
		c := &ferry.Conversation{ID: id("c"), UserID: "u1", Title: "T", CreatedAt: start, UpdatedAt: start}
		user := &ferry.Message{ID: id("m"), ConversationID: c.ID, Role: ferry.RoleUserMsg, Content: "q", Status: ferry.StatusComplete, CreatedAt: start}
		answer := &ferry.Message{ID: id("m"), ConversationID: c.ID, Role: ferry.RoleAssistant, Model: "m1", Provider: "p",
			Status: ferry.StatusStreaming, CreatedAt: start.Add(time.Microsecond)}
		if err := s.Submit(store.InsertConversation(c), store.InsertMessage(user), store.InsertMessage(answer)).Wait(ctx); err != nil {
			t.Fatal(err)
		}
		list := mustMessages(t, s, c.ID)
		if len(list) != 2 || list[1].Status != ferry.StatusStreaming || list[1].Content != "" {
			t.Fatalf("messages after start: %+v", list)
		}

		done := *answer
		done.Content, done.Model, done.InputTokens, done.OutputTokens = "hello", "m1-2025", 7, 11
		done.StopReason, done.Status, done.Error, done.LatencyMS, done.FirstTokenMS = "end_turn", ferry.StatusInterrupted, "cut", 900, 120
		p := s.Submit(store.FinishMessage(&done))
		done.Content = "changed after Submit" // must not reach the database
		if err := p.Wait(ctx); err != nil {
			t.Fatal(err)
		}
		got := mustMessages(t, s, c.ID)[1]
		want := done
		want.Content, want.CreatedAt = "hello", got.CreatedAt
		if *got != want {
			t.Fatalf("finished message\n got %+v\nwant %+v", *got, want)
		}
		conv, err := s.Conversation(ctx, "u1", c.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !conv.UpdatedAt.After(start.Add(time.Second)) {
			t.Fatalf("conversation updated_at %v not moved on by the finish (started %v)", conv.UpdatedAt, start)
		}

		err = s.Submit(store.FinishMessage(&ferry.Message{ID: "no-such-message", Status: ferry.StatusComplete})).Wait(ctx)
		wantCode(t, err, ferry.NotFound)
		if err := s.Submit(store.Op{}).Wait(ctx); err == nil {
			t.Fatal("Submit of an Op{} succeeded")
		}
	})
}

// The older methods keep their behaviour on top of the writer.
func TestConversationWrites(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		newUser(t, s, "u1", "a@example.com")
		c := &ferry.Conversation{ID: id("c"), UserID: "u1", Title: "T"}
		first := message(c.ID, ferry.RoleUserMsg, ferry.StatusComplete)
		if err := s.StartConversation(ctx, c, first); err != nil {
			t.Fatal(err)
		}
		if c.CreatedAt.IsZero() || !first.CreatedAt.Equal(c.CreatedAt) {
			t.Fatalf("timestamps not set: %v %v", c.CreatedAt, first.CreatedAt)
		}
		answer := message(c.ID, ferry.RoleAssistant, ferry.StatusComplete)
		if err := s.AddMessage(ctx, answer, usage("u1")); err != nil {
			t.Fatal(err)
		}
		if err := s.LogUsage(ctx, usage("u1")); err != nil {
			t.Fatal(err)
		}
		orphan := message("no-such-conversation", ferry.RoleAssistant, ferry.StatusComplete)
		if err := s.AddMessage(ctx, orphan, usage("u1")); err == nil {
			t.Fatal("AddMessage to no conversation succeeded")
		}
		if n := len(mustMessages(t, s, c.ID)); n != 2 {
			t.Fatalf("%d messages, want 2", n)
		}
		if n := len(mustUsage(t, s, "u1")); n != 2 {
			t.Fatalf("%d usage entries, want 2 (the failed AddMessage's must not stay)", n)
		}
		conv, _ := s.Conversation(ctx, "u1", c.ID)
		if conv.UpdatedAt.Sub(answer.CreatedAt).Abs() >= time.Microsecond {
			t.Fatalf("conversation updated_at %v, want the last message's %v", conv.UpdatedAt, answer.CreatedAt)
		}
		// The messages table rebuilt by migration 0003 still cascades.
		if err := s.DeleteConversation(ctx, "u1", c.ID); err != nil {
			t.Fatal(err)
		}
		if n := len(mustMessages(t, s, c.ID)); n != 0 {
			t.Fatalf("%d messages left after deleting their conversation", n)
		}
	})
}

// BenchmarkTurnWrites measures one chat turn's writes (the user's message,
// then the answer with its usage entry, each waited for) from 64 streams at
// once: "direct" commits each write in its own transaction as AddMessage
// did before the writer; "writer" goes through Submit.
func BenchmarkTurnWrites(b *testing.B) {
	for _, engine := range storetest.Engines(b) {
		b.Run(engine+"/direct", func(b *testing.B) {
			s, d := openDB(b, engine)
			db := rawDB(b, d)
			benchTurns(b, s, func(c *ferry.Conversation) error {
				user, answer, u := turn(c)
				if err := directAdd(db, user, nil); err != nil {
					return err
				}
				return directAdd(db, answer, u)
			})
		})
		b.Run(engine+"/writer", func(b *testing.B) {
			s, _ := openDB(b, engine)
			benchTurns(b, s, func(c *ferry.Conversation) error {
				user, answer, u := turn(c)
				if err := s.Submit(store.InsertMessage(user)).Wait(ctx); err != nil {
					return err
				}
				return s.Submit(store.InsertMessage(answer), store.InsertUsage(u)).Wait(ctx)
			})
		})
	}
}

const benchStreams = 64

// benchTurns runs turn from benchStreams goroutines, each on a conversation
// of its own, and reports the mean time one turn's writes took.
func benchTurns(b *testing.B, s *store.Store, turn func(*ferry.Conversation) error) {
	if err := s.CreateUser(ctx, &ferry.User{ID: "u1", Email: "a@example.com", PasswordHash: "h", Role: ferry.RoleUser}); err != nil {
		b.Fatal(err)
	}
	procs := runtime.GOMAXPROCS(0)
	par := (benchStreams + procs - 1) / procs
	convs := make([]*ferry.Conversation, par*procs)
	for i := range convs {
		convs[i] = newConversation(b, s, "u1")
	}
	var next atomic.Int64
	var spent atomic.Int64
	b.SetParallelism(par)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c := convs[next.Add(1)-1]
		for pb.Next() {
			start := time.Now()
			if err := turn(c); err != nil {
				b.Error(err)
				return
			}
			spent.Add(int64(time.Since(start)))
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(spent.Load())/float64(b.N)/1e3, "turn-µs")
}

func turn(c *ferry.Conversation) (user, answer *ferry.Message, u *ferry.Usage) {
	now := time.Now().UTC()
	user = message(c.ID, ferry.RoleUserMsg, ferry.StatusComplete)
	answer = message(c.ID, ferry.RoleAssistant, ferry.StatusComplete)
	user.CreatedAt, answer.CreatedAt = now, now.Add(time.Microsecond)
	return user, answer, usage(c.UserID)
}

// directAdd is AddMessage as it was before the writer: its own transaction.
func directAdd(db *sql.DB, m *ferry.Message, u *ferry.Usage) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `INSERT INTO messages (id, conversation_id, role, content, model, provider,
		input_tokens, output_tokens, stop_reason, status, error, latency_ms, first_token_ms, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`,
		m.ID, m.ConversationID, m.Role, m.Content, m.Model, m.Provider, m.InputTokens, m.OutputTokens,
		m.StopReason, m.Status, m.Error, m.LatencyMS, m.FirstTokenMS, m.CreatedAt); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE conversations SET updated_at = $1 WHERE id = $2`, m.CreatedAt, m.ConversationID); err != nil {
		return err
	}
	if u != nil {
		if _, err := tx.ExecContext(ctx, `INSERT INTO usage_log (id, user_id, api_key_id, endpoint, model, provider,
			input_tokens, output_tokens, latency_ms, status, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
			u.ID, u.UserID, u.APIKeyID, u.Endpoint, u.Model, u.Provider, u.InputTokens, u.OutputTokens, u.LatencyMS,
			u.Status, time.Now().UTC()); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// SubmitLater groups wait for company: several of them, and a Submit group
// that follows, share one commit, and each of Sync and a Submit group's
// Wait commits them without waiting out lateLinger.
func TestWriterSubmitLater(t *testing.T) {
	eachDB(t, func(t *testing.T, s *store.Store, d config.Database) {
		newUser(t, s, "u1", "a@example.com")
		c := newConversation(t, s, "u1")
		if err := s.Sync(ctx); err != nil {
			t.Fatal(err)
		}

		// A SubmitLater group's own Wait does not hurry it, so groups
		// submitted a millisecond apart, and the Submit group after them,
		// commit together once someone needs them. (A round that a busy
		// machine stretched past half of lateLinger, 10 ms, is run again.)
		for round := 1; ; round++ {
			before := s.WriteStats().Commits
			start := time.Now()
			var late []*store.Pending
			for range 3 {
				late = append(late, s.SubmitLater(nil, store.InsertUsage(usage("u1"))))
				go late[len(late)-1].Wait(ctx)
				time.Sleep(time.Millisecond)
			}
			soon := s.Submit(store.InsertMessage(message(c.ID, ferry.RoleUserMsg, ferry.StatusComplete)))
			took := time.Since(start)
			if err := soon.Wait(ctx); err != nil {
				t.Fatal(err)
			}
			waitAll(t, late)
			if took > 5*time.Millisecond && round < 10 {
				continue
			}
			if n := s.WriteStats().Commits - before; n != 1 {
				t.Fatalf("%d commits for three SubmitLater groups and a Submit group, want 1", n)
			}
			break
		}

		// Sync commits a SubmitLater group at once: it is read back.
		s.SubmitLater(nil, store.InsertUsage(usage("u1")))
		start := time.Now()
		if err := s.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		if n := len(mustUsage(t, s, "u1")); n%3 != 1 {
			t.Fatalf("%d usage entries after Sync, want 3 a round and 1", n)
		}
		t.Logf("Sync of a SubmitLater group took %v", time.Since(start))

		// Unhurried, a SubmitLater group still commits by itself.
		if err := s.SubmitLater(nil, store.InsertUsage(usage("u1"))).Wait(ctx); err != nil {
			t.Fatal(err)
		}

		// Nobody need wait for a SubmitLater group, so its failure is told
		// to failed, once; a success is not.
		var told []error
		var mu sync.Mutex
		failed := func(err error) {
			mu.Lock()
			defer mu.Unlock()
			told = append(told, err)
		}
		s.SubmitLater(failed, store.Op{}) // refused at once
		s.SubmitLater(failed, store.FinishMessage(&ferry.Message{ID: "no-such-message", Status: ferry.StatusComplete}))
		s.SubmitLater(failed, store.InsertUsage(usage("u1")))
		if err := s.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(told) != 2 {
			t.Fatalf("failed was told %v, want the Op{}'s error and the missing message's", told)
		}
		wantCode(t, told[1], ferry.NotFound)
	})
}

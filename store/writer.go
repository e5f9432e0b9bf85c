package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// The writer commits chat writes (conversations, messages, usage) off the
// callers' goroutines: one goroutine takes everything queued and commits it
// in one transaction, so 64 streams finishing together cost one commit, not
// 64 queued on SQLite's single write connection.
const (
	// maxBatchOps bounds one transaction; a Submit group larger than this
	// still commits whole, alone.
	maxBatchOps = 256
	// lateLinger is how long a queue of SubmitLater groups only may wait
	// for company: at low concurrency the writes of several calls that
	// ended one after another share a commit, and a finished call's writes
	// ride along with the next call's first ones. A Submit group does not
	// wait: a turn's first rows are then committed while the model is still
	// answering, not in the middle of its stream, and under load the groups
	// that queue during one commit share the next.
	lateLinger = 10 * time.Millisecond
	// maxAttempts is how often a transaction that failed for a transient
	// reason (SQLITE_BUSY, a lost connection, a serialization failure) is
	// tried before its groups fail.
	maxAttempts = 4
	// firstBackoff is the pause before the first retry; it doubles.
	firstBackoff = 20 * time.Millisecond
	// attemptTimeout bounds one PostgreSQL transaction, so a database that
	// stopped answering fails the writes queued behind it instead of holding them
	// (and Close) forever.
	attemptTimeout = 30 * time.Second
)

// ErrClosed is the error of writes submitted after Close.
var ErrClosed = errors.New("store: closed")

// Pending is a submitted group of writes on its way to the database.
type Pending struct {
	done chan struct{}
	err  error   // set before done is closed
	w    *writer // to hasten while someone waits; nil when done at once
	late bool    // SubmitLater's: waiting on it does not hasten the writer

	taken  bool        // in a batch, committing or done; guarded by the writer's mu
	failed func(error) // SubmitLater's, told of a failure
}

func (p *Pending) complete(err error) {
	p.err = err
	close(p.done)
	if err != nil && p.failed != nil {
		p.failed(err)
	}
}

// Wait returns nil once the group is committed, or the error it failed
// with for good (wrapping the database's; a *ferry.Error NotFound for a
// FinishMessage of no message, ErrClosed after Close). ctx bounds only the
// wait: a group whose Wait gave up is still committed in its turn.
func (p *Pending) Wait(ctx context.Context) error {
	// A finished group answers even under a cancelled ctx.
	select {
	case <-p.done:
		return p.err
	default:
	}
	if !p.late {
		p.w.hasten(p)
	}
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Done is closed when the group is committed or has failed for good;
// Wait then answers at once.
func (p *Pending) Done() <-chan struct{} { return p.done }

// group is one Submit: its ops commit together or not at all.
type group struct {
	ops []Op
	p   *Pending
}

// writer is the Store's queue of groups and the goroutine that commits it.
type writer struct {
	db *sql.DB
	pg bool // PostgreSQL: batches go as one pipeline

	mu     sync.Mutex
	queue  []*group
	soon   int      // groups in queue submitted by Submit, not SubmitLater
	last   *Pending // the latest group submitted, for Sync
	closed bool

	wake    chan struct{} // a token when the queue may have grown
	hurry   chan struct{} // a token when someone waits: stop lingering
	urge    chan struct{} // a token when a Submit group joins a queue of SubmitLater ones
	stopped chan struct{} // closed when the goroutine has drained and exited

	// Used by the writer goroutine only, on SQLite; prepared on its first
	// batch, since the tables may not exist before Migrate.
	stmts [stmtCount]*sql.Stmt

	stats struct{ commits, groups, failed, splits, retries atomic.Int64 }
	ckpt  *checkpointer // told of commits; nil on PostgreSQL
}

func newWriter(db *sql.DB, driver string, ckpt *checkpointer) *writer {
	w := &writer{db: db, pg: driver == "postgres", ckpt: ckpt, wake: make(chan struct{}, 1), hurry: make(chan struct{}, 1), urge: make(chan struct{}, 1), stopped: make(chan struct{})}
	go w.run()
	return w
}

// Submit queues ops to be committed together, in one transaction, after
// everything submitted before. It never waits for the database; the
// returned Pending says when the ops are committed or have failed. After
// Close the Pending fails with ErrClosed, and with an Op{} (one not built
// by the constructors) at once. Submit with no ops returns a Pending that
// has already succeeded.
func (s *Store) Submit(ops ...Op) *Pending {
	return s.submit(false, nil, ops)
}

// SubmitLater queues ops as Submit does, for writes nobody reads back at
// once (a finished call's answer and usage entry): they may wait up to
// lateLinger for other writes to share their commit, and a Wait on the
// returned Pending does not hurry them; Sync, a Submit group or Close do.
// Since nobody need wait for them, failed (when not nil) is told of a
// failure: it is called on the writer's goroutine, or on the caller's for
// a group refused at once, and must not block.
func (s *Store) SubmitLater(failed func(error), ops ...Op) *Pending {
	return s.submit(true, failed, ops)
}

func (s *Store) submit(late bool, failed func(error), ops []Op) *Pending {
	p := &Pending{done: make(chan struct{}), late: late, failed: failed}
	if len(ops) == 0 {
		p.complete(nil)
		return p
	}
	for _, op := range ops {
		if op.kind == 0 {
			p.complete(errors.New("store: an Op not built by its constructors"))
			return p
		}
	}
	w := s.w
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		p.complete(ErrClosed)
		return p
	}
	// The caller may reuse its slice once Submit returns.
	p.w = w
	w.queue = append(w.queue, &group{ops: slices.Clone(ops), p: p})
	w.last = p
	if !late {
		w.soon++
	}
	if !late && w.soon == 1 {
		// Under mu, as hasten's token: sent after next took this group,
		// it would end a later linger for nothing.
		select {
		case w.urge <- struct{}{}:
		default:
		}
	}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default: // a token is already there
	}
	return p
}

// Sync waits until everything submitted before the call has been committed
// (or has failed for good; that is the submitter's to hear), so a read that
// follows sees it. It returns at once when nothing is queued or in flight,
// and ctx's error if ctx ends first.
func (s *Store) Sync(ctx context.Context) error {
	s.w.mu.Lock()
	p := s.w.last
	s.w.mu.Unlock()
	if p == nil {
		return nil
	}
	// Groups complete in submission order, so the last one done means all
	// are; its own error is not the caller's.
	select {
	case <-p.done:
		return nil
	default:
	}
	s.w.hasten(p)
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// WriteStats counts what the writer has done since Open.
type WriteStats struct {
	Commits int64 // transactions committed
	Groups  int64 // Submit groups completed, committed or failed
	Failed  int64 // groups that failed for good
	Splits  int64 // batches that failed and were run again group by group
	Retries int64 // transactions tried again after a transient failure
	// CaughtUp counts SQLite's checkpoints that copied the whole WAL into
	// the database file, so that the next commit starts the WAL over.
	CaughtUp int64
}

// WriteStats returns the writer's counters.
func (s *Store) WriteStats() WriteStats {
	st := &s.w.stats
	return WriteStats{Commits: st.commits.Load(), Groups: st.groups.Load(), Failed: st.failed.Load(),
		Splits: st.splits.Load(), Retries: st.retries.Load(), CaughtUp: s.ckpt.caughtUp()}
}

// close stops taking writes, commits everything queued, and waits for the
// goroutine to exit. It is safe to call more than once.
func (w *writer) close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	w.hasten(nil)
	<-w.stopped
}

// hasten ends the writer's linger: someone waits for p (nil: for all of the
// queue). Once p is in a batch there is nothing to hurry, and a token left
// then would cut a later linger short for writes nobody waits for, so the
// check and the token are one step under mu, the lock next takes a batch
// and drains stale tokens under.
func (w *writer) hasten(p *Pending) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if p != nil && p.taken {
		return
	}
	select {
	case w.hurry <- struct{}{}:
	default:
	}
}

// run commits batches until the writer is closed and its queue empty.
func (w *writer) run() {
	defer close(w.stopped)
	defer w.closeStmts()
	for {
		batch, ok := w.next()
		if !ok {
			return
		}
		w.commit(batch)
		// After the batch's groups are complete, so that a checkpoint
		// the writer runs itself keeps nobody waiting for them.
		w.ckpt.committed()
	}
}

// next waits for work and takes the groups at the head of the queue, up to
// maxBatchOps ops (at least one group). It reports false when the writer is
// closed and nothing is left.
func (w *writer) next() ([]*group, bool) {
	w.mu.Lock()
	for len(w.queue) == 0 {
		if w.closed {
			w.mu.Unlock()
			return nil, false
		}
		w.mu.Unlock()
		<-w.wake
		w.mu.Lock()
	}
	if !w.closed && len(w.queue) < 8 && w.soon == 0 {
		// No Submit group is queued, so a token here was left by one
		// committed earlier; taken under the lock, it cannot be a new one's.
		select {
		case <-w.urge:
		default:
		}
		w.mu.Unlock()
		w.linger()
		w.mu.Lock()
	}
	n, ops := 0, 0
	for n < len(w.queue) && (n == 0 || ops+len(w.queue[n].ops) <= maxBatchOps) {
		ops += len(w.queue[n].ops)
		if !w.queue[n].p.late {
			w.soon--
		}
		w.queue[n].p.taken = true
		n++
	}
	batch := make([]*group, n)
	copy(batch, w.queue)
	clear(w.queue[:n])
	w.queue = w.queue[n:]
	if len(w.queue) == 0 {
		w.queue = nil // let the drained backing array go
		// Whoever hastened waits for a group of this batch: a token left
		// over would cut the next linger short for nothing.
		select {
		case <-w.hurry:
		default:
		}
	}
	w.mu.Unlock()
	return batch, true
}

// linger waits up to lateLinger for company for a short queue of
// SubmitLater groups. A Submit group joining it (urge) or someone waiting
// (hasten) ends it.
func (w *writer) linger() {
	t := time.NewTimer(lateLinger)
	defer t.Stop()
	select {
	case <-t.C:
	case <-w.hurry:
	case <-w.urge:
	}
}

// commit runs batch in one transaction and completes its groups. When the
// batch fails for a reason that is not the database being unavailable, each
// group runs again alone, so one bad group (a foreign key that points
// nowhere) fails only itself.
func (w *writer) commit(batch []*group) {
	err := w.attempt(batch)
	if err == nil {
		w.done(batch, nil)
		return
	}
	if len(batch) == 1 || unavailable(err) {
		w.done(batch, err)
		return
	}
	w.stats.splits.Add(1)
	for _, g := range batch {
		one := []*group{g}
		w.done(one, w.attempt(one))
	}
}

func (w *writer) done(groups []*group, err error) {
	if err != nil {
		err = fmt.Errorf("store: write failed: %w", err)
		w.stats.failed.Add(int64(len(groups)))
	}
	w.stats.groups.Add(int64(len(groups)))
	for _, g := range groups {
		g.p.complete(err)
	}
}

// attempt runs groups in one transaction, trying again with a short backoff
// while it fails for a transient reason. A commit whose answer was lost
// with the connection may have landed; its retry then fails on duplicate
// keys and the groups report an error although their rows are there. That
// is rare, and a false failure is safer than writing a turn twice.
func (w *writer) attempt(groups []*group) error {
	backoff := firstBackoff
	for i := 1; ; i++ {
		err := w.tx(groups)
		if err == nil {
			w.stats.commits.Add(1)
			return nil
		}
		if i == maxAttempts || !transient(err) {
			return err
		}
		w.stats.retries.Add(1)
		time.Sleep(backoff)
		backoff *= 2
	}
}

// tx runs groups in one transaction: on PostgreSQL as one pipeline (see
// pipeline), elsewhere statement by statement.
func (w *writer) tx(groups []*group) error {
	var steps []step
	for _, g := range groups {
		for _, op := range g.ops {
			steps = op.appendSteps(steps)
		}
	}
	steps = foldTouches(steps)
	if w.pg {
		ctx, cancel := context.WithTimeout(context.Background(), attemptTimeout)
		defer cancel()
		return w.pipeline(ctx, steps)
	}
	// SQLite runs in this process: its lock waits are bounded by
	// busy_timeout, and a context that can end would cost each statement a
	// watcher goroutine and a progress callback in the driver, and the
	// transaction one in database/sql.
	ctx := context.Background()
	if err := w.prepare(ctx); err != nil {
		return err
	}
	tx, err := w.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, st := range steps {
		res, err := tx.StmtContext(ctx, w.stmts[st.stmt]).ExecContext(ctx, st.args...)
		var n int64
		if err == nil && st.one {
			n, err = res.RowsAffected()
		}
		if err := st.check(n, err); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// pipeline runs steps in one PostgreSQL transaction, sent as one batch:
// statement by statement, a batch of 256 writes would wait out 256 round
// trips on the writer's one connection. pgx prepares each statement once
// per connection and keeps it (its statement cache), so this is the
// PostgreSQL form of the writer's prepared statements.
func (w *writer) pipeline(ctx context.Context, steps []step) error {
	conn, err := w.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.Raw(func(dc any) error {
		tx, err := dc.(*stdlib.Conn).Conn().Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(ctx)
		b := &pgx.Batch{QueuedQueries: make([]*pgx.QueuedQuery, 0, len(steps))}
		for _, st := range steps {
			b.Queue(writerSQL[st.stmt], st.args...)
		}
		br := tx.SendBatch(ctx, b)
		for _, st := range steps {
			ct, err := br.Exec()
			if err := st.check(ct.RowsAffected(), err); err != nil {
				br.Close()
				return err
			}
		}
		if err := br.Close(); err != nil {
			return err
		}
		return tx.Commit(ctx)
	})
}

// prepare prepares the writer's statements with database/sql unless they
// are ready. A failure (tables not migrated yet) leaves them unprepared for
// the next batch.
func (w *writer) prepare(ctx context.Context) error {
	if w.stmts[stmtCount-1] != nil {
		return nil
	}
	for i, q := range writerSQL {
		st, err := w.db.PrepareContext(ctx, q)
		if err != nil {
			w.closeStmts()
			return fmt.Errorf("prepare writes: %w", err)
		}
		w.stmts[i] = st
	}
	return nil
}

func (w *writer) closeStmts() {
	for i, st := range w.stmts {
		if st != nil {
			st.Close()
			w.stmts[i] = nil
		}
	}
}

// transient reports whether err may pass if the transaction is tried again:
// SQLite busy or locked, a lost or refused connection, a PostgreSQL
// serialization failure, deadlock or server restart.
func transient(err error) bool {
	var lite *sqlite.Error
	if errors.As(err, &lite) {
		c := lite.Code() & 0xff
		return c == sqlite3.SQLITE_BUSY || c == sqlite3.SQLITE_LOCKED
	}
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		switch {
		case strings.HasPrefix(pg.Code, "40"), strings.HasPrefix(pg.Code, "08"):
			// transaction rollback (serialization, deadlock), connection exception
			return true
		case pg.Code == "57P01", pg.Code == "57P02", pg.Code == "57P03", pg.Code == "53300":
			// admin or crash shutdown, cannot connect now, too many connections
			return true
		}
		return false
	}
	var netErr net.Error
	return errors.Is(err, driver.ErrBadConn) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.As(err, &netErr) || pgconn.SafeToRetry(err)
}

// unavailable reports whether err is about the database rather than one
// group's data, so running the groups one by one would only repeat it.
func unavailable(err error) bool {
	return transient(err) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, sql.ErrConnDone)
}

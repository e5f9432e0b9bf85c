package store

import (
	"context"
	"database/sql"
	"sync"
	"sync/atomic"
	"time"
)

// SQLite's WAL grows with every commit until a checkpoint copies its pages
// back into the database file. Left to SQLite, the commit that crosses
// 1,000 pages does it, with two fsyncs, while every write queued behind it
// (and every stream waiting to send done) waits: milliseconds, on about one
// commit in seventy. Here the write connection does not checkpoint by
// itself (wal_autocheckpoint(0)); a goroutine of its own does, on a reader
// connection, in PASSIVE mode, which blocks neither the writer nor a
// reader.
//
// A checkpoint beside a busy writer may never catch up with it, and the WAL
// starts over only once one has: after checkpointStarved commits without
// that, the writer checkpoints itself between two batches, as SQLite
// would, so the WAL stays bounded under any load.
const (
	// checkpointCommits is how many of the writer's commits prompt a
	// checkpoint: a chat turn's commit writes about fifteen pages, so this
	// is about SQLite's own 1,000.
	checkpointCommits = 64
	// checkpointEvery bounds the wait for writes that do not go through
	// the writer (accounts, jobs, migrations).
	checkpointEvery = time.Second
	// checkpointStarved is how many commits the writer lets pass without
	// a checkpoint that caught up before it runs one itself.
	checkpointStarved = 16 * checkpointCommits
)

// checkpointer runs SQLite's checkpoints (see above).
type checkpointer struct {
	db     *sql.DB       // a reader pool, where checkpoints run
	write  *sql.DB       // the write pool, where a starved one runs
	behind atomic.Int64  // the writer's commits since a checkpoint caught up
	caught atomic.Int64  // checkpoints that caught up
	poke   chan struct{} // a token: the writer has committed checkpointCommits more
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once
}

func newCheckpointer(readers, write *sql.DB) *checkpointer {
	c := &checkpointer{db: readers, write: write, poke: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go c.run()
	return c
}

func (c *checkpointer) run() {
	defer close(c.done)
	t := time.NewTicker(checkpointEvery)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		case <-c.poke:
		}
		// A checkpoint that fails (the disk is full) leaves the WAL as it
		// is; the next one tries again, and the commits go on meanwhile.
		c.checkpoint(context.Background(), c.db)
	}
}

// checkpoint runs a PASSIVE checkpoint on db and notes whether it caught
// up with the WAL: then the next commit starts the WAL over.
func (c *checkpointer) checkpoint(ctx context.Context, db *sql.DB) {
	var busy, frames, copied int
	if err := db.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &frames, &copied); err == nil && copied == frames {
		c.behind.Store(0)
		c.caught.Add(1)
	}
}

// caughtUp is how many checkpoints caught up with the WAL. Nil-safe.
func (c *checkpointer) caughtUp() int64 {
	if c == nil {
		return 0
	}
	return c.caught.Load()
}

// committed notes one of the writer's batches (a commit; after a failure,
// several); when the checkpoints are starved, it checkpoints on the write
// pool. The writer's goroutine calls it between batches, once
// their groups are complete. Nil-safe: PostgreSQL has no checkpointer.
func (c *checkpointer) committed() {
	if c == nil {
		return
	}
	n := c.behind.Add(1)
	if n%checkpointCommits == 0 {
		select {
		case c.poke <- struct{}{}:
		default:
		}
	}
	if n >= checkpointStarved && n%checkpointCommits == 0 {
		// Every checkpointCommits, not every commit, while a reader that
		// holds an old snapshot keeps even this one from catching up.
		c.checkpoint(context.Background(), c.write)
	}
}

// close stops the goroutine; the last connection to close checkpoints what
// is left. Safe to call more than once.
func (c *checkpointer) close() {
	if c == nil {
		return
	}
	c.once.Do(func() { close(c.stop) })
	<-c.done
}

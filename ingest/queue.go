package ingest

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverdatabasesql"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"
	"github.com/riverqueue/river/rivertype"

	"github.com/ferryhq/ferry/config"
	"github.com/ferryhq/ferry/store"
)

// The job queue is River on both engines. Its tables live in the Store's
// database (rivermigrate creates them at start), so a job is inserted in
// the same transaction as the document it is for, and any instance works
// it. On SQLite one client (riversqlite, over the Store's single writer
// connection, so that River's writes queue behind the Store's instead of
// failing with SQLITE_BUSY) both inserts and works, polling. On
// PostgreSQL the workers run on riverpgxv5 over a pgx pool of their own,
// woken by LISTEN/NOTIFY; inserts go through riverdatabasesql, since the
// Store's transactions are database/sql ones.

// queue is the River side of a Service.
type queue struct {
	// insert adds jobs inside a Store transaction.
	insert *river.Client[*sql.Tx]
	// start and stop run and stop the workers.
	start func(context.Context) error
	stop  func(context.Context) error
	// cancel stops the workers without waiting for running jobs.
	cancel func(context.Context) error
	// close releases what the queue opened (the pgx pool).
	close func()
}

// migrationLockID is the PostgreSQL advisory lock under which River's
// migrations run, so that two instances starting together do not both
// create its tables.
const migrationLockID = 0x6665727279 + 1

// newQueue runs River's migrations on the Store's database and returns the
// clients that insert and work jobs with workers.
func newQueue(ctx context.Context, st *store.Store, db config.Database, workers *river.Workers, opts Options,
	log *slog.Logger) (*queue, error) {
	cfg := &river.Config{
		Queues:               map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: opts.Workers}},
		Workers:              workers,
		MaxAttempts:          opts.MaxAttempts,
		RetryPolicy:          retryPolicy{base: opts.RetryDelay},
		JobTimeout:           opts.JobTimeout,
		RescueStuckJobsAfter: opts.JobTimeout + time.Minute,
		FetchPollInterval:    opts.PollInterval,
		FetchCooldown:        min(opts.PollInterval, 100*time.Millisecond),
		Logger:               log,
		// Finished jobs are kept a day for inspection, then deleted.
		CompletedJobRetentionPeriod: 24 * time.Hour,
	}
	for name, qc := range opts.Queues {
		cfg.Queues[name] = qc
	}
	if st.Driver() != "postgres" {
		driver := riversqlite.New(st.Writer())
		if err := migrate(ctx, driver); err != nil {
			return nil, err
		}
		// SQLite has no LISTEN/NOTIFY: workers poll.
		cfg.PollOnly = true
		client, err := river.NewClient(driver, cfg)
		if err != nil {
			return nil, fmt.Errorf("ingest: job queue: %w", err)
		}
		return &queue{insert: client, start: client.Start, stop: client.Stop, cancel: client.StopAndCancel,
			close: func() {}}, nil
	}
	pool, err := pgxpool.New(ctx, db.DSN)
	if err != nil {
		return nil, fmt.Errorf("ingest: job queue: connect to PostgreSQL: %w", err)
	}
	driver := riverpgxv5.New(pool)
	if err := migratePostgres(ctx, pool, driver); err != nil {
		pool.Close()
		return nil, err
	}
	work, err := river.NewClient(driver, cfg)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("ingest: job queue: %w", err)
	}
	insert, err := river.NewClient(riverdatabasesql.New(st.Writer()), &river.Config{MaxAttempts: opts.MaxAttempts,
		Logger: log})
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("ingest: job queue: %w", err)
	}
	return &queue{insert: insert, start: work.Start, stop: work.Stop, cancel: work.StopAndCancel, close: pool.Close}, nil
}

// migrate brings River's tables up to date on SQLite, where the single
// writer connection serialises instances.
func migrate(ctx context.Context, driver *riversqlite.Driver) error {
	m, err := rivermigrate.New(driver, nil)
	if err != nil {
		return fmt.Errorf("ingest: job queue migrations: %w", err)
	}
	if _, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return fmt.Errorf("ingest: job queue migrations: %w", err)
	}
	return nil
}

// migratePostgres brings River's tables up to date while holding an
// advisory lock, so that instances starting together take turns. (Not in
// one transaction: a River migration adds an enum value that a later one
// uses, which PostgreSQL refuses within one transaction.)
func migratePostgres(ctx context.Context, pool *pgxpool.Pool, driver *riverpgxv5.Driver) error {
	m, err := rivermigrate.New(driver, nil)
	if err != nil {
		return fmt.Errorf("ingest: job queue migrations: %w", err)
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("ingest: job queue migrations: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", migrationLockID); err != nil {
		return fmt.Errorf("ingest: job queue migrations: take lock: %w", err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", migrationLockID)
	if _, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return fmt.Errorf("ingest: job queue migrations: %w", err)
	}
	return nil
}

// retryPolicy waits base, then twice as long after each failed attempt,
// at most maxRetryDelay.
type retryPolicy struct{ base time.Duration }

// maxRetryDelay bounds the wait between two attempts of a job.
const maxRetryDelay = 10 * time.Minute

// NextRetry implements river.ClientRetryPolicy.
func (p retryPolicy) NextRetry(job *rivertype.JobRow) time.Time {
	d := p.base
	for i := 1; i < job.Attempt && d < maxRetryDelay; i++ {
		d *= 2
	}
	return time.Now().Add(min(d, maxRetryDelay))
}

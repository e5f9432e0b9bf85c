// Package store keeps Ferry's data in SQL, through database/sql, on embedded
// SQLite (modernc.org/sqlite) or PostgreSQL (pgx). One implementation serves
// both; the engine differences live in this file, in the two migration
// folders, and in writer.go (PostgreSQL batches go as one pipeline; which
// errors are transient).
package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/config"
)

// Store is Ferry's database. Its methods take ctx first and return
// *ferry.Error with code NotFound or Conflict where the caller can act on it.
type Store struct {
	driver string
	// db takes writes (and reads inside transactions). On SQLite it has one
	// connection, so writers queue in Go instead of failing with SQLITE_BUSY.
	db *sql.DB
	// rdb takes reads outside transactions. On SQLite it is a pool of its
	// own (WAL lets readers run beside the writer); on PostgreSQL it is db.
	rdb *sql.DB
	// w commits chat writes in batches (see Submit); it writes through db.
	w *writer
	// ckpt runs SQLite's checkpoints off the write path; nil on PostgreSQL.
	ckpt *checkpointer
}

// Open connects to the database that d describes, creating the SQLite file
// and its directory if needed. It does not migrate.
func Open(ctx context.Context, d config.Database) (*Store, error) {
	switch d.Driver {
	case "postgres":
		db, err := sql.Open("pgx", d.DSN)
		if err != nil {
			return nil, err
		}
		db.SetMaxOpenConns(20)
		db.SetMaxIdleConns(20)
		if err := db.PingContext(ctx); err != nil {
			db.Close()
			return nil, fmt.Errorf("connect to PostgreSQL: %w", err)
		}
		return &Store{driver: d.Driver, db: db, rdb: db, w: newWriter(db, d.Driver, nil)}, nil
	case "sqlite":
		if err := os.MkdirAll(filepath.Dir(d.DSN), 0o700); err != nil {
			return nil, err
		}
		// WAL lets readers run while one writer writes; busy_timeout covers
		// another process (a second `ferry migrate`) holding the lock;
		// _txlock=immediate takes the write lock at BEGIN so a transaction
		// that reads then writes cannot deadlock against another.
		// busy_timeout comes first: pragmas apply in order, and switching to
		// WAL needs a lock another process opening the file may hold.
		dsn := "file:" + d.DSN + "?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)" +
			"&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)&_txlock=immediate"
		// The write connection leaves checkpoints to the checkpointer.
		w, err := sql.Open("sqlite", dsn+"&_pragma=wal_autocheckpoint(0)")
		if err != nil {
			return nil, err
		}
		w.SetMaxOpenConns(1)
		r, err := sql.Open("sqlite", dsn)
		if err != nil {
			w.Close()
			return nil, err
		}
		r.SetMaxOpenConns(8)
		r.SetMaxIdleConns(8)
		if err := pingSQLite(ctx, w); err != nil {
			w.Close()
			r.Close()
			return nil, fmt.Errorf("open SQLite %s: %w", d.DSN, err)
		}
		ckpt := newCheckpointer(r, w)
		return &Store{driver: d.Driver, db: w, rdb: r, w: newWriter(w, d.Driver, ckpt), ckpt: ckpt}, nil
	}
	return nil, fmt.Errorf("unknown database driver %q", d.Driver)
}

// pingSQLite opens the first connection, which switches a new file to WAL.
// SQLite answers SQLITE_BUSY at once, without waiting out busy_timeout, when
// another process is making the same switch, so it is retried briefly.
func pingSQLite(ctx context.Context, db *sql.DB) error {
	var err error
	for range 50 {
		err = db.PingContext(ctx)
		var lite *sqlite.Error
		if !errors.As(err, &lite) || lite.Code()&0xff != sqlite3.SQLITE_BUSY {
			return err
		}
		select {
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return err
}

// Driver names the engine: "sqlite" or "postgres".
func (s *Store) Driver() string { return s.driver }

// Close commits every write submitted so far (see Submit), then closes
// every connection. Writes submitted after Close fail with ErrClosed. It is
// safe to call more than once.
func (s *Store) Close() error {
	s.w.close()
	s.ckpt.close()
	err := s.db.Close()
	if s.rdb != s.db {
		err = errors.Join(err, s.rdb.Close())
	}
	return err
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	return s.rdb.PingContext(ctx)
}

// tx runs fn in a transaction, committing when fn returns nil. A returned
// commitErr is committed too, and its error returned.
func (s *Store) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	err = fn(tx)
	var ce commitErr
	if err != nil && !errors.As(err, &ce) {
		tx.Rollback()
		return err
	}
	if cerr := tx.Commit(); cerr != nil {
		return cerr
	}
	if ce.err != nil {
		return ce.err
	}
	return nil
}

// commitErr asks tx to commit what fn wrote and still return err: refresh
// token reuse must revoke the session and fail the request.
type commitErr struct{ err error }

func (c commitErr) Error() string { return c.err.Error() }

// isUnique reports whether err is a unique-constraint violation.
func isUnique(err error) bool {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		return pg.Code == "23505"
	}
	var lite *sqlite.Error
	if errors.As(err, &lite) {
		return lite.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || lite.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	}
	return false
}

// OutageRetryAfter is how long a client is told to wait when the database
// cannot be reached.
const OutageRetryAfter = 5 * time.Second

// Outage returns an Unavailable error (with RetryAfter) wrapping err when
// err says the database cannot be reached just now, so that a client hears
// 503 and when to come back rather than 500: a refused, lost or broken
// connection, a PostgreSQL server that is shutting down, starting up or
// out of connections, SQLite busy past its timeout or unable to open its
// file, or a closed Store. For any other error, nil included, it returns
// nil.
func Outage(err error) *ferry.Error {
	if err == nil || !outage(err) {
		return nil
	}
	return &ferry.Error{Code: ferry.Unavailable, Message: "the database cannot be reached; try again shortly",
		RetryAfter: OutageRetryAfter, Err: err}
}

func outage(err error) bool {
	if errors.Is(err, ErrClosed) || errors.Is(err, sql.ErrConnDone) || errors.Is(err, driver.ErrBadConn) ||
		errors.Is(err, io.ErrUnexpectedEOF) || strings.Contains(err.Error(), "sql: database is closed") {
		// database/sql does not export its error for a closed *sql.DB.
		return true
	}
	var connect *pgconn.ConnectError
	if errors.As(err, &connect) {
		return true
	}
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		// connection exception; admin or crash shutdown, cannot connect
		// now; too many connections
		return strings.HasPrefix(pg.Code, "08") || pg.Code == "57P01" || pg.Code == "57P02" ||
			pg.Code == "57P03" || pg.Code == "53300"
	}
	var lite *sqlite.Error
	if errors.As(err, &lite) {
		c := lite.Code() & 0xff
		return c == sqlite3.SQLITE_BUSY || c == sqlite3.SQLITE_LOCKED || c == sqlite3.SQLITE_CANTOPEN
	}
	return false
}

// notFound turns sql.ErrNoRows into a NotFound error about what.
func notFound(err error, what string) error {
	if errors.Is(err, sql.ErrNoRows) {
		return ferry.Errorf(ferry.NotFound, "%s not found", what)
	}
	return err
}

// likePattern escapes s for a LIKE pattern that matches it anywhere.
func likePattern(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return "%" + r.Replace(s) + "%"
}

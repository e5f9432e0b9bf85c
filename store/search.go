package store

import (
	"context"
	"database/sql"
)

// What package search needs to keep its tables (collections, documents,
// chunks and the lexical index, created by migration 0006) in the Store's
// database: it writes its own SQL, the same on both engines, through these.

// Tx runs fn in a transaction on the connection that takes writes (on
// SQLite the single writer, so writers queue in Go), committing when fn
// returns nil and rolling back otherwise.
func (s *Store) Tx(ctx context.Context, fn func(*sql.Tx) error) error {
	return s.tx(ctx, fn)
}

// Reader returns the pool for reads outside transactions: on SQLite a pool
// of its own beside the writer, on PostgreSQL the one pool.
func (s *Store) Reader() *sql.DB { return s.rdb }

// IsUnique reports whether err is a unique-constraint violation, on either
// engine.
func IsUnique(err error) bool { return isUnique(err) }

package store

import "database/sql"

// Writer returns the pool that takes writes: on SQLite the single writer
// connection, on PostgreSQL the one pool. Package ingest hands it to its
// job queue (River), whose inserts must share a transaction with the
// document they are for, and whose own writes on SQLite must queue behind
// the Store's rather than fail with SQLITE_BUSY.
func (s *Store) Writer() *sql.DB { return s.db }

package store

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"time"
)

//go:embed migrations
var migrations embed.FS

// Migration is one numbered schema change and whether it has been applied.
type Migration struct {
	Version   int
	Name      string
	AppliedAt *time.Time
	sql       string
}

// migrationLockID is the PostgreSQL advisory lock that serialises instances
// starting together; any constant unique to Ferry does.
const migrationLockID = 0x6665727279 // "ferry"

// Migrate applies every migration not yet applied, in order, each in its own
// transaction. Several instances may call it at once.
func (s *Store) Migrate(ctx context.Context) error {
	all, err := s.loadMigrations()
	if err != nil {
		return err
	}
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if s.driver == "postgres" {
		// Session-level lock on this one connection: the second instance
		// waits here, then finds everything applied.
		if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock($1)", migrationLockID); err != nil {
			return fmt.Errorf("take migration lock: %w", err)
		}
		defer conn.ExecContext(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", migrationLockID)
	}
	if _, err := conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at `+s.timestampType()+` NOT NULL)`); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	for _, m := range all {
		if err := s.apply(ctx, conn, m); err != nil {
			return fmt.Errorf("migration %04d_%s: %w", m.Version, m.Name, err)
		}
	}
	return nil
}

// apply runs m unless it is recorded as applied; the check and the change
// share one transaction (on SQLite, BEGIN IMMEDIATE holds the write lock).
func (s *Store) apply(ctx context.Context, conn *sql.Conn, m Migration) error {
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var n int
	if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM schema_migrations WHERE version = $1", m.Version).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	if _, err := tx.ExecContext(ctx, m.sql); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
		m.Version, m.Name, time.Now().UTC()); err != nil {
		return err
	}
	return tx.Commit()
}

// Migrations lists every migration the binary carries, with when each was
// applied (nil for pending ones).
func (s *Store) Migrations(ctx context.Context) ([]Migration, error) {
	all, err := s.loadMigrations()
	if err != nil {
		return nil, err
	}
	applied := map[int]time.Time{}
	rows, err := s.rdb.QueryContext(ctx, "SELECT version, applied_at FROM schema_migrations")
	if err == nil {
		defer rows.Close()
		for rows.Next() {
			var v int
			var at time.Time
			if err := rows.Scan(&v, &at); err != nil {
				return nil, err
			}
			applied[v] = at
		}
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	// No schema_migrations table yet means nothing is applied.
	for i := range all {
		if at, ok := applied[all[i].Version]; ok {
			all[i].AppliedAt = &at
		}
	}
	return all, nil
}

func (s *Store) loadMigrations() ([]Migration, error) {
	dir := "migrations/" + s.driver
	entries, err := fs.ReadDir(migrations, dir)
	if err != nil {
		return nil, err
	}
	var all []Migration
	for _, e := range entries {
		num, name, ok := strings.Cut(strings.TrimSuffix(e.Name(), ".sql"), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			return nil, fmt.Errorf("migration file %s is not named NNNN_name.sql", e.Name())
		}
		body, err := fs.ReadFile(migrations, dir+"/"+e.Name())
		if err != nil {
			return nil, err
		}
		all = append(all, Migration{Version: v, Name: name, sql: string(body)})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].Version < all[j].Version })
	return all, nil
}

func (s *Store) timestampType() string {
	if s.driver == "postgres" {
		return "TIMESTAMPTZ"
	}
	return "TIMESTAMP"
}

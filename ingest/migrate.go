package ingest

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"

	"github.com/ferryhq/ferry/config"
	"github.com/ferryhq/ferry/store"
)

// Migrate brings the job queue's tables (River's) up to date in the
// Store's database, as New does at start, so that `ferry migrate` (a
// deployment's release command) leaves nothing for the instances to
// create. It returns how many of River's migrations are applied, of how
// many there are.
func Migrate(ctx context.Context, st *store.Store, db config.Database) (applied, all int, err error) {
	return queueMigrations(ctx, st, db, true)
}

// MigrationStatus is Migrate without applying anything.
func MigrationStatus(ctx context.Context, st *store.Store, db config.Database) (applied, all int, err error) {
	return queueMigrations(ctx, st, db, false)
}

func queueMigrations(ctx context.Context, st *store.Store, db config.Database, apply bool) (int, int, error) {
	if st.Driver() != "postgres" {
		driver := riversqlite.New(st.Writer())
		if apply {
			if err := migrate(ctx, driver); err != nil {
				return 0, 0, err
			}
		}
		m, err := rivermigrate.New(driver, nil)
		if err != nil {
			return 0, 0, fmt.Errorf("ingest: job queue migrations: %w", err)
		}
		return migrationCounts(ctx, m.ExistingVersions, m.AllVersions())
	}
	pool, err := pgxpool.New(ctx, db.DSN)
	if err != nil {
		return 0, 0, fmt.Errorf("ingest: job queue: connect to PostgreSQL: %w", err)
	}
	defer pool.Close()
	driver := riverpgxv5.New(pool)
	if apply {
		if err := migratePostgres(ctx, pool, driver); err != nil {
			return 0, 0, err
		}
	}
	m, err := rivermigrate.New(driver, nil)
	if err != nil {
		return 0, 0, fmt.Errorf("ingest: job queue migrations: %w", err)
	}
	return migrationCounts(ctx, m.ExistingVersions, m.AllVersions())
}

// migrationCounts counts the applied migrations, none when River's table
// does not exist yet.
func migrationCounts(ctx context.Context, existing func(context.Context) ([]rivermigrate.Migration, error),
	all []rivermigrate.Migration) (int, int, error) {
	have, err := existing(ctx)
	if err != nil {
		return 0, len(all), nil // no river_migration table: nothing applied
	}
	return len(have), len(all), nil
}

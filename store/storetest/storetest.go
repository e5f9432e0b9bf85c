// Package storetest opens real, migrated, throwaway stores for tests: SQLite
// in t.TempDir() always, and PostgreSQL when FERRY_TEST_DATABASE_URL is set.
package storetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver

	"github.com/ferryhq/ferry/config"
	"github.com/ferryhq/ferry/store"
)

// Engines names the engines tests run on: "sqlite", then "postgres" when
// FERRY_TEST_DATABASE_URL is set.
func Engines(t testing.TB) []string {
	if PostgresURL(t) == "" {
		return []string{"sqlite"}
	}
	return []string{"sqlite", "postgres"}
}

// PostgresURL returns FERRY_TEST_DATABASE_URL, logging once per test that
// PostgreSQL is skipped when it is unset.
func PostgresURL(t testing.TB) string {
	u := lookupEnv("FERRY_TEST_DATABASE_URL")
	if u == "" {
		t.Log("FERRY_TEST_DATABASE_URL not set: PostgreSQL cases skipped")
	}
	return u
}

// Each runs fn as a subtest once per engine, each time on a fresh store.
func Each(t *testing.T, fn func(t *testing.T, s *store.Store)) {
	for _, engine := range Engines(t) {
		t.Run(engine, func(t *testing.T) { fn(t, Open(t, engine)) })
	}
}

// Database returns a fresh database of the engine, empty and unmigrated,
// dropped when the test ends. On PostgreSQL it is a schema of its own in the
// test database.
func Database(t testing.TB, engine string) config.Database {
	t.Helper()
	if engine == "sqlite" {
		return config.Database{Driver: "sqlite", DSN: filepath.Join(t.TempDir(), "ferry.db")}
	}
	base := PostgresURL(t)
	if base == "" {
		t.Skip("FERRY_TEST_DATABASE_URL not set: skipping PostgreSQL")
	}
	b := make([]byte, 6)
	rand.Read(b)
	schema := "ferry_test_" + hex.EncodeToString(b)
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec("CREATE SCHEMA " + schema); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		admin.Exec("DROP SCHEMA " + schema + " CASCADE")
		admin.Close()
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return config.Database{Driver: "postgres", DSN: u.String()}
}

// Open returns a migrated store on a fresh database of the engine.
func Open(t testing.TB, engine string) *store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), Database(t, engine))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

// lookupEnv is os.Getenv; tests are the one place outside main that read the
// environment, for the FERRY_TEST_* URLs CI sets.
func lookupEnv(k string) string { return os.Getenv(k) }

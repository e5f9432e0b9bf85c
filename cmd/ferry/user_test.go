package main

import (
	"context"
	"database/sql"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/store/storetest"
)

// TestUserCommands creates, lists, promotes and re-passwords accounts from
// the command line, on each engine, while a server runs on the same
// database, and checks what the server makes of each change. On PostgreSQL
// no SECRET_KEY is given to the commands: they sign nothing.
func TestUserCommands(t *testing.T) {
	for _, engine := range storetest.Engines(t) {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			env := engineEnv(t, engine)
			cli := fakeEnv{vars: map[string]string{}}
			for k, v := range env.vars {
				if k != "SECRET_KEY" {
					cli.vars[k] = v
				}
			}
			must := func(stdin string, args ...string) string {
				t.Helper()
				out, stderr, err := command(t, cli, stdin, args...)
				if err != nil {
					t.Fatalf("%v: %v\n%s", args, err, stderr)
				}
				return out
			}
			out := must("", "user", "list")
			if !strings.HasPrefix(out, "no users yet") {
				t.Errorf("user list on an empty database: %q", out)
			}
			must("root password 1\n", "user", "create", "--email", "root@example.com", "--password-stdin", "--admin", "--name", "Root")
			// The prompt: typed twice, and it must match.
			typing := cli
			typing.typed = []string{"plain password", "plain password"}
			if out := runEnv(t, typing, "user", "create", "--email", "Plain@Example.com", "--name", "李小龙"); !strings.HasPrefix(out, "created user plain@example.com (") {
				t.Errorf("user create at the prompt: %q", out)
			}
			typing.typed = []string{"one password", "another password"}
			if _, _, err := command(t, typing, "", "user", "create", "--email", "typo@example.com"); err == nil || !strings.Contains(err.Error(), "differ") {
				t.Errorf("passwords that differ: %v", err)
			}

			lines := strings.Split(strings.TrimSpace(must("", "user", "list")), "\n")
			if len(lines) != 3 || strings.Join(strings.Fields(lines[0]), " ") != "ID EMAIL ROLE STATE CREATED NAME" {
				t.Fatalf("user list:\n%s", strings.Join(lines, "\n"))
			}
			root, plain := strings.Fields(lines[1]), strings.Fields(lines[2])
			if len(root) != 6 || root[1] != "root@example.com" || root[2] != "admin" || root[3] != "active" || root[5] != "Root" {
				t.Errorf("root's row: %q", lines[1])
			}
			if len(plain) != 6 || plain[1] != "plain@example.com" || plain[2] != "user" || plain[5] != "李小龙" {
				t.Errorf("plain's row: %q", lines[2])
			}
			if strings.Index(lines[1], "Root") != strings.Index(lines[2], "李小龙") {
				t.Errorf("the NAME column does not line up:\n%s", strings.Join(lines, "\n"))
			}
			if out := must("", "user", "list", "--email", "plain"); strings.Count(out, "\n") != 2 || !strings.Contains(out, "plain@example.com") {
				t.Errorf("user list --email plain:\n%s", out)
			}

			in := start(t, env)
			access, refresh := in.login(t, "plain@example.com", "plain password")
			in.must(t, http.StatusForbidden, "GET", "/users", access, nil)

			if out := must("", "user", "set-role", "--email", "plain@example.com", "--role", "admin"); !strings.HasPrefix(out, "plain@example.com (") || !strings.HasSuffix(out, ") is now admin\n") {
				t.Errorf("user set-role: %q", out)
			}
			if env.vars["REDIS_URL"] != "" {
				// The command told the server through Redis: the token it
				// had cached as an ordinary user's is an admin's well inside
				// the cache's 5 s.
				deadline := time.Now().Add(2 * time.Second)
				for {
					status, _ := in.call(t, "GET", "/users", access, nil)
					if status == http.StatusOK {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("the server still holds the old role (status %d)", status)
					}
					time.Sleep(10 * time.Millisecond)
				}
			}
			admin, _ := in.login(t, "plain@example.com", "plain password")
			in.must(t, http.StatusOK, "GET", "/users", admin, nil)
			if out := must("", "user", "set-role", "--email", "plain@example.com", "--role", "user"); !strings.HasSuffix(out, " is now user\n") {
				t.Errorf("user set-role back: %q", out)
			}

			if out := must("new plain password\n", "user", "set-password", "--email", "PLAIN@example.com", "--password-stdin"); !strings.HasPrefix(out, "set the password of plain@example.com") {
				t.Errorf("user set-password: %q", out)
			}
			in.must(t, http.StatusUnauthorized, "POST", "/auth/login", "", map[string]string{"email": "plain@example.com", "password": "plain password"})
			in.login(t, "plain@example.com", "new plain password")
			// The sessions opened with the old password are over.
			in.must(t, http.StatusUnauthorized, "POST", "/auth/refresh", "", map[string]string{"refresh_token": refresh})

			for _, tc := range []struct {
				stdin string
				args  []string
				want  string
			}{
				{"", []string{"user", "set-role", "--email", "nobody@example.com", "--role", "admin"}, "no account has the email nobody@example.com"},
				{"a long password\n", []string{"user", "set-password", "--email", "nobody@example.com", "--password-stdin"}, "no account has the email"},
				{"short\n", []string{"user", "set-password", "--email", "plain@example.com", "--password-stdin"}, "password: must be at least"},
				{"", []string{"user", "set-role", "--email", "not-an-email", "--role", "admin"}, "email"},
			} {
				if _, _, err := command(t, cli, tc.stdin, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("%v: %v, want an error saying %q", tc.args, err, tc.want)
				}
			}
			// Nothing above printed a password.
			if s := in.stdout.String() + in.stderr.String(); strings.Contains(s, "plain password") || strings.Contains(s, "root password 1") {
				t.Error("a password reached the server's log")
			}
		})
	}
}

// runEnv runs a command that must succeed and returns its stdout.
func runEnv(t *testing.T, env fakeEnv, args ...string) string {
	t.Helper()
	out, stderr, err := command(t, env, "", args...)
	if err != nil {
		t.Fatalf("%v: %v\n%s", args, err, stderr)
	}
	return out
}

// TestMigrateStatusChangesNothing: migrate --status on PostgreSQL needs no
// SECRET_KEY and creates no table; on a fresh SQLite data directory it
// creates neither the directory nor a file in it.
func TestMigrateStatusChangesNothing(t *testing.T) {
	t.Parallel()
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		parent := t.TempDir()
		dir := filepath.Join(parent, "data")
		env := fakeEnv{vars: map[string]string{"FERRY_DATA_DIR": dir}}
		out, _, err := command(t, env, "", "migrate", "--status")
		if err != nil || out != "no database yet at "+filepath.Join(dir, "ferry.db")+": ferry migrate, or ferry serve, creates it and applies every migration\n" {
			t.Errorf("migrate --status: %q, %v", out, err)
		}
		if entries, _ := os.ReadDir(parent); len(entries) != 0 {
			t.Errorf("migrate --status created %s", entries[0].Name())
		}
		// An empty directory stays empty too.
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if out, _, err := command(t, env, "", "migrate", "--status"); err != nil || !strings.HasPrefix(out, "no database yet") {
			t.Errorf("migrate --status: %q, %v", out, err)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("migrate --status created %s", entries[0].Name())
		}
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		db := storetest.Database(t, "postgres")
		env := fakeEnv{vars: map[string]string{"DATABASE_URL": db.DSN, "FERRY_DATA_DIR": t.TempDir()}}
		tables := func() int {
			conn, err := sql.Open("pgx", db.DSN)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			var n int
			if err := conn.QueryRowContext(context.Background(),
				"SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema()").Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}
		out, stderr, err := command(t, env, "", "migrate", "--status")
		if err != nil || !strings.Contains(out, "pending") || !strings.Contains(out, "River): 0 of") || strings.Contains(out, "no database yet") {
			t.Fatalf("migrate --status without SECRET_KEY: %q, %v %s", out, err, stderr)
		}
		if n := tables(); n != 0 {
			t.Errorf("migrate --status created %d tables", n)
		}
		// migrate itself needs no key either; serve does.
		if _, stderr, err := command(t, env, "", "migrate"); err != nil {
			t.Fatalf("migrate without SECRET_KEY: %v %s", err, stderr)
		}
		if out, _, err := command(t, env, "", "migrate", "--status"); err != nil || strings.Contains(out, "pending") ||
			!strings.Contains(out, "job queue (River): ") || strings.Contains(out, "River): 0 of") {
			t.Errorf("after migrate: %q, %v; want every migration applied, River's too", out, err)
		}
		if _, _, err := command(t, env, "", "serve", "--addr", "127.0.0.1:0"); err == nil || !strings.Contains(err.Error(), "SECRET_KEY") {
			t.Errorf("serve without SECRET_KEY on PostgreSQL: %v", err)
		}
		// A SECRET_KEY that is set is checked, needed or not.
		env.vars["SECRET_KEY"] = "short"
		if _, _, err := command(t, env, "", "migrate", "--status"); err == nil || !strings.Contains(err.Error(), "SECRET_KEY") {
			t.Errorf("a short SECRET_KEY: %v", err)
		}
	})
}

package main

import (
	"errors"
	"os"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/ferryhq/ferry/config"
)

// TestHelp: help is asked for with -h, --help or help, at the top and for
// each command, and answered on stdout with success.
func TestHelp(t *testing.T) {
	t.Parallel()
	env := sqliteEnv(t)
	for _, args := range [][]string{{"--help"}, {"-h"}, {"-help"}, {"help"}} {
		out, stderr, err := command(t, env, "", args...)
		if err != nil || stderr != "" {
			t.Errorf("%v: %v, stderr %q; want success", args, err, stderr)
		}
		for _, cmd := range commands {
			if !strings.Contains(out, "  "+cmd.name+" ") {
				t.Errorf("%v does not list %q:\n%s", args, cmd.name, out)
			}
		}
		if !strings.Contains(out, "--version") {
			t.Errorf("%v does not mention --version", args)
		}
	}
	for _, cmd := range commands {
		for _, flag := range []string{"--help", "-h"} {
			args := append(strings.Fields(cmd.name), flag)
			out, stderr, err := command(t, env, "", args...)
			if err != nil || stderr != "" || !strings.HasPrefix(out, "Usage: ferry "+cmd.name) || !strings.Contains(out, "--help") {
				t.Errorf("%v: %v, stderr %q, stdout:\n%s", args, err, stderr, out)
			}
		}
		out, _, err := command(t, env, "", append([]string{"help"}, strings.Fields(cmd.name)...)...)
		if err != nil || !strings.HasPrefix(out, "Usage: ferry "+cmd.name) {
			t.Errorf("help %s: %v\n%s", cmd.name, err, out)
		}
	}
	// The flags each command takes are in its help.
	for args, flags := range map[string][]string{
		"serve":             {"--addr"},
		"migrate":           {"--status"},
		"healthcheck":       {"--url"},
		"user create":       {"--email", "--name", "--admin", "--password-stdin"},
		"user list":         {"--email"},
		"user set-password": {"--email", "--password-stdin"},
		"user set-role":     {"--email", "--role"},
		"user unblock":      {"--email", "--address"},
	} {
		out, _, _ := command(t, env, "", append(strings.Fields(args), "--help")...)
		for _, f := range flags {
			if !strings.Contains(out, "  "+f+" ") {
				t.Errorf("%s --help does not list %s:\n%s", args, f, out)
			}
		}
	}
	for _, args := range [][]string{{"user", "--help"}, {"user", "-h"}, {"help", "user"}} {
		out, _, err := command(t, env, "", args...)
		if err != nil || !strings.Contains(out, "user set-role") || strings.Contains(out, "  migrate ") {
			t.Errorf("%v: %v\n%s", args, err, out)
		}
	}
	out, _, err := command(t, env, "", "serve", "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range config.Settings {
		if !strings.Contains(out, "  "+s.Env+" ") {
			t.Errorf("serve --help does not list %s", s.Env)
		}
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	env := sqliteEnv(t)
	for _, args := range [][]string{{"--version"}, {"-version"}, {"version"}} {
		out, _, err := command(t, env, "", args...)
		if err != nil || !strings.HasPrefix(out, "ferry ") || len(strings.TrimSpace(out)) <= len("ferry") {
			t.Errorf("%v: %q, %v", args, out, err)
		}
	}
}

// TestUsageErrors: a wrong command line says what is wrong or missing, on
// stderr, and is errUsage (exit 2).
func TestUsageErrors(t *testing.T) {
	t.Parallel()
	env := sqliteEnv(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"serve", "extra"}, `unexpected argument "extra"`},
		{[]string{"serve", "--nope"}, "flag provided but not defined: -nope"},
		{[]string{"migrate", "--nope"}, "flag provided but not defined: -nope"},
		{[]string{"version", "now"}, `unexpected argument "now"`},
		{[]string{"user"}, "which one?"},
		{[]string{"user", "delete"}, `unknown command "delete"`},
		{[]string{"help", "frobnicate"}, `no command "frobnicate"`},
		{[]string{"user", "create"}, "ferry user create: --email is required"},
		{[]string{"user", "create", "--password-stdin"}, "--email is required"},
		{[]string{"user", "create", "--email", "x@example.com"}, "--password-stdin is required when standard input is not a terminal"},
		{[]string{"user", "set-password"}, "ferry user set-password: --email is required"},
		{[]string{"user", "set-password", "--email", "x@example.com"}, "--password-stdin is required"},
		{[]string{"user", "set-role", "--role", "admin"}, "ferry user set-role: --email is required"},
		{[]string{"user", "set-role", "--email", "x@example.com"}, "--role is required: user or admin"},
		{[]string{"user", "set-role", "--email", "x@example.com", "--role", "root"}, `--role must be user or admin, not "root"`},
		{[]string{"user", "list", "--admin"}, "flag provided but not defined: -admin"},
		{[]string{"user", "unblock"}, "give --email or --address"},
	} {
		out, stderr, err := command(t, env, "some password\n", tc.args...)
		if !errors.Is(err, errUsage) || !strings.Contains(stderr, tc.want) || out != "" {
			t.Errorf("%v: %v, stdout %q, stderr:\n%s\nwant usage saying %q", tc.args, err, out, stderr, tc.want)
		}
	}
	// Nothing was made on the way: no command above opened the database.
	if entries, _ := os.ReadDir(env.vars["FERRY_DATA_DIR"]); len(entries) > 0 {
		t.Errorf("usage errors left %d files in the data directory", len(entries))
	}
}

// TestSettingsTableAligns: in serve --help, the description of every
// setting starts in the same terminal column, the row whose default is
// Chinese (two columns a character) included.
func TestSettingsTableAligns(t *testing.T) {
	t.Parallel()
	out, _, err := command(t, sqliteEnv(t), "", "serve", "--help")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, config.SeedSystemPrompt) {
		t.Fatalf("serve --help lacks the seed system prompt's default:\n%s", out)
	}
	column := -1
	for _, s := range config.Settings {
		var line string
		for l := range strings.SplitSeq(out, "\n") {
			if strings.HasPrefix(l, "  "+s.Env+" ") {
				line = l
			}
		}
		i := strings.Index(line, s.Doc)
		if i < 0 {
			t.Errorf("no row for %s", s.Env)
			continue
		}
		c := columns(line[:i])
		if column < 0 {
			column = c
		}
		if c != column {
			t.Errorf("%s: its description starts in column %d, the others' in %d:\n%s", s.Env, c, column, line)
		}
	}
}

// columns counts the terminal columns of s, whose wide characters, in
// this test, are CJK ideographs and punctuation.
func columns(s string) int {
	n := utf8.RuneCountInString(s)
	for _, r := range s {
		if (r >= 0x3000 && r <= 0x303f) || (r >= 0x4e00 && r <= 0x9fff) || (r >= 0xff00 && r <= 0xff60) {
			n++
		}
	}
	return n
}

func TestDisplayWidth(t *testing.T) {
	for s, want := range map[string]int{
		"":                      0,
		"HOST":                  4,
		config.SeedSystemPrompt: 30,
		"LM Studio…":            10, // … is ambiguous: one column outside East Asian locales
		"e\u0301":               1,  // e and a combining acute accent
		"ＡＢ":                    4,  // fullwidth Latin
	} {
		if got := displayWidth(s); got != want {
			t.Errorf("displayWidth(%q) = %d, want %d", s, got, want)
		}
	}
	var tb table
	tb.row("名前", "x")
	tb.row("name", "y")
	var b strings.Builder
	tb.write(&b, "", 1)
	if b.String() != "名前 x\nname y\n" {
		t.Errorf("table:\n%s", b.String())
	}
}

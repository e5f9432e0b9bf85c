package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestExitCodes runs this binary as ferry (see TestMain): help and version
// exit 0, a usage error 2, a failure 1 with its message.
func TestExitCodes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, tc := range []struct {
		args   []string
		code   int
		stdout string // a fragment of it
		stderr string
	}{
		{[]string{"--help"}, 0, "Commands:", ""},
		{[]string{"-h"}, 0, "Commands:", ""},
		{[]string{"--version"}, 0, "ferry ", ""},
		{[]string{"user", "create", "--help"}, 0, "Usage: ferry user create", ""},
		{[]string{"user", "create"}, 2, "", "--email is required"},
		{[]string{"frobnicate"}, 2, "", "unknown command"},
		// Standard input is /dev/null, no terminal: the password must come
		// with --password-stdin.
		{[]string{"user", "set-password", "--email", "a@example.com"}, 2, "", "--password-stdin is required"},
		{[]string{"user", "set-password", "--email", "a@example.com", "--password-stdin"}, 1, "", "ferry: password: must be at least"},
		{[]string{"migrate", "--status"}, 0, "no database yet", ""},
	} {
		cmd := exec.Command(os.Args[0], tc.args...)
		cmd.Env = []string{"FERRY_TEST_MAIN=1", "FERRY_DATA_DIR=" + filepath.Join(dir, "data")}
		cmd.Dir = dir
		var stdout, stderr syncBuffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			code = exit.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != tc.code || !strings.Contains(stdout.String(), tc.stdout) || !strings.Contains(stderr.String(), tc.stderr) {
			t.Errorf("ferry %s: exit %d, stdout %q, stderr %q; want exit %d, stdout with %q, stderr with %q",
				strings.Join(tc.args, " "), code, stdout.String(), stderr.String(), tc.code, tc.stdout, tc.stderr)
		}
	}
}

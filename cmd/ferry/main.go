// Command ferry is Ferry's one binary: the server and its admin commands.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/term"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	env := environment{getenv: os.Getenv, readFile: os.ReadFile}
	if fd := int(os.Stdin.Fd()); term.IsTerminal(fd) {
		env.readPassword = func(ctx context.Context, prompt string) (string, error) {
			return readPassword(ctx, fd, prompt, os.Stderr)
		}
	}
	code := exitCode(run(ctx, os.Args[1:], env, os.Stdin, os.Stdout, os.Stderr), os.Stderr)
	stop()
	os.Exit(code)
}

// exitCode is the status the process exits with after err, which it
// prints: 0 for none, 2 for a wrong command line (already explained), 1
// for anything else.
func exitCode(err error, stderr io.Writer) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errUsage):
		return 2
	}
	fmt.Fprintln(stderr, "ferry:", err)
	return 1
}

// readPassword shows prompt on stderr and reads a line from the terminal fd
// without echoing it. Ctrl-C (which cancels ctx) ends the wait and puts
// the terminal back as it was.
func readPassword(ctx context.Context, fd int, prompt string, stderr io.Writer) (string, error) {
	state, err := term.GetState(fd)
	if err != nil {
		return "", err
	}
	fmt.Fprint(stderr, prompt)
	type line struct {
		b   []byte
		err error
	}
	read := make(chan line, 1)
	go func() {
		b, err := term.ReadPassword(fd)
		read <- line{b, err}
	}()
	select {
	case l := <-read:
		fmt.Fprintln(stderr)
		return string(l.b), l.err
	case <-ctx.Done():
		term.Restore(fd, state)
		fmt.Fprintln(stderr)
		return "", ctx.Err()
	}
}

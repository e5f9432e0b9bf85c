package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/ferryhq/ferry/config"
)

// errUsage means the command line was wrong and what to do about it is
// already printed; main exits 2.
var errUsage = errors.New("usage")

// errHelp means help was asked for and printed; run returns nil for it.
var errHelp = errors.New("help")

// cli is what a command works with: the outside world run was given.
type cli struct {
	env    environment
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

// cliCommand is one thing `ferry` does.
type cliCommand struct {
	// name is the command as typed after ferry, as in "user create".
	name string
	// args is the synopsis of its flags, as in "--email E [--admin]".
	args string
	// summary says in a line what it does, for the list of commands.
	summary string
	// about says what it does, in sentences, at the head of its --help.
	about string
	// settings says that its help lists every setting.
	settings bool
	// run defines the command's flags on f, parses args (the arguments
	// after its name) with f.parse, and does its work.
	run func(ctx context.Context, c *cli, f *flagSet, args []string) error
}

// commands lists every command, in the order help shows them.
var commands = []*cliCommand{
	serveCommand, migrateCommand,
	userCreateCommand, userListCommand, userSetPasswordCommand, userSetRoleCommand, userUnblockCommand,
	ingestCommand, healthcheckCommand, versionCommand,
}

var versionCommand = &cliCommand{
	name:    "version",
	summary: "print the version (also: ferry --version)",
	about:   "Version prints the version of this binary.",
	run: func(ctx context.Context, c *cli, f *flagSet, args []string) error {
		if err := f.parse(args); err != nil {
			return err
		}
		fmt.Fprintln(c.stdout, "ferry", buildVersion())
		return nil
	},
}

// run runs the command args name, serve when they name none, and returns
// nil when the command (or the help asked for) succeeded, errUsage when the
// command line was wrong (its message already printed to stderr), or the
// error that stopped the command.
func run(ctx context.Context, args []string, env environment, stdin io.Reader, stdout, stderr io.Writer) error {
	c := &cli{env: env, stdin: stdin, stdout: stdout, stderr: stderr}
	err := c.dispatch(ctx, args)
	if errors.Is(err, errHelp) {
		return nil
	}
	return err
}

// dispatch runs the command args name; see run.
func (c *cli) dispatch(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return c.run(ctx, serveCommand, nil)
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		return c.help(args[1:])
	case "-version", "--version":
		return c.run(ctx, versionCommand, args[1:])
	}
	if strings.HasPrefix(args[0], "-") {
		// ferry --addr …: flags of the default command.
		return c.run(ctx, serveCommand, args)
	}
	cmd, rest := lookup(args)
	if cmd == nil {
		return c.unknown(args)
	}
	return c.run(ctx, cmd, rest)
}

// run runs cmd with args, the arguments after its name.
func (c *cli) run(ctx context.Context, cmd *cliCommand, args []string) error {
	return cmd.run(ctx, c, c.flags(cmd), args)
}

// lookup finds the command args begin with, and returns it with the
// arguments after its name; nil when none matches.
func lookup(args []string) (*cliCommand, []string) {
	for _, cmd := range commands {
		words := strings.Fields(cmd.name)
		if len(args) >= len(words) && slices.Equal(args[:len(words)], words) {
			return cmd, args[len(words):]
		}
	}
	return nil, nil
}

// unknown answers a command line that names no command: "ferry user"
// alone, or with -h, lists the user commands; anything else is a usage
// error naming what was not understood.
func (c *cli) unknown(args []string) error {
	if args[0] == "user" {
		if len(args) == 1 {
			fmt.Fprintf(c.stderr, "ferry user: which one? (%s)\n\n", strings.Join(subcommands("user"), ", "))
			c.printCommands(c.stderr, "user")
			return errUsage
		}
		switch args[1] {
		case "-h", "-help", "--help", "help":
			fmt.Fprint(c.stdout, "Usage: ferry user COMMAND [flags]\n\nCommands:\n")
			c.printCommands(c.stdout, "user")
			fmt.Fprint(c.stdout, "\nRun \"ferry user COMMAND --help\" for a command's flags.\n")
			return errHelp
		}
		fmt.Fprintf(c.stderr, "ferry user: unknown command %q (want one of: %s)\n", args[1], strings.Join(subcommands("user"), ", "))
		return errUsage
	}
	fmt.Fprintf(c.stderr, "ferry: unknown command %q\n\n", args[0])
	c.printCommands(c.stderr, "")
	fmt.Fprint(c.stderr, "\nRun \"ferry --help\" for more.\n")
	return errUsage
}

// subcommands lists the last words of the commands under group, as
// "create" for "user create".
func subcommands(group string) []string {
	var out []string
	for _, cmd := range commands {
		if rest, ok := strings.CutPrefix(cmd.name, group+" "); ok {
			out = append(out, rest)
		}
	}
	return out
}

// help prints the help of the command args name, or the overview when
// they name none: "ferry help", "ferry help user create".
func (c *cli) help(args []string) error {
	if len(args) == 0 {
		fmt.Fprint(c.stdout, overview)
		c.printCommands(c.stdout, "")
		fmt.Fprint(c.stdout, overviewFlags)
		return errHelp
	}
	if cmd, rest := lookup(args); cmd != nil && len(rest) == 0 {
		c.flags(cmd).printHelp(c.stdout)
		return errHelp
	}
	if args[0] == "user" && len(args) == 1 {
		return c.unknown([]string{"user", "--help"})
	}
	fmt.Fprintf(c.stderr, "ferry help: no command %q\n\n", strings.Join(args, " "))
	c.printCommands(c.stderr, "")
	return errUsage
}

const overview = `Ferry: a self-hosted AI application backend.

Usage:
  ferry [COMMAND] [flags]     with no command, ferry serves

Commands:
`

const overviewFlags = `
Flags:
  -h, --help     show this help
  --version      print the version

Run "ferry COMMAND --help" for a command's flags; "ferry serve --help" also
lists every setting, read from the environment or a .env file.
`

// printCommands lists the commands under group ("" for all) with their
// summaries.
func (c *cli) printCommands(w io.Writer, group string) {
	var t table
	for _, cmd := range commands {
		if group == "" || strings.HasPrefix(cmd.name, group+" ") {
			t.row(cmd.name, cmd.summary)
		}
	}
	t.write(w, "  ", 3)
}

// flagSet is a command's flags, with the help and the usage errors they
// print.
type flagSet struct {
	*flag.FlagSet
	c   *cli
	cmd *cliCommand
}

// flags returns an empty flag set for cmd.
func (c *cli) flags(cmd *cliCommand) *flagSet {
	fs := flag.NewFlagSet("ferry "+cmd.name, flag.ContinueOnError)
	// parse prints what goes wrong itself, on the right stream.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return &flagSet{FlagSet: fs, c: c, cmd: cmd}
}

// parse parses args. -h or --help prints the command's help to stdout and
// returns errHelp; a flag that is not the command's, or an argument it
// does not take, prints the error and the synopsis to stderr and returns
// errUsage.
func (f *flagSet) parse(args []string) error {
	if err := f.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			f.printHelp(f.c.stdout)
			return errHelp
		}
		return f.usage("%v", err)
	}
	if f.NArg() > 0 {
		return f.usage("unexpected argument %q", f.Arg(0))
	}
	return nil
}

// usage prints a usage error, as in "ferry user create: --email is
// required", with the command's synopsis, to stderr, and returns errUsage.
func (f *flagSet) usage(format string, args ...any) error {
	fmt.Fprintf(f.c.stderr, "ferry %s: %s\n", f.cmd.name, fmt.Sprintf(format, args...))
	fmt.Fprintf(f.c.stderr, "Usage: %s\nRun \"ferry %s --help\" for its flags.\n", f.synopsis(), f.cmd.name)
	return errUsage
}

func (f *flagSet) synopsis() string {
	return strings.TrimSpace("ferry " + f.cmd.name + " " + f.cmd.args)
}

// printHelp prints the command's synopsis, what it does and its flags; for
// serve, the settings too.
func (f *flagSet) printHelp(w io.Writer) {
	fmt.Fprintf(w, "Usage: %s\n\n", f.synopsis())
	fmt.Fprintf(w, "%s\n", f.cmd.about)
	fmt.Fprint(w, "\nFlags:\n")
	var t table
	f.VisitAll(func(fl *flag.Flag) {
		name, usage := flag.UnquoteUsage(fl)
		if name != "" {
			name = " " + name
		}
		if fl.DefValue != "" && fl.DefValue != "false" {
			usage += fmt.Sprintf(" (default %s)", fl.DefValue)
		}
		t.row("--"+fl.Name+name, usage)
	})
	t.row("-h, --help", "show this help")
	t.write(w, "  ", 3)
	if f.cmd.settings {
		fmt.Fprint(w, "\nSettings (from the environment, or a .env file in the working directory):\n")
		settingsTable(w)
	}
}

// settingsTable prints every setting with its default and what it does,
// aligned as a terminal shows them: the system prompt's default is
// Chinese, two columns a character.
func settingsTable(w io.Writer) {
	var t table
	for _, s := range config.Settings {
		def := s.Default
		if def == "" {
			def = "(empty)"
		}
		t.row(s.Env, def, s.Doc)
	}
	t.write(w, "  ", 2)
}

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/auth"
	"github.com/ferryhq/ferry/config"
	"github.com/ferryhq/ferry/limit"
	"github.com/ferryhq/ferry/store"
)

// The user commands work on the database directly, as an admin would
// through the API; none needs SECRET_KEY. Passwords come from a prompt on
// the terminal, or from standard input with --password-stdin, never from a
// flag that ps and the shell's history would show.

var userCreateCommand = &cliCommand{
	name:    "user create",
	args:    "--email E [--name N] [--admin] [--password-stdin]",
	summary: "create an account",
	about: `User create makes an account, an admin with --admin. The password is asked
for on the terminal (twice), or read from the first line of standard input
with --password-stdin:

  echo 'a long password' | ferry user create --email root@example.com --password-stdin --admin`,
	run: userCreate,
}

var userListCommand = &cliCommand{
	name:    "user list",
	args:    "[--email TEXT]",
	summary: "list the accounts",
	about:   "User list prints every account, oldest first, or those whose email contains TEXT.",
	run:     userList,
}

var userSetPasswordCommand = &cliCommand{
	name:    "user set-password",
	args:    "--email E [--password-stdin]",
	summary: "set an account's password and sign out its sessions",
	about: `User set-password gives the account a new password, asked for on the terminal
(twice) or read from the first line of standard input with --password-stdin,
and signs out every session it had.`,
	run: userSetPassword,
}

var userSetRoleCommand = &cliCommand{
	name:    "user set-role",
	args:    "--email E --role user|admin",
	summary: "make an account an admin, or an ordinary user",
	about:   "User set-role changes what the account may do: admin manages users, user only its own things.",
	run:     userSetRole,
}

var userUnblockCommand = &cliCommand{
	name:    "user unblock",
	args:    "(--email E | --address A)",
	summary: "lift sign-in blocks (with REDIS_URL)",
	about: `User unblock lifts the blocks that failed sign-ins put on an account, from
every address, or on a client address (and its registration limit). The
counts are in Redis when REDIS_URL is set; without it they live in the
server's memory, out of this command's reach: use POST /users/{id}/unblock.`,
	run: userUnblock,
}

func userCreate(ctx context.Context, c *cli, f *flagSet, args []string) error {
	email := f.String("email", "", "the account's email (required)")
	name := f.String("name", "", "the account's display name")
	isAdmin := f.Bool("admin", false, "make the account an admin")
	fromStdin := f.Bool("password-stdin", false, "read the password from the first line of standard input")
	if err := f.parse(args); err != nil {
		return err
	}
	if *email == "" {
		return f.usage("--email is required")
	}
	password, err := c.newPassword(ctx, f, *fromStdin)
	if err != nil {
		return err
	}
	svc, _, closeSvc, err := c.userService(ctx)
	if err != nil {
		return err
	}
	defer closeSvc()
	role := ferry.RoleUser
	if *isAdmin {
		role = ferry.RoleAdmin
	}
	u, err := svc.CreateUser(ctx, *email, password, *name, role)
	if err != nil {
		return publicError(err)
	}
	fmt.Fprintf(c.stdout, "created %s %s (%s)\n", u.Role, u.Email, u.ID)
	return nil
}

func userList(ctx context.Context, c *cli, f *flagSet, args []string) error {
	filter := f.String("email", "", "list only the accounts whose email contains this")
	if err := f.parse(args); err != nil {
		return err
	}
	svc, _, closeSvc, err := c.userService(ctx)
	if err != nil {
		return err
	}
	defer closeSvc()
	var t table
	t.row("ID", "EMAIL", "ROLE", "STATE", "CREATED", "NAME")
	n := 0
	for page := (ferry.Page{Limit: 500}); ; page.Offset += page.Limit {
		users, total, err := svc.Users(ctx, *filter, page)
		if err != nil {
			return publicError(err)
		}
		for _, u := range users {
			state := "active"
			if u.Disabled {
				state = "disabled"
			}
			t.row(u.ID, u.Email, string(u.Role), state, u.CreatedAt.UTC().Format(time.DateOnly), u.Name)
		}
		n += len(users)
		if len(users) == 0 || n >= total {
			break
		}
	}
	if n == 0 {
		if *filter != "" {
			fmt.Fprintf(c.stdout, "no user's email contains %q\n", *filter)
		} else {
			fmt.Fprintln(c.stdout, "no users yet: ferry user create --email E --admin makes the first")
		}
		return nil
	}
	return t.write(c.stdout, "", 2)
}

func userSetPassword(ctx context.Context, c *cli, f *flagSet, args []string) error {
	email := f.String("email", "", "the account's email (required)")
	fromStdin := f.Bool("password-stdin", false, "read the password from the first line of standard input")
	if err := f.parse(args); err != nil {
		return err
	}
	if *email == "" {
		return f.usage("--email is required")
	}
	password, err := c.newPassword(ctx, f, *fromStdin)
	if err != nil {
		return err
	}
	svc, st, closeSvc, err := c.userService(ctx)
	if err != nil {
		return err
	}
	defer closeSvc()
	u, err := userByEmail(ctx, st, *email)
	if err != nil {
		return err
	}
	if _, err := svc.UpdateUser(ctx, u.ID, auth.UserChange{Password: &password}); err != nil {
		return publicError(err)
	}
	fmt.Fprintf(c.stdout, "set the password of %s (%s) and signed out its sessions\n", u.Email, u.ID)
	return nil
}

func userSetRole(ctx context.Context, c *cli, f *flagSet, args []string) error {
	email := f.String("email", "", "the account's email (required)")
	role := f.String("role", "", "user or admin (required)")
	if err := f.parse(args); err != nil {
		return err
	}
	switch {
	case *email == "":
		return f.usage("--email is required")
	case *role == "":
		return f.usage("--role is required: user or admin")
	case !ferry.Role(*role).Valid():
		return f.usage("--role must be user or admin, not %q", *role)
	}
	svc, st, closeSvc, err := c.userService(ctx)
	if err != nil {
		return err
	}
	defer closeSvc()
	u, err := userByEmail(ctx, st, *email)
	if err != nil {
		return err
	}
	r := ferry.Role(*role)
	if u, err = svc.UpdateUser(ctx, u.ID, auth.UserChange{Role: &r}); err != nil {
		return publicError(err)
	}
	fmt.Fprintf(c.stdout, "%s (%s) is now %s\n", u.Email, u.ID, u.Role)
	return nil
}

func userUnblock(ctx context.Context, c *cli, f *flagSet, args []string) error {
	email := f.String("email", "", "lift the sign-in blocks on this account, from every address")
	address := f.String("address", "", "lift the sign-in and registration blocks on this client IP address")
	if err := f.parse(args); err != nil {
		return err
	}
	if (*email == "") == (*address == "") {
		return f.usage("give --email or --address, one of them")
	}
	cfg, err := c.loadConfig("", false)
	if err != nil {
		return err
	}
	if cfg.RedisURL == "" {
		// Without Redis the counts live in the server's memory, out of this
		// process's reach.
		return errors.New("without REDIS_URL, blocks are kept in the server's memory: lift them with POST /users/{id}/unblock as an admin, or restart the server")
	}
	st, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	rdb, err := openRedis(ctx, cfg)
	if err != nil {
		return err
	}
	defer rdb.Close()
	failures, registrations := limits(rdb)
	svc := auth.NewService(st, nil, failures, auth.ServiceOptions{Registrations: registrations})
	if *address != "" {
		if err := svc.UnblockAddress(ctx, *address); err != nil {
			return publicError(err)
		}
		fmt.Fprintf(c.stdout, "unblocked address %s\n", *address)
		return nil
	}
	u, err := userByEmail(ctx, st, *email)
	if err != nil {
		return err
	}
	if err := svc.UnblockUser(ctx, u.ID); err != nil {
		return publicError(err)
	}
	fmt.Fprintf(c.stdout, "unblocked %s (%s)\n", u.Email, u.ID)
	return nil
}

// userService opens the database, migrated, and returns the account service
// over it, which signs no tokens, the store, and the function that closes
// them. With
// REDIS_URL set, the service announces its changes to running servers, so
// that they drop cached credentials at once; should Redis not answer, they
// still notice within their cache's lifetime (5 s), and the command says
// so.
func (c *cli) userService(ctx context.Context) (*auth.Service, *store.Store, func(), error) {
	cfg, err := c.loadConfig("", false)
	if err != nil {
		return nil, nil, nil, err
	}
	st, err := openStore(ctx, cfg)
	if err != nil {
		return nil, nil, nil, err
	}
	opts, closeRedis := c.announce(ctx, cfg)
	svc := auth.NewService(st, nil, limit.NewMemoryFailures(limit.DefaultPolicy, time.Now), opts)
	return svc, st, func() {
		closeRedis()
		st.Close()
	}, nil
}

// announce returns the service options that tell running servers of a
// credential change through Redis, when REDIS_URL is set, and the function
// that closes the connection.
func (c *cli) announce(ctx context.Context, cfg *config.Config) (auth.ServiceOptions, func()) {
	if cfg.RedisURL == "" {
		return auth.ServiceOptions{}, func() {}
	}
	rdb, err := openRedis(ctx, cfg)
	if err != nil {
		fmt.Fprintf(c.stderr, "warning: %v; running servers see the change within 5 s\n", err)
		return auth.ServiceOptions{}, func() {}
	}
	return auth.ServiceOptions{Changed: func() {
		if err := rdb.Publish(context.Background(), authChannel, "changed").Err(); err != nil {
			fmt.Fprintf(c.stderr, "warning: telling running servers: %v; they see the change within 5 s\n", err)
		}
	}}, func() { rdb.Close() }
}

// userByEmail returns the account with email, or an error saying there is
// none.
func userByEmail(ctx context.Context, st *store.Store, email string) (*ferry.User, error) {
	e, err := auth.NormalizeEmail(email)
	if err != nil {
		return nil, publicError(err)
	}
	u, err := st.UserByEmail(ctx, e)
	if ferry.ErrorCode(err) == ferry.NotFound {
		return nil, fmt.Errorf("user not found: no account has the email %s", e)
	}
	return u, publicError(err)
}

// newPassword returns the new password, checked: the first line of
// standard input with --password-stdin, else one typed twice at a prompt on
// the terminal.
// Without either it is a usage error: a flag holding the password would
// show in ps and the shell's history.
func (c *cli) newPassword(ctx context.Context, f *flagSet, fromStdin bool) (string, error) {
	if fromStdin {
		line, err := bufio.NewReader(io.LimitReader(c.stdin, 4096)).ReadString('\n')
		if err != nil && err != io.EOF {
			return "", fmt.Errorf("read the password from standard input: %w", err)
		}
		password := strings.TrimRight(line, "\r\n")
		// Checked now, before the database is opened (or created).
		return password, publicError(auth.ValidatePassword(password))
	}
	if c.env.readPassword == nil {
		return "", f.usage("--password-stdin is required when standard input is not a terminal, as in\n  echo 'a long password' | ferry %s --email E --password-stdin", f.cmd.name)
	}
	first, err := c.env.readPassword(ctx, "Password: ")
	if err != nil {
		return "", err
	}
	if err := auth.ValidatePassword(first); err != nil {
		return "", publicError(err)
	}
	again, err := c.env.readPassword(ctx, "Again: ")
	if err != nil {
		return "", err
	}
	if again != first {
		return "", errors.New("the two passwords differ; nothing changed")
	}
	return first, nil
}

// publicError is err as a command prints it: a *ferry.Error's message
// alone, without the wrapping meant for logs.
func publicError(err error) error {
	var fe *ferry.Error
	if errors.As(err, &fe) {
		return errors.New(fe.Message)
	}
	return err
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/ferryhq/ferry/ingest"
	"github.com/ferryhq/ferry/store"
)

var migrateCommand = &cliCommand{
	name:    "migrate",
	args:    "[--status]",
	summary: "apply database migrations and show them",
	about: `Migrate applies the database migrations not yet applied, the job queue's
(River's) included, then lists them all with when each was applied. serve
does the same at start; run migrate as a deployment's release command. With --status it
changes nothing: on a fresh SQLite data directory it creates no file and says
there is no database yet. Neither needs SECRET_KEY.`,
	run: migrate,
}

func migrate(ctx context.Context, c *cli, f *flagSet, args []string) error {
	statusOnly := f.Bool("status", false, "show which migrations are applied, changing nothing")
	if err := f.parse(args); err != nil {
		return err
	}
	cfg, err := c.loadConfig("", false)
	if err != nil {
		return err
	}
	if *statusOnly && cfg.Database.Driver == "sqlite" {
		// Opening would create the file, and its directory.
		if _, err := os.Stat(cfg.Database.DSN); errors.Is(err, fs.ErrNotExist) {
			fmt.Fprintf(c.stdout, "no database yet at %s: ferry migrate, or ferry serve, creates it and applies every migration\n", cfg.Database.DSN)
			return nil
		}
	}
	st, err := store.Open(ctx, cfg.Database)
	if err != nil {
		return err
	}
	defer st.Close()
	queue := ingest.MigrationStatus
	if !*statusOnly {
		if err := st.Migrate(ctx); err != nil {
			return err
		}
		queue = ingest.Migrate
	}
	applied, all, err := queue(ctx, st, cfg.Database)
	if err != nil {
		return err
	}
	ms, err := st.Migrations(ctx)
	if err != nil {
		return err
	}
	var t table
	t.row("VERSION", "NAME", "APPLIED")
	for _, m := range ms {
		applied := "pending"
		if m.AppliedAt != nil {
			applied = m.AppliedAt.UTC().Format(time.RFC3339)
		}
		t.row(fmt.Sprintf("%04d", m.Version), m.Name, applied)
	}
	if err := t.write(c.stdout, "", 2); err != nil {
		return err
	}
	_, err = fmt.Fprintf(c.stdout, "job queue (River): %d of %d migrations applied\n", applied, all)
	return err
}

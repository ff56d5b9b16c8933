package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/stagebot/stagebot/store"
	"github.com/stagebot/stagebot/store/bolt"
	pgstore "github.com/stagebot/stagebot/store/postgres"
)

// isDSN tells a PostgreSQL connection string from a file name.
func isDSN(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://") || strings.Contains(s, "=")
}

// openAny opens a bolt file or a PostgreSQL store; a bolt file that is
// the destination may be new.
func openAny(ctx context.Context, where string) (store.Store, error) {
	if isDSN(where) {
		s, err := pgstore.Open(ctx, where)
		if err != nil {
			return nil, errors.New(redactDSNError(err, where))
		}
		return s, nil
	}
	return bolt.Open(where)
}

// copyStore moves everything a store holds into an empty one.
func copyStore(ctx context.Context, out io.Writer, from, to string) error {
	switch {
	case from == "" || to == "":
		return errors.New("give both --from and --to: a bolt file (store.path) and a PostgreSQL DSN (store.dsn), either way round")
	case from == to:
		return errors.New("--from and --to are the same store")
	}
	if !isDSN(from) {
		// Opening a bolt file that is not there would make an empty one
		// and copy nothing.
		if st, err := os.Stat(from); err != nil {
			return fmt.Errorf("--from: %w (give the bolt file the bot used: store.path)", err)
		} else if st.IsDir() {
			return fmt.Errorf("--from: %s is a directory; give the bolt file the bot used (store.path)", from)
		}
	}
	src, err := openAny(ctx, from)
	if err != nil {
		return fmt.Errorf("--from: %w", err)
	}
	defer src.Close()
	dst, err := openAny(ctx, to)
	if err != nil {
		return fmt.Errorf("--to: %w", err)
	}
	defer dst.Close()
	d, err := src.(store.Porter).Export(ctx)
	if err != nil {
		return fmt.Errorf("--from: %w", err)
	}
	if err := dst.(store.Porter).Import(ctx, d); err != nil {
		if errors.Is(err, store.ErrNotEmpty) {
			return fmt.Errorf("--to: %w; nothing was written (copy into a new bolt file or an empty database)", err)
		}
		return fmt.Errorf("--to: %w", err)
	}
	fmt.Fprintf(out, "copied %d runs, %d holds, %d approvals, %d audit events, %d watchers and %d marks from %s to %s\n",
		len(d.Runs), len(d.Holds), len(d.Approvals), len(d.Events), countWatchers(d), len(d.Marks), describeStore(from), describeStore(to))
	return nil
}

func countWatchers(d *store.Dump) int {
	n := 0
	for _, u := range d.Watchers {
		n += len(u)
	}
	return n
}

// describeStore names a store without its password.
func describeStore(where string) string {
	if !isDSN(where) {
		return where
	}
	cfg, err := pgconn.ParseConfig(where)
	if err != nil {
		return "the PostgreSQL store"
	}
	return fmt.Sprintf("postgres %s:%d/%s", cfg.Host, cfg.Port, cfg.Database)
}

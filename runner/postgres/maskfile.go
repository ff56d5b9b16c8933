package postgres

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5"

	"github.com/stagebot/stagebot/runner"
	"github.com/stagebot/stagebot/runner/mask"
)

// A masked target's backups and pg_dump copies are masked in the bot, as
// the stream is: each source is read as plain SQL (a plain backup as it
// is, an archive through pg_restore -f -, production through pg_dump),
// its schema goes to the shadow first, the masking plan is made from the
// shadow's catalog (which is the source's schema), and the rest, COPY data
// and all, goes to the shadow through the masker. Production's values
// never reach staging's server.

// plainSource opens the source as plain SQL: the stream, and a wait that
// says how the program making it (if any) ended.
type plainSource func(ctx context.Context) (io.Reader, func() error, error)

// maskedRestore restores src into the shadow next, masking its rows.
func (r *Refresh) maskedRestore(ctx context.Context, env *runner.Env, tl tools, next string, src plainSource) error {
	t := r.Target
	plain, wait, err := src(ctx)
	if err != nil {
		return err
	}
	// How the program reading the source ended comes first: a pg_restore
	// that failed on a damaged archive leaves the shadow without its
	// schema, and what failed after that (the gate finding no tables) is
	// only its echo.
	finish := func(err error) error {
		if wait == nil {
			return err
		}
		if werr := wait(); werr != nil {
			return fmt.Errorf("the backup is unreadable: %w", werr)
		}
		return err
	}
	mf := &maskFilter{sql: &sqlFilter{db: next, noOwner: t.NoOwner, noACL: t.NoACL}, br: bufio.NewReaderSize(plain, 1<<20), largeObjectsKept: t.Masking.Default != nil, bypass: t.rt.bypassMask}
	fmt.Fprintf(env.Log, "masking: the schema first, then the plan from the shadow's catalog, then the rows through the masker\n")
	if err := t.psqlFeed(ctx, env, tl, next, mf.schema); err != nil {
		return finish(fmt.Errorf("the schema: %w", err))
	}
	if mf.masks, err = t.shadowMasks(ctx, next); err != nil {
		return finish(err)
	}
	if err := t.psqlFeed(ctx, env, tl, next, mf.data); err != nil {
		return finish(fmt.Errorf("the data: %w", err))
	}
	if err := finish(nil); err != nil {
		return err
	}
	if !mf.sql.complete {
		return errors.New("the backup is incomplete: it ends without pg_dump's \"dump complete\" line")
	}
	fmt.Fprintf(env.Log, "masking: %d %s masked on the way in, %d truncated\n", mf.masked, plural(mf.masked, "table", "tables"), mf.truncated)
	return nil
}

// shadowMasks makes the masking plan from the shadow's catalog once the
// schema is in: the gate as for the stream (every column classified),
// and sql: rules refused, as no production server computes them here.
func (t *Target) shadowMasks(ctx context.Context, next string) (map[string]*tableMask, error) {
	c, err := connect(ctx, t.StagingDSN, next, false)
	if err != nil {
		return nil, err
	}
	defer closeConn(ctx, c)
	tables, err := streamTables(ctx, c)
	if err != nil {
		return nil, fmt.Errorf("the shadow's tables: %w", err)
	}
	var largeObjects int64
	if err := c.QueryRow(ctx, "select count(*) from pg_largeobject_metadata").Scan(&largeObjects); err != nil {
		return nil, err
	}
	if err := t.maskTables(ctx, c, tables, largeObjects); err != nil {
		return nil, err
	}
	out := map[string]*tableMask{}
	var computed []string
	for _, tb := range tables {
		p := tb.mask.plan
		for i, f := range p.Funcs {
			if f.Kind == mask.SQL {
				computed = append(computed, p.Table.Schema+"."+p.Table.Name+"."+p.Table.Columns[i].Name)
			}
		}
		out[p.Table.Schema+"."+p.Table.Name] = tb.mask
	}
	if len(computed) > 0 {
		return nil, fmt.Errorf("refused: sql: rules are computed by production's server as the stream reads it, and this copy comes from a backup or pg_dump, masked by stagebot: give %s another function (or copy with the streaming method)", strings.Join(computed, ", "))
	}
	return out, nil
}

// psqlFeed runs psql on the shadow, in one transaction, with what feed
// writes as its input.
func (t *Target) psqlFeed(ctx context.Context, env *runner.Env, tl tools, next string, feed func(io.Writer) error) error {
	sconn, senv, release, err := libpq(t.StagingDSN, next)
	if err != nil {
		return err
	}
	defer release()
	cmd := tool(ctx, env, senv, tl.psql, "-X", "-q", "--no-password", "-v", "ON_ERROR_STOP=1", "--single-transaction", "-d", sconn)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	feedErr := feed(stdin)
	if feedErr != nil && !errors.Is(feedErr, errBrokenPipe) {
		// Make psql stop rather than commit what it has.
		cmd.Process.Signal(syscall.SIGKILL)
	}
	stdin.Close()
	waitErr := cmd.Wait()
	switch {
	case feedErr != nil && !errors.Is(feedErr, errBrokenPipe):
		return feedErr
	case waitErr != nil:
		return fmt.Errorf("psql: %w", cmdErrOf(ctx, waitErr, cmd))
	}
	return nil
}

// fileSource reads a backup file as plain SQL: a plain one (compressed or
// not) as it is, an archive through pg_restore -f -.
func (r *Refresh) fileSource(env *runner.Env, tl tools, path string, format format, prog *progressPoller) plainSource {
	return func(ctx context.Context) (io.Reader, func() error, error) {
		var in io.Reader
		if !format.dir {
			f, err := os.Open(path)
			if err != nil {
				return nil, nil, err
			}
			st, _ := f.Stat()
			plain, err := decompress(&countingReader{r: f, total: st.Size(), prog: prog}, format.compression)
			if err != nil {
				f.Close()
				return nil, nil, fmt.Errorf("read %s: %w", path, err)
			}
			if !format.custom {
				return plain, f.Close, nil
			}
			// The file closes once pg_restore, which reads it, has ended.
			in = plain
			return producer(ctx, tool(ctx, env, nil, tl.restore, "-f", "-"), in, f.Close)
		}
		return producer(ctx, tool(ctx, env, nil, tl.restore, "-f", "-", path), nil, nil)
	}
}

// dumpSource reads production through pg_dump's plain output, at the
// snapshot held (the proof reads production at the same one).
func (r *Refresh) dumpSource(env *runner.Env, tl tools, held *heldSnapshot) plainSource {
	return func(ctx context.Context) (io.Reader, func() error, error) {
		pconn, penv, release, err := libpq(r.Target.ProductionDSN, "", readOnly)
		if err != nil {
			return nil, nil, err
		}
		fmt.Fprintf(env.Log, "pg_dump from %s, masked on its way in\n", Describe(r.Target.ProductionDSN))
		return producer(ctx, tool(ctx, env, penv, tl.dump, "--no-password", "--snapshot="+held.id, "-d", pconn), nil, func() error { release(); return nil })
	}
}

// heldSnapshot is a production session that exported its snapshot and
// holds it: pg_dump reads at it, and the masking proof compares the shadow
// with production as it was then, not as it is by the time the copy is in.
type heldSnapshot struct {
	c  *pgx.Conn
	id string
}

// holdSnapshot opens a read-only session on production and exports its
// snapshot.
func (t *Target) holdSnapshot(ctx context.Context) (*heldSnapshot, error) {
	c, err := t.production(ctx)
	if err != nil {
		return nil, err
	}
	h := &heldSnapshot{c: c}
	if _, err := c.Exec(ctx, "begin isolation level repeatable read read only"); err != nil {
		closeConn(ctx, c)
		return nil, fmt.Errorf("production: %w", err)
	}
	if err := c.QueryRow(ctx, "select pg_export_snapshot()").Scan(&h.id); err != nil {
		closeConn(ctx, c)
		return nil, fmt.Errorf("production: export a snapshot: %w", err)
	}
	if err := c.PgConn().Exec(ctx, "set local row_security = off; "+textOutput("local")).Close(); err != nil {
		closeConn(ctx, c)
		return nil, fmt.Errorf("production: %w", err)
	}
	return h, nil
}

func (h *heldSnapshot) close(ctx context.Context) {
	if h != nil {
		closeConn(ctx, h.c)
	}
}

// producer starts a program whose standard output is the plain SQL; its
// wait says how it ended, and closes what it read.
func producer(ctx context.Context, cmd *exec.Cmd, stdin io.Reader, closeAfter func() error) (io.Reader, func() error, error) {
	cmd.Stdin = stdin
	cmd.Stdout = nil // tool sends it to the log; here it is the SQL
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	return out, func() error {
		// What is left unread (after a failure) is drained, so that the
		// program ends rather than blocks on a full pipe.
		io.Copy(io.Discard, out)
		err := cmd.Wait()
		if closeAfter != nil {
			closeAfter()
		}
		if err != nil {
			return fmt.Errorf("%s: %w", filepath.Base(cmd.Path), cmdErrOf(ctx, err, cmd))
		}
		return nil
	}, nil
}

// scanMaskedShadow is the proof of a copy masked from a backup or
// pg_dump. The shadow's kept text columns are sampled, and values that
// look personal fail the refresh. After pg_dump, production at the dump's
// snapshot (held) is at hand too, and a sample of each masked table is
// compared with it as the stream's proof does; a backup has nothing of
// production to compare with.
func (t *Target) scanMaskedShadow(ctx context.Context, env *runner.Env, next string, held *heldSnapshot) error {
	if t.Masking == nil {
		return nil
	}
	c, err := connect(ctx, t.StagingDSN, next, false)
	if err != nil {
		return err
	}
	defer closeConn(ctx, c)
	tables, err := streamTables(ctx, c)
	if err != nil {
		return err
	}
	if err := t.maskTables(ctx, c, tables, 0); err != nil {
		return err
	}
	var p proof
	if err := scanKept(ctx, c, tables, &p); err != nil {
		return err
	}
	line := fmt.Sprintf("kept columns of %d %s sampled: %d look personal", len(tables), plural(len(tables), "table", "tables"), len(p.personal))
	if held != nil {
		// Both sessions write values alike, whatever their servers' settings.
		if _, err := c.Exec(ctx, textOutput("session")); err != nil {
			return fmt.Errorf("shadow: %w", err)
		}
		if err := compareRows(ctx, held.c, c, tableChecks(tables, &p), &p); err != nil {
			return err
		}
		line = p.String()
	}
	// The proof's line is the step's last report, in the run's thread, as
	// the stream's is.
	fmt.Fprintf(env.Log, "masking: %s\n", line)
	if env.Progress != nil {
		env.Progress(runner.Progress{Items: line})
	}
	return p.err()
}

package postgres

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stagebot/stagebot/runner"
)

// Methods of copying a live production database.
const (
	// MethodStream copies server to server: schema first, table data in
	// parallel COPY streams on one exported snapshot, each table's indexes
	// as soon as its data is in, then ANALYZE. No temporary files.
	MethodStream = "stream"
	// MethodDump is pg_dump -Fd -j into a temporary directory, then
	// pg_restore -j.
	MethodDump = "dump"
)

// progressEvery is how often the streaming method reports progress.
var progressEvery = time.Second

func majorVersion(c *pgx.Conn) int {
	v := c.PgConn().ParameterStatus("server_version")
	n, _ := strconv.Atoi(strings.SplitN(strings.Fields(v + " ")[0], ".", 2)[0])
	return n
}

// stream copies live production into the shadow database next, in three
// phases: the plan (production's schema piped into the shadow while its
// catalog is read), the data (parallel COPY streams on one exported
// snapshot, each table's indexes, foreign keys and statistics built as
// soon as it is in) and the finish (what must come last).
func (r *Refresh) stream(ctx context.Context, env *runner.Env, tl tools, next string) error {
	src, err := r.openSource(ctx, env, next)
	if err != nil {
		return err
	}
	defer src.close()
	plan, err := src.readPlan(ctx, tl)
	if err != nil {
		return err
	}
	s := newStreamer(r, env, src, plan)
	if err := s.run(ctx); err != nil {
		return err
	}
	if err := s.finish(ctx); err != nil {
		return err
	}
	if err := s.proveMasked(ctx); err != nil {
		return err
	}
	if s.maskNote != "" {
		s.report(true)
	}
	return nil
}

// streamSource is what a streaming refresh reads from: a production
// session holding the snapshot every reader joins, the connection strings
// and environments of its tools, and the shadow being created beside it.
type streamSource struct {
	t            *Target
	env          *runner.Env
	next         string
	start        time.Time
	snap         *pgx.Conn
	snapshot     string
	largeObjects int64
	pconn, sconn string
	penv, senv   []string
	release      []func() // undone by close, last first

	created    chan error
	shadowOnce sync.Once
	shadowErr  error
}

// openSource starts creating the shadow and opens production's snapshot.
func (r *Refresh) openSource(ctx context.Context, env *runner.Env, next string) (src *streamSource, err error) {
	t := r.Target
	src = &streamSource{t: t, env: env, next: next, start: time.Now(), created: make(chan error, 1)}
	// The shadow is created while production is read; nothing goes into
	// it before waitShadow says so.
	go func() { src.created <- t.createShadow(ctx, env) }()
	src.release = append(src.release, func() { src.waitShadow() })
	defer func() {
		if err != nil {
			src.close()
		}
	}()
	if src.snap, err = t.production(ctx); err != nil {
		return nil, err
	}
	snap := src.snap
	src.release = append(src.release, func() { closeConn(ctx, snap) })
	if _, err := snap.Exec(ctx, "begin isolation level repeatable read read only"); err != nil {
		return nil, fmt.Errorf("production: %w", err)
	}
	if err := snap.QueryRow(ctx, "select pg_export_snapshot()").Scan(&src.snapshot); err != nil {
		return nil, fmt.Errorf("production: export a snapshot: %w", err)
	}
	if err := snap.QueryRow(ctx, "select count(*) from pg_largeobject_metadata").Scan(&src.largeObjects); err != nil {
		return nil, fmt.Errorf("production: %w", err)
	}
	var releaseProd, releaseStg func()
	if src.pconn, src.penv, releaseProd, err = libpq(t.ProductionDSN, "", readOnly); err != nil {
		return nil, err
	}
	src.release = append(src.release, releaseProd)
	if src.sconn, src.senv, releaseStg, err = libpq(t.StagingDSN, next); err != nil {
		return nil, err
	}
	src.release = append(src.release, releaseStg)
	return src, nil
}

// close releases what openSource took, last first, and waits for the
// shadow's creation to end.
func (src *streamSource) close() {
	for i := len(src.release) - 1; i >= 0; i-- {
		src.release[i]()
	}
}

// waitShadow waits until the shadow exists, or failed to.
func (src *streamSource) waitShadow() error {
	src.shadowOnce.Do(func() { src.shadowErr = <-src.created })
	return src.shadowErr
}

// since is how long the refresh has taken so far, for the log.
func (src *streamSource) since() time.Duration { return time.Since(src.start).Round(time.Millisecond) }

// dumpArgs are pg_dump's arguments for one section, on the snapshot.
func (src *streamSource) dumpArgs(section string) []string {
	a := []string{"--section=" + section, "--snapshot=" + src.snapshot, "--no-password", "-d", src.pconn}
	if src.t.NoOwner {
		a = append(a, "--no-owner")
	}
	if src.t.NoACL {
		a = append(a, "--no-acl")
	}
	return a
}

// schema pipes production's pre-data section into the shadow once it
// exists, and says whether both servers run the same major version (so
// that COPY may be binary).
func (src *streamSource) schema(ctx context.Context, tl tools, prodMajor int) (binary bool, err error) {
	err = pipeSchema(ctx, src.env, tl, src.penv, src.senv, src.dumpArgs("pre-data"), src.sconn, func() error {
		if err := src.waitShadow(); err != nil {
			return err
		}
		shadow, err := connect(ctx, src.t.StagingDSN, src.next, false)
		if err != nil {
			return err
		}
		binary = prodMajor == majorVersion(shadow)
		shadow.Close(ctx)
		fmt.Fprintf(src.env.Log, "schema: pg_dump --section=pre-data | psql into %s, created after %s\n", src.next, src.since())
		return nil
	})
	return binary, err
}

// pipeSchema runs pg_dump args | psql into the shadow. pg_dump starts at
// once (it reads the whole catalog before it writes a line); psql once
// ready says the shadow is there.
func pipeSchema(ctx context.Context, env *runner.Env, tl tools, penv, senv, args []string, sconn string, ready func() error) error {
	dump := tool(ctx, env, penv, tl.dump, args...)
	dump.Stdout = nil // piped into psql
	out, err := dump.StdoutPipe()
	if err != nil {
		return err
	}
	if err := dump.Start(); err != nil {
		return fmt.Errorf("pg_dump: %w", err)
	}
	if err := ready(); err != nil {
		dump.Process.Kill()
		dump.Wait()
		return err
	}
	psql := tool(ctx, env, senv, tl.psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "--no-password", "-d", sconn)
	psql.Stdin = out
	psql.Stdout = io.Discard
	perr := psql.Run()
	derr := dump.Wait()
	if derr != nil {
		return fmt.Errorf("pg_dump --section=pre-data: %w", cmdErrOf(ctx, derr, dump))
	}
	if perr != nil {
		return fmt.Errorf("schema into the shadow (psql): %w", cmdErrOf(ctx, perr, psql))
	}
	return nil
}

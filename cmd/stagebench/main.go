// Command stagebench times stagebot's refresh against the other ways teams
// copy a production database into staging, on the same two PostgreSQL
// servers, and checks that every way produced the same data.
//
//	make bench                      # pgbench scale 10 plus an orders table (about 300 MB)
//	make bench SCALE=50             # about 1.5 GB
//	make bench SHAPE=all SIZE=1GB   # every shape at about 1 GB
//	make bench SHAPE=all SCALE=10,dominant=16
//
// It starts two throwaway servers (production and staging), generates
// production with pgbench and an orders table with four secondary indexes,
// then replaces staging's copy with each method in turn. stagebot runs as a
// real process (bin/stagebot run, console chat), so its wall time is what a
// user waits for from `!stage resync … now` to the report, and its peak
// memory is the bot process's high-water mark (VmHWM).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/stagebot/stagebot/internal/pgtest"
)

func main() {
	scale := flag.String("scale", "10", "the scale production is generated at, for every shape (10; pgbench 50 is about 1.5 GB) or per shape (pgbench=30,dominant=16)")
	size := flag.String("size", "", "generate each shape at the scale that makes it about this big (1GB, 600MB); -scale per shape wins")
	jobs := flag.Int("jobs", 2, "parallel jobs for stagebot and for pg_dump/pg_restore -j")
	bin := flag.String("stagebot", "bin/stagebot", "the stagebot binary to time")
	against := flag.String("against", "", "another stagebot binary, timed in the same rounds (a row of its own) to compare a change with")
	runs := flag.Int("runs", 1, "times to run each method (the table shows the median wall time)")
	only := flag.String("methods", "", "comma-separated methods to run (default: all): "+strings.Join(methodNames(), ","))
	prof := flag.Bool("profile", false, "after the timed rounds, run each method once more under perf (every CPU, call stacks) and print where the machine's CPU went")
	shape := flag.String("shape", "pgbench", "the shape of the production database: "+strings.Join(shapeNames(), ", ")+", or all (each in turn)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	sc, err := parseScale(*scale)
	if err == nil {
		sc.size, err = parseSize(*size)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "stagebench:", err)
		os.Exit(2)
	}
	o := options{scale: sc, jobs: *jobs, runs: *runs, shape: *shape, stagebot: *bin, against: *against, methods: *only, profile: *prof, out: os.Stdout, log: os.Stderr}
	if err := bench(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "stagebench:", err)
		os.Exit(1)
	}
}

// env is one bench run: the servers, the tools and a scratch directory.
type env struct {
	prod, stg *pgtest.Server
	binDir    string
	stagebot  string
	against   string // -against, or ""
	jobs      int
	dir       string
	log       io.Writer
	masked    []maskedColumn // what the masked methods change
}

const db = "bench"

// verbose shows stagebot's chat and its whole run log, every build timed
// (STAGEBENCH_VERBOSE=1).
var verbose = os.Getenv("STAGEBENCH_VERBOSE") != ""

// serverSettings make the throwaway servers behave like real ones: durable
// writes, WAL for a replica, room for checkpoints.
var serverSettings = map[string]string{
	"fsync":                            "on",
	"synchronous_commit":               "on",
	"full_page_writes":                 "on",
	"wal_level":                        "replica",
	"max_wal_senders":                  "10",
	"shared_buffers":                   "512MB",
	"max_wal_size":                     "4GB",
	"checkpoint_timeout":               "15min",
	"max_parallel_maintenance_workers": "2",
}

// options are the command line's.
type options struct {
	scale      scales
	jobs, runs int
	shape      string // a shape's name, or "all"
	stagebot   string // the binary
	against    string // another binary to compare with, or ""
	methods    string // comma-separated keys; empty: all
	profile    bool   // each method once more under perf
	out, log   io.Writer
}

func bench(ctx context.Context, o options) error {
	jobs, runs, bin, only := o.jobs, o.runs, o.stagebot, o.methods
	switch {
	case o.scale.all < 1:
		return fmt.Errorf("-scale %d: give a scale of 1 or more (pgbench 50 is about 1.5 GB)", o.scale.all)
	case jobs < 1:
		return fmt.Errorf("-jobs %d: give 1 or more", jobs)
	case runs < 1:
		return fmt.Errorf("-runs %d: give 1 or more", runs)
	case o.shape == "":
		o.shape = "pgbench"
	}
	if o.shape != "all" && !slices.Contains(shapeNames(), o.shape) {
		return fmt.Errorf("-shape: no shape %q; pick from %s, or all", o.shape, strings.Join(shapeNames(), ", "))
	}
	// Checked before anything starts: a typo must not cost a generated
	// database.
	selected := map[string]bool{}
	for _, n := range strings.Split(only, ",") {
		if n = strings.TrimSpace(n); n == "" {
			continue
		}
		if !slices.Contains(methodNames(), n) {
			return fmt.Errorf("-methods: no method %q; pick from %s", n, strings.Join(methodNames(), ","))
		}
		selected[n] = true
	}
	stagebot, err := filepath.Abs(bin)
	if err != nil {
		return err
	}
	if _, err := os.Stat(stagebot); err != nil {
		return fmt.Errorf("%s is missing: run make build first (make bench does)", bin)
	}
	if o.against != "" {
		if o.against, err = filepath.Abs(o.against); err != nil {
			return err
		}
		if _, err := os.Stat(o.against); err != nil {
			return fmt.Errorf("-against %s: %w", o.against, err)
		}
	}
	binDir, err := pgtest.BinDir()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "stagebench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	if o.profile {
		if err := perfTools(ctx, dir); err != nil {
			return err
		}
	}
	b := &env{binDir: binDir, stagebot: stagebot, against: o.against, jobs: jobs, dir: dir, log: o.log}
	fmt.Fprintf(b.log, "starting production and staging servers…\n")
	if b.prod, err = pgtest.Start(ctx, pgtest.Options{Settings: serverSettings}); err != nil {
		return err
	}
	defer b.prod.Stop()
	if b.stg, err = pgtest.Start(ctx, pgtest.Options{Settings: serverSettings}); err != nil {
		return err
	}
	defer b.stg.Stop()

	failed := false
	for _, sh := range shapes {
		if o.shape != "all" && o.shape != sh.name {
			continue
		}
		err := b.benchShape(ctx, o, sh, selected)
		switch {
		case errors.Is(err, errDiffers):
			failed = true
		case err != nil:
			return fmt.Errorf("shape %s: %w", sh.name, err)
		}
	}
	if failed {
		return errors.New("a method failed or produced different data")
	}
	return nil
}

// errDiffers: a method failed, or its copy differs from production.
var errDiffers = errors.New("a method failed or produced different data")

// benchShape generates production in one shape and times every method on
// it, in rounds, then prints the table.
func (b *env) benchShape(ctx context.Context, o options, sh shape, selected map[string]bool) error {
	scale, runs := o.scale.of(sh), o.runs
	t0 := time.Now()
	fmt.Fprintf(b.log, "generating production: %s…\n", sh.describe(scale))
	if err := sqlExec(ctx, b.prod.DSN("postgres"), "drop database if exists "+db+" with (force)", "create database "+db); err != nil {
		return err
	}
	if err := sh.generate(b, ctx, scale); err != nil {
		return fmt.Errorf("generate production: %w", err)
	}
	if err := sqlExec(ctx, b.prod.DSN(db), "vacuum analyze", "checkpoint"); err != nil {
		return err
	}
	var size int64
	if err := query(ctx, b.prod.DSN(db), "select pg_database_size(current_database())", &size); err != nil {
		return err
	}
	want, err := fingerprint(ctx, b.prod.DSN(db))
	if err != nil {
		return err
	}
	fmt.Fprintf(b.log, "production: %s in %s\n", mib(size), time.Since(t0).Round(time.Second))
	masked, columns, err := maskedColumns(ctx, b.prod.DSN(db))
	if err != nil {
		return fmt.Errorf("pick the columns to mask: %w", err)
	}
	b.masked = masked
	fmt.Fprintf(b.log, "the masked methods change %d of %d columns\n", len(masked), columns)
	// Staging has a database to replace, as it would in real life.
	if err := sqlExec(ctx, b.stg.DSN("postgres"), "drop database if exists "+db+" with (force)", "create database "+db); err != nil {
		return err
	}

	type row struct {
		name string
		runs []result
		res  result // the median run's; memory: the worst run's
		err  error
		same string
		prof *profile // -profile's run, or nil
	}
	var rows []*row
	for _, m := range methods {
		if m.key == "against" && b.against == "" || m.key != "against" && len(selected) > 0 && !selected[m.key] {
			continue
		}
		if m.key == "pgcopydb" {
			if _, err := exec.LookPath("pgcopydb"); err != nil {
				fmt.Fprintf(b.log, "%s: not installed (Debian package pgcopydb), skipped\n", m.name)
				continue
			}
		}
		same := "identical"
		if m.key == "masked" || m.key == "update" {
			same = "masked"
		}
		rows = append(rows, &row{name: m.name, same: same})
	}
	// A first copy nobody times: a new server creates and zero-fills its
	// WAL segments as it goes, later copies recycle them, and whichever
	// method ran first would pay for that alone.
	fmt.Fprintf(b.log, "warming up staging (pg_dump | psql, not timed)…\n")
	if _, err := b.dumpPsql(ctx); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	// Rounds go through every method in turn, so slow drift (caches,
	// checkpoints) spreads over all of them, and each round starts with
	// the next method, so that no method is always the first after the
	// warm-up or the generation.
	for round := 1; round <= runs; round++ {
		for i := range rows {
			r := rows[(i+round-1)%len(rows)]
			if r.err != nil {
				continue
			}
			m := methodNamed(r.name)
			if m.once && round > 1 {
				continue
			}
			if err := b.settle(ctx); err != nil {
				return err
			}
			fmt.Fprintf(b.log, "%s (run %d of %d)…\n", m.name, round, runs)
			before := cpuStat()
			stopTrace := b.trace(ctx)
			res, err := m.run(b, ctx)
			res.timeline = stopTrace()
			res.busy = before.busySince()
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err != nil {
				r.err = err
				fmt.Fprintf(b.log, "%s: %v\n", m.name, err)
				continue
			}
			got, ferr := fingerprint(ctx, b.stg.DSN(db))
			switch {
			case r.same == "masked":
			case ferr != nil:
				r.same = "error: " + ferr.Error()
			case got.equal(want) != "":
				r.same = "DIFFERS: " + got.equal(want)
			}
			fmt.Fprintf(b.log, "%s: %s, staging unavailable %s, data %s\n", m.name, dur(res.wall), dur(res.unavailable), r.same)
			r.runs = append(r.runs, res)
		}
	}
	if o.profile {
		for _, r := range rows {
			if r.err != nil || len(r.runs) == 0 {
				continue
			}
			if err := b.settle(ctx); err != nil {
				return err
			}
			fmt.Fprintf(b.log, "%s, under perf (not timed)…\n", r.name)
			p, err := b.profiled(ctx, methodNamed(r.name))
			if err != nil {
				fmt.Fprintf(b.log, "%s: profile: %v\n", r.name, err)
				continue
			}
			r.prof = p
		}
	}
	// Round by round, against stagebot's streaming refresh in the same
	// round: slow drift on a shared machine hits both alike.
	var stream *row
	for _, r := range rows {
		if r.name == "stagebot stream" && r.err == nil {
			stream = r
		}
	}
	wins := map[*row]string{}
	for _, r := range rows {
		if stream == nil || r == stream || r.err != nil {
			continue
		}
		n, won := min(len(r.runs), len(stream.runs)), 0
		for i := range n {
			if stream.runs[i].wall < r.runs[i].wall {
				won++
			}
		}
		wins[r] = fmt.Sprintf("%d of %d", won, n)
	}
	for _, r := range rows {
		if len(r.runs) > 0 {
			slices.SortFunc(r.runs, func(a, b result) int { return int(a.wall - b.wall) })
			r.res = r.runs[len(r.runs)/2]
			for _, x := range r.runs {
				r.res.peakRSS = max(r.res.peakRSS, x.peakRSS)
			}
		}
	}

	var base time.Duration
	for _, r := range rows {
		if r.name == "stagebot stream" && r.err == nil {
			base = r.res.wall
		}
	}
	var version string
	query(ctx, b.prod.DSN(db), "select current_setting('server_version')", &version)
	fmt.Fprintf(o.out, "\nShape %s. Production: %s, %s; PostgreSQL %s; %s.\n", sh.name, sh.describe(scale), mib(size), version, machine())
	if runs > 1 {
		fmt.Fprintf(o.out, "Each method ran %d times (pg_dump | xz once); the table shows the run with the median wall time, the fastest and slowest runs, in how many rounds stagebot's streaming refresh was faster than the method's run in the same round, and the highest peak memory of all runs.\n", runs)
	}
	fmt.Fprintln(o.out)
	fmt.Fprintln(o.out, "| method | wall time | fastest–slowest | vs stagebot stream | stagebot faster in | staging unavailable | bot peak memory | machine busy | data |")
	fmt.Fprintln(o.out, "|---|---:|---:|---:|---:|---:|---:|---:|---|")
	failed := false
	for _, r := range rows {
		if r.err != nil {
			failed = true
			fmt.Fprintf(o.out, "| %s | failed: %s | | | | | | | |\n", cell(r.name), strings.ReplaceAll(r.err.Error(), "\n", " "))
			continue
		}
		if r.same != "identical" && r.same != "masked" {
			failed = true
		}
		ratio := "—"
		if base > 0 {
			ratio = fmt.Sprintf("%.2f×", r.res.wall.Seconds()/base.Seconds())
		}
		mem := "—"
		if r.res.peakRSS > 0 {
			mem = mib(r.res.peakRSS)
		}
		spread := dur(r.runs[0].wall)
		if len(r.runs) > 1 {
			spread += "–" + dur(r.runs[len(r.runs)-1].wall)
		}
		won := "—"
		if w, ok := wins[r]; ok {
			won = w + " rounds"
		}
		fmt.Fprintf(o.out, "| %s | %s | %s | %s | %s | %s | %s | %.0f%% | %s |\n", cell(r.name), dur(r.res.wall), spread, ratio, won, dur(r.res.unavailable), mem, 100*r.res.busy, r.same)
	}
	for _, r := range rows {
		if r.err == nil && len(r.runs) > 0 {
			r.res.timeline.print(o.out, r.name)
		}
	}
	for _, r := range rows {
		if r.prof != nil {
			r.prof.print(o.out, r.name)
		}
	}
	if failed {
		return errDiffers
	}
	return nil
}

// generate fills production: pgbench's tables with their keys, plus an
// orders table with an identity key and four secondary indexes.
func (b *env) generate(ctx context.Context, scale int) error {
	if err := b.shell(ctx, fmt.Sprintf("pgbench -i -q -I dtGvpf -s %d %q", scale, b.prod.DSN(db))); err != nil {
		return err
	}
	return sqlExec(ctx, b.prod.DSN(db),
		`create table orders (
			id bigint generated always as identity primary key,
			account_id int not null, branch_id int not null,
			placed timestamptz not null, status text not null,
			amount numeric(12,2) not null, note text)`,
		fmt.Sprintf(`insert into orders (account_id, branch_id, placed, status, amount, note)
			select 1 + (g::bigint * 7919) %% %d, 1 + g %% %d, timestamptz '2025-01-01' + g * interval '13 seconds',
			       (array['new','paid','shipped','returned'])[1 + g %% 4], (g %% 100000) / 100.0, md5(g::text)
			from generate_series(1, %d) g`, scale*100000, scale, scale*70000),
		`create index orders_account_idx on orders (account_id)`,
		`create index orders_placed_idx on orders (placed)`,
		`create index orders_status_idx on orders (status, placed)`,
		`create index orders_branch_idx on orders (branch_id, amount)`)
}

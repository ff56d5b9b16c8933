// Command stagebench times stagebot's refresh against the other ways teams
// copy a production database into staging, on the same two PostgreSQL
// servers, and checks that every way produced the same data.
//
//	make bench            # pgbench scale 10 plus an orders table (about 300 MB)
//	make bench SCALE=50   # about 1.5 GB
//
// It starts two throwaway servers (production and staging), generates
// production with pgbench and an orders table with four secondary indexes,
// then replaces staging's copy with each method in turn. stagebot runs as a
// real process (bin/stagebot run, console chat), so its wall time is what a
// user waits for from `!stage resync … now` to the report, and its peak
// memory is the bot process's high-water mark (VmHWM).
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stagebot/stagebot/internal/pgtest"
)

func main() {
	scale := flag.Int("scale", 10, "pgbench scale of the generated production database (50 is about 1.5 GB)")
	jobs := flag.Int("jobs", 2, "parallel jobs for stagebot and for pg_dump/pg_restore -j")
	bin := flag.String("stagebot", "bin/stagebot", "the stagebot binary to time")
	against := flag.String("against", "", "another stagebot binary, timed in the same rounds (a row of its own) to compare a change with")
	runs := flag.Int("runs", 1, "times to run each method (the table shows the median wall time)")
	only := flag.String("methods", "", "comma-separated methods to run (default: all): "+strings.Join(methodNames(), ","))
	shape := flag.String("shape", "pgbench", "the shape of the production database: "+strings.Join(shapeNames(), ", ")+", or all (each in turn)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	o := options{scale: *scale, jobs: *jobs, runs: *runs, shape: *shape, stagebot: *bin, against: *against, methods: *only, out: os.Stdout, log: os.Stderr}
	if err := bench(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "stagebench:", err)
		os.Exit(1)
	}
}

// A method replaces staging's database with production's.
type method struct {
	key, name string
	run       func(b *env, ctx context.Context) (result, error)
	once      bool // minutes long and never close: one run is enough
}

type result struct {
	wall        time.Duration
	unavailable time.Duration
	peakRSS     int64   // bytes; 0 when not measured
	busy        float64 // share of the machine's CPU time in use meanwhile (0–1)
}

var methods = []method{
	{"stream", "stagebot stream", func(b *env, ctx context.Context) (result, error) {
		return b.runStagebot(ctx, b.stagebot, "stream", false)
	}, false},
	// -against: the same refresh by another build, to measure a change
	// round by round on the same servers.
	{"against", "stagebot stream, -against binary", func(b *env, ctx context.Context) (result, error) {
		return b.runStagebot(ctx, b.against, "stream", false)
	}, false},
	{"dump", "stagebot dump", func(b *env, ctx context.Context) (result, error) {
		return b.runStagebot(ctx, b.stagebot, "dump", false)
	}, false},
	// A reset copies the base the refresh before it kept (keep_base); only
	// the reset is timed.
	{"reset", "stagebot reset (from the base)", func(b *env, ctx context.Context) (result, error) {
		return b.runStagebot(ctx, b.stagebot, "stream", true)
	}, false},
	{"psql", "pg_dump | psql", (*env).dumpPsql, false},
	{"dir", "pg_dump -Fd -j + pg_restore -j", (*env).dumpDir, false},
	{"xz", "pg_dump | xz + xzcat | psql", (*env).dumpXz, true},
	{"pgcopydb", "pgcopydb clone", (*env).pgcopydb, false},
}

func methodNamed(name string) method {
	for _, m := range methods {
		if m.name == name {
			return m
		}
	}
	panic("no method " + name)
}

func methodNames() []string {
	var out []string
	for _, m := range methods {
		if m.key != "against" {
			out = append(out, m.key)
		}
	}
	return out
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
}

const db = "bench"

// verbose shows stagebot's chat and run log (STAGEBENCH_VERBOSE=1).
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
	scale, jobs, runs int
	shape             string // a shape's name, or "all"
	stagebot          string // the binary
	against           string // another binary to compare with, or ""
	methods           string // comma-separated keys; empty: all
	out, log          io.Writer
}

func bench(ctx context.Context, o options) error {
	scale, jobs, runs, bin, only := o.scale, o.jobs, o.runs, o.stagebot, o.methods
	switch {
	case scale < 1:
		return fmt.Errorf("-scale %d: give a pgbench scale of 1 or more (SCALE=50 is about 1.5 GB)", scale)
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
	scale, runs := o.scale, o.runs
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
		rows = append(rows, &row{name: m.name, same: "identical"})
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
			res, err := m.run(b, ctx)
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
			case ferr != nil:
				r.same = "error: " + ferr.Error()
			case got.equal(want) != "":
				r.same = "DIFFERS: " + got.equal(want)
			}
			fmt.Fprintf(b.log, "%s: %s, staging unavailable %s, data %s\n", m.name, dur(res.wall), dur(res.unavailable), r.same)
			r.runs = append(r.runs, res)
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
		if r.same != "identical" {
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

// runStagebot runs bin/stagebot with a console chat, asks it for a refresh now
// and waits for the report. With reset, the refresh keeps a base, untimed,
// and a reset to it is what is timed.
func (b *env) runStagebot(ctx context.Context, bin, method string, reset bool) (result, error) {
	// A new store each time: every run is run 1.
	work, err := os.MkdirTemp(b.dir, "stagebot-"+method+"-")
	if err != nil {
		return result{}, err
	}
	defer os.RemoveAll(work)
	cfg := fmt.Sprintf(`timezone: UTC
store:
  path: %s
access:
  control_channels: [infra]
  everyone: [stage]
targets:
  bench:
    database:
      production: %s
      staging: %s
      adopt: true
      keep_previous: false
      keep_base: %t
      jobs: %d
      work_dir: %s
    pipelines:
      default:
        steps:
          - name: copy production
            pg_refresh:
              method: %s
`, filepath.Join(work, "stagebot.db"), b.prod.DSN(db), b.stg.DSN(db), reset, b.jobs, work, method)
	cfgPath := filepath.Join(work, "stagebot.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return result{}, err
	}
	cmd := exec.CommandContext(ctx, bin, "run", "-c", cfgPath, "--as", "bench")
	cmd.Env = append(os.Environ(), "PATH="+b.binDir+":"+os.Getenv("PATH"))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return result{}, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return result{}, err
	}
	logFile, err := os.Create(filepath.Join(work, "stagebot.log"))
	if err != nil {
		return result{}, err
	}
	defer logFile.Close()
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		return result{}, err
	}
	defer cmd.Process.Kill()
	lines := make(chan string, 1024)
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			fmt.Fprintln(logFile, sc.Text())
			lines <- sc.Text()
		}
		close(lines)
	}()
	var res result
	var report []string
	run, pipeline, command := 1, "default", "!stage resync bench now\n"
	if reset {
		if _, err := io.WriteString(stdin, command); err != nil {
			return result{}, err
		}
		for l := range lines {
			report = append(report, l)
			if strings.Contains(l, "Run 1 of bench/default failed") || strings.Contains(l, "Run 1 of bench/default: failed") {
				return result{}, fmt.Errorf("stagebot's refresh before the reset failed:\n%s", strings.Join(report, "\n"))
			}
			if strings.Contains(l, "✓ swap it into place") {
				break
			}
		}
		if err := b.settle(ctx); err != nil {
			return result{}, err
		}
		run, pipeline, command = 2, "reset", "!stage reset bench now\n"
	}
	start := time.Now()
	if _, err := io.WriteString(stdin, command); err != nil {
		return result{}, err
	}
	succeeded, failed, failed2 := fmt.Sprintf("Run %d of bench/%s: succeeded after", run, pipeline), fmt.Sprintf("Run %d of bench/%s failed", run, pipeline), fmt.Sprintf("Run %d of bench/%s: failed", run, pipeline)
	for done := false; !done; {
		select {
		case <-ctx.Done():
			return result{}, ctx.Err()
		case l, ok := <-lines:
			if !ok {
				return result{}, fmt.Errorf("stagebot exited before the run ended; see %s", logFile.Name())
			}
			report = append(report, l)
			if verbose {
				fmt.Fprintln(b.log, "  "+l)
			}
			if i := strings.Index(l, "unavailable for "); i >= 0 {
				if d, err := time.ParseDuration(strings.TrimRight(strings.Fields(l[i+len("unavailable for "):])[0], ",;)")); err == nil {
					res.unavailable = d
				}
			}
			switch {
			case strings.Contains(l, succeeded):
				res.wall = time.Since(start)
			case res.wall > 0 && strings.Contains(l, "✓ swap it into place"):
				done = true // the report's last step
			case strings.Contains(l, failed), strings.Contains(l, failed2):
				return result{}, fmt.Errorf("stagebot's run failed:\n%s", strings.Join(report, "\n"))
			}
		}
	}
	res.peakRSS = vmHWM(cmd.Process.Pid)
	if verbose {
		fmt.Fprintf(b.log, "  stagebot used %s of CPU\n", cpuTime(cmd.Process.Pid))
		io.WriteString(stdin, "!stage log 1\n")
		for quiet := time.After(2 * time.Second); ; {
			select {
			case l := <-lines:
				fmt.Fprintln(b.log, "  "+l)
				continue
			case <-quiet:
			}
			break
		}
	}
	io.WriteString(stdin, "/quit\n")
	stdin.Close()
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case <-waited:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
	}
	return res, nil
}

// settle starts every method from the same state: the tables the previous
// one restored vacuumed and analyzed, no autovacuum worker busy, dirty
// buffers and pages written out, so that its deferred work is not charged
// to the next. (A restore that leaves its tables unvacuumed has autovacuum
// vacuum them within a minute, during whichever method runs then.)
func (b *env) settle(ctx context.Context) error {
	var exists bool
	if err := query(ctx, b.stg.DSN("postgres"), "select exists (select 1 from pg_database where datname = '"+db+"')", &exists); err != nil {
		return err
	}
	if exists {
		if err := sqlExec(ctx, b.stg.DSN(db), "vacuum (analyze)"); err != nil {
			return err
		}
	}
	for _, dsn := range []string{b.prod.DSN("postgres"), b.stg.DSN("postgres")} {
		for range 600 {
			var busy int
			if err := query(ctx, dsn, "select count(*) from pg_stat_activity where backend_type = 'autovacuum worker'", &busy); err != nil {
				return err
			}
			if busy == 0 {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	for _, dsn := range []string{b.prod.DSN("postgres"), b.stg.DSN("postgres")} {
		if err := sqlExec(ctx, dsn, "checkpoint"); err != nil {
			return err
		}
	}
	syscall.Sync()
	return nil
}

// replace drops staging's database, creates an empty one and runs restore
// into it: staging is unavailable from the drop until restore ends.
func (b *env) replace(ctx context.Context, restore string) (time.Duration, error) {
	t0 := time.Now()
	if err := sqlExec(ctx, b.stg.DSN("postgres"),
		"drop database if exists "+db+" with (force)",
		"drop database if exists "+db+"__stagebot_prev with (force)",
		"drop database if exists "+db+"__stagebot_old with (force)",
		"create database "+db); err != nil {
		return 0, err
	}
	if err := b.shell(ctx, restore); err != nil {
		return 0, err
	}
	return time.Since(t0), nil
}

func (b *env) dumpPsql(ctx context.Context) (result, error) {
	d, err := b.replace(ctx, fmt.Sprintf("pg_dump %q | psql -X -q -v ON_ERROR_STOP=1 -d %q", b.prod.DSN(db), b.stg.DSN(db)))
	return result{wall: d, unavailable: d}, err
}

func (b *env) dumpDir(ctx context.Context) (result, error) {
	out := filepath.Join(b.dir, "dump.d")
	defer os.RemoveAll(out)
	t0 := time.Now()
	if err := b.shell(ctx, fmt.Sprintf("pg_dump -Fd -j %d -f %q %q", b.jobs, out, b.prod.DSN(db))); err != nil {
		return result{}, err
	}
	d, err := b.replace(ctx, fmt.Sprintf("pg_restore -j %d --exit-on-error -d %q %q", b.jobs, b.stg.DSN(db), out))
	return result{wall: time.Since(t0), unavailable: d}, err
}

func (b *env) dumpXz(ctx context.Context) (result, error) {
	out := filepath.Join(b.dir, "dump.sql.xz")
	defer os.Remove(out)
	t0 := time.Now()
	if err := b.shell(ctx, fmt.Sprintf("pg_dump %q | xz > %q", b.prod.DSN(db), out)); err != nil {
		return result{}, err
	}
	d, err := b.replace(ctx, fmt.Sprintf("xzcat %q | psql -X -q -v ON_ERROR_STOP=1 -d %q", out, b.stg.DSN(db)))
	return result{wall: time.Since(t0), unavailable: d}, err
}

// pgcopydb runs with its own defaults for table and index jobs.
func (b *env) pgcopydb(ctx context.Context) (result, error) {
	work := filepath.Join(b.dir, "pgcopydb")
	defer os.RemoveAll(work)
	d, err := b.replace(ctx, fmt.Sprintf("pgcopydb clone --source %q --target %q --dir %q", b.prod.DSN(db), b.stg.DSN(db), work))
	return result{wall: d, unavailable: d}, err
}

// shell runs a bash pipeline with the servers' PostgreSQL tools first on
// PATH; any failing part fails it.
func (b *env) shell(ctx context.Context, script string) error {
	cmd := exec.CommandContext(ctx, "bash", "-o", "pipefail", "-c", script)
	cmd.Env = append(os.Environ(), "PATH="+b.binDir+":"+os.Getenv("PATH"))
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	if verbose {
		cmd.Stdout, cmd.Stderr = b.log, io.MultiWriter(&stderr, b.log)
	}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w\n%s", script, err, lastLines(stderr.String(), 10))
	}
	return nil
}

// fp is a database's fingerprint: per table its row count and an
// order-independent sum of row hashes, plus its indexes, constraints and
// sequence positions.
type fp map[string]string

func (a fp) equal(b fp) string {
	var diff []string
	for k, v := range b {
		if a[k] != v {
			diff = append(diff, k)
		}
	}
	for k := range a {
		if _, ok := b[k]; !ok {
			diff = append(diff, k)
		}
	}
	return strings.Join(diff, ", ")
}

func fingerprint(ctx context.Context, dsn string) (fp, error) {
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, err
	}
	defer c.Close(ctx)
	rows, err := c.Query(ctx, `select format('%I.%I', schemaname, tablename) from pg_tables
		where schemaname not in ('pg_catalog', 'information_schema') order by 1`)
	if err != nil {
		return nil, err
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	out := fp{}
	for _, t := range tables {
		var n int64
		var sum string
		if err := c.QueryRow(ctx, "select count(*), coalesce(sum(hashtext(t::text)::bigint), 0)::text from only "+t+" t").Scan(&n, &sum); err != nil {
			return nil, err
		}
		out["table "+t] = fmt.Sprintf("%d rows, %s", n, sum)
	}
	for k, q := range map[string]string{
		"indexes":     `select coalesce(string_agg(indexdef, '; ' order by indexdef), '') from pg_indexes where schemaname = 'public'`,
		"constraints": `select coalesce(string_agg(conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid), '; ' order by conrelid::regclass::text, conname), '') from pg_constraint where connamespace = 'public'::regnamespace`,
		"sequences":   `select coalesce(string_agg(sequencename || '=' || coalesce(last_value::text, 'unset'), '; ' order by sequencename), '') from pg_sequences where schemaname = 'public'`,
	} {
		var v string
		if err := c.QueryRow(ctx, q).Scan(&v); err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
		out[k] = v
	}
	return out, nil
}

func sqlExec(ctx context.Context, dsn string, sql ...string) error {
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	for _, s := range sql {
		if _, err := c.Exec(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", strings.Fields(s)[0], err)
		}
	}
	return nil
}

func query(ctx context.Context, dsn, q string, dst any) error {
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	return c.QueryRow(ctx, q).Scan(dst)
}

// vmHWM is a process's peak resident memory in bytes.
func vmHWM(pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(data), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// cpuTime is the user and system CPU time a process has used so far.
func cpuTime(pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The fields after the command's name, which is in parentheses.
	f := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100 // USER_HZ
}

func machine() string {
	cpu := runtime.GOARCH
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := ""
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		if f := strings.Fields(string(data)); len(f) > 1 {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			mem = fmt.Sprintf(", %.0f GB RAM", float64(kb)/(1<<20))
		}
	}
	return fmt.Sprintf("%d cores (%s)%s", runtime.NumCPU(), cpu, mem)
}

func mib(n int64) string {
	if n >= 1<<30 {
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	}
	return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20))
}

func dur(d time.Duration) string {
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(100 * time.Millisecond).String()
}

// cell escapes a Markdown table cell.
func cell(s string) string { return strings.ReplaceAll(s, "|", "\\|") }

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// cpuTimes are the machine's CPU counters from /proc/stat, in clock ticks.
type cpuTimes struct{ total, idle uint64 }

func cpuStat() cpuTimes {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal …
	var c cpuTimes
	for i, v := range f[1:] {
		n, _ := strconv.ParseUint(v, 10, 64)
		if i < 8 { // guest time is counted in user already
			c.total += n
		}
		if i == 3 || i == 4 { // idle and iowait
			c.idle += n
		}
	}
	return c
}

// busySince is the share of the machine's CPU time in use since c.
func (c cpuTimes) busySince() float64 {
	now := cpuStat()
	total := now.total - c.total
	if total == 0 {
		return 0
	}
	return 1 - float64(now.idle-c.idle)/float64(total)
}

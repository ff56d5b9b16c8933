package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

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
	timeline    *timeline
}

var methods = []method{
	{"stream", "stagebot stream", func(b *env, ctx context.Context) (result, error) {
		return b.runStagebot(ctx, b.stagebot, "stream", false)
	}, false},
	// A quarter of the columns masked in the stream, against the same
	// columns changed by UPDATEs on the shadow after an unmasked copy.
	{"masked", "stagebot stream, a quarter of the columns masked", func(b *env, ctx context.Context) (result, error) {
		return b.runStagebotWith(ctx, b.stagebot, "stream", false, variant{masking: maskingYAML(b.masked)})
	}, false},
	{"update", "stagebot stream, then UPDATE the same columns", func(b *env, ctx context.Context) (result, error) {
		return b.runStagebotWith(ctx, b.stagebot, "stream", false, variant{steps: updateSQL(b.masked)})
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

// runStagebot runs bin/stagebot with a console chat, asks it for a refresh now
// and waits for the report. With reset, the refresh keeps a base, untimed,
// and a reset to it is what is timed.
func (b *env) runStagebot(ctx context.Context, bin, method string, reset bool) (result, error) {
	return b.runStagebotWith(ctx, bin, method, reset, variant{})
}

// variant is what a method adds to the bench's config: a masking section
// in the database section, steps after the copy.
type variant struct{ masking, steps string }

func (b *env) runStagebotWith(ctx context.Context, bin, method string, reset bool, v variant) (result, error) {
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
%s    pipelines:
      default:
        steps:
          - name: copy production
            pg_refresh:
              method: %s
%s`, filepath.Join(work, "stagebot.db"), b.prod.DSN(db), b.stg.DSN(db), reset, b.jobs, work, v.masking, method, v.steps)
	cfgPath := filepath.Join(work, "stagebot.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return result{}, err
	}
	cmd := exec.CommandContext(ctx, bin, "run", "-c", cfgPath, "--as", "bench")
	cmd.Env = append(os.Environ(), "PATH="+b.binDir+":"+os.Getenv("PATH"), "STAGEBENCH_MASK_KEY="+maskKey)
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
		io.WriteString(stdin, "!stage log 1 full\n")
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
	cmd.Env = append(os.Environ(), "PATH="+b.binDir+":"+os.Getenv("PATH"), "STAGEBENCH_MASK_KEY="+maskKey)
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

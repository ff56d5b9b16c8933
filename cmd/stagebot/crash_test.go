package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stagebot/stagebot/internal/patience"
	"github.com/stagebot/stagebot/internal/pgtest"
	"github.com/stagebot/stagebot/runner/postgres"
)

// TestMain lets the test binary act as the stagebot command, so that tests
// can run the bot as a real process and kill it.
func TestMain(m *testing.M) {
	if os.Getenv("STAGEBOT_TEST_AS_MAIN") == "1" {
		// The swap stops between its renames, or once it has committed,
		// says so in a file and waits to be killed.
		pause := func(path string) func() {
			return func() {
				os.WriteFile(path, []byte("paused"), 0o600)
				time.Sleep(time.Minute)
			}
		}
		if path := os.Getenv("STAGEBOT_TEST_SWAP_PAUSE"); path != "" {
			postgres.BetweenRenames = pause(path)
		}
		if path := os.Getenv("STAGEBOT_TEST_AFTER_SWAP_PAUSE"); path != "" {
			postgres.AfterSwap = pause(path)
		}
		main()
		if os.Getenv("STAGEBOT_TEST_REPORT_HWM") != "" {
			// The process's own peak memory (its rusage would count the
			// parent's memory at fork time too).
			status, _ := os.ReadFile("/proc/self/status")
			for _, line := range strings.Split(string(status), "\n") {
				if strings.HasPrefix(line, "VmHWM:") {
					fmt.Fprintln(os.Stderr, line)
				}
			}
		}
		os.Exit(0)
	}
	code := m.Run()
	stopExampleServers()
	os.Exit(code)
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// botProcess is stagebot running as its own process with a console whose
// input the test writes.
type botProcess struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *lockedBuffer
}

func startBot(t *testing.T, cfg string, env ...string) *botProcess {
	t.Helper()
	cmd := exec.Command(os.Args[0], "run", "-c", cfg, "--as", "alice")
	cmd.Env = append(append(os.Environ(), "STAGEBOT_TEST_AS_MAIN=1"), env...)
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &botProcess{cmd: cmd, in: in, out: out}
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		p.cmd.Wait()
		// The process is built with -race like its test: a race it hit
		// fails the test that started it, whatever else it checked.
		if out := p.out.String(); strings.Contains(out, "WARNING: DATA RACE") {
			t.Errorf("stagebot run hit a data race:\n%s", out[strings.Index(out, "WARNING: DATA RACE"):])
		}
	})
	return p
}

// echoed is a line the console echoes back when its input is not a
// terminal: what was typed, after the prompt.
var echoed = regexp.MustCompile(`(?m)^[^\s@]+@#\S+> .*\n?`)

// replies is what the process printed less the echo of what it was told:
// a wait on a reply must not be met by the command that asks for it.
func (p *botProcess) replies() string { return echoed.ReplaceAllString(p.out.String(), "") }

func (p *botProcess) say(t *testing.T, line string) {
	t.Helper()
	if _, err := io.WriteString(p.in, line+"\n"); err != nil {
		t.Fatal(err)
	}
}

// finish closes the input and waits for the bot to exit by itself.
func (p *botProcess) finish(t *testing.T) string {
	t.Helper()
	p.in.Close()
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("bot exited with %v:\n%s", err, p.out.String())
		}
	case <-patience.After(2 * time.Minute):
		t.Fatalf("bot did not exit:\n%s", p.out.String())
	}
	return p.out.String()
}

func (p *botProcess) kill(t *testing.T) {
	t.Helper()
	p.cmd.Process.Kill()
	p.cmd.Wait()
}

// waitUntil waits for cond, up to 90s of patience; describe says what
// the test saw when it gives up.
func waitUntil(t *testing.T, what string, cond func() bool, describe ...func() string) {
	t.Helper()
	patience.Until(t, what, 90*time.Second, cond, describe...)
}

func query[T any](t *testing.T, dsn, q string, args ...any) (T, error) {
	t.Helper()
	var v T
	ctx, cancel := context.WithTimeout(context.Background(), patience.D(30*time.Second))
	defer cancel()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return v, err
	}
	defer c.Close(ctx)
	err = c.QueryRow(ctx, q, args...).Scan(&v)
	return v, err
}

// checksum summarises staging's data: rows and a hash of every row.
func checksum(t *testing.T, dsn string) string {
	t.Helper()
	v, err := query[string](t, dsn, `select (select count(*) || ':' || sum(hashtext(t::text)::bigint) from big t) || '/' || (select count(*) || ':' || sum(hashtext(t::text)::bigint) from marks t)`)
	if err != nil {
		t.Fatalf("checksum: %v", err)
	}
	return v
}

type crashEnv struct {
	prod, stg *pgtest.Server
	cfg       string
	stgDSN    string
}

func newCrashEnv(t *testing.T) *crashEnv {
	if testing.Short() {
		t.Skip("starts PostgreSQL servers and kills processes; run without -short")
	}
	e := &crashEnv{prod: pgtest.New(t), stg: pgtest.New(t)}
	ctx := context.Background()
	c, err := pgx.Connect(ctx, e.prod.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	c.Exec(ctx, "create database app")
	c.Close(ctx)
	c, err = pgx.Connect(ctx, e.prod.DSN("app"))
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		// Big enough that the restore takes long enough to be caught half-way.
		`create table big (id bigint primary key, a text, b int, c timestamptz)`,
		`insert into big select g, md5(g::text), g % 1000, now() - g * interval '1 second' from generate_series(1, 800000) g`,
		`create index big_b on big (b)`,
		`create index big_a on big (a)`,
		`create table marks (version int)`,
		`insert into marks values (1)`,
		`analyze`,
	} {
		if _, err := c.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	c.Close(ctx)
	dir := t.TempDir()
	e.stgDSN = e.stg.DSN("app")
	e.cfg = filepath.Join(dir, "stagebot.yaml")
	os.WriteFile(e.cfg, []byte(fmt.Sprintf(`
store: {path: %s}
log: {level: warn}
access: {control_channels: [infra], everyone: [stage]}
targets:
  app:
    database:
      production: %s
      staging: %s
    pipelines:
      default:
        steps:
          - {name: copy production, pg_refresh: {}}
`, filepath.Join(dir, "state.db"), e.prod.DSN("app"), e.stgDSN)), 0o600)
	// A first refresh gives staging a copy to protect.
	bot := startBot(t, e.cfg)
	bot.say(t, "!stage resync app now")
	if out := bot.finish(t); !strings.Contains(out, "✅ Run 1 of app/default succeeded") {
		t.Fatalf("first refresh:\n%s", out)
	}
	// Production moves on, so the next refresh would change staging.
	c, _ = pgx.Connect(ctx, e.prod.DSN("app"))
	c.Exec(ctx, "update marks set version = 2")
	c.Close(ctx)
	return e
}

func TestCrash_KilledHalfwayThroughTheRestore(t *testing.T) {
	e := newCrashEnv(t)
	before := checksum(t, e.stgDSN)
	bot := startBot(t, e.cfg)
	bot.say(t, "!stage resync app now")
	waitUntil(t, "the restore to be under way", func() bool {
		n, err := query[int64](t, e.stg.DSN("postgres"), `select coalesce(sum(tuples_processed), 0) from pg_stat_progress_copy where datname = 'app__stagebot_next'`)
		return err == nil && n > 0
	})
	bot.kill(t)
	// Staging was never touched.
	if got := checksum(t, e.stgDSN); got != before {
		t.Fatalf("staging changed by a killed restore: %s → %s", before, got)
	}
	// The next start cleans up and says what happened.
	bot = startBot(t, e.cfg)
	bot.say(t, "!stage history")
	out := bot.finish(t)
	for _, want := range []string{
		"Run 2 of app was interrupted: stagebot stopped during step copy production. I repaired what it left: dropped the unfinished copy app__stagebot_next. App holds the copy it had before run 2 (made by run 1).",
		"#2 app/default ⚠ interrupted",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if n, _ := query[int64](t, e.stg.DSN("postgres"), "select count(*) from pg_database where datname like 'app__stagebot%'"); n != 0 {
		t.Errorf("%d stagebot databases left beside staging", n)
	}
	if got := checksum(t, e.stgDSN); got != before {
		t.Fatalf("staging changed after recovery: %s → %s", before, got)
	}
}

func TestCrash_KilledBetweenTheTwoRenames(t *testing.T) {
	e := newCrashEnv(t)
	before := checksum(t, e.stgDSN)
	pause := filepath.Join(t.TempDir(), "paused")
	bot := startBot(t, e.cfg, "STAGEBOT_TEST_SWAP_PAUSE="+pause)
	bot.say(t, "!stage resync app now")
	waitUntil(t, "the swap to pause between its renames", func() bool {
		_, err := os.Stat(pause)
		return err == nil
	})
	bot.kill(t)
	// The transaction died with the process: staging is there under its own
	// name with its old data (it refuses connections until the next start).
	names, err := query[string](t, e.stg.DSN("postgres"), "select string_agg(datname || ':' || datallowconn, ',' order by datname) from pg_database where datname like 'app%'")
	if err != nil {
		t.Fatal(err)
	}
	if names != "app:false,app__stagebot_next:true" {
		t.Fatalf("databases after the kill: %s", names)
	}
	bot = startBot(t, e.cfg)
	bot.say(t, "!stage status")
	out := bot.finish(t)
	if !strings.Contains(out, "dropped the unfinished copy app__stagebot_next; let connections into app again. App holds the copy it had before run 2") {
		t.Errorf("output lacks the repair and which copy staging holds:\n%s", out)
	}
	if got := checksum(t, e.stgDSN); got != before {
		t.Fatalf("staging after recovery: %s, want %s", got, before)
	}
	// And the next refresh works and brings the new data.
	bot = startBot(t, e.cfg)
	bot.say(t, "!stage resync app now")
	if out := bot.finish(t); !strings.Contains(out, "✅ Run 3 of app/default succeeded") {
		t.Fatalf("refresh after recovery:\n%s", out)
	}
	if v, _ := query[int](t, e.stgDSN, "select version from marks"); v != 2 {
		t.Fatalf("staging has version %d after the refresh, want 2", v)
	}
	// Rollback from chat puts the copy that refresh replaced back.
	bot = startBot(t, e.cfg)
	bot.say(t, "!stage rollback app now")
	if out := bot.finish(t); !strings.Contains(out, "✅ Run 4 of app/rollback succeeded") {
		t.Fatalf("rollback:\n%s", out)
	}
	if got := checksum(t, e.stgDSN); got != before {
		t.Fatalf("after rollback staging is %s, want %s", got, before)
	}
}

// TestCrash_KilledAfterTheSwapCommitted: the new copy is in place when the
// bot dies; after a restart the channel and the run's record say so.
func TestCrash_KilledAfterTheSwapCommitted(t *testing.T) {
	e := newCrashEnv(t)
	pause := filepath.Join(t.TempDir(), "paused")
	bot := startBot(t, e.cfg, "STAGEBOT_TEST_AFTER_SWAP_PAUSE="+pause)
	bot.say(t, "!stage resync app now")
	waitUntil(t, "the swap to commit", func() bool {
		_, err := os.Stat(pause)
		return err == nil
	})
	bot.kill(t)
	bot = startBot(t, e.cfg)
	bot.say(t, "!stage history")
	out := bot.finish(t)
	for _, want := range []string{
		"Run 2 of app was interrupted: stagebot stopped during step swap it into place.",
		"App holds the new copy, made by run 2.",
		"#2 app/default ⚠ interrupted",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "as it was") {
		t.Errorf("the bot says staging is as it was, though it holds the new copy:\n%s", out)
	}
	if v, _ := query[int](t, e.stgDSN, "select version from marks"); v != 2 {
		t.Fatalf("staging has version %d, want the new copy's 2", v)
	}
}

// TestNoTestHooksInTheReleasedBinary: the variables that steer a bot under
// test (a swap that waits to be killed) are read by test code only, never
// by the code that builds the released binary.
func TestNoTestHooksInTheReleasedBinary(t *testing.T) {
	var found []string
	err := filepath.WalkDir("../..", func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if strings.Contains(string(src), "STAGEBOT_TEST_") {
			found = append(found, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(found) > 0 {
		t.Fatalf("release code reads test hooks: %v", found)
	}
}

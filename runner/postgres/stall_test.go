package postgres_test

import (
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stagebot/stagebot/internal/patience"
	"github.com/stagebot/stagebot/internal/pgtest"
	"github.com/stagebot/stagebot/runner"
	"github.com/stagebot/stagebot/runner/postgres"
	"github.com/stagebot/stagebot/store"
)

// blackhole is a TCP proxy to a server that, once frozen, keeps every
// socket open and passes no more bytes either way, and accepts new
// connections without passing anything: what a dead firewall state or a
// hung host looks like from the bot.
type blackhole struct {
	ln       net.Listener
	to       string
	frozen   atomic.Bool
	passed   atomic.Int64 // bytes either way
	freezeAt atomic.Int64 // freeze once this many have passed (0: never)
	mu       sync.Mutex
	conns    []net.Conn
}

func newBlackhole(t *testing.T, to string, freezeAt int64) *blackhole {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &blackhole{ln: ln, to: to}
	b.freezeAt.Store(freezeAt)
	go b.serve()
	t.Cleanup(func() {
		ln.Close()
		b.mu.Lock()
		for _, c := range b.conns {
			c.Close()
		}
		b.mu.Unlock()
	})
	return b
}

func (b *blackhole) serve() {
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		b.mu.Lock()
		b.conns = append(b.conns, c)
		b.mu.Unlock()
		if b.frozen.Load() {
			continue // held open, never answered
		}
		s, err := net.Dial("tcp", b.to)
		if err != nil {
			c.Close()
			continue
		}
		b.mu.Lock()
		b.conns = append(b.conns, s)
		b.mu.Unlock()
		go b.pipe(s, c)
		go b.pipe(c, s)
	}
}

// pipe copies until frozen; then it stops reading, so the sockets stay
// open with nothing moving.
func (b *blackhole) pipe(from, to net.Conn) {
	buf := make([]byte, 16<<10)
	for {
		if b.frozen.Load() {
			return
		}
		n, err := from.Read(buf)
		if n > 0 {
			if b.frozen.Load() {
				return
			}
			if _, werr := to.Write(buf[:n]); werr != nil {
				return
			}
			if at := b.freezeAt.Load(); at > 0 && b.passed.Add(int64(n)) >= at {
				b.frozen.Store(true)
			}
		}
		if err != nil {
			if err != io.EOF {
				return
			}
			return
		}
	}
}

// lift ends the silence as a hung host's does when it comes back: every
// connection through the hole is closed (so the server rolls back what its
// sessions left open), and new ones pass again.
func (b *blackhole) lift() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range b.conns {
		c.Close()
	}
	b.conns = nil
	b.freezeAt.Store(0)
	b.frozen.Store(false)
}

// addr is the host:port of a DSN's server.
func addr(dsn string) string {
	return strings.Split(strings.Split(dsn, "@")[1], "/")[0]
}

// through is dsn with its server reached through the hole.
func (b *blackhole) through(dsn string) string {
	return strings.Replace(dsn, addr(dsn), b.ln.Addr().String(), 1)
}

// bigTable gives production a table of about 40 MB, so that its copy is
// still under way when a test breaks a server.
func bigTable(t *testing.T, f *fixture) {
	t.Helper()
	pgtest.Exec(t, f.prod.DSN(f.prodDB),
		`create table events (id bigint, payload text)`,
		`insert into events select g, repeat(md5(g::text), 4) from generate_series(1, 300000) g`,
		`analyze`)
}

// A production server that goes silent in the middle of the copy (its
// sockets open, nothing moving) does not keep the run forever: once no
// rows or bytes moved for the stall timeout, the probe finds production
// silent and the step fails, naming it, and staging is as it was.
func TestRefresh_ASilentProductionFailsTheStep(t *testing.T) {
	f := newFixture(t)
	bigTable(t, f)
	hole := newBlackhole(t, addr(f.prod.DSN(f.prodDB)), 8<<20)
	_, port, _ := net.SplitHostPort(hole.ln.Addr().String())
	f.target.ProductionDSN = hole.through(f.prod.DSN(f.prodDB))
	steps := refreshSteps(f.target)
	plan := runner.MakePlan(context.Background(), "app", &runner.Pipeline{Name: "default", Steps: steps, StallTimeout: 2 * time.Second})
	if probs := plan.Problems(); len(probs) > 0 {
		t.Fatalf("plan: %v", probs)
	}
	var log postgres.SyncBuffer
	start := time.Now()
	done := make(chan error, 1)
	var res []store.StepResult
	go func() {
		r, err := runner.Execute(context.Background(), plan, runner.Env{Run: 1, Target: "app", Pipeline: "default", Log: &log}, nil, nil)
		res = r
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatalf("the refresh succeeded through a frozen production (frozen: %v):\n%s", hole.frozen.Load(), log.String())
		}
	case <-patience.After(90 * time.Second):
		t.Fatalf("the refresh still runs %s after production went silent:\n%s", time.Since(start).Round(time.Second), log.String())
	}
	if !hole.frozen.Load() {
		t.Fatalf("production was never frozen: the table is too small for the test")
	}
	if e := res[0].Error; !strings.Contains(e, "stalled: nothing moved since") || !strings.Contains(e, "production (127.0.0.1:"+port) {
		t.Errorf("the step's error does not say production went silent: %q", e)
	}
	if res[1].State != store.StepSkipped {
		t.Errorf("the swap ran after a stalled copy: %s", res[1].State)
	}
	t.Logf("failed %s after the start: %s", time.Since(start).Round(100*time.Millisecond), res[0].Error)
}

// stepProgress hears the first progress report with rows.
type stepProgress struct {
	rows chan struct{}
	once sync.Once
}

func (p *stepProgress) StepStarted(int, store.StepResult)  {}
func (p *stepProgress) StepFinished(int, store.StepResult) {}
func (p *stepProgress) StepProgress(_ int, pr runner.Progress) {
	if pr.Rows > 0 {
		p.once.Do(func() { close(p.rows) })
	}
}

// A staging server that goes down in the middle of the copy is named as
// down in the step's error, not only as a broken connection.
func TestRefresh_AServerThatWentDownIsNamed(t *testing.T) {
	f := newFixture(t)
	bigTable(t, f)
	stg := pgtest.New(t)
	f.target.StagingDSN = stg.DSN("app")
	plan := runner.MakePlan(context.Background(), "app", &runner.Pipeline{Name: "default", Steps: refreshSteps(f.target)})
	if probs := plan.Problems(); len(probs) > 0 {
		t.Fatalf("plan: %v", probs)
	}
	rep := &stepProgress{rows: make(chan struct{})}
	done := make(chan []store.StepResult, 1)
	var log postgres.SyncBuffer
	go func() {
		res, _ := runner.Execute(context.Background(), plan, runner.Env{Run: 1, Target: "app", Pipeline: "default", Log: &log}, rep, nil)
		done <- res
	}()
	select {
	case <-rep.rows:
	case res := <-done:
		t.Fatalf("the refresh ended before any row moved: %+v\n%s", res, log.String())
	}
	if err := stg.Kill(); err != nil {
		t.Fatal(err)
	}
	var res []store.StepResult
	select {
	case res = <-done:
	case <-patience.After(90 * time.Second):
		t.Fatalf("the refresh still runs after staging's server went down:\n%s", log.String())
	}
	if res[0].State != store.StepFailed || !strings.Contains(res[0].Error, "staging's server (127.0.0.1:") || !strings.Contains(res[0].Error, "does not answer") {
		t.Errorf("the step's error does not name staging's server as down: %s %q", res[0].State, res[0].Error)
	}
}

// runStalling runs steps with a 2s stall timeout and returns their
// results, failing the test if the run does not end.
func runStalling(t *testing.T, steps []runner.Step, what string) ([]store.StepResult, string) {
	t.Helper()
	plan := runner.MakePlan(context.Background(), "app", &runner.Pipeline{Name: "default", Steps: steps, StallTimeout: 2 * time.Second})
	if probs := plan.Problems(); len(probs) > 0 {
		t.Fatalf("plan: %v", probs)
	}
	var log postgres.SyncBuffer
	done := make(chan []store.StepResult, 1)
	start := time.Now()
	go func() {
		res, _ := runner.Execute(context.Background(), plan, runner.Env{Run: 1, Target: "app", Pipeline: "default", Log: &log}, nil, nil)
		done <- res
	}()
	select {
	case res := <-done:
		t.Logf("ended %s after the start", time.Since(start).Round(100*time.Millisecond))
		return res, log.String()
	case <-patience.After(120 * time.Second):
		t.Fatalf("the run still runs %s after %s went silent:\n%s", time.Since(start).Round(time.Second), what, log.String())
	}
	return nil, ""
}

// A staging server that goes silent in the middle of the copy fails the
// step, naming staging's server; once it answers again, the repair leaves
// staging as it was (here: none, as before the first refresh).
func TestRefresh_ASilentStagingFailsTheStep(t *testing.T) {
	f := newFixture(t)
	bigTable(t, f)
	direct := f.target.StagingDSN
	hole := newBlackhole(t, addr(direct), 8<<20)
	f.target.StagingDSN = hole.through(direct)
	res, log := runStalling(t, refreshSteps(f.target), "staging")
	if !hole.frozen.Load() {
		t.Fatalf("staging was never frozen: the table is too small for the test\n%s", log)
	}
	if e := res[0].Error; res[0].State != store.StepFailed || !strings.Contains(e, "stalled: nothing moved since") || !strings.Contains(e, "staging's server ("+hole.ln.Addr().String()) {
		t.Errorf("the step's error does not say staging's server went silent: %s %q", res[0].State, e)
	}
	if res[1].State != store.StepSkipped {
		t.Errorf("the swap ran after a stalled copy: %s", res[1].State)
	}
	hole.lift()
	recoverUntilDone(t, f.target)
	if dbs := databases(t, f.stg); has(dbs, f.stgDB) || has(dbs, f.stgDB+postgres.NextSuffix) {
		t.Errorf("after the repair staging's server holds %v: the half-made copy is left", dbs)
	}
}

// A staging server that goes silent in the middle of the swap (between
// its renames) fails the swap step instead of hanging on it, and once the
// server answers again, staging is the copy it was, taking connections.
func TestSwap_ASilentStagingMidSwapFailsTheStep(t *testing.T) {
	f := newFixture(t)
	if log, err := run(t, refreshSteps(f.target), nil); err != nil {
		t.Fatalf("%v\n%s", err, log)
	}
	before := fingerprint(t, f.stg.DSN(f.stgDB))
	pgtest.Exec(t, f.prod.DSN(f.prodDB), "insert into users (email) values ('new@example.org')")
	direct := f.target.StagingDSN
	hole := newBlackhole(t, addr(direct), 0)
	f.target.StagingDSN = hole.through(direct)
	postgres.BetweenRenames = func() { hole.frozen.Store(true) }
	t.Cleanup(func() { postgres.BetweenRenames = nil })
	res, log := runStalling(t, refreshSteps(f.target), "staging (mid-swap)")
	postgres.BetweenRenames = nil
	if !hole.frozen.Load() {
		t.Fatalf("the swap never reached its renames:\n%s", log)
	}
	if res[0].State != store.StepSucceeded {
		t.Fatalf("the copy: %s %q", res[0].State, res[0].Error)
	}
	if e := res[1].Error; res[1].State != store.StepFailed || !strings.Contains(e, "staging's server ("+hole.ln.Addr().String()) {
		t.Errorf("the swap's error does not name staging's server: %s %q", res[1].State, e)
	}
	t.Logf("the swap: %s", res[1].Error)
	hole.lift()
	recoverUntilDone(t, f.target)
	if d := diffPrints(before, fingerprint(t, f.stg.DSN(f.stgDB))); d != "" {
		t.Errorf("staging is not the copy it was:\n%s", d)
	}
}

// recoverUntilDone repairs what a run left, as the bot does once staging's
// server answers again (its sessions may take a moment to end).
func recoverUntilDone(t *testing.T, tg *postgres.Target) {
	t.Helper()
	var last error
	patience.Until(t, "the repair", 30*time.Second, func() bool {
		_, last = tg.Recover(context.Background())
		return last == nil
	}, func() string { return last.Error() })
}

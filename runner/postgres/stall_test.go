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
	"github.com/stagebot/stagebot/runner"
	"github.com/stagebot/stagebot/runner/pgtest"
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
	passed   atomic.Int64 // bytes from the server to the client
	freezeAt int64        // freeze once this many have passed (0: never)
	mu       sync.Mutex
	conns    []net.Conn
}

func newBlackhole(t *testing.T, to string, freezeAt int64) *blackhole {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &blackhole{ln: ln, to: to, freezeAt: freezeAt}
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
		go b.pipe(s, c, true)
		go b.pipe(c, s, false)
	}
}

// pipe copies until frozen; then it stops reading, so the sockets stay
// open with nothing moving.
func (b *blackhole) pipe(from, to net.Conn, fromServer bool) {
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
			if fromServer && b.freezeAt > 0 && b.passed.Add(int64(n)) >= b.freezeAt {
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
	prodAddr := strings.TrimPrefix(strings.Split(strings.Split(f.prod.DSN(f.prodDB), "@")[1], "/")[0], "")
	hole := newBlackhole(t, prodAddr, 8<<20)
	_, port, _ := net.SplitHostPort(hole.ln.Addr().String())
	f.target.ProductionDSN = strings.Replace(f.prod.DSN(f.prodDB), prodAddr, "127.0.0.1:"+port, 1)
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

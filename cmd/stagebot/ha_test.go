package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stagebot/stagebot/internal/patience"
	"github.com/stagebot/stagebot/internal/pgtest"
	"github.com/stagebot/stagebot/store"
	"github.com/stagebot/stagebot/store/bolt"
	pgstore "github.com/stagebot/stagebot/store/postgres"
)

// TestStoreCopy_BoltToPostgresAndBack moves a state with every kind of
// record into PostgreSQL and back into a new file: nothing is lost or
// renumbered, a non-empty destination is refused, and the next run gets
// the next number.
func TestStoreCopy_BoltToPostgresAndBack(t *testing.T) {
	ctx := context.Background()
	dsn := stateDB(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "stagebot.db")
	b, err := bolt.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 11, 30, 9, 0, 0, 123456789, time.FixedZone("CET", 3600))
	alice, bob := store.User{ID: "U1", Name: "alice"}, store.User{ID: "U2", Name: "bob"}
	for i, state := range []store.RunState{store.RunSucceeded, store.RunFailed, store.RunScheduled} {
		r := &store.Run{Target: "fas2", Pipeline: "default", State: state, CreatedAt: t0.Add(time.Duration(i) * time.Hour), Requester: alice}
		if state.Done() {
			r.EndedAt = r.CreatedAt.Add(time.Minute)
		}
		must(t, b.CreateRun(ctx, r))
		must(t, b.AppendLog(ctx, r.ID, []byte("log of run "+r.Target+"\n")))
	}
	must(t, b.AddApproval(ctx, store.Approval{RunID: 3, User: bob, At: t0}))
	must(t, b.AddApproval(ctx, store.Approval{RunID: 3, User: alice, At: t0.Add(time.Second)}))
	ended := &store.Hold{Target: "fas2", Holder: bob, Reason: "done", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour), EndedAt: t0.Add(time.Minute)}
	live := &store.Hold{Target: "all", Holder: alice, Reason: "testing the login", CreatedAt: t0, ExpiresAt: t0.Add(48 * time.Hour)}
	must(t, b.CreateHold(ctx, ended))
	must(t, b.CreateHold(ctx, live))
	must(t, b.Watch(ctx, "fas2", bob))
	must(t, b.Watch(ctx, "fas2", alice))
	must(t, b.Watch(ctx, "koji", bob))
	for _, a := range []string{"resync", "hold", "approve"} {
		must(t, b.AppendEvent(ctx, &store.Event{At: t0, Actor: alice, Action: a, Target: "fas2", RunID: 3}))
	}
	must(t, b.SetMark(ctx, "schedule/fas2", t0))
	must(t, b.RecordDatabase(ctx, "7714483811028143163/16384", 1))
	must(t, b.SetValue(ctx, "baseline/fas2", []byte(`{"tables":{}}`)))
	want, err := b.Export(ctx)
	must(t, err)
	b.Close()

	var out, errOut bytes.Buffer
	if err := Main(ctx, []string{"store", "copy", "--from", file, "--to", dsn}, nil, &out, &errOut); err != nil {
		t.Fatalf("bolt → postgres: %v\n%s", err, errOut.String())
	}
	if !strings.Contains(out.String(), "copied 3 runs, 2 holds, 2 approvals, 3 audit events, 3 watchers and 1 marks") {
		t.Fatalf("copy said %q", out.String())
	}
	// Again: the destination is not empty now.
	err = Main(ctx, []string{"store", "copy", "--from", file, "--to", dsn}, nil, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "not empty") || !strings.Contains(err.Error(), "nothing was written") {
		t.Fatalf("a copy into a non-empty store: %v", err)
	}
	// A --from file that is not there is refused, not created empty.
	missing := filepath.Join(dir, "typo.db")
	err = Main(ctx, []string{"store", "copy", "--from", missing, "--to", filepath.Join(dir, "other.db")}, nil, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("copy from a missing file: %v", err)
	}
	if _, err := os.Stat(missing); err == nil {
		t.Fatal("copying from a missing file created it")
	}
	back := filepath.Join(dir, "back.db")
	if err := Main(ctx, []string{"store", "copy", "--from", dsn, "--to", back}, nil, &out, &errOut); err != nil {
		t.Fatalf("postgres → bolt: %v", err)
	}
	for _, where := range []string{dsn, back} {
		s, err := openAny(ctx, where)
		must(t, err)
		got, err := s.(store.Porter).Export(ctx)
		must(t, err)
		if diff := cmp.Diff(want, got); diff != "" {
			s.Close()
			t.Fatalf("%s differs from the original (-want +got):\n%s", describeStore(where), diff)
		}
		r := &store.Run{Target: "fas2", Pipeline: "default", State: store.RunScheduled, CreatedAt: t0}
		must(t, s.CreateRun(ctx, r))
		h := &store.Hold{Target: "fas2", Holder: bob, CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}
		must(t, s.CreateHold(ctx, h))
		if r.ID != 4 || h.ID != 3 {
			t.Errorf("%s: the next run is %d and the next hold %d, want 4 and 3", describeStore(where), r.ID, h.ID)
		}
		s.Close()
	}
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(body))
}

// stateDB starts a server with an empty database for a postgres store.
func stateDB(t *testing.T) string {
	t.Helper()
	pg := pgtest.New(t)
	pgtest.Exec(t, pg.DSN("postgres"), "create database state")
	return pg.DSN("state")
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// haConfig is a target whose runs say which process ran them, on a store
// in PostgreSQL with a short lease.
func haConfig(t *testing.T, dsn, marks string) string {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "stagebot.yaml")
	os.WriteFile(cfg, []byte(`
store: {type: postgres, dsn: "`+dsn+`", lease: 3s}
access: {control_channels: [infra], everyone: [stage, stage.admin]}
http: {listen: "127.0.0.1:0"}
targets:
  web:
    pipelines:
      default:
        steps:
          - {name: copy, exec: "echo run $$PPID >> `+marks+`"}
`), 0o600)
	return cfg
}

// TestHA_FailoverAndAPausedLeader runs three bot processes on one store.
// One leads; killed, another takes over within the lease and keeps its
// holds; paused past its lease, it is replaced, and once it runs again it
// neither writes nor talks: it steps down, saying so, and exits.
func TestHA_FailoverAndAPausedLeader(t *testing.T) {
	ctx := context.Background()
	dsn := stateDB(t)
	marks := filepath.Join(t.TempDir(), "runs")
	cfg := haConfig(t, dsn, marks)
	took := func(p *botProcess) bool { return strings.Contains(p.out.String(), "took the lease") }

	a := startBot(t, cfg)
	waitUntil(t, "a leads", func() bool { return took(a) })
	b := startBot(t, cfg)
	c := startBot(t, cfg)
	waitUntil(t, "b and c follow", func() bool {
		return strings.Contains(b.out.String(), "another process leads") && strings.Contains(c.out.String(), "another process leads")
	})
	// Every process serves HTTP; only the leader is ready.
	urlA, urlB := httpBase(t, a), httpBase(t, b)
	if code, body := httpGet(t, urlB+"/readyz"); code != 503 || !strings.HasPrefix(body, "follower of ") {
		t.Errorf("a follower's /readyz: %d %q", code, body)
	}
	if code, body := httpGet(t, urlB+"/healthz"); code != 200 {
		t.Errorf("a follower's /healthz: %d %q", code, body)
	}
	st, err := pgstore.Open(ctx, dsn)
	must(t, err)
	defer st.Close()
	a.say(t, "!stage resync web now")
	// The run's recorded end, not its step's mark: the page shows what
	// the store says, and the run is still finishing when the mark is made.
	waitUntil(t, "a's run to end", func() bool { r, err := st.Run(ctx, 1); return err == nil && !r.EndedAt.IsZero() }, a.replies)
	if r, _ := st.Run(ctx, 1); r.State != store.RunSucceeded {
		t.Fatalf("run 1 ended %s:\n%s", r.State, a.replies())
	}
	waitUntil(t, "the leader ready", func() bool { code, _ := httpGet(t, urlA+"/readyz"); return code == 200 })
	if code, body := httpGet(t, urlB+"/"); code != 200 || !strings.Contains(body, "web") || !strings.Contains(body, "succeeded") {
		t.Errorf("a follower's status page does not show the leader's run: %d\n%s", code, body)
	}
	a.say(t, "!stage hold web 2h testing the login")
	// The reply, not the console's echo of the command.
	waitUntil(t, "a's hold", func() bool { return strings.Contains(a.replies(), "alice holds web until") }, a.replies)
	if h, _ := st.Holds(ctx, true); len(h) != 1 {
		t.Fatalf("a acknowledged the hold, but the store has %d active holds", len(h))
	}

	// The leader dies.
	a.kill(t)
	killed := time.Now()
	var next, other *botProcess
	waitUntil(t, "a follower takes over", func() bool {
		switch {
		case took(b):
			next, other = b, c
		case took(c):
			next, other = c, b
		}
		return next != nil
	})
	failover := time.Since(killed)
	t.Logf("failover after SIGKILL: %s (lease 3s)", failover.Round(time.Millisecond))
	if failover > 3*time.Second+patience.D(500*time.Millisecond) {
		t.Errorf("failover took %s, more than the lease", failover)
	}
	if took(other) {
		t.Fatal("both followers took the lease")
	}
	next.say(t, "!stage holds")
	waitUntil(t, "the new leader knows the hold", func() bool { return strings.Contains(next.replies(), "testing the login") }, next.replies)

	// The new leader is paused past its lease.
	if err := next.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the third process takes over", func() bool { return took(other) })
	other.say(t, "!stage release web")
	waitUntil(t, "the hold ends", func() bool { h, _ := st.Holds(ctx, true); return len(h) == 0 })
	// A command was typed at the paused process while it was paused.
	next.say(t, "!stage hold web 1h from the paused one")
	seen := len(next.out.String())
	if err := next.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- next.cmd.Wait() }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatalf("the replaced leader exited 0; it should exit with an error, to be started again as a follower:\n%s", next.out.String()[seen:])
		}
	case <-patience.After(15 * time.Second):
		t.Fatalf("the replaced leader did not step down:\n%s", next.out.String())
	}
	after := next.out.String()[seen:]
	if !strings.Contains(after, "stepping down") {
		t.Errorf("the replaced leader's log does not say it stepped down:\n%s", after)
	}
	// The console prints every message the bot sends as "[#N] …".
	if strings.Contains(after, "[#") || strings.Contains(after, "holds web until") {
		t.Errorf("the replaced leader talked in chat after it came back:\n%s", after)
	}
	// The live leader goes on writing; nothing the paused one was told
	// may be in the store.
	holds, _ := st.Holds(ctx, false)
	events, _ := st.Events(ctx, store.EventFilter{})
	for _, h := range holds {
		if h.Reason == "from the paused one" {
			t.Errorf("the replaced leader stored a hold: %+v", h)
		}
	}
	for _, e := range events {
		if strings.Contains(e.Detail, "from the paused one") {
			t.Errorf("the replaced leader wrote to the audit log: %+v", e)
		}
	}
	// The third process runs the next refresh.
	other.say(t, "!stage resync web now")
	waitUntil(t, "the third process's run", func() bool { out, _ := os.ReadFile(marks); return bytes.Count(out, []byte("run ")) == 2 })
	out, _ := os.ReadFile(marks)
	runs := strings.Split(strings.TrimSpace(string(out)), "\n")
	if runs[0] == runs[1] {
		t.Errorf("both runs by the same process: %q", runs)
	}
}

// TestHA_FailoverMidRefresh: the leader is killed while it restores a
// real database; a follower takes over and repairs what it left, as a
// restart would: the shadow dropped, the finally step run once, and the
// channel told which copy staging holds. The state came from the bolt
// file by stagebot store copy.
func TestHA_FailoverMidRefresh(t *testing.T) {
	e := newCrashEnv(t)
	before := checksum(t, e.stgDSN)
	ctx := context.Background()
	// The store lives on staging's server, in a database of its own.
	pgtest.Exec(t, e.stg.DSN("postgres"), "create database botstate")
	dsn := e.stg.DSN("botstate")
	var out, errOut bytes.Buffer
	if err := Main(ctx, []string{"store", "copy", "--from", filepath.Join(filepath.Dir(e.cfg), "state.db"), "--to", dsn}, nil, &out, &errOut); err != nil {
		t.Fatalf("store copy: %v", err)
	}
	marks := filepath.Join(t.TempDir(), "finally")
	cfg := filepath.Join(t.TempDir(), "ha.yaml")
	os.WriteFile(cfg, []byte(`
store: {type: postgres, dsn: "`+dsn+`", lease: 3s}
access: {control_channels: [infra], everyone: [stage]}
targets:
  app:
    database:
      production: `+e.prod.DSN("app")+`
      staging: `+e.stgDSN+`
    pipelines:
      default:
        steps:
          - {name: copy production, pg_refresh: {}}
        finally:
          - {name: start app, exec: "echo started $STAGEBOT_RUN $PPID >> `+marks+`"}
`), 0o600)
	a := startBot(t, cfg)
	waitUntil(t, "a leads", func() bool { return strings.Contains(a.out.String(), "took the lease") })
	b := startBot(t, cfg)
	waitUntil(t, "b follows", func() bool { return strings.Contains(b.out.String(), "another process leads") })
	a.say(t, "!stage resync app now")
	waitUntil(t, "the restore to be under way", func() bool {
		n, err := query[int64](t, e.stg.DSN("postgres"), `select coalesce(sum(tuples_processed), 0) from pg_stat_progress_copy where datname = 'app__stagebot_next'`)
		return err == nil && n > 0
	})
	a.kill(t)
	waitUntil(t, "b repairs what a left", func() bool {
		return strings.Contains(b.out.String(), "Run 2 of app was interrupted") && strings.Contains(b.out.String(), "App holds the copy it had before run 2 (made by run 1)")
	})
	if !strings.Contains(b.out.String(), "dropped the unfinished copy app__stagebot_next") {
		t.Errorf("b does not say it dropped the shadow:\n%s", b.out.String())
	}
	waitUntil(t, "the finally step", func() bool { data, _ := os.ReadFile(marks); return len(data) > 0 })
	if n, _ := query[int64](t, e.stg.DSN("postgres"), "select count(*) from pg_database where datname like 'app__stagebot%'"); n != 0 {
		t.Errorf("%d stagebot databases left beside staging", n)
	}
	if got := checksum(t, e.stgDSN); got != before {
		t.Fatalf("staging changed: %s → %s", before, got)
	}
	// b carries on: the next refresh runs there.
	b.say(t, "!stage resync app now")
	// The outcome is a reply of its own, sent after the card's last edit:
	// wait for it, not for the card.
	waitUntil(t, "b's refresh", func() bool {
		out := b.out.String()
		return strings.Contains(out, "✅ Run 3 of app/default succeeded") || strings.Contains(out, "❌ Run 3 of app/default failed")
	})
	if !strings.Contains(b.out.String(), "✅ Run 3 of app/default succeeded") {
		t.Fatalf("b's refresh:\n%s", b.out.String())
	}
	// Run 3's own finally step ran after it succeeded: each run's finally
	// steps once, interrupted run 2's by b alone.
	data, _ := os.ReadFile(marks)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "started 2 ") || !strings.HasPrefix(lines[1], "started 3 ") {
		t.Errorf("finally steps run: %q, want run 2's once and then run 3's", data)
	}
	if v, _ := query[int](t, e.stgDSN, "select version from marks"); v != 2 {
		t.Fatalf("staging has version %d after b's refresh, want 2", v)
	}
}

package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/stagebot/stagebot/store"
)

// Opener opens a fresh, empty store for one subtest. reopen closes it and
// opens the same data again, to show that records survive a restart.
type Opener func(t *testing.T) (s store.Store, reopen func() store.Store)

// Run runs the whole contract against the stores open returns.
func Run(t *testing.T, open Opener) {
	tests := []struct {
		name string
		fn   func(t *testing.T, open Opener)
	}{
		{"Runs", testRuns},
		{"RunConflict", testRunConflict},
		{"RunFilters", testRunFilters},
		{"Logs", testLogs},
		{"Holds", testHolds},
		{"Approvals", testApprovals},
		{"Watchers", testWatchers},
		{"Events", testEvents},
		{"Marks", testMarks},
		{"Databases", testDatabases},
		{"Values", testValues},
		{"Compact", testCompact},
		{"Reopen", testReopen},
		{"Concurrent", testConcurrent},
		{"CancelledContext", testCancelledContext},
		{"ExportImport", testExportImport},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, open) })
	}
}

var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

var alice = store.User{ID: "U1", Name: "alice"}
var bob = store.User{ID: "U2", Name: "bob"}

func newRun(target string) *store.Run {
	return &store.Run{
		Target: target, Pipeline: "default", Origin: store.OriginManual,
		Requester: alice, State: store.RunScheduled,
		CreatedAt: t0, StartAt: t0.Add(10 * time.Minute), Announced: -1,
		Channel: "infra",
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func testRuns(t *testing.T, open Opener) {
	ctx := context.Background()
	s, _ := open(t)
	a, b := newRun("fas2"), newRun("koji")
	must(t, s.CreateRun(ctx, a))
	must(t, s.CreateRun(ctx, b))
	if a.ID != 1 || b.ID != 2 {
		t.Fatalf("run numbers = %d, %d; want 1, 2", a.ID, b.ID)
	}
	got, err := s.Run(ctx, a.ID)
	must(t, err)
	if diff := cmp.Diff(a, got); diff != "" {
		t.Fatalf("stored run differs (-want +got):\n%s", diff)
	}

	got.State = store.RunRunning
	got.StartedAt = t0.Add(11 * time.Minute)
	got.Steps = []store.StepResult{{Name: "stop", Kind: "exec", State: store.StepSucceeded, Duration: time.Second}}
	got.Status = store.MessageRef{Channel: "infra", ID: "7"}
	must(t, s.UpdateRun(ctx, got))
	again, err := s.Run(ctx, a.ID)
	must(t, err)
	if diff := cmp.Diff(got, again); diff != "" {
		t.Fatalf("updated run differs (-want +got):\n%s", diff)
	}

	if _, err := s.Run(ctx, 99); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Run(99) error = %v, want ErrNotFound", err)
	}
	missing := newRun("x")
	missing.ID = 99
	if err := s.UpdateRun(ctx, missing); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("UpdateRun(99) error = %v, want ErrNotFound", err)
	}
}

func testRunConflict(t *testing.T, open Opener) {
	ctx := context.Background()
	s, _ := open(t)
	r := newRun("fas2")
	must(t, s.CreateRun(ctx, r))
	first, _ := s.Run(ctx, r.ID)
	second, _ := s.Run(ctx, r.ID)
	first.State = store.RunCancelled
	must(t, s.UpdateRun(ctx, first))
	second.State = store.RunRunning
	if err := s.UpdateRun(ctx, second); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("stale UpdateRun error = %v, want ErrConflict", err)
	}
	got, _ := s.Run(ctx, r.ID)
	if got.State != store.RunCancelled {
		t.Fatalf("state = %s after a refused stale write, want cancelled", got.State)
	}
}

func testRunFilters(t *testing.T, open Opener) {
	ctx := context.Background()
	s, _ := open(t)
	states := []store.RunState{store.RunSucceeded, store.RunScheduled, store.RunFailed, store.RunWaiting, store.RunRunning}
	for i, st := range states {
		r := newRun([]string{"fas2", "koji"}[i%2])
		r.State = st
		must(t, s.CreateRun(ctx, r))
	}
	ids := func(f store.RunFilter) []uint64 {
		t.Helper()
		runs, err := s.Runs(ctx, f)
		must(t, err)
		var out []uint64
		for _, r := range runs {
			out = append(out, r.ID)
		}
		return out
	}
	cases := []struct {
		name string
		f    store.RunFilter
		want []uint64
	}{
		{name: "all newest first", f: store.RunFilter{}, want: []uint64{5, 4, 3, 2, 1}},
		{name: "target", f: store.RunFilter{Target: "fas2"}, want: []uint64{5, 3, 1}},
		{name: "active", f: store.RunFilter{Active: true}, want: []uint64{5, 4, 2}},
		{name: "active target", f: store.RunFilter{Active: true, Target: "koji"}, want: []uint64{4, 2}},
		{name: "states", f: store.RunFilter{States: []store.RunState{store.RunFailed, store.RunSucceeded}}, want: []uint64{3, 1}},
		{name: "limit", f: store.RunFilter{Limit: 2}, want: []uint64{5, 4}},
	}
	for _, c := range cases {
		if diff := cmp.Diff(c.want, ids(c.f)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", c.name, diff)
		}
	}
	// A run that finishes leaves the active set.
	r, _ := s.Run(ctx, 5)
	r.State = store.RunSucceeded
	must(t, s.UpdateRun(ctx, r))
	if diff := cmp.Diff([]uint64{4, 2}, ids(store.RunFilter{Active: true})); diff != "" {
		t.Errorf("active after finish (-want +got):\n%s", diff)
	}
}

func testLogs(t *testing.T, open Opener) {
	ctx := context.Background()
	s, _ := open(t)
	r := newRun("fas2")
	must(t, s.CreateRun(ctx, r))
	got, err := s.Log(ctx, r.ID)
	must(t, err)
	if len(got) != 0 {
		t.Fatalf("new run's log = %q, want empty", got)
	}
	must(t, s.AppendLog(ctx, r.ID, []byte("line 1\n")))
	must(t, s.AppendLog(ctx, r.ID, []byte("line 2\n")))
	got, err = s.Log(ctx, r.ID)
	must(t, err)
	if string(got) != "line 1\nline 2\n" {
		t.Fatalf("log = %q", got)
	}
	if err := s.AppendLog(ctx, 42, []byte("x")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("AppendLog(42) error = %v, want ErrNotFound", err)
	}
	if _, err := s.Log(ctx, 42); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Log(42) error = %v, want ErrNotFound", err)
	}
	// Every store bounds a log alike: cut at MaxLogBytes, saying so, and
	// nothing appended after.
	chunk := bytes.Repeat([]byte("0123456789abcdef"), 1<<14) // 256 KiB
	for range 5 {
		must(t, s.AppendLog(ctx, r.ID, chunk))
	}
	must(t, s.AppendLog(ctx, r.ID, []byte("after the cut\n")))
	got, err = s.Log(ctx, r.ID)
	must(t, err)
	if len(got) != store.MaxLogBytes || !bytes.HasSuffix(got, []byte("[log truncated: it reached its size limit]\n")) || !bytes.HasPrefix(got, []byte("line 1\n")) {
		t.Fatalf("a log past its bound: %d bytes ending %q", len(got), got[max(0, len(got)-60):])
	}
}

func testHolds(t *testing.T, open Opener) {
	ctx := context.Background()
	s, _ := open(t)
	h1 := &store.Hold{Target: "fas2", Holder: alice, Reason: "testing the login", CreatedAt: t0, ExpiresAt: t0.Add(2 * time.Hour)}
	h2 := &store.Hold{Target: store.AllTargets, Holder: bob, Reason: "upgrade", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}
	must(t, s.CreateHold(ctx, h1))
	must(t, s.CreateHold(ctx, h2))
	if h1.ID == 0 || h1.ID == h2.ID {
		t.Fatalf("hold IDs %d, %d: want distinct and non-zero", h1.ID, h2.ID)
	}
	h1.EndedAt, h1.EndedBy, h1.EndReason = t0.Add(time.Hour), alice, "released"
	must(t, s.UpdateHold(ctx, h1))
	active, err := s.Holds(ctx, true)
	must(t, err)
	if diff := cmp.Diff([]*store.Hold{h2}, active); diff != "" {
		t.Fatalf("active holds (-want +got):\n%s", diff)
	}
	all, err := s.Holds(ctx, false)
	must(t, err)
	if diff := cmp.Diff([]*store.Hold{h1, h2}, all); diff != "" {
		t.Fatalf("all holds (-want +got):\n%s", diff)
	}
	if err := s.UpdateHold(ctx, &store.Hold{ID: 77}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("UpdateHold(77) error = %v, want ErrNotFound", err)
	}
}

func testApprovals(t *testing.T, open Opener) {
	ctx := context.Background()
	s, _ := open(t)
	r1, r2 := newRun("fas2"), newRun("fas2")
	must(t, s.CreateRun(ctx, r1))
	must(t, s.CreateRun(ctx, r2))
	a1 := store.Approval{RunID: r1.ID, User: bob, At: t0}
	a2 := store.Approval{RunID: r1.ID, User: alice, At: t0.Add(time.Minute)}
	must(t, s.AddApproval(ctx, a1))
	must(t, s.AddApproval(ctx, a2))
	must(t, s.AddApproval(ctx, store.Approval{RunID: r2.ID, User: bob, At: t0}))
	if err := s.AddApproval(ctx, store.Approval{RunID: r1.ID, User: bob, At: t0}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("second approval by bob: error = %v, want ErrConflict", err)
	}
	if err := s.AddApproval(ctx, store.Approval{RunID: 9, User: bob}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("approval of unknown run: error = %v, want ErrNotFound", err)
	}
	got, err := s.Approvals(ctx, r1.ID)
	must(t, err)
	if diff := cmp.Diff([]store.Approval{a1, a2}, got); diff != "" {
		t.Fatalf("approvals (-want +got):\n%s", diff)
	}
}

func testWatchers(t *testing.T, open Opener) {
	ctx := context.Background()
	s, _ := open(t)
	must(t, s.Watch(ctx, "fas2", bob))
	must(t, s.Watch(ctx, "fas2", alice))
	must(t, s.Watch(ctx, "fas2", alice))
	must(t, s.Watch(ctx, "koji", bob))
	got, err := s.Watchers(ctx, "fas2")
	must(t, err)
	if diff := cmp.Diff([]store.User{alice, bob}, got); diff != "" {
		t.Fatalf("watchers (-want +got):\n%s", diff)
	}
	must(t, s.Unwatch(ctx, "fas2", alice))
	if err := s.Unwatch(ctx, "fas2", alice); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second Unwatch error = %v, want ErrNotFound", err)
	}
	got, _ = s.Watchers(ctx, "fas2")
	if diff := cmp.Diff([]store.User{bob}, got); diff != "" {
		t.Fatalf("watchers after unwatch (-want +got):\n%s", diff)
	}
	// A target whose name is a prefix of another's has its own watchers.
	got, _ = s.Watchers(ctx, "fas")
	if len(got) != 0 {
		t.Fatalf("watchers of fas = %v, want none", got)
	}
}

func testEvents(t *testing.T, open Opener) {
	ctx := context.Background()
	s, _ := open(t)
	for i := 1; i <= 5; i++ {
		e := &store.Event{At: t0.Add(time.Duration(i) * time.Minute), Actor: alice, Action: "hold", Target: []string{"fas2", "koji"}[i%2], RunID: uint64(i % 3)}
		must(t, s.AppendEvent(ctx, e))
		if e.ID != uint64(i) {
			t.Fatalf("event ID = %d, want %d", e.ID, i)
		}
	}
	ids := func(f store.EventFilter) []uint64 {
		evs, err := s.Events(ctx, f)
		must(t, err)
		var out []uint64
		for _, e := range evs {
			out = append(out, e.ID)
		}
		return out
	}
	if diff := cmp.Diff([]uint64{5, 4, 3, 2, 1}, ids(store.EventFilter{})); diff != "" {
		t.Errorf("all events (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]uint64{5, 3, 1}, ids(store.EventFilter{Target: "koji"})); diff != "" {
		t.Errorf("koji events (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]uint64{4, 1}, ids(store.EventFilter{RunID: 1})); diff != "" {
		t.Errorf("run 1 events (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]uint64{5, 4}, ids(store.EventFilter{Limit: 2})); diff != "" {
		t.Errorf("limited events (-want +got):\n%s", diff)
	}
}

func testMarks(t *testing.T, open Opener) {
	ctx := context.Background()
	s, _ := open(t)
	got, err := s.Mark(ctx, "cron/fas2")
	must(t, err)
	if !got.IsZero() {
		t.Fatalf("unset mark = %v, want zero", got)
	}
	must(t, s.SetMark(ctx, "cron/fas2", t0))
	got, err = s.Mark(ctx, "cron/fas2")
	must(t, err)
	if !got.Equal(t0) {
		t.Fatalf("mark = %v, want %v", got, t0)
	}
}

func testReopen(t *testing.T, open Opener) {
	ctx := context.Background()
	s, reopen := open(t)
	r := newRun("fas2")
	must(t, s.CreateRun(ctx, r))
	must(t, s.AppendLog(ctx, r.ID, []byte("hello\n")))
	h := &store.Hold{Target: "fas2", Holder: bob, Reason: "r", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}
	must(t, s.CreateHold(ctx, h))
	must(t, s.AddApproval(ctx, store.Approval{RunID: r.ID, User: bob, At: t0}))
	must(t, s.Watch(ctx, "fas2", bob))
	must(t, s.AppendEvent(ctx, &store.Event{At: t0, Actor: bob, Action: "hold"}))
	must(t, s.SetMark(ctx, "m", t0))

	s = reopen()
	got, err := s.Run(ctx, r.ID)
	must(t, err)
	if diff := cmp.Diff(r, got); diff != "" {
		t.Fatalf("run after reopen (-want +got):\n%s", diff)
	}
	logText, _ := s.Log(ctx, r.ID)
	holds, _ := s.Holds(ctx, true)
	apps, _ := s.Approvals(ctx, r.ID)
	ws, _ := s.Watchers(ctx, "fas2")
	evs, _ := s.Events(ctx, store.EventFilter{})
	mark, _ := s.Mark(ctx, "m")
	if string(logText) != "hello\n" || len(holds) != 1 || len(apps) != 1 || len(ws) != 1 || len(evs) != 1 || !mark.Equal(t0) {
		t.Fatalf("after reopen: log %q, %d holds, %d approvals, %d watchers, %d events, mark %v",
			logText, len(holds), len(apps), len(ws), len(evs), mark)
	}
	// Numbering carries on where it stopped.
	r2 := newRun("fas2")
	must(t, s.CreateRun(ctx, r2))
	if r2.ID != r.ID+1 {
		t.Fatalf("run number after reopen = %d, want %d", r2.ID, r.ID+1)
	}
}

func testConcurrent(t *testing.T, open Opener) {
	ctx := context.Background()
	s, _ := open(t)
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			r := newRun(fmt.Sprintf("t%d", i))
			if err := s.CreateRun(ctx, r); err != nil {
				errs <- err
				return
			}
			errs <- s.AppendLog(ctx, r.ID, []byte("x"))
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		must(t, err)
	}
	runs, err := s.Runs(ctx, store.RunFilter{})
	must(t, err)
	seen := map[uint64]bool{}
	for _, r := range runs {
		seen[r.ID] = true
	}
	if len(seen) != n {
		t.Fatalf("%d distinct run numbers after %d concurrent creates", len(seen), n)
	}
}

func testCancelledContext(t *testing.T, open Opener) {
	s, _ := open(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.CreateRun(ctx, newRun("fas2")); !errors.Is(err, context.Canceled) {
		t.Fatalf("CreateRun with cancelled ctx: error = %v, want context.Canceled", err)
	}
	runs, err := s.Runs(context.Background(), store.RunFilter{})
	must(t, err)
	if len(runs) != 0 {
		t.Fatalf("a cancelled CreateRun stored %d runs", len(runs))
	}
}

func testDatabases(t *testing.T, open Opener) {
	ctx := context.Background()
	s, reopen := open(t)
	if _, err := s.DatabaseRun(ctx, "7714483811028143163/16384"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown database: err = %v, want ErrNotFound", err)
	}
	must(t, s.RecordDatabase(ctx, "7714483811028143163/16384", 7))
	must(t, s.RecordDatabase(ctx, "7714483811028143163/16385", 8))
	must(t, s.RecordDatabase(ctx, "7714483811028143163/16384", 9)) // a later run wins
	s = reopen()
	for key, want := range map[string]uint64{"7714483811028143163/16384": 9, "7714483811028143163/16385": 8} {
		got, err := s.DatabaseRun(ctx, key)
		if err != nil || got != want {
			t.Fatalf("DatabaseRun(%s) = %d, %v; want %d", key, got, err, want)
		}
	}
	if _, err := s.DatabaseRun(ctx, "other/16384"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("another server's database: err = %v, want ErrNotFound", err)
	}
}

func testValues(t *testing.T, open Opener) {
	ctx := context.Background()
	s, reopen := open(t)
	if _, err := s.Value(ctx, "baseline/fas2"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unset value: err = %v, want ErrNotFound", err)
	}
	must(t, s.SetValue(ctx, "baseline/fas2", []byte(`{"a":1}`)))
	must(t, s.SetValue(ctx, "baseline/koji", []byte{}))
	must(t, s.SetValue(ctx, "baseline/fas2", []byte(`{"a":2}`))) // replaced
	s = reopen()
	for name, want := range map[string]string{"baseline/fas2": `{"a":2}`, "baseline/koji": ""} {
		got, err := s.Value(ctx, name)
		if err != nil || string(got) != want {
			t.Fatalf("Value(%s) = %q, %v; want %q", name, got, err, want)
		}
	}
}

func testCompact(t *testing.T, open Opener) {
	ctx := context.Background()
	s, reopen := open(t)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	// Runs 1–6 finished a day apart; run 7 still waits.
	for i := range 6 {
		r := &store.Run{Target: "fas2", Pipeline: "default", State: store.RunSucceeded, CreatedAt: t0, EndedAt: t0.Add(time.Duration(i) * 24 * time.Hour)}
		must(t, s.CreateRun(ctx, r))
		must(t, s.AppendLog(ctx, r.ID, []byte("log of run")))
		must(t, s.AddApproval(ctx, store.Approval{RunID: r.ID, User: store.User{ID: "U1"}, At: t0}))
	}
	waiting := &store.Run{Target: "fas2", Pipeline: "default", State: store.RunScheduled, CreatedAt: t0}
	must(t, s.CreateRun(ctx, waiting))
	old := &store.Hold{Target: "fas2", Holder: store.User{ID: "U1"}, Reason: "old", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour), EndedAt: t0.Add(time.Hour)}
	live := &store.Hold{Target: "fas2", Holder: store.User{ID: "U2"}, Reason: "live", CreatedAt: t0, ExpiresAt: t0.Add(100 * time.Hour)}
	must(t, s.CreateHold(ctx, old))
	must(t, s.CreateHold(ctx, live))
	// Audit events: one a day for 3 days, then a new one.
	for i := range 3 {
		must(t, s.AppendEvent(ctx, &store.Event{At: t0.Add(time.Duration(i) * 12 * time.Hour), Action: fmt.Sprint("old ", i)}))
	}
	must(t, s.AppendEvent(ctx, &store.Event{At: t0.Add(48 * time.Hour), Action: "new"}))

	// At most 4 finished runs (6, 5, 4, 3 stay, so 2 goes), none that
	// ended before day 1 (1 goes).
	n, err := s.Compact(ctx, store.Retention{Runs: 4, Before: t0.Add(24 * time.Hour)})
	must(t, err)
	if n != 2 {
		t.Fatalf("Compact removed %d runs, want 2", n)
	}
	s = reopen()
	var ids []uint64
	runs, err := s.Runs(ctx, store.RunFilter{})
	must(t, err)
	for _, r := range runs {
		ids = append(ids, r.ID)
	}
	if fmt.Sprint(ids) != "[7 6 5 4 3]" {
		t.Fatalf("runs after compaction: %v", ids)
	}
	if _, err := s.Log(ctx, 1); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the log of a removed run: err = %v", err)
	}
	if apps, _ := s.Approvals(ctx, 1); len(apps) != 0 {
		t.Fatalf("the approvals of a removed run are still there: %v", apps)
	}
	holds, err := s.Holds(ctx, false)
	must(t, err)
	if len(holds) != 1 || holds[0].Reason != "live" {
		t.Fatalf("holds after compaction: %+v", holds)
	}
	// The audit log is compacted too: what came before day 1 goes.
	events, err := s.Events(ctx, store.EventFilter{})
	must(t, err)
	var actions []string
	for _, e := range events {
		actions = append(actions, e.Action)
	}
	if fmt.Sprint(actions) != "[new old 2]" {
		t.Fatalf("audit events after compaction: %q", actions)
	}
	// By count alone.
	n, err = s.Compact(ctx, store.Retention{Runs: 2})
	must(t, err)
	runs, _ = s.Runs(ctx, store.RunFilter{})
	if n != 2 || len(runs) != 3 || runs[0].ID != 7 || runs[2].ID != 5 {
		t.Fatalf("Compact(Runs: 2) removed %d, left %d runs", n, len(runs))
	}
}

// fillers each put one kind of record in a store.
var fillers = map[string]func(ctx context.Context, s store.Store) error{
	"runs": func(ctx context.Context, s store.Store) error { return s.CreateRun(ctx, newRun("fas2")) },
	"holds": func(ctx context.Context, s store.Store) error {
		return s.CreateHold(ctx, &store.Hold{Target: "fas2", Holder: alice, Reason: "r", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)})
	},
	"watchers": func(ctx context.Context, s store.Store) error { return s.Watch(ctx, "fas2", bob) },
	"events": func(ctx context.Context, s store.Store) error {
		return s.AppendEvent(ctx, &store.Event{At: t0, Actor: alice, Action: "hold"})
	},
	"marks":     func(ctx context.Context, s store.Store) error { return s.SetMark(ctx, "cron/fas2", t0) },
	"databases": func(ctx context.Context, s store.Store) error { return s.RecordDatabase(ctx, "key", 1) },
	"values":    func(ctx context.Context, s store.Store) error { return s.SetValue(ctx, "matrix/since", []byte("s1")) },
}

// testExportImport: what one store exports another imports whole, and a
// store holding any kind of record refuses an import.
func testExportImport(t *testing.T, open Opener) {
	ctx := context.Background()
	porter := func(s store.Store) store.Porter {
		t.Helper()
		p, ok := s.(store.Porter)
		if !ok {
			t.Fatalf("%T cannot export or import (store.Porter): every store can", s)
		}
		return p
	}
	src, _ := open(t)
	for _, fill := range fillers {
		must(t, fill(ctx, src))
	}
	runs, err := src.Runs(ctx, store.RunFilter{})
	must(t, err)
	must(t, src.AppendLog(ctx, runs[0].ID, []byte("log line\n")))
	must(t, src.AddApproval(ctx, store.Approval{RunID: runs[0].ID, User: bob, At: t0}))
	d, err := porter(src).Export(ctx)
	must(t, err)
	dst, _ := open(t)
	must(t, porter(dst).Import(ctx, d))
	again, err := porter(dst).Export(ctx)
	must(t, err)
	if diff := cmp.Diff(d, again, cmpopts.EquateEmpty()); diff != "" {
		t.Fatalf("imported store exports differently (-source +imported):\n%s", diff)
	}
	// A record made after the import gets a number past the imported ones.
	r := newRun("fas2")
	must(t, dst.CreateRun(ctx, r))
	if r.ID <= runs[0].ID {
		t.Errorf("a run created after the import got ID %d, not past %d", r.ID, runs[0].ID)
	}
	for what, fill := range fillers {
		s, _ := open(t)
		must(t, fill(ctx, s))
		if err := porter(s).Import(ctx, d); !errors.Is(err, store.ErrNotEmpty) {
			t.Errorf("import into a store holding only %s: %v, want ErrNotEmpty", what, err)
		}
	}
}

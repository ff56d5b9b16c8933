package postgres_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stagebot/stagebot/internal/patience"
	"github.com/stagebot/stagebot/internal/pgtest"
	"github.com/stagebot/stagebot/store"
)

// memoryValues is a Registry that also keeps values, as the bot's store does.
type memoryValues struct {
	mu     sync.Mutex
	dbs    map[string]uint64
	values map[string][]byte
}

func newMemoryValues() *memoryValues {
	return &memoryValues{dbs: map[string]uint64{}, values: map[string][]byte{}}
}

func (m *memoryValues) RecordDatabase(_ context.Context, key string, run uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.dbs[key] = run
	return nil
}

func (m *memoryValues) DatabaseRun(_ context.Context, key string) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	run, ok := m.dbs[key]
	if !ok {
		return 0, store.ErrNotFound
	}
	return run, nil
}

func (m *memoryValues) SetValue(_ context.Context, name string, v []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.values[name] = v
	return nil
}

func (m *memoryValues) Value(_ context.Context, name string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.values[name]
	if !ok {
		return nil, store.ErrNotFound
	}
	return v, nil
}

// TestChanges_WhatARefreshWouldWipe: after a refresh, the writes people
// make on staging, the tables they add and drop and the sessions they
// have open are what Changes reports, busiest first; once the
// statistics are reset it says unknown, never nothing.
func TestChanges_WhatARefreshWouldWipe(t *testing.T) {
	f := newFixture(t)
	f.target.Registry = newMemoryValues()
	ctx := context.Background()
	if got, _, err := f.target.Changes(ctx); err != nil || !strings.Contains(got, "does not exist yet") {
		t.Fatalf("before the first refresh: %q, %v", got, err)
	}
	if out, err := run(t, refreshSteps(f.target), nil); err != nil {
		t.Fatalf("refresh: %v\n%s", err, out)
	}
	var connected []string
	// changes waits until Changes says what the test expects: the
	// counters reach the statistics a while after the writers' sessions
	// end, so a report read too soon may lag what was done.
	changes := func(ready ...string) string {
		t.Helper()
		var got string
		patience.Until(t, "the statistics to show "+strings.Join(ready, ", "), 10*time.Second, func() bool {
			var err error
			if got, connected, err = f.target.Changes(ctx); err != nil {
				t.Fatal(err)
			}
			for _, want := range ready {
				if !strings.Contains(got, want) {
					return false
				}
			}
			return true
		}, func() string { return got })
		return got
	}
	if got := changes(": nothing."); !strings.Contains(got, "Changed on staging since run ") || !strings.Contains(got, ": nothing.") || !strings.Contains(got, "kept for rollback") {
		t.Fatalf("right after the refresh: %q", got)
	}
	stg := f.stg.DSN(f.stgDB)
	pgtest.Exec(t, stg,
		"insert into audit select now(), 'x' || g from generate_series(1, 1500) g",
		"update users set name = 'changed' where id <= 40",
		"delete from orders where id <= 7",
		"insert into orders (user_id, amount, placed) values (1, 5, date '2026-12-01')",
		"create table scratch (x int)",
		"insert into scratch values (1)",
	)
	// Someone is connected.
	cfg, err := pgx.ParseConfig(stg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["application_name"] = "qa-notebook"
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	got := changes("1,500 inserted", "7 deleted", "new tables", "qa-notebook")
	for _, want := range []string{
		"• public.audit: 1,500 inserted\n• public.users: 40 updated\n• public.orders: 1 inserted, 7 deleted",
		"• new tables: public.scratch",
		"Connected now: postgres (qa-notebook) from 127.0.0.1",
		"The copy it replaces is kept for rollback.",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("changes lack %q:\n%s", want, got)
		}
	}
	if len(connected) != 1 || connected[0] != "postgres" {
		t.Errorf("connected roles = %v, want [postgres]", connected)
	}
	// Statistics reset: unknown, not nothing.
	pgtest.Exec(t, stg, "select pg_stat_reset()")
	if got := changes("unknown"); !strings.Contains(got, "unknown (staging's statistics were reset") {
		t.Errorf("after a statistics reset: %q", got)
	}
	// The next refresh starts counting again.
	if out, err := run(t, refreshSteps(f.target), nil); err != nil {
		t.Fatalf("second refresh: %v\n%s", err, out)
	}
	c.Close(ctx)
	if got := changes(": nothing."); !strings.Contains(got, ": nothing.") {
		t.Errorf("after the next refresh: %q", got)
	}
}

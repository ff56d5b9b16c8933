package postgres_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stagebot/stagebot/internal/pgtest"
	"github.com/stagebot/stagebot/runner"
	"github.com/stagebot/stagebot/runner/postgres"
)

// TestReset_PutsStagingBackToTheBase: with keep_base, a refresh keeps its
// sanitised result; after people change staging, a reset brings back
// exactly that (rows, schema and database settings), without production.
// Without a base, or with one older than max_age, a reset is refused.
func TestReset_PutsStagingBackToTheBase(t *testing.T) {
	f := newFixture(t)
	f.target.Registry = newMemoryValues()
	f.target.KeepBase = true
	resetSteps := func(maxAge time.Duration) []runner.Step {
		return []runner.Step{&postgres.Reset{StepName: "copy the base", Target: f.target, MaxAge: maxAge}, &postgres.Swap{StepName: "swap", Target: f.target}}
	}
	if _, err := run(t, resetSteps(0), nil); err == nil || !strings.Contains(err.Error(), "no base copy of app is kept yet") {
		t.Fatalf("reset before any refresh: %v", err)
	}
	sanitise := &postgres.SQL{StepName: "sanitise", Target: f.target, On: postgres.OnShadow, Script: "update users set email = 'user' || id || '@example.invalid'"}
	if out, err := run(t, refreshSteps(f.target, sanitise), nil); err != nil {
		t.Fatalf("refresh: %v\n%s", err, out)
	}
	stg := f.stg.DSN(f.stgDB)
	base := fingerprint(t, stg)
	if v := pgtest.Value(t, stg, "select count(*) from users where email like '%@example.invalid'"); v != "3000" {
		t.Fatalf("sanitised users: %s", v)
	}
	if v := pgtest.Value(t, f.stg.DSN("postgres"), "select datallowconn::text from pg_database where datname = '"+f.stgDB+postgres.BaseSuffix+"'"); v != "false" {
		t.Fatalf("the base copy takes connections (%q): people could change it", v)
	}
	// People work on staging.
	pgtest.Exec(t, stg, "delete from orders where id < 500", "update users set name = 'scribbled'", "create table junk (x int)", "alter database "+f.stgDB+" set work_mem = '1MB'")
	if fingerprint(t, stg)["table orders"] == base["table orders"] {
		t.Fatal("the changes did not change staging")
	}
	// Production changes too: a reset does not read it.
	pgtest.Exec(t, f.prod.DSN(f.prodDB), "delete from orders where id > 7000")
	out, err := run(t, resetSteps(0), nil)
	if err != nil {
		t.Fatalf("reset: %v\n%s", err, out)
	}
	if !strings.Contains(out, "copied "+f.stgDB+postgres.BaseSuffix) {
		t.Errorf("the reset's log does not say what it copied:\n%s", out)
	}
	after := fingerprint(t, stg)
	for k, v := range base {
		if after[k] != v {
			t.Errorf("after the reset, %s differs from the base:\n  base  %s\n  after %s", k, v, after[k])
		}
	}
	for k := range after {
		if _, ok := base[k]; !ok {
			t.Errorf("after the reset staging has %s, which the base has not", k)
		}
	}
	// A reset keeps the base as it is (it does not copy the copy).
	if strings.Contains(out, "kept "+f.stgDB+postgres.BaseSuffix) {
		t.Errorf("the reset made a new base from itself:\n%s", out)
	}
	// A base older than max_age is refused.
	time.Sleep(10 * time.Millisecond)
	if _, err := run(t, resetSteps(time.Millisecond), nil); err == nil || !strings.Contains(err.Error(), "older than max_age") {
		t.Fatalf("reset with a stale base: %v", err)
	}
}

package postgres_test

import (
	"context"
	"strings"
	"testing"

	"github.com/stagebot/stagebot/internal/pgtest"
	"github.com/stagebot/stagebot/runner/postgres"
)

// A refresh that will not fit on staging's server beside what it holds is
// warned of when it is planned, naming the copies stagebot keeps there
// and how big they are.
func TestRefresh_PlanWarnsWhenTheCopyWillNotFit(t *testing.T) {
	f := newFixture(t)
	if log, err := run(t, refreshSteps(f.target), nil); err != nil {
		t.Fatalf("%v\n%s", err, log)
	}
	if log, err := run(t, refreshSteps(f.target), nil); err != nil { // keeps the first copy as previous
		t.Fatalf("%v\n%s", err, log)
	}
	step := refreshSteps(f.target)[0]
	desc, err := step.Plan(context.Background())
	if err != nil || strings.Contains(desc, "warning:") {
		t.Fatalf("no budget: %q %v", desc, err)
	}
	f.target.DiskBudget = 1 << 20
	desc, err = step.Plan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"warning: the copy needs about", "more than its disk_budget of 1.0 MiB", "__stagebot_prev (the previous copy kept for rollback) holds", "`forget app previous` drops it", "keep_previous: space_permitting"} {
		if !strings.Contains(desc, want) {
			t.Errorf("the plan lacks %q:\n%s", want, desc)
		}
	}
	f.target.DiskBudget = 1 << 40
	if desc, _ = step.Plan(context.Background()); strings.Contains(desc, "warning:") {
		t.Errorf("a copy that fits is warned of:\n%s", desc)
	}
}

// forget drops the previous copy or the base and says how much it gave
// back; a copy that is not there is an error, and rollback then says why
// it cannot run.
func TestForget_DropsAKeptCopyAndSaysWhatItGaveBack(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if _, err := f.target.Forget(ctx, postgres.ForgetPrevious); err == nil || !strings.Contains(err.Error(), "keeps no previous copy") {
		t.Fatalf("forget with nothing kept: %v", err)
	}
	for range 2 {
		if log, err := run(t, refreshSteps(f.target), nil); err != nil {
			t.Fatalf("%v\n%s", err, log)
		}
	}
	prev, base := f.stgDB+postgres.PrevSuffix, f.stgDB+postgres.BaseSuffix
	pgtest.Exec(t, f.stg.DSN("postgres"), "create database "+base) // as keep_base leaves it
	if dbs := databases(t, f.stg); !has(dbs, prev) || !has(dbs, base) {
		t.Fatalf("after two refreshes: %v", dbs)
	}
	did, err := f.target.Forget(ctx, postgres.ForgetPrevious)
	if err != nil || !strings.Contains(did, "dropped "+prev+", the previous copy: ") || !strings.Contains(did, "MiB of staging's server given back") {
		t.Fatalf("forget previous: %q %v", did, err)
	}
	if dbs := databases(t, f.stg); has(dbs, prev) || !has(dbs, base) || !has(dbs, f.stgDB) {
		t.Fatalf("after forget previous: %v", dbs)
	}
	rb := &postgres.RollbackStep{StepName: "rollback", Target: f.target}
	if _, err := rb.Plan(ctx); err == nil || !strings.Contains(err.Error(), "it was forgotten") {
		t.Errorf("rollback after forget: %v", err)
	}
	if did, err = f.target.Forget(ctx, postgres.ForgetBase); err != nil || !strings.Contains(did, "the base copy") {
		t.Fatalf("forget base: %q %v", did, err)
	}
	if dbs := databases(t, f.stg); has(dbs, base) || !has(dbs, f.stgDB) {
		t.Fatalf("after forget base: %v", dbs)
	}
	if _, err := f.target.Forget(ctx, "staging"); err == nil {
		t.Error("forget staging itself was accepted")
	}
}

// keep_previous: space_permitting: the previous copy gives its space to the
// next copy before it starts (the plan says so beforehand and the run's
// progress as it happens), unless disk_budget says both fit; the copy the
// refresh replaces is kept all the same.
func TestRefresh_SpacePermittingDropsThePreviousCopyFirst(t *testing.T) {
	f := newFixture(t)
	f.target.SpacePermitting = true
	prev := f.stgDB + postgres.PrevSuffix
	for range 2 {
		if log, err := run(t, refreshSteps(f.target), nil); err != nil {
			t.Fatalf("%v\n%s", err, log)
		}
	}
	if !has(databases(t, f.stg), prev) {
		t.Fatal("no previous copy kept")
	}
	step := refreshSteps(f.target)[0]
	desc, err := step.Plan(context.Background())
	if err != nil || !strings.Contains(desc, "the previous copy "+prev) || !strings.Contains(desc, "is dropped before the copy") {
		t.Fatalf("the plan does not say the previous copy goes first: %q %v", desc, err)
	}
	// The previous copy is gone before the copy begins: watch for it.
	rep := &progressLog{}
	log, err := run(t, refreshSteps(f.target), rep)
	if err != nil {
		t.Fatalf("%v\n%s", err, log)
	}
	if !strings.Contains(log, "dropped the previous copy "+prev) {
		t.Errorf("the log does not say the previous copy was dropped:\n%s", log)
	}
	rep.mu.Lock()
	first := ""
	for _, p := range rep.ps {
		if p.Items != "" {
			first = p.Items
			break
		}
	}
	rep.mu.Unlock()
	if !strings.Contains(first, "dropped the previous copy") {
		t.Errorf("the first progress is %q, want the drop", first)
	}
	if !has(databases(t, f.stg), prev) {
		t.Error("the copy the refresh replaced was not kept as the previous one")
	}
	// Room for both: the previous copy stays.
	f.target.DiskBudget = 1 << 40
	if desc, _ := step.Plan(context.Background()); strings.Contains(desc, "is dropped before the copy") {
		t.Errorf("with room for both the plan still drops the previous copy:\n%s", desc)
	}
	if log, err = run(t, refreshSteps(f.target), nil); err != nil || !strings.Contains(log, "the previous copy "+prev) || !strings.Contains(log, "stays") {
		t.Errorf("with room for both: %v\n%s", err, log)
	}
}

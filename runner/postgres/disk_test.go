package postgres_test

import (
	"context"
	"strings"
	"testing"
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
	for _, want := range []string{"warning: the copy needs about", "more than its disk_budget of 1.0 MiB", "__stagebot_prev (the previous copy kept for rollback) holds", "keep_previous: false"} {
		if !strings.Contains(desc, want) {
			t.Errorf("the plan lacks %q:\n%s", want, desc)
		}
	}
	f.target.DiskBudget = 1 << 40
	if desc, _ = step.Plan(context.Background()); strings.Contains(desc, "warning:") {
		t.Errorf("a copy that fits is warned of:\n%s", desc)
	}
}

package bot_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stagebot/stagebot/store"
)

func TestRestart_MarksRunningRunsInterrupted(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	r := &store.Run{Target: "fas2", Pipeline: "default", Requester: alice, State: store.RunRunning, Channel: "infra",
		Steps: []store.StepResult{{Name: "stop app", State: store.StepSucceeded}, {Name: "refresh", State: store.StepRunning}}}
	if err := e.s.CreateRun(ctx, r); err != nil {
		t.Fatal(err)
	}
	hold := &store.Hold{Target: "fas2", Holder: carol, Reason: "kept", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}
	e.s.CreateHold(ctx, hold)
	e.s.CreateHold(ctx, &store.Hold{Target: store.AllTargets, Holder: store.User{ID: "run/1"}, Run: r.ID, Reason: "the run's own", CreatedAt: t0})
	e.s.Close()
	e.open()
	got := e.run(r.ID)
	if got.State != store.RunInterrupted || got.Reason != "stagebot stopped during step refresh" || got.Steps[1].State != store.StepAborted {
		t.Fatalf("after restart: %s %q %+v", got.State, got.Reason, got.Steps)
	}
	wantText(t, e.a.Since(0), "Run 1 of fas2 was interrupted: stagebot stopped during step refresh")
	holds := e.say(alice, "!stage holds")
	wantText(t, holds, "fas2 held by carol until 10:00 UTC: kept")
	if strings.Contains(texts(holds), "the run's own") {
		t.Fatalf("the interrupted run's hold outlived it:\n%s", texts(holds))
	}
}

func TestRestart_RunWithEveryStepDoneIsRecordedAsSucceeded(t *testing.T) {
	tg := fas2()
	tg.Holding = func(_ context.Context, run uint64) string {
		return fmt.Sprintf("fas2 holds the new copy, made by run %d", run)
	}
	e := newEnv(t, tg)
	ctx := context.Background()
	r := &store.Run{Target: "fas2", Pipeline: "default", Requester: alice, State: store.RunRunning, Channel: "infra",
		Steps: []store.StepResult{{Name: "refresh", State: store.StepSucceeded}, {Name: "swap", State: store.StepSucceeded}}}
	between := &store.Run{Target: "fas2", Pipeline: "default", Requester: alice, State: store.RunRunning, Channel: "infra",
		Steps: []store.StepResult{{Name: "refresh", State: store.StepSucceeded}, {Name: "swap", State: store.StepPending}}}
	for _, x := range []*store.Run{r, between} {
		if err := e.s.CreateRun(ctx, x); err != nil {
			t.Fatal(err)
		}
	}
	e.s.Close()
	e.open()
	if got := e.run(r.ID); got.State != store.RunSucceeded || !strings.Contains(got.Reason, "every step had finished") || !strings.Contains(got.Reason, "fas2 holds the new copy, made by run 1") {
		t.Fatalf("after restart: %s %q", got.State, got.Reason)
	}
	if got := e.run(between.ID); got.State != store.RunInterrupted || !strings.HasPrefix(got.Reason, "stagebot stopped after step refresh, before step swap") {
		t.Fatalf("after restart: %s %q", got.State, got.Reason)
	}
	out := e.a.Since(0)
	wantText(t, out, "Run 1 of fas2 had finished every step when I stopped; I recorded it as succeeded after a restart. Fas2 holds the new copy, made by run 1.")
	wantText(t, out, "Run 2 of fas2 was interrupted: stagebot stopped after step refresh, before step swap.")
}

// TestRestart_MissedStartIsAnnouncedAgain: a run that was to start while
// the bot was down (a `now` run killed before it started) does not start
// silently after a restart: it gets a new start after the notice, said in
// the channel.
func TestRestart_MissedStartIsAnnouncedAgain(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	r := &store.Run{Target: "fas2", Pipeline: "default", Requester: alice, State: store.RunScheduled, Channel: "infra", CreatedAt: t0.Add(-time.Hour), StartAt: t0.Add(-time.Minute)}
	if err := e.s.CreateRun(ctx, r); err != nil {
		t.Fatal(err)
	}
	e.s.Close()
	e.open()
	got := e.run(r.ID)
	if got.State != store.RunScheduled || !got.StartAt.Equal(t0.Add(10*time.Minute)) {
		t.Fatalf("after restart: %s, start %s", got.State, got.StartAt)
	}
	wantText(t, e.a.Since(0), "Run 1 was due at 08:59 UTC, while stagebot was not running, so it did not start. It now starts at 09:10 UTC")
	e.advance(5 * time.Minute)
	if got := e.run(r.ID); got.State != store.RunScheduled {
		t.Fatalf("the run started before its new start: %s", got.State)
	}
}

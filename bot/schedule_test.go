package bot_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/stagebot/stagebot/bot"
	"github.com/stagebot/stagebot/internal/patience"
	"github.com/stagebot/stagebot/runner"
	"github.com/stagebot/stagebot/store"
)

// atNoon gives tg a schedule at 12:00 every day.
func atNoon(t *testing.T, tg *bot.Target) *bot.Target {
	sched, err := cron.ParseStandard("0 12 * * *")
	if err != nil {
		t.Fatal(err)
	}
	tg.Schedules = []bot.Schedule{{Spec: "0 12 * * *", Cron: sched, Pipeline: "default"}}
	return tg
}

func TestCron_CreatesRunsThroughDispatcher(t *testing.T) {
	e := newEnv(t, atNoon(t, fas2()))
	// 09:00 now; the 12:00 slot is within the 24h ladder, so it is created
	// and announced at once.
	out := e.advance(0)
	wantText(t, out, "Run 1: refresh of fas2 (default pipeline) starts at 12:00 UTC (in 3h)")
	if f := fieldsText(out[0].Msg.Fields); !strings.Contains(f, "Asked by: scheduler") {
		t.Fatalf("card fields: %s", f)
	}
	r := e.run(1)
	if r.Origin != store.OriginScheduled || r.Requester != store.Scheduler || !r.Slot.Equal(t0.Add(3*time.Hour)) {
		t.Fatalf("scheduled run = %+v", r)
	}
	wantNothing(t, e.advance(time.Hour))
	wantText(t, e.advance(time.Hour), "Reminder: run 1 starts in 1h")
	out = e.advance(time.Hour)
	wantText(t, out, "Run 1 of fas2/default: running")
	e.b.Wait()
	// The slot is not created twice, and the next day's run is created 24h
	// ahead.
	runs, _ := e.s.Runs(context.Background(), store.RunFilter{})
	if len(runs) != 2 || runs[0].Slot.Sub(runs[1].Slot) != 24*time.Hour {
		t.Fatalf("runs after first slot: %d", len(runs))
	}
	evs, _ := e.s.Events(context.Background(), store.EventFilter{RunID: 1})
	if evs[len(evs)-1].Actor != store.Scheduler || evs[len(evs)-1].Action != "requested" {
		t.Fatalf("first event of run 1 = %+v", evs[len(evs)-1])
	}
}

func TestCron_SeveralSchedulesRunTheirOwnPipelines(t *testing.T) {
	tg := fas2()
	tg.Ladder = []time.Duration{time.Hour}
	slow, _ := cron.ParseStandard("0 14 * * *")
	dflt, _ := cron.ParseStandard("30 11 * * *")
	tg.Schedules = []bot.Schedule{{Spec: "0 14 * * *", Cron: slow, Pipeline: "slow"}, {Spec: "30 11 * * *", Cron: dflt, Pipeline: "default"}}
	tg.Pipelines["slow"].Steps = []runner.Step{sh("copy", "echo quick")}
	e := newEnv(t, tg)
	e.advance(0)
	wantText(t, e.advance(90*time.Minute), "Run 1: refresh of fas2 (default pipeline) starts at 11:30 UTC (in 1h)")
	e.advance(time.Hour)
	e.b.Wait()
	wantText(t, e.advance(90*time.Minute), "Run 2: refresh of fas2 (slow pipeline) starts at 14:00 UTC (in 1h)")
	if r := e.run(1); r.Pipeline != "default" || r.State != store.RunSucceeded {
		t.Fatalf("run 1 = %s %s", r.Pipeline, r.State)
	}
	if r := e.run(2); r.Pipeline != "slow" || !r.Slot.Equal(t0.Add(5*time.Hour)) {
		t.Fatalf("run 2 = %s at %s", r.Pipeline, r.Slot)
	}
}

func TestCron_MissedSlotIsReported(t *testing.T) {
	tg := fas2()
	sched, _ := cron.ParseStandard("0 12 * * *")
	tg.Schedules = []bot.Schedule{{Spec: "0 12 * * *", Cron: sched, Pipeline: "default"}}
	tg.Ladder = []time.Duration{10 * time.Minute}
	e := newEnv(t, tg)
	e.advance(0) // sets the cursor at 09:00
	e.clock.Advance(4 * time.Hour)
	wantText(t, e.advance(0), "The scheduled run of fas2/default at 12:00 UTC was missed")
	runs, _ := e.s.Runs(context.Background(), store.RunFilter{})
	if len(runs) != 0 {
		t.Fatalf("a missed slot created %d runs", len(runs))
	}
}

// TestCron_SlotMissedByMomentsRunsLate: when no bot acted at a slot a
// moment ago (a restart, another bot taking over), the run is announced
// now with the target's notice instead of being lost.
func TestCron_SlotMissedByMomentsRunsLate(t *testing.T) {
	tg := fas2()
	sched, _ := cron.ParseStandard("0 12 * * *")
	tg.Schedules = []bot.Schedule{{Spec: "0 12 * * *", Cron: sched, Pipeline: "default"}}
	tg.Ladder = nil
	tg.Notice = 2 * time.Minute
	e := newEnv(t, tg)
	e.advance(0) // sets the cursor at 09:00
	e.clock.Advance(3*time.Hour - 3*time.Minute)
	wantNothing(t, e.advance(0))
	// Down from 11:57 until 12:02: the run was due to be announced at 11:58.
	e.clock.Advance(5 * time.Minute)
	wantText(t, e.advance(0), "Run 1: refresh of fas2 (default pipeline) starts at 12:04 UTC (in 2m)")
	r := e.run(1)
	if r.Origin != store.OriginScheduled {
		t.Fatalf("the late run's origin = %s", r.Origin)
	}
	events, _ := e.s.Events(context.Background(), store.EventFilter{})
	if len(events) == 0 || events[len(events)-1].Action != "late" {
		t.Fatalf("the audit log does not say the slot was taken late: %+v", events)
	}
}

// The scheduler loop wakes on the clock, not on a timer of its own: moving
// the fake clock is enough for a run to start.
func TestRun_SchedulerLoopFollowsTheClock(t *testing.T) {
	tg := fas2()
	tg.Manual = bot.ApprovalRule{}
	e := newEnv(t, tg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.b.Run(ctx) }()
	e.a.Type(ctx, "infra", alice, "!stage resync fas2 in 5m")
	waitFor(t, func() bool { r, err := e.s.Run(ctx, 1); return err == nil && r.State == store.RunScheduled })
	// Keep moving time until the loop has taken the run through.
	waitFor(t, func() bool {
		e.clock.Advance(time.Minute)
		r, _ := e.s.Run(ctx, 1)
		return r.State == store.RunSucceeded
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if r := e.run(1); r.StartedAt.Before(t0.Add(5 * time.Minute)) {
		t.Fatalf("started at %v, before its start time", r.StartedAt)
	}
}

// waitFor polls cond until it holds; it fails the test after 10s of real
// time. It waits for goroutines, never for the schedule.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(patience.D(10 * time.Second))
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestScheduler_WaitingRunsWakeNothing: a run held past its start time
// must not keep the scheduler turning; it sleeps until the next moment
// something can change.
func TestScheduler_WaitingRunsWakeNothing(t *testing.T) {
	e := newEnv(t)
	wantText(t, e.say(carol, "!stage hold fas2 3h testing the login"), "carol holds fas2 until")
	e.say(alice, "!stage resync fas2 in 10m")
	e.clock.Advance(30 * time.Minute) // the start has passed; the hold keeps the run waiting
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.b.Run(ctx) }()
	time.Sleep(300 * time.Millisecond)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// One sleep after the first tick (until the hold's warning); a busy
	// loop goes to sleep thousands of times in 300ms.
	if n := e.clock.Timers(); n > 3 {
		t.Fatalf("the scheduler went to sleep %d times in 300ms with nothing due", n)
	}
}

// TestSchedule_ListsEachRunOnceInTimeOrder: a cron slot whose run exists
// already is listed once, as the run, and everything in time order.
func TestSchedule_ListsEachRunOnceInTimeOrder(t *testing.T) {
	e := newEnv(t, atNoon(t, fas2()))
	e.advance(0)
	e.advance(time.Hour) // 10:00: today's 12:00 run exists (announced 24h ahead)
	e.say(alice, "!stage resync fas2 in 30m")
	out := texts(e.say(alice, "!stage schedule"))
	if strings.Count(out, "at 12:00 UTC") != 1 || strings.Count(out, "(scheduled)") != 3 {
		t.Fatalf("today's 12:00 slot is listed twice, or not three more slots:\n%s", out)
	}
	if strings.Contains(out, "calendar") {
		t.Errorf("with no page address the reply links to a calendar:\n%s", out)
	}
	manual, today, tomorrow := strings.Index(out, "at 10:30 UTC: run 2"), strings.Index(out, "at 12:00 UTC: run 1"), strings.Index(out, "at Tue 2026-11-24 12:00 UTC (scheduled)")
	if manual < 0 || today < 0 || tomorrow < 0 || !(manual < today && today < tomorrow) {
		t.Fatalf("not in time order, or something missing:\n%s", out)
	}
}

// TestBudget_HoldsCannotKeepAScheduledRunPastMaxAge: holds keep a
// scheduled run waiting until staging's data reaches max_age; then the
// holders get a last call, no new hold is accepted, and the run starts
// despite them, unless an admin extends the budget with a reason.
func TestBudget_HoldsCannotKeepAScheduledRunPastMaxAge(t *testing.T) {
	tg := fas2()
	sched, _ := cron.ParseStandard("30 9 * * *")
	tg.Schedules = []bot.Schedule{{Spec: "30 9 * * *", Cron: sched, Pipeline: "default"}}
	tg.Ladder = nil
	tg.MaxAge = 48 * time.Hour
	e := newEnv(t, tg)
	ctx := context.Background()
	// Staging's data is from 47 hours ago: it reaches max_age at 10:00.
	old := &store.Run{Target: "fas2", Pipeline: "default", Origin: store.OriginScheduled, State: store.RunSucceeded, CreatedAt: t0.Add(-48 * time.Hour), EndedAt: t0.Add(-47 * time.Hour)}
	if err := e.s.CreateRun(ctx, old); err != nil {
		t.Fatal(err)
	}
	e.advance(0)
	wantText(t, e.say(bob, "!stage hold fas2 4h testing the login"), "bob holds fas2 until 13:00")
	out := e.advance(20 * time.Minute) // 09:20: announced
	wantText(t, out, "Run 2: refresh of fas2 (default pipeline) starts at 09:30", "Runs by 10:10 UTC at the latest: holds keep it waiting only until fas2's data reaches its max_age (2d)")
	wantText(t, e.advance(10*time.Minute), "Run 2 of fas2 is due but waits: held by bob")
	wantText(t, e.say(alice, "!stage status fas2"), "(max_age 2d)")
	out = e.advance(30 * time.Minute) // 10:00
	wantText(t, out, "⏰ Last call: fas2's data is past its max_age (2d). Run 2 starts at 10:10 UTC despite the holds (held by bob")
	wantText(t, e.say(carol, "!stage hold fas2 1h one more thing"), "fas2's data is past its max_age (2d): run 2 goes ahead despite holds")
	// An admin gives it an hour more.
	wantText(t, e.say(carol, "!stage extend 2 1h the login test ends at 11"), "stage.admin")
	wantText(t, e.say(alice, "!stage extend 2 1h the login test ends at 11"), "alice let holds keep run 2 of fas2 waiting until 11:00 UTC, past its max_age: the login test ends at 11")
	wantNothing(t, e.advance(10*time.Minute)) // 10:10: still held
	if r := e.run(2); r.State != store.RunWaiting {
		t.Fatalf("run 2 is %s after the extension, want waiting", r.State)
	}
	wantText(t, e.advance(50*time.Minute), "⏰ Last call") // 11:00
	out = e.advance(10 * time.Minute)                     // 11:10
	wantText(t, out, "Run 2 of fas2/default: running")
	e.b.Wait()
	if r := e.run(2); r.State != store.RunSucceeded {
		t.Fatalf("run 2 = %s, want succeeded despite the hold", r.State)
	}
	events, _ := e.s.Events(ctx, store.EventFilter{RunID: 2})
	var actions []string
	for _, ev := range events {
		actions = append(actions, ev.Action)
	}
	for _, want := range []string{"last call", "extended", "holds overridden"} {
		if !slices.Contains(actions, want) {
			t.Errorf("audit log of run 2 lacks %q: %v", want, actions)
		}
	}
	// The hold itself stays: it no longer keeps runs waiting only while
	// the data is past max_age, and the fresh data resets the budget.
	wantText(t, e.say(carol, "!stage hold fas2 1h one more thing"), "carol holds fas2")
}

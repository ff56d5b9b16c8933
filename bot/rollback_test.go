package bot_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stagebot/stagebot/bot/bottest"
	"github.com/stagebot/stagebot/runner"
	"github.com/stagebot/stagebot/store"
)

// A rollback is a refresh in reverse: a run of the target's rollback
// pipeline, announced, kept waiting by someone else's hold and by the
// approvals a refresh needs, with the pipeline's stop and start steps
// around the swap; afterwards status and the data age describe the copy
// put back (the older refresh's), not the rollback.
func TestRollback_IsARunThatHonoursHoldsAndApprovals(t *testing.T) {
	tg := fas2()
	tg.Pipelines["rollback"] = &runner.Pipeline{Name: "rollback",
		Steps:   []runner.Step{sh("stop app", "echo stopping"), kindStep{"put the previous copy back", "pg_rollback"}},
		Finally: []runner.Step{sh("start app", "echo starting")},
	}
	tg.MaxAge = 3 * time.Hour
	e := newEnv(t, tg)
	for id := uint64(1); id <= 2; id++ {
		e.say(alice, "!stage resync fas2 now")
		e.say(bob, fmt.Sprintf("!stage approve %d", id))
		e.advance(time.Second)
		e.b.Wait()
		if r := e.run(id); r.State != store.RunSucceeded {
			t.Fatalf("refresh %d: %s", id, r.State)
		}
		e.advance(time.Hour)
	}
	wantText(t, e.say(alice, "!stage status fas2"), "data: refreshed by run 2, 1h")
	wantText(t, e.say(carol, "!stage hold fas2 1h testing the login"), "carol holds fas2")
	wantText(t, e.say(carol, "!stage rollback fas2"), "needs the scope `stage.rollback.fas2`")
	wantText(t, e.say(alice, "!stage rollback fas2 now"), "Run 3: rollback of fas2")
	e.advance(time.Second)
	if r := e.run(3); r.State == store.RunRunning || r.State.Done() {
		t.Fatalf("the rollback went ahead despite carol's hold and no approval: %s", r.State)
	}
	wantText(t, e.say(carol, "!stage release fas2"), "Hold on fas2 by carol ended")
	e.advance(11 * time.Minute)
	if r := e.run(3); r.State == store.RunRunning || r.State.Done() {
		t.Fatalf("the rollback went ahead without its approval: %s", r.State)
	}
	e.say(bob, "!stage approve 3")
	e.advance(time.Second)
	e.b.Wait()
	r := e.run(3)
	if r.State != store.RunSucceeded {
		t.Fatalf("the rollback: %s (%s)", r.State, r.Reason)
	}
	var ran []string
	for _, st := range r.Steps {
		ran = append(ran, st.Name)
	}
	if got := strings.Join(ran, ", "); got != "stop app, put the previous copy back, start app" {
		t.Errorf("the rollback ran %s", got)
	}
	// Staging holds run 1's data now: 2h12m old, not fresh.
	wantText(t, e.say(alice, "!stage status fas2"), "data: run 1's refresh, put back by run 3 (rollback), 2h", "(max_age 3h)")
	e.advance(time.Hour)
	wantText(t, e.say(alice, "!stage status fas2"), "past its max_age of 3h")
}

// forget drops a kept copy for whoever has stage.forget.<target>, is
// audited, and waits until no run of the target is running.
func TestForget_AKeptCopyIsDroppedByThoseAllowedWhenNothingRuns(t *testing.T) {
	tg := fas2()
	var asked []string
	tg.Forget = func(_ context.Context, copy string) (string, error) {
		asked = append(asked, copy)
		if copy == "base" {
			return "", errors.New("fas2 keeps no base copy (fas2__stagebot_base): there is nothing to forget")
		}
		return "dropped fas2__stagebot_prev, the previous copy: 1.2 GiB of staging's server given back", nil
	}
	tg.Pipelines["slow"].Steps = []runner.Step{sh("copy", "sleep 30")}
	e := newEnv(t, tg)
	wantText(t, e.say(carol, "!stage forget fas2 previous"), "needs the scope `stage.forget.fas2`")
	wantText(t, e.say(alice, "!stage forget fas2"), "Say which copy: forget fas2 previous")
	wantText(t, e.say(alice, "!stage forget fas2 staging"), `"staging" is not a copy stagebot keeps`)
	wantText(t, e.say(alice, "!stage forget FAS2 Previous"), "alice forgot a copy of fas2: dropped fas2__stagebot_prev", "1.2 GiB")
	wantText(t, e.say(alice, "!stage forget fas2 base"), "Nothing was dropped: fas2 keeps no base copy")
	if got := strings.Join(asked, ","); got != "previous,base" {
		t.Errorf("the target was asked to forget %q", got)
	}
	evs, err := e.s.Events(context.Background(), store.EventFilter{Target: "fas2"})
	if err != nil {
		t.Fatal(err)
	}
	audited := 0
	for _, ev := range evs {
		if ev.Action == "forget" && ev.Actor.ID == alice.ID && strings.Contains(ev.Detail, "previous: dropped fas2__stagebot_prev") {
			audited++
		}
	}
	if audited != 1 {
		t.Errorf("forget audited %d times: %+v", audited, evs)
	}
	// Not while a run is running: the copies may be moving.
	e.say(alice, "!stage resync fas2 slow now")
	e.say(bob, "!stage approve 1")
	e.advance(time.Second)
	bottest.Eventually(t, "run 1 running", func() bool { return e.run(1).State == store.RunRunning })
	wantText(t, e.say(alice, "!stage forget fas2 previous"), "Run 1 of fas2 is running: forget a copy once it has ended")
	if len(asked) != 2 {
		t.Errorf("forget reached the target while a run was running")
	}
	e.say(alice, "!stage abort 1")
	e.b.Wait()
	wantText(t, e.say(bob, "!stage forget fas2 previous"), "needs the scope `stage.forget.fas2`")
	noDB := fas2()
	noDB.Name = "docs"
	e2 := newEnv(t, noDB)
	wantText(t, e2.say(alice, "!stage forget docs previous"), "docs has no database, so it keeps no copies to forget")
}

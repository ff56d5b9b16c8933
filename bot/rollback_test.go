package bot_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

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

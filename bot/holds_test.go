package bot_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stagebot/stagebot/bot"
	"github.com/stagebot/stagebot/runner"
	"github.com/stagebot/stagebot/store"
)

func TestHold_KeepsRunWaitingThenReannounces(t *testing.T) {
	e := newEnv(t)
	wantText(t, e.say(carol, "!stage hold fas2 1h"), "Say why you hold it")
	wantText(t, e.say(carol, "!stage hold fas2 1h testing the login"), "carol holds fas2 until 10:00 UTC: testing the login")
	out := e.say(alice, "!stage resync fas2 in 2m")
	wantText(t, out, "Run 1: refresh of fas2")
	if f := out[0].Msg.Fields; !strings.Contains(fieldsText(f), "Held by: carol until 10:00 UTC (testing the login)") {
		t.Fatalf("card fields do not name the hold: %+v", f)
	}
	e.say(bob, "!stage approve 1")
	wantText(t, e.advance(2*time.Minute), "Run 1 of fas2 is due but waits: held by carol")
	if r := e.run(1); r.State != store.RunWaiting || !r.HoldWait {
		t.Fatalf("run state %s holdwait %v", r.State, r.HoldWait)
	}
	wantNothing(t, e.advance(time.Minute))
	out = e.say(carol, "!stage release fas2")
	wantText(t, out, "Hold on fas2 by carol ended: released", "The holds on fas2 have ended, so the run has a new start", "starts at 09:13 UTC (in 10m)")
	if r := e.run(1); r.State != store.RunScheduled || !r.StartAt.Equal(t0.Add(13*time.Minute)) {
		t.Fatalf("after release: %s at %v", r.State, r.StartAt)
	}
	// The approval stayed with the run.
	e.advance(10 * time.Minute)
	e.b.Wait()
	if r := e.run(1); r.State != store.RunSucceeded {
		t.Fatalf("run state %s (%s)", r.State, r.Reason)
	}
}

func fieldsText(fs []bot.Field) string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Label+": "+f.Value)
	}
	return strings.Join(out, "\n")
}

func TestHoldAll_BlocksEveryTarget(t *testing.T) {
	koji := fas2()
	koji.Name, koji.Manual = "koji", bot.ApprovalRule{}
	e := newEnv(t, fas2(), koji)
	e.say(alice, "!stage hold all 3h schema upgrade")
	e.say(alice, "!stage resync koji now")
	if r := e.run(1); r.State != store.RunWaiting || !strings.Contains(r.Reason, "schema upgrade") {
		t.Fatalf("koji run: %s %q", r.State, r.Reason)
	}
	e.say(alice, "!stage release all")
	wantText(t, e.advance(10*time.Minute), "Run 1 of koji/default: running")
	e.b.Wait()
}

func TestHoldAllPipeline_OtherRunsWaitWhileItRuns(t *testing.T) {
	gate := filepath.Join(t.TempDir(), "go")
	lp := fas2()
	lp.Name, lp.Manual = "launchpad", bot.ApprovalRule{}
	lp.Pipelines["rebuild"] = &runner.Pipeline{Name: "rebuild", HoldAll: true,
		Steps: []runner.Step{sh("upgrade schema", "while [ ! -e "+gate+" ]; do sleep 0.02; done")}}
	koji := fas2()
	koji.Name, koji.Manual = "koji", bot.ApprovalRule{}
	e := newEnv(t, lp, koji)
	wantText(t, e.say(alice, "!stage resync launchpad rebuild now"), "While run 1 runs, all targets are held")
	e.say(alice, "!stage resync koji now")
	if r := e.run(2); r.State != store.RunWaiting || !strings.Contains(r.Reason, "held by run 1 (launchpad/rebuild) while it runs") {
		t.Fatalf("koji run: %s %q", r.State, r.Reason)
	}
	wantText(t, e.say(bob, "!stage holds"), "all targets held by run 1 (launchpad/rebuild) while it runs: launchpad/rebuild must not meet other runs")
	// A run's hold is neither warned about nor expires, however long it runs.
	out := e.advance(48 * time.Hour)
	if strings.Contains(texts(out), "expire") || e.run(2).State != store.RunWaiting {
		t.Fatalf("after 48h: koji %s; bot said:\n%s", e.run(2).State, texts(out))
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	e.b.Wait()
	if r := e.run(1); r.State != store.RunSucceeded {
		t.Fatalf("launchpad run: %s %s", r.State, r.Reason)
	}
	wantText(t, e.a.Since(0), "Run 1 has ended, and with it its hold on all targets.")
	wantText(t, e.advance(0), "The holds on koji have ended, so the run has a new start")
	e.advance(10 * time.Minute)
	e.b.Wait()
	if r := e.run(2); r.State != store.RunSucceeded {
		t.Fatalf("koji run: %s %s", r.State, r.Reason)
	}
	holds, _ := e.s.Holds(context.Background(), true)
	if len(holds) != 0 {
		t.Fatalf("holds left: %+v", holds)
	}
}

func TestHold_WarnsThenExpires(t *testing.T) {
	e := newEnv(t)
	e.say(carol, "!stage hold fas2 1h testing")
	wantNothing(t, e.advance(44*time.Minute))
	out := e.advance(time.Minute)
	wantText(t, out, "Your hold on fas2 (testing) expires at 10:00 UTC")
	warn := out[0].Msg
	if len(warn.Mentions) != 1 || warn.Mentions[0] != carol {
		t.Fatalf("warning mentions %v, want carol", warn.Mentions)
	}
	if warn.Buttons[0].Command != `!stage hold fas2 2h "testing"` {
		t.Fatalf("extend button = %q", warn.Buttons[0].Command)
	}
	// Extending through the button's command moves the expiry and re-arms
	// the warning.
	wantText(t, e.say(carol, warn.Buttons[0].Command), "Your hold on fas2 now lasts until 11:45 UTC")
	wantNothing(t, e.advance(100*time.Minute))
	wantText(t, e.advance(5*time.Minute), "expires at 11:45")
	wantText(t, e.advance(15*time.Minute), "The hold on fas2 by carol (testing) has expired.")
	holds, _ := e.s.Holds(context.Background(), true)
	if len(holds) != 0 {
		t.Fatalf("holds still active: %+v", holds)
	}
}

func TestHold_NeverExpiresUnwarned(t *testing.T) {
	e := newEnv(t)
	e.say(carol, "!stage hold fas2 1h testing")
	// The bot was down past the expiry: the first tick warns, it does not
	// expire the hold.
	e.clock.Advance(3 * time.Hour)
	out := e.advance(0)
	wantText(t, out, "Your hold on fas2 (testing) expires at 12:07 UTC")
	if strings.Contains(texts(out), "has expired") {
		t.Fatal("hold expired without a warning first")
	}
	wantText(t, e.advance(8*time.Minute), "has expired")
}

func TestHold_Limits(t *testing.T) {
	e := newEnv(t)
	wantText(t, e.say(carol, "!stage hold fas2 2d too long"), "A hold may last at most 1d")
	wantText(t, e.say(dave, "!stage hold fas2 1h x"), "needs the scope `stage.hold.fas2`")
	e.say(carol, "!stage hold fas2 1h mine")
	wantText(t, e.say(bob, "!stage release fas2"), "held by carol, not you")
	wantText(t, e.say(alice, "!stage release fas2"), "needs a reason")
	out := e.say(alice, "!stage release fas2 the test is done")
	wantText(t, out, "Hold on fas2 by carol ended: released by alice: the test is done")
	if out[0].Msg.Mentions[0] != carol {
		t.Fatal("the holder was not told")
	}
}

func TestHold_ButtonsRespectTheLimitsAndHoldsNeverShrink(t *testing.T) {
	e := newEnv(t)
	e.opts.Holds.Max = time.Hour
	e.s.Close()
	e.open()
	out := e.say(alice, "!stage resync fas2 in 30m")
	var hold string
	for _, b := range out[0].Msg.Buttons {
		if strings.HasPrefix(b.Label, "Hold") {
			hold = b.Command
			if b.Label != "Hold 1h" {
				t.Errorf("button %q, with holds limited to 1h", b.Label)
			}
		}
	}
	wantText(t, e.say(carol, hold), "carol holds fas2 until 10:00 UTC")
	// Holding again for less keeps the longer hold; until shortens it.
	wantText(t, e.say(carol, "!stage hold fas2 10m still testing"), "now lasts until 10:00 UTC (still testing). It already lasted that long")
	wantText(t, e.say(carol, "!stage hold fas2 until 09:20 done soon"), "now lasts until 09:20 UTC (done soon).")
	// A bad length is an error, not part of the reason.
	wantText(t, e.say(carol, "!stage hold fas2 -1h x"), `"-1h": a hold's length must be positive`)
	wantText(t, e.say(carol, "!stage hold fas2 0h x"), `"0h" is too short`)
	wantText(t, e.say(carol, "!stage holds"), "fas2 held by carol until 09:20 UTC: done soon")
}

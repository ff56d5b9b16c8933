package bot_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/stagebot/stagebot/bot"
	"github.com/stagebot/stagebot/bot/bottest"
	"github.com/stagebot/stagebot/internal/patience"
	"github.com/stagebot/stagebot/runner"
	"github.com/stagebot/stagebot/store"
	"github.com/stagebot/stagebot/store/bolt"
)

var (
	alice = store.User{ID: "U1", Name: "alice"}
	bob   = store.User{ID: "U2", Name: "bob"}
	carol = store.User{ID: "U3", Name: "carol"}
	dave  = store.User{ID: "U4", Name: "dave"}
	t0    = time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
)

type env struct {
	t     *testing.T
	b     *bot.Bot
	a     *bottest.Adapter
	clock *bottest.Clock
	s     store.Store
	path  string
	opts  bot.Options
}

func sh(name, script string) runner.Step {
	return &runner.Exec{StepName: name, Shell: script, Grace: 100 * time.Millisecond}
}

func fas2() *bot.Target {
	return &bot.Target{
		Name: "fas2", Description: "Fedora accounts", Channel: "infra",
		Notice: 10 * time.Minute, Ladder: []time.Duration{24 * time.Hour, time.Hour, 10 * time.Minute},
		Manual:    bot.ApprovalRule{Count: 1},
		Scheduled: bot.ApprovalRule{Count: 0},
		Pipelines: map[string]*runner.Pipeline{
			"default": {Name: "default",
				Steps:   []runner.Step{sh("stop app", "echo stopping"), sh("refresh", "echo copying")},
				Finally: []runner.Step{sh("start app", "echo starting")},
			},
			"slow": {Name: "slow",
				Steps:   []runner.Step{sh("copy", "sleep 30")},
				Finally: []runner.Step{sh("start app", "echo started")},
			},
		},
		DefaultPipeline: "default",
	}
}

func newEnv(t *testing.T, targets ...*bot.Target) *env {
	t.Helper()
	if len(targets) == 0 {
		targets = []*bot.Target{fas2()}
	}
	e := &env{t: t, clock: bottest.NewClock(t0), path: filepath.Join(t.TempDir(), "stagebot.db")}
	e.opts = bot.Options{
		Prefix: "!stage", Targets: targets, Clock: e.clock, EditInterval: time.Millisecond,
		Access: bot.Access{
			ControlChannels: []string{"infra"},
			Users:           map[string][]string{alice.ID: {"stage"}, bob.ID: {"stage.approve", "stage.hold"}, carol.ID: {"stage.hold", "stage.resync"}},
			Groups:          map[string]bot.Group{"dba": {Members: []string{bob.ID}, Scopes: []string{"stage.approve"}}},
		},
		Holds: bot.HoldOptions{Default: 2 * time.Hour, Max: 24 * time.Hour, WarnBefore: 15 * time.Minute},
	}
	e.open()
	return e
}

func (e *env) open() {
	s, err := bolt.Open(e.path)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { s.Close() })
	e.s = s
	e.a = bottest.NewAdapter()
	e.b = bot.New(s, e.a, e.opts)
	if err := e.b.Recover(context.Background()); err != nil {
		e.t.Fatal(err)
	}
}

// say types text as user in #infra and returns what the bot answered.
func (e *env) say(user store.User, text string) []bottest.Posted {
	return e.sayIn("infra", user, text)
}

func (e *env) sayIn(channel string, user store.User, text string) []bottest.Posted {
	n := e.a.Len()
	e.b.Handle(context.Background(), bot.Incoming{Channel: channel, User: user, Text: text})
	return e.a.Since(n)
}

// advance moves the clock, ticks, and returns what the bot said.
func (e *env) advance(d time.Duration) []bottest.Posted {
	e.t.Helper()
	n := e.a.Len()
	e.clock.Advance(d)
	if err := e.b.Tick(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	return e.a.Since(n)
}

func (e *env) run(id uint64) *store.Run {
	e.t.Helper()
	r, err := e.s.Run(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

func texts(ps []bottest.Posted) string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Msg.Text)
	}
	return strings.Join(out, "\n---\n")
}

func wantText(t *testing.T, ps []bottest.Posted, subs ...string) {
	t.Helper()
	all := texts(ps)
	for _, s := range subs {
		if !strings.Contains(all, s) {
			t.Errorf("bot said:\n%s\nwant it to contain %q", all, s)
		}
	}
}

func wantNothing(t *testing.T, ps []bottest.Posted) {
	t.Helper()
	if len(ps) > 0 {
		t.Errorf("bot said, unexpectedly:\n%s", texts(ps))
	}
}

func TestResync_LadderApprovalRun(t *testing.T) {
	e := newEnv(t)
	out := e.say(alice, "!stage resync fas2 in 2h")
	wantText(t, out, "Run 1: refresh of fas2 (default pipeline) starts at", "What will be lost")
	card := out[0].Msg
	if len(card.Buttons) != 4 || card.Buttons[0].Command != "!stage approve 1" {
		t.Fatalf("card buttons = %+v", card.Buttons)
	}
	wantNothing(t, e.advance(59*time.Minute))
	wantText(t, e.advance(time.Minute), "Reminder: run 1 starts in 1h")
	wantNothing(t, e.advance(49*time.Minute))
	wantText(t, e.advance(time.Minute), "Reminder: run 1 starts in 10m")

	wantText(t, e.say(alice, "!stage approve 1"), "someone else must approve it")
	wantText(t, e.say(bob, "!stage approve 1"), "bob approved run 1 of fas2 (1 of 1)")
	wantText(t, e.say(bob, "!stage approve 1"), "already approved")

	wantNothing(t, e.advance(9*time.Minute))
	out = e.advance(time.Minute)
	wantText(t, out, "Run 1 of fas2/default: running (0/3 steps)")
	e.b.Wait()
	r := e.run(1)
	if r.State != store.RunSucceeded || len(r.Steps) != 3 || r.Steps[2].State != store.StepSucceeded || !r.Steps[2].Finally {
		t.Fatalf("run = %s, steps %+v", r.State, r.Steps)
	}
	wantText(t, e.a.Since(0), "✅ Run 1 of fas2/default succeeded")
	// The status message was edited to its final state.
	var status bottest.Posted
	for _, p := range e.a.Posts() {
		if p.Ref == r.Status {
			status = p
		}
	}
	if got := status.Current().Text; !strings.Contains(got, "succeeded") || !strings.Contains(got, "✓ start app (finally)") {
		t.Fatalf("final status message:\n%s", got)
	}
	logText, _ := e.s.Log(context.Background(), 1)
	if !strings.Contains(string(logText), "[refresh] copying") {
		t.Fatalf("run log:\n%s", logText)
	}
}

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

func TestAccessAndChannels(t *testing.T) {
	e := newEnv(t)
	wantText(t, e.say(dave, "!stage resync fas2"), "needs the scope `stage.resync.fas2.default`")
	wantText(t, e.sayIn("random", alice, "!stage resync fas2"), "only accepted in #infra")
	// Anyone may read in the control channel and the targets' channels;
	// elsewhere reading needs the stage.read scope.
	wantText(t, e.say(dave, "!stage status"), "fas2", "never refreshed")
	wantText(t, e.sayIn("random", dave, "!stage status"), "needs the scope `stage.read`")
	wantText(t, e.sayIn("random", dave, "!stage changes fas2"), "needs the scope `stage.read.fas2`")
	wantText(t, e.say(carol, "!stage resync fas2 now"), "needs the scope `stage.now.fas2`")
	wantText(t, e.say(dave, "!stage resync fas2 --dry-run"), "Dry run of fas2/default (nothing was changed)", "1. stop app [exec]: run `echo stopping`", "Needs 1 approval(s)", "The plan is ready.")
	wantText(t, e.sayIn("random", dave, "!stage resync fas2 --dry-run"), "needs the scope `stage.read.fas2`")
	wantText(t, e.sayIn("random", carol, "!stage resync fas2 --dry-run"), "needs the scope `stage.read.fas2`")
	wantText(t, e.sayIn("random", alice, "!stage resync fas2 --dry-run"), "Dry run of fas2/default")
	runs, _ := e.s.Runs(context.Background(), store.RunFilter{})
	if len(runs) != 0 {
		t.Fatalf("refused or dry-run commands created %d runs", len(runs))
	}
	evs, _ := e.s.Events(context.Background(), store.EventFilter{})
	if len(evs) == 0 || evs[len(evs)-1].Action != "denied" {
		t.Fatalf("denials not audited: %+v", evs)
	}
}

func TestApprovals_GroupAndDefer(t *testing.T) {
	tg := fas2()
	tg.Manual = bot.ApprovalRule{Count: 1, Group: "dba"}
	e := newEnv(t, tg)
	e.say(alice, "!stage resync fas2 in 30m")
	wantText(t, e.say(carol, "!stage approve 1"), "needs the scope `stage.approve.fas2`")
	e.opts.Access.Users[carol.ID] = append(e.opts.Access.Users[carol.ID], "stage.approve")
	e.b = bot.New(e.s, e.a, e.opts)
	wantText(t, e.say(carol, "!stage approve 1"), "Only members of the group dba")
	e.say(bob, "!stage approve 1")
	wantText(t, e.say(alice, "!stage defer 1 1h"), "alice deferred run 1", "starts at 10:30 UTC")
	wantText(t, e.advance(30*time.Minute), "Reminder: run 1 starts in 1h")
	if r := e.run(1); r.State != store.RunScheduled {
		t.Fatalf("deferred run started early: %s", r.State)
	}
	e.advance(time.Hour)
	e.b.Wait()
	if r := e.run(1); r.State != store.RunSucceeded {
		t.Fatalf("state %s: the approval did not survive the defer (%s)", r.State, r.Reason)
	}
}

func TestWaitsForApprovalThenStarts(t *testing.T) {
	e := newEnv(t)
	e.say(alice, "!stage resync fas2 in 5m")
	wantText(t, e.advance(5*time.Minute), "Run 1 of fas2 is due but waits: needs 1 more approval(s)")
	wantNothing(t, e.advance(5*time.Minute))
	wantText(t, e.say(bob, "!stage approve 1"), "Run 1 of fas2/default: running")
	e.b.Wait()
}

func TestCancelAndDuplicate(t *testing.T) {
	e := newEnv(t)
	e.say(alice, "!stage resync fas2 in 1h")
	wantText(t, e.say(alice, "!stage resync fas2"), "Run 1 of fas2/default is already scheduled")
	wantText(t, e.say(alice, "!stage cancel 1 not needed"), "Run 1 of fas2 was cancelled by alice: not needed. Staging is unchanged.")
	wantText(t, e.say(alice, "!stage cancel 1"), "already ended")
	wantText(t, e.say(alice, "!stage approve 9"), "There is no run 9")
	wantNothing(t, e.advance(2*time.Hour))
	wantText(t, e.say(alice, "!stage history"), "#1 fas2/default 🚫 cancelled")
}

func TestAbort_RunsFinallyAndRecordsWho(t *testing.T) {
	tg := fas2()
	tg.Manual = bot.ApprovalRule{}
	e := newEnv(t, tg)
	e.say(alice, "!stage resync fas2 slow now")
	if r := e.run(1); r.State != store.RunRunning {
		t.Fatalf("state %s", r.State)
	}
	deadline := time.Now().Add(patience.D(5 * time.Second))
	for e.run(1).Steps[0].State != store.StepRunning && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	wantText(t, e.say(bob, "!stage abort 1"), "needs the scope `stage.abort.fas2`")
	wantText(t, e.say(alice, "!stage abort 1 wrong pipeline"), "Aborting run 1")
	e.b.Wait()
	r := e.run(1)
	if r.State != store.RunAborted || r.Reason != "aborted by alice: wrong pipeline" {
		t.Fatalf("state %s reason %q", r.State, r.Reason)
	}
	if r.Steps[0].State != store.StepAborted || r.Steps[1].State != store.StepSucceeded {
		t.Fatalf("steps %+v", r.Steps)
	}
	wantText(t, e.say(alice, "!stage log 1"), "⏹ copy", "✓ start app (finally)", "[start app] started")
}

func TestFailure_ReportsStepAndReason(t *testing.T) {
	tg := fas2()
	tg.Manual = bot.ApprovalRule{}
	tg.Pipelines["default"].Steps[1] = sh("upgrade_db", "echo 'column x missing' >&2; exit 2")
	e := newEnv(t, tg)
	e.say(alice, "!stage resync fas2 now")
	e.b.Wait()
	r := e.run(1)
	if r.State != store.RunFailed {
		t.Fatalf("state %s", r.State)
	}
	wantText(t, e.a.Since(0), `Step "upgrade_db" failed: exited with status 2: column x missing (after `, "❌ Run 1 of fas2/default failed after 0s at step \"upgrade_db\"")
	if r.Steps[2].State != store.StepSucceeded {
		t.Fatal("finally step did not run after a failure")
	}
}

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

func TestWatchMentions(t *testing.T) {
	e := newEnv(t)
	wantText(t, e.sayIn("random", dave, "!stage watch fas2"), "You will be mentioned")
	out := e.say(alice, "!stage resync fas2 in 1h")
	if m := out[0].Msg.Mentions; len(m) != 1 || m[0] != dave {
		t.Fatalf("announcement mentions %v, want dave", m)
	}
	wantText(t, e.sayIn("random", dave, "!stage unwatch fas2"), "no longer")
	wantText(t, e.sayIn("random", dave, "!stage unwatch fas2"), "You do not watch fas2")
}

func TestPlanProblemsRefuseTheRequest(t *testing.T) {
	tg := fas2()
	tg.Pipelines["default"].Steps[0] = &runner.Exec{StepName: "stop", Argv: []string{"no-such-tool-xyz"}}
	e := newEnv(t, tg)
	wantText(t, e.say(alice, "!stage resync fas2"), "I can't run fas2/default: its plan has problems", `program "no-such-tool-xyz" not found`)
}

func TestSecretsAreRedacted(t *testing.T) {
	tg := fas2()
	tg.Manual = bot.ApprovalRule{}
	tg.Pipelines["default"].Steps[0] = sh("leak", "echo password=hunter2")
	e := newEnv(t, tg)
	e.opts.Redact = func(s string) string { return strings.ReplaceAll(s, "hunter2", "***") }
	e.b = bot.New(e.s, e.a, e.opts)
	e.say(alice, "!stage resync fas2 --dry-run")
	e.say(alice, "!stage resync fas2 now")
	e.b.Wait()
	e.say(alice, "!stage log 1")
	logText, _ := e.s.Log(context.Background(), 1)
	for _, p := range e.a.Posts() {
		for _, m := range append([]bot.Message{p.Msg}, p.Edits...) {
			if strings.Contains(m.Text, "hunter2") {
				t.Fatalf("secret in chat: %q", m.Text)
			}
		}
	}
	if strings.Contains(string(logText), "hunter2") || !strings.Contains(string(logText), "password=***") {
		t.Fatalf("log not redacted: %s", logText)
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

// kindStep is a step of any kind that succeeds.
type kindStep struct{ name, kind string }

func (s kindStep) Name() string                                   { return s.name }
func (s kindStep) Kind() string                                   { return s.kind }
func (s kindStep) Plan(context.Context) (string, error)           { return "pretend", nil }
func (s kindStep) Run(ctx context.Context, env *runner.Env) error { return nil }

func TestFailureBeforeSwap_SaysStagingIsUnchanged(t *testing.T) {
	tg := fas2()
	tg.Manual = bot.ApprovalRule{}
	tg.Pipelines["default"].Steps = []runner.Step{kindStep{"copy", "pg_refresh"}, sh("verify", "exit 1"), kindStep{"swap", "pg_swap"}}
	e := newEnv(t, tg)
	e.say(alice, "!stage resync fas2 now")
	e.b.Wait()
	wantText(t, e.a.Since(0), "Staging is as it was: the run stopped before the swap.")
}

// The bot does not stop before its targets' background work (dropping a
// replaced copy) is over.
func TestRun_WaitsForTargetsBeforeStopping(t *testing.T) {
	tg := fas2()
	release := make(chan struct{})
	var waited atomic.Bool
	tg.Wait = func() {
		<-release
		waited.Store(true)
	}
	e := newEnv(t, tg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.b.Run(ctx) }()
	e.a.Type(ctx, "infra", alice, "!stage status")
	waitFor(t, func() bool { return e.a.Len() > 0 })
	cancel()
	select {
	case err := <-done:
		t.Fatalf("Run returned (%v) while the target was still busy", err)
	case <-patience.After(100 * time.Millisecond):
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !waited.Load() {
		t.Fatal("Run returned without waiting for the target")
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
	manual, today, tomorrow := strings.Index(out, "at 10:30 UTC: run 2"), strings.Index(out, "at 12:00 UTC: run 1"), strings.Index(out, "at Tue 2026-11-24 12:00 UTC (scheduled)")
	if manual < 0 || today < 0 || tomorrow < 0 || !(manual < today && today < tomorrow) {
		t.Fatalf("not in time order, or something missing:\n%s", out)
	}
}

// TestCard_SaysWhatTheRunWaitsForNow: once approved, a run that still waits
// for a hold no longer says it needs an approval.
func TestCard_SaysWhatTheRunWaitsForNow(t *testing.T) {
	e := newEnv(t)
	e.say(carol, "!stage hold fas2 3h testing")
	n := e.a.Len()
	e.say(alice, "!stage resync fas2 in 10m")
	wantText(t, e.advance(10*time.Minute), "waits: held by carol", "needs 1 more approval(s)")
	e.say(bob, "!stage approve 1")
	card := e.a.Posts()[n]
	if !strings.Contains(card.Current().Text, "is waiting: held by carol") {
		t.Fatalf("card after the approval:\n%s", card.Current().Text)
	}
	// No version of the card contradicts itself.
	for _, m := range append([]bot.Message{card.Msg}, card.Edits...) {
		approvals := ""
		for _, f := range m.Fields {
			if f.Label == "Approvals" {
				approvals = f.Value
			}
		}
		if strings.Contains(m.Text, "needs 1 more approval") && strings.HasPrefix(approvals, "1 of 1") {
			t.Fatalf("the card says it needs an approval next to %q:\n%s", approvals, m.Text)
		}
	}
}

// TestChanges_InTheAnnouncementAndOnDemand: the card of a refresh says what
// it would wipe on staging, and `changes` says it on demand.
func TestChanges_InTheAnnouncementAndOnDemand(t *testing.T) {
	tg := fas2()
	var looks atomic.Int32
	tg.Changes = func(context.Context) (string, []string, error) {
		looks.Add(1)
		return "Changed on staging since run 7 (2h ago):\n• public.audit: 1,500 inserted\nConnected now: qa (psql) from 10.0.0.5 for 12m; app (gunicorn) from 10.0.0.9 for 3d.", []string{"qa", "app"}, nil
	}
	e := newEnv(t, tg)
	// The team says who logs in as qa; the app's role is nobody's.
	e.opts.Access.DatabaseRoles = map[string]store.User{"qa": carol}
	e.s.Close()
	e.open()
	out := e.say(alice, "!stage resync fas2 in 2h")
	wantText(t, out, "What will be lost: the staging data of fas2 is replaced", "• public.audit: 1,500 inserted", "Connected now: qa (psql)")
	if m := out[0].Msg.Mentions; len(m) != 1 || m[0].ID != carol.ID {
		t.Errorf("the card mentions %v, want carol (connected as qa)", m)
	}
	wantText(t, e.say(alice, "!stage changes fas2"), "Changed on staging since run 7 (2h ago)")
	if looks.Load() < 2 {
		t.Fatalf("staging was looked at %d times", looks.Load())
	}
	wantText(t, e.say(alice, "!stage changes nosuch"), "nosuch")
	noDB := fas2()
	noDB.Name = "docs"
	e2 := newEnv(t, noDB)
	wantText(t, e2.say(alice, "!stage changes docs"), "docs has no database")
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

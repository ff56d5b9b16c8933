package bot_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/robfig/cron/v3"
	"github.com/stagebot/stagebot/bot"
	"github.com/stagebot/stagebot/bot/bottest"
	"github.com/stagebot/stagebot/runner"
	"github.com/stagebot/stagebot/store"
)

// panicStep panics while it is planned: a defect anywhere under a command.
type panicStep struct{}

func (panicStep) Name() string                           { return "broken" }
func (panicStep) Kind() string                           { return "exec" }
func (panicStep) Plan(context.Context) (string, error)   { panic("a defect under the command") }
func (panicStep) Run(context.Context, *runner.Env) error { return nil }

// A defect hit while handling one event is answered, audited and logged
// with the event, and the bot goes on answering everyone: the event counts
// as handled, so no stream replays it.
func TestHandle_APanicIsAnsweredAndTheBotGoesOn(t *testing.T) {
	tg := fas2()
	tg.Pipelines["broken"] = &runner.Pipeline{Name: "broken", Steps: []runner.Step{panicStep{}}}
	e := newEnv(t, tg)
	out := e.say(store.User{ID: "U9", Name: "mallory"}, "!stage resync fas2 broken --dry-run")
	wantText(t, out, "That command hit an internal error and was stopped (ref ", "`!stage status` shows what is in effect")
	evs, err := e.s.Events(context.Background(), store.EventFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) == 0 || evs[len(evs)-1].Action != "internal error" || !strings.Contains(evs[len(evs)-1].Detail, "resync fas2 broken") {
		t.Errorf("the internal error is not audited: %+v", evs)
	}
	wantText(t, e.say(alice, "!stage holds"), "No holds.")
	// The crash that came from a pipeline named in capitals.
	wantText(t, e.say(store.User{ID: "U9", Name: "mallory"}, "!stage resync FAS2 DEFAULT --dry-run"), "fas2/default")
}

// The doors a person with few scopes once walked through: a start inside
// the notice without stage.now (in, at, or a defer that moves a run
// earlier), a defer far ahead or past max_age without stage.admin, a
// pipeline the grant does not name, and abort as a cancel.
func TestAccess_TheNoticeAndTheBudgetCannotBeWalkedAround(t *testing.T) {
	tg := fas2()
	tg.MaxAge = 48 * time.Hour
	e := newEnv(t, tg)
	erin := store.User{ID: "U5", Name: "erin"}
	frank := store.User{ID: "U6", Name: "frank"}
	e.opts.Access.Users[erin.ID] = []string{"stage.defer", "stage.resync", "stage.abort"}
	e.opts.Access.Users[frank.ID] = []string{"stage.resync.fas2.default"}

	wantText(t, e.say(frank, "!stage resync fas2 slow in 20m"), "needs the scope `stage.resync.fas2.slow`")
	wantText(t, e.say(frank, "!stage resync fas2 in 20m"), "Run 1")
	wantText(t, e.say(erin, "!stage resync fas2 slow in 1m"), "sooner than fas2's notice of 10m", "`stage.now.fas2`")
	wantText(t, e.say(erin, "!stage resync fas2 slow at 09:02"), "sooner than fas2's notice of 10m")
	if runs, _ := e.s.Runs(context.Background(), store.RunFilter{}); len(runs) != 1 {
		t.Fatalf("%d runs after the refusals, want 1", len(runs))
	}
	wantText(t, e.say(erin, "!stage defer 1 until 09:05"), "moving a run earlier skips its notice", "`stage.now.fas2`")
	wantText(t, e.say(erin, "!stage defer 1 until 2999-01-01 00:00"), "more than a year ahead")
	wantText(t, e.say(erin, "!stage defer 1 3d"), "max_age", "`stage.admin`")
	if r := e.run(1); !r.StartAt.Equal(t0.Add(20 * time.Minute)) {
		t.Fatalf("run 1 starts at %v after refused defers, want %v", r.StartAt, t0.Add(20*time.Minute))
	}
	wantText(t, e.say(erin, "!stage defer 1 1h"), "deferred run 1")
	wantText(t, e.say(alice, "!stage defer 1 3d"), "deferred run 1")
	wantText(t, e.say(erin, "!stage abort 1"), "has not started", "`!stage cancel 1`")
	if r := e.run(1); r.State.Done() {
		t.Fatalf("abort ended a run that had not started: %s", r.State)
	}
	evs, _ := e.s.Events(context.Background(), store.EventFilter{})
	denied := 0
	for _, ev := range evs {
		if ev.Action == "denied" {
			denied++
		}
	}
	// Every refusal for want of a scope; a time too far ahead is a mistake.
	if denied != 5 {
		t.Errorf("%d refusals audited, want 5", denied)
	}
}

// A secret is redacted before anything is stored: a step's error and
// output, a hold's reason, the audit log. The state file itself never
// holds it, so no reader (chat, the status page, store copy) can show it.
func TestSecretsAreRedactedBeforeTheyAreStored(t *testing.T) {
	tg := fas2()
	tg.Manual = bot.ApprovalRule{}
	tg.Pipelines["default"].Steps[1] = sh("connect", `echo "connecting with hunter2" >&2; exit 3`)
	e := newEnv(t, tg)
	e.opts.Redact = func(s string) string { return strings.ReplaceAll(s, "hunter2", "***") }
	e.b = bot.New(e.s, e.a, e.opts)
	e.say(alice, "!stage hold fas2 1h the token is hunter2")
	e.say(alice, "!stage release fas2 done with hunter2")
	e.say(alice, "!stage resync fas2 now")
	e.b.Wait()
	r := e.run(1)
	if r.State != store.RunFailed || !strings.Contains(r.Steps[1].Error, "***") {
		t.Fatalf("run 1: %s, step error %q", r.State, r.Steps[1].Error)
	}
	raw, err := os.ReadFile(e.path)
	if err != nil {
		t.Fatal(err)
	}
	if i := bytes.Index(raw, []byte("hunter2")); i >= 0 {
		t.Fatalf("the state file holds the secret: …%q…", raw[max(0, i-80):min(len(raw), i+20)])
	}
}

// A step printing one endless line, or more than a run's log keeps, is
// cut and counted: the store gets a bounded log that says what it left out,
// and the lines after the long one are kept.
func TestRunLog_IsBoundedWhateverAStepPrints(t *testing.T) {
	tg := fas2()
	tg.Manual = bot.ApprovalRule{}
	// 20 MB without a newline, then a short line, then 10 MB of lines.
	tg.Pipelines["default"].Steps[1] = sh("chatty", `head -c 20000000 /dev/zero | tr '\0' x; echo; echo short line; yes 0123456789abcdef | head -c 10000000`)
	e := newEnv(t, tg)
	e.say(alice, "!stage resync fas2 now")
	e.b.Wait()
	logText, err := e.s.Log(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(logText) > 1<<20+4<<10 {
		t.Fatalf("the run's log is %d bytes", len(logText))
	}
	for _, want := range []string{"more bytes on this line were not kept)", "\n[chatty] short line\n", "[log truncated: it reached its size limit]"} {
		if !bytes.Contains(logText, []byte(want)) {
			t.Errorf("the log lacks %q", want)
		}
	}
}

// Reads can be scoped everywhere, and dry runs (each reads production)
// are rate-limited per person.
func TestAccess_ScopedReadsAndDryRunLimit(t *testing.T) {
	e := newEnv(t)
	e.opts.Access.ScopedReads = true
	e.b = bot.New(e.s, e.a, e.opts)
	wantText(t, e.say(dave, "!stage status"), "needs the scope `stage.read`")
	wantText(t, e.say(bob, "!stage holds"), "needs the scope `stage.read`")
	wantText(t, e.say(alice, "!stage status"), "fas2")
	for i := range 5 {
		wantText(t, e.say(alice, "!stage resync fas2 --dry-run"), "Dry run of fas2/default")
		e.clock.Advance(time.Duration(i) * time.Second)
	}
	wantText(t, e.say(alice, "!stage resync fas2 --dry-run"), "each person may ask for 5 a minute: try again in 50s")
	wantText(t, e.say(carol, "!stage hold fas2 1h still works"), "carol holds fas2")
	e.clock.Advance(50 * time.Second)
	wantText(t, e.say(alice, "!stage resync fas2 --dry-run"), "Dry run of fas2/default")
}

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

// A run has one card: reminders, a release and a defer edit it and say
// the news in its thread, with no buttons but the card's; a failure is
// said once, in the thread, with the step and its error; a run asked for
// now while its requester holds the target says it waits, not "starts now".
func TestOneCardPerRun(t *testing.T) {
	tg := fas2()
	tg.Manual = bot.ApprovalRule{}
	tg.Pipelines["default"].Steps[1] = sh("verify", "echo 'column x missing' >&2; exit 2")
	e := newEnv(t, tg)
	e.say(carol, "!stage hold fas2 1h testing")
	e.say(alice, "!stage resync fas2 in 2h")
	e.advance(time.Hour)                // the 1h reminder
	e.say(carol, "!stage release fas2") // no change: it was not waiting yet
	e.say(alice, "!stage defer 1 30m")  // a defer
	e.advance(80 * time.Minute)         // the 10m reminder
	e.advance(10 * time.Minute)         // it runs and fails
	e.b.Wait()
	if r := e.run(1); r.State != store.RunFailed {
		t.Fatalf("run 1: %s", r.State)
	}
	cards, failures := 0, 0
	for _, p := range e.a.Posts() {
		if len(p.Msg.Buttons) > 0 && !strings.Contains(p.Msg.Text, "is running") && p.Msg.Thread.IsZero() {
			if strings.Contains(p.Msg.Text, "Run 1: refresh of fas2") {
				cards++
			}
		}
		if !p.Msg.Thread.IsZero() && len(p.Msg.Buttons) > 0 {
			t.Errorf("a thread reply has buttons: %q", p.Msg.Text)
		}
		for _, m := range append([]bot.Message{p.Msg}, p.Edits...) {
			if strings.Contains(m.Text, "column x missing") && m.Text == p.Current().Text {
				failures++
				break
			}
		}
	}
	if cards != 1 {
		t.Errorf("run 1 was announced on %d cards, want 1:\n%s", cards, texts(e.a.Posts()))
	}
	if failures != 2 { // the step's line on the status message, and the thread's news
		t.Errorf("the failure was said in %d messages, want 2 (its step line and the thread):\n%s", failures, texts(e.a.Posts()))
	}
	wantText(t, e.say(alice, "!stage hold fas2 1h again"), "alice holds fas2")
	out := e.say(alice, "!stage resync fas2 now")
	if len(out) == 0 || strings.Contains(out[0].Msg.Text, "starts now") || !strings.Contains(out[0].Msg.Text, "is due but waits: held by alice") {
		t.Errorf("a run asked for now under the requester's own hold is announced as %q", texts(out))
	}
}

// warnStep plans with a warning, as a refresh that will not fit does.
type warnStep struct{}

func (warnStep) Name() string { return "copy production" }
func (warnStep) Kind() string { return "pg_refresh" }
func (warnStep) Plan(context.Context) (string, error) {
	return "copy production\nwarning: the copy needs about 2.0 GiB beside the 9.0 GiB staging's server holds", nil
}
func (warnStep) Run(context.Context, *runner.Env) error { return nil }

// What a plan warns of is said in the new card's thread.
func TestResync_PlanWarningsGoWithTheCard(t *testing.T) {
	tg := fas2()
	tg.Pipelines["default"].Steps = []runner.Step{warnStep{}}
	e := newEnv(t, tg)
	out := e.say(alice, "!stage resync fas2 in 1h")
	if len(out) < 2 || out[1].Msg.Thread != out[0].Ref || !strings.Contains(out[1].Msg.Text, "⚠ copy production: the copy needs about 2.0 GiB") {
		t.Fatalf("the warning is not in the card's thread:\n%s", texts(out))
	}
}

// A run that failed before the swap because staging's server went down
// says so, not that staging is as it was.
func TestFailure_StagingServerDownIsSaid(t *testing.T) {
	tg := fas2()
	tg.Manual = bot.ApprovalRule{}
	tg.Pipelines["default"].Steps = []runner.Step{sh("copy", `echo "staging's server (127.0.0.1:5432/fas2) does not answer: connection refused" >&2; exit 1`), kindStep{"swap", "pg_swap"}}
	e := newEnv(t, tg)
	e.say(alice, "!stage resync fas2 now")
	e.b.Wait()
	all := texts(e.a.Posts())
	if !strings.Contains(all, "staging's server does not answer: it is down") || strings.Contains(all, "Staging is as it was") {
		t.Errorf("the report:\n%s", all)
	}
}

// movingClock is a clock that moves on by step at every reading, as the
// wall clock does while the bot works.
type movingClock struct {
	*bottest.Clock
	step time.Duration
}

func (c movingClock) Now() time.Time {
	now := c.Clock.Now()
	c.Clock.Advance(c.step)
	return now
}

// A slot whose run is created in the last moments before it is not lost
// when the clock passes the slot while the request is parsed (the
// scheduler asked for it "at" the slot's minute, which had passed by then,
// and the slot was dropped).
func TestCron_ASlotAtItsLastMomentIsNotLost(t *testing.T) {
	tg := fas2()
	sched, _ := cron.ParseStandard("0 12 * * *")
	tg.Schedules = []bot.Schedule{{Spec: "0 12 * * *", Cron: sched, Pipeline: "default"}}
	tg.Ladder, tg.Notice = nil, time.Second
	e := newEnv(t, tg)
	e.advance(0) // the cursor at 09:00
	e.clock.Advance(3*time.Hour - 400*time.Millisecond)
	e.opts.Clock = movingClock{e.clock, 2 * time.Second}
	e.b = bot.New(e.s, e.a, e.opts)
	if err := e.b.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	runs, _ := e.s.Runs(context.Background(), store.RunFilter{})
	if len(runs) != 1 || runs[0].Origin != store.OriginScheduled {
		t.Fatalf("the 12:00 slot made %d runs:\n%s", len(runs), texts(e.a.Posts()))
	}
}

// A slot taken late (a bot restarted or took over just after it) with a
// notice under a minute is not lost: it was asked for "in 1s", which the
// parser refuses as too short.
func TestCron_ALateSlotWithAShortNoticeIsNotLost(t *testing.T) {
	tg := fas2()
	sched, _ := cron.ParseStandard("0 12 * * *")
	tg.Schedules = []bot.Schedule{{Spec: "0 12 * * *", Cron: sched, Pipeline: "default"}}
	tg.Ladder, tg.Notice = nil, time.Second
	e := newEnv(t, tg)
	e.advance(0)
	e.clock.Advance(3*time.Hour + 2*time.Second) // 12:00:02: nobody acted at 12:00
	wantText(t, e.advance(0), "Run 1: refresh of fas2 (default pipeline)")
	if r := e.run(1); r.Origin != store.OriginScheduled || !r.StartAt.Equal(t0.Add(3*time.Hour+3*time.Second)) {
		t.Fatalf("the late run: %s at %v", r.Origin, r.StartAt)
	}
}

package bot_test

import (
	"context"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

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
	wantText(t, e.say(dave, "!stage resync fas2 --dry-run"), "Dry run of fas2/default (nothing was run or changed; each step was planned)", "1. stop app [exec]: run `echo stopping`", "Needs 1 approval", "The plan is ready.")
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
	wantText(t, e.advance(5*time.Minute), "Run 1 of fas2 is due but waits: needs 1 more approval")
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

func TestLog_StepsOutcomeAndWhereTheLogIs(t *testing.T) {
	tg := fas2()
	tg.Manual = bot.ApprovalRule{}
	e := newEnv(t, tg)
	e.say(alice, "!stage resync fas2 now")
	e.b.Wait()
	// A run that succeeded: its steps, not its output, and how to see it.
	out := e.say(alice, "!stage log 1")
	wantText(t, out, "✅ Run 1 of fas2/default: succeeded after", "asked by", "✓ refresh", "`!stage log 1 full` shows the last of them here")
	if strings.Contains(texts(out), "[refresh]") {
		t.Fatalf("a succeeded run's log was posted without full:\n%s", texts(out))
	}
	wantText(t, e.say(alice, "!stage log 1 full"), "Log:", "[refresh] copying")

	// A failed run: the last lines of its output, where the failure is.
	tg.Pipelines["default"].Steps[1] = sh("upgrade_db", "for i in $(seq 1 40); do echo noise $i; done; echo 'column x missing' >&2; exit 2")
	e.say(alice, "!stage resync fas2 now")
	e.b.Wait()
	out = e.say(alice, "!stage log 2")
	wantText(t, out, "❌ Run 2 of fas2/default: failed", "The log's last lines:", "column x missing", "earlier lines left out")
	if strings.Contains(texts(out), "noise 10\n") {
		t.Fatalf("more than the last lines of a failed run's log:\n%s", texts(out))
	}

	// With the status page's address, a link to the run's page.
	e.opts.PageURL = "https://stage.example.org"
	e.b = bot.New(e.s, e.a, e.opts)
	wantText(t, e.say(alice, "!stage log 1"), "The whole log (", "lines): https://stage.example.org/runs/1")
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

// kindStep is a step of any kind that succeeds.
type kindStep struct{ name, kind string }

func (s kindStep) Name() string { return s.name }

func (s kindStep) Kind() string { return s.kind }

func (s kindStep) Plan(context.Context) (string, error) { return "pretend", nil }

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

// TestCard_SaysWhatTheRunWaitsForNow: once approved, a run that still waits
// for a hold no longer says it needs an approval.
func TestCard_SaysWhatTheRunWaitsForNow(t *testing.T) {
	e := newEnv(t)
	e.say(carol, "!stage hold fas2 3h testing")
	n := e.a.Len()
	e.say(alice, "!stage resync fas2 in 10m")
	wantText(t, e.advance(10*time.Minute), "waits: held by carol", "needs 1 more approval")
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

package bot_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stagebot/stagebot/bot"
	"github.com/stagebot/stagebot/bot/bottest"
	"github.com/stagebot/stagebot/runner"
	"github.com/stagebot/stagebot/store"
)

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

// The card of a run through its life, word for word (testdata/cards.golden;
// -update rewrites it): announced with what it needs, due but held, waiting
// for its approval, rolled forward by a release, succeeded.
func TestCard_Golden(t *testing.T) {
	tg := fas2()
	tg.MaxAge = 48 * time.Hour
	e := newEnv(t, tg)
	var out bytes.Buffer
	show := func(label string) {
		t.Helper()
		var card *bot.Message
		for _, p := range e.a.Posts() {
			if m := p.Current(); strings.Contains(m.Text, "Run 1:") && p.Msg.Thread.ID == "" {
				card = &m
			}
		}
		if card == nil {
			t.Fatalf("%s: no card:\n%s", label, texts(e.a.Posts()))
		}
		fmt.Fprintf(&out, "== %s\n%s\n", label, card.Text)
		for _, f := range card.Fields {
			fmt.Fprintf(&out, "  %s: %s\n", f.Label, f.Value)
		}
		for _, b := range card.Buttons {
			fmt.Fprintf(&out, "  [%s] %s (danger: %v)\n", b.Label, b.Command, b.Danger)
		}
		for _, u := range card.Mentions {
			fmt.Fprintf(&out, "  mentions %s\n", u.Display())
		}
		out.WriteString("\n")
	}
	e.say(bob, "!stage watch fas2")
	e.say(alice, "!stage resync fas2 in 2h")
	show("announced")
	e.say(carol, "!stage hold fas2 3h testing the login")
	e.advance(2 * time.Hour)
	show("due, held and not approved")
	e.say(carol, "!stage release fas2")
	show("released: a new start after the notice")
	e.say(bob, "!stage approve 1")
	show("approved")
	e.advance(10 * time.Minute)
	e.b.Wait()
	show("succeeded")
	bottest.Golden(t, "cards.golden", out.Bytes())
}

// A run that has ended is said in English: "has succeeded", "was
// cancelled", never "is succeeded".
func TestEndedRunsAreSaidInEnglish(t *testing.T) {
	tg := fas2()
	tg.Manual = bot.ApprovalRule{}
	e := newEnv(t, tg)
	e.say(alice, "!stage resync fas2 now")
	e.b.Wait()
	wantText(t, e.say(bob, "!stage approve 1"), "Run 1 has succeeded: there is nothing left to approve.")
	wantText(t, e.say(alice, "!stage defer 1 1h"), "Run 1 has succeeded and can no longer be deferred.")
	e.say(alice, "!stage resync fas2 in 1h")
	e.say(alice, "!stage cancel 2")
	wantText(t, e.say(bob, "!stage approve 2"), "Run 2 was cancelled: there is nothing left to approve.")
	for _, p := range e.a.Posts() {
		for _, bad := range []string{"is succeeded", "is failed", "is cancelled", "is aborted", "is interrupted"} {
			if strings.Contains(p.Current().Text, bad) {
				t.Errorf("%q says %q", p.Current().Text, bad)
			}
		}
	}
}

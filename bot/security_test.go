package bot_test

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stagebot/stagebot/bot"
	"github.com/stagebot/stagebot/store"
)

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

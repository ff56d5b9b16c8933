package bot_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stagebot/stagebot/bot"
	"github.com/stagebot/stagebot/bot/bottest"
	"github.com/stagebot/stagebot/commands"
	"github.com/stagebot/stagebot/runner"
	"github.com/stagebot/stagebot/store"
	"github.com/stagebot/stagebot/store/bolt"
)

// The people who type in a fuzzed script: from every scope to none.
var fuzzUsers = []store.User{alice, bob, carol, {ID: "U9", Name: "mallory"}}

// The channels they type in: the control channel and another.
var fuzzChannels = []string{"infra", "random"}

// FuzzBot drives the whole bot, not only the parser: each line of a script
// is typed by one of fuzzUsers in one of fuzzChannels (its first two bytes
// choose), through the real dispatcher, a real bolt store and the runner,
// with the clock moving between lines. Whatever is typed, the bot must
// answer every message addressed to it without an internal error, and the
// store must stay coherent (see checkStore).
//
// `go test` runs the seeds below; `make fuzz` searches further.
func FuzzBot(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, script string) {
		e := newFuzzEnv(t)
		lines := strings.Split(script, "\n")
		if len(lines) > 8 {
			lines = lines[:8]
		}
		for i, line := range lines {
			if len(line) < 2 {
				continue
			}
			user := fuzzUsers[int(line[0])%len(fuzzUsers)]
			channel := fuzzChannels[int(line[1])%len(fuzzChannels)]
			text := "!stage " + line[2:]
			n := e.a.Len()
			e.b.Handle(context.Background(), bot.Incoming{ID: fmt.Sprint(i), Channel: channel, User: user, Text: text})
			got := e.a.Since(n)
			if len(got) == 0 {
				t.Fatalf("line %d, %s in #%s: %q got no answer", i, user.Name, channel, text)
			}
			for _, p := range got {
				for _, m := range append([]bot.Message{p.Msg}, p.Edits...) {
					if strings.Contains(m.Text, "internal error") || strings.Contains(m.Text, "went wrong on my side") {
						t.Fatalf("line %d, %s in #%s: %q was answered with an internal error:\n%s", i, user.Name, channel, text, m.Text)
					}
				}
			}
			e.clock.Advance(7 * time.Minute)
			if err := e.b.Tick(context.Background()); err != nil {
				t.Fatalf("tick after %q: %v", text, err)
			}
			e.b.Wait()
			e.checkStore(text)
		}
	})
}

// fuzzSeeds types every verb of the command table: its examples as
// written, then with names in other cases, odd numbers, times and flags.
// Each seed line starts with the two bytes that choose who types it and
// where; the crash a user with no scopes once caused is among them.
func fuzzSeeds() []string {
	seeds := []string{
		"\x03\x01resync fas2 DEFAULT --dry-run", // mallory, outside the control channel
		"\x03\x00resync FAS2 Wipe --dry-run",
		"\x00\x00resync fas2 wipe now\n\x00\x00abort 1\n\x00\x00rollback fas2",
		"\x00\x00hold ALL 1h \"quoted reason\"\n\x02\x00release all\n\x00\x00release all alice is away",
		"\x00\x00resync fas2 in 1m\n\x01\x00approve 1\n\x02\x00defer 1 until 2999-01-01 00:00\n\x00\x00extend 1 until 10000-01-01 00:00 far",
		"\x00\x00resync fas2\n\x03\x00cancel 1\n\x03\x00abort 1\n\x00\x00defer 1 -1h",
		"\x00\x00reset fas2 now\n\x00\x00reset web",
		"\x02\x00hold fas2 0s x\n\x02\x00hold fas2 99999999h x\n\x02\x00hold fas2 until 00:00 x",
		"\x00\x00history fas2 0\n\x00\x00history 100\n\x00\x00log 18446744073709551616\n\x00\x00log #0",
		"\x00\x00" + strings.Repeat("x", commands.MaxText+10),
		"\x00\x00hold fas2 1h " + strings.Repeat("é", commands.MaxReason+5),
		"\x00\x00\"unclosed\n\x00\x00hold fas2 'a\\' b'",
		"\x00\x00&lt;!channel&gt; \u201cresync\u201d\n\x00\x00\u202eresync fas2",
	}
	variants := []func(string) string{
		func(s string) string { return s },
		strings.ToUpper,
		func(s string) string { return s + " --dry-run" },
		func(s string) string { return s + " now" },
		func(s string) string { return s + " 0" },
	}
	for _, spec := range commands.Table() {
		for _, ex := range spec.Examples {
			for i, v := range variants {
				for who := range fuzzUsers {
					seeds = append(seeds, fmt.Sprintf("%c%c%s", byte(who), byte(i%len(fuzzChannels)), v(ex)))
				}
			}
		}
	}
	return seeds
}

type fuzzEnv struct {
	t     *testing.T
	b     *bot.Bot
	a     *bottest.Adapter
	s     store.Store
	clock *bottest.Clock
	opts  bot.Options
}

func newFuzzEnv(t *testing.T) *fuzzEnv {
	t.Helper()
	s, err := bolt.Open(filepath.Join(t.TempDir(), "fuzz.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	quick := func(name string) *runner.Pipeline {
		return &runner.Pipeline{Name: name, Steps: []runner.Step{sh("copy", "true")}, Finally: []runner.Step{sh("start app", "true")}}
	}
	fas2 := &bot.Target{
		Name: "fas2", Channel: "infra", Notice: 10 * time.Minute, Ladder: []time.Duration{time.Hour, 10 * time.Minute},
		MaxAge: 48 * time.Hour, Manual: bot.ApprovalRule{Count: 1},
		Pipelines:       map[string]*runner.Pipeline{"default": quick("default"), "wipe": quick("wipe"), "reset": quick("reset")},
		DefaultPipeline: "default",
	}
	web := &bot.Target{
		Name: "web", Channel: "infra", Notice: 2 * time.Minute,
		Pipelines: map[string]*runner.Pipeline{"default": quick("default")}, DefaultPipeline: "default",
	}
	e := &fuzzEnv{t: t, s: s, clock: bottest.NewClock(t0), a: bottest.NewAdapter()}
	e.opts = bot.Options{
		Prefix: "!stage", Targets: []*bot.Target{fas2, web}, Clock: e.clock, EditInterval: time.Millisecond,
		Access: bot.Access{
			ControlChannels: []string{"infra"},
			Users:           map[string][]string{alice.ID: {"stage"}, bob.ID: {"stage.approve", "stage.hold"}, carol.ID: {"stage.hold", "stage.resync"}},
		},
		Holds: bot.HoldOptions{Default: 2 * time.Hour, Max: 24 * time.Hour, WarnBefore: 15 * time.Minute},
	}
	e.b = bot.New(s, e.a, e.opts)
	if err := e.b.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	return e
}

// checkStore asserts what must hold whatever was typed: every run is of a
// configured target and pipeline, in a known state, ended exactly when its
// state is final, and named in the audit log; every hold expires after it
// began and is named in the audit log too.
func (e *fuzzEnv) checkStore(after string) {
	e.t.Helper()
	ctx := context.Background()
	runs, err := e.s.Runs(ctx, store.RunFilter{})
	if err != nil {
		e.t.Fatal(err)
	}
	events, err := e.s.Events(ctx, store.EventFilter{})
	if err != nil {
		e.t.Fatal(err)
	}
	audited := map[string]bool{}
	for _, ev := range events {
		audited[fmt.Sprintf("run %d", ev.RunID)] = true
		audited[fmt.Sprintf("hold %d", ev.HoldID)] = true
	}
	targets := map[string]*bot.Target{}
	for _, tg := range e.opts.Targets {
		targets[tg.Name] = tg
	}
	for _, r := range runs {
		tg := targets[r.Target]
		switch {
		case tg == nil:
			e.t.Errorf("after %q: run %d is of target %q, which is not configured", after, r.ID, r.Target)
		case tg.Pipelines[r.Pipeline] == nil:
			e.t.Errorf("after %q: run %d is of pipeline %q, which %s does not have", after, r.ID, r.Pipeline, r.Target)
		}
		if r.State.Done() == r.EndedAt.IsZero() {
			e.t.Errorf("after %q: run %d is %s with end %v", after, r.ID, r.State, r.EndedAt)
		}
		if !audited[fmt.Sprintf("run %d", r.ID)] {
			e.t.Errorf("after %q: run %d is in no audit event", after, r.ID)
		}
	}
	holds, err := e.s.Holds(ctx, false)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, h := range holds {
		if h.Run == 0 && !h.ExpiresAt.After(h.CreatedAt) {
			e.t.Errorf("after %q: hold %d of %s expires at %v, not after it began (%v)", after, h.ID, h.Target, h.ExpiresAt, h.CreatedAt)
		}
		if h.Target != "all" && targets[h.Target] == nil {
			e.t.Errorf("after %q: hold %d is of target %q, which is not configured", after, h.ID, h.Target)
		}
		if !audited[fmt.Sprintf("hold %d", h.ID)] {
			e.t.Errorf("after %q: hold %d is in no audit event", after, h.ID)
		}
	}
}

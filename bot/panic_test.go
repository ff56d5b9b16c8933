package bot_test

import (
	"context"
	"strings"
	"testing"

	"github.com/stagebot/stagebot/runner"
	"github.com/stagebot/stagebot/store"
)

// panicStep panics while it is planned: a defect anywhere under a command.
type panicStep struct{}

func (panicStep) Name() string { return "broken" }

func (panicStep) Kind() string { return "exec" }

func (panicStep) Plan(context.Context) (string, error) { panic("a defect under the command") }

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

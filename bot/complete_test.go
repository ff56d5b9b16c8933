package bot_test

import (
	"context"
	"testing"
	"time"
)

// What the pickers offer: hold lengths within the limits (the default
// first), targets and runs by what was typed.
func TestComplete_WithinTheLimits(t *testing.T) {
	e := newEnv(t)
	e.opts.Holds.Max = 4 * time.Hour
	e.s.Close()
	e.open()
	ctx := context.Background()
	var got []string
	for _, c := range e.b.Complete(ctx, "hold-length", "") {
		got = append(got, c.Value)
	}
	if want := []string{"2h", "30m", "1h", "4h"}; len(got) != len(want) || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] || got[3] != want[3] {
		t.Errorf("hold lengths %v, want %v", got, want)
	}
	if c := e.b.Complete(ctx, "target", "fa"); len(c) != 1 || c[0].Value != "fas2" {
		t.Errorf("targets for fa: %v", c)
	}
	if c := e.b.Complete(ctx, "target", "x"); len(c) != 0 {
		t.Errorf("targets for x: %v", c)
	}
	e.say(alice, "!stage resync fas2 in 30m")
	if c := e.b.Complete(ctx, "run", ""); len(c) != 1 || c[0].Value != "1" {
		t.Errorf("runs: %v", c)
	}
	if c := e.b.Complete(ctx, "control-channel", ""); len(c) != 1 || c[0].Value != "infra" {
		t.Errorf("control channel: %v", c)
	}
}

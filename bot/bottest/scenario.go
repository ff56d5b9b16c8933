package bottest

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stagebot/stagebot/bot"
	"github.com/stagebot/stagebot/internal/patience"
	"github.com/stagebot/stagebot/runner"
	"github.com/stagebot/stagebot/store"
	"github.com/stagebot/stagebot/store/bolt"
)

// Scenario is a bot on a real bolt store with one target, "demo", that needs
// one approval, served through a chat adapter. User U1 (alice) may do
// everything; U2 (bob) may approve.
type Scenario struct {
	t     *testing.T
	Bot   *bot.Bot
	Store store.Store
	Clock *Clock
}

// StartBot runs a scenario's bot on adapter a until the test ends; channel
// is the control channel. Without steps, the pipeline echoes.
func StartBot(t *testing.T, a bot.Adapter, channel string, steps ...runner.Step) *Scenario {
	t.Helper()
	if len(steps) == 0 {
		steps = []runner.Step{&runner.Exec{StepName: "copy", Shell: "echo copying"}}
	}
	return StartBotWith(t, a, NewClock(time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)), bot.Options{
		EditInterval: 10 * time.Millisecond,
		Access:       bot.Access{ControlChannels: []string{channel}, Users: map[string][]string{"U1": {"stage"}, "U2": {"stage.approve"}}},
		Targets: []*bot.Target{{
			Name: "demo", Channel: channel, Notice: 10 * time.Minute, Ladder: []time.Duration{10 * time.Minute},
			Manual:          bot.ApprovalRule{Count: 1},
			Pipelines:       map[string]*runner.Pipeline{"default": {Name: "default", Steps: steps, Finally: []runner.Step{&runner.Exec{StepName: "start app", Shell: "echo started"}}}},
			DefaultPipeline: "default",
		}},
	})
}

// StartBotWith runs a bot with the given options on adapter a, a fresh
// bolt store and clock, until the test ends.
func StartBotWith(t *testing.T, a bot.Adapter, clock *Clock, o bot.Options) *Scenario {
	t.Helper()
	s, err := bolt.Open(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() }) // runs after RunBot's stop: cleanups run last first
	sc, _ := RunBot(t, s, a, clock, o)
	return sc
}

// RunBot runs a bot with the given options on adapter a and store s
// (which it leaves open) until stop is called or the test ends: a bot
// that stops and starts again on the same store is a restart.
func RunBot(t *testing.T, s store.Store, a bot.Adapter, clock *Clock, o bot.Options) (sc *Scenario, stop func()) {
	t.Helper()
	o.Clock = clock
	sc = &Scenario{t: t, Store: s, Clock: clock}
	sc.Bot = bot.New(s, a, o)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sc.Bot.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-patience.After(10 * time.Second):
				t.Error("the bot did not stop")
			}
		})
	}
	t.Cleanup(stop)
	return sc, stop
}

// WaitRun moves the clock on until run id reaches state.
func (sc *Scenario) WaitRun(id uint64, state store.RunState) {
	sc.t.Helper()
	deadline := time.Now().Add(patience.D(20 * time.Second))
	for time.Now().Before(deadline) {
		if r, err := sc.Store.Run(context.Background(), id); err == nil && r.State == state {
			return
		}
		sc.Clock.Advance(time.Second)
		time.Sleep(10 * time.Millisecond)
	}
	r, _ := sc.Store.Run(context.Background(), id)
	sc.t.Fatalf("run %d did not reach %s (it is %+v)", id, state, r)
}

// Eventually polls cond until it holds, failing after 20s of real time.
func Eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(patience.D(20 * time.Second))
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

package bot_test

import (
	"context"
	"testing"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/stagebot/stagebot/bot"
	"github.com/stagebot/stagebot/bot/bottest"
	"github.com/stagebot/stagebot/store"
)

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

package bot

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/stagebot/stagebot/store"
)

// Happening is one thing a calendar shows: a run (under way, waiting, or
// ended lately), a scheduled start that has no run yet, or a hold.
type Happening struct {
	// UID stays the same for the same happening from one look to the
	// next: a scheduled start keeps its UID once its run exists.
	UID      string
	Kind     string // "run", "scheduled" or "hold"
	Target   string
	Pipeline string
	RunID    uint64 // a run's, or 0
	State    string // a run's state; "scheduled"; "held"
	Start    time.Time
	End      time.Time
	// Estimated is set when End is a guess: a run not yet ended lasts as
	// long as the target's last successful run of the pipeline did.
	Estimated bool
	Who       store.User // who asked, or holds
	Reason    string     // why a run waits or ended; a hold's reason
	Loss      string     // what a refresh of the target wipes, as last seen
}

// calendarPast is how far back ended runs and holds are shown.
const calendarPast = 14 * 24 * time.Hour

// defaultRunLength is a run's length on a calendar until one has ended.
const defaultRunLength = 30 * time.Minute

// Calendar lists what happens from two weeks ago until horizon from now:
// every run, every scheduled start without a run yet, every hold.
func (b *Bot) Calendar(ctx context.Context, horizon time.Duration) ([]Happening, error) {
	b.mu.Lock()
	now := b.clock.Now()
	targets := make(map[string]*Target, len(b.targets))
	for n, t := range b.targets {
		targets[n] = t
	}
	b.mu.Unlock()

	var out []Happening
	for _, name := range slices.Sorted(maps.Keys(targets)) {
		t := targets[name]
		runs, err := b.calendarRuns(ctx, t, now)
		if err != nil {
			return nil, err
		}
		out = append(out, runs...)
		out = append(out, b.calendarSlots(t, runs, now, horizon)...)
	}
	holds, err := b.calendarHolds(ctx, now)
	if err != nil {
		return nil, err
	}
	afterHolds(out, holds)
	out = append(out, holds...)
	slices.SortStableFunc(out, func(a, b Happening) int { return a.Start.Compare(b.Start) })
	return out, nil
}

// calendarRuns are the target's runs not yet ended and those that ended
// in the last two weeks.
func (b *Bot) calendarRuns(ctx context.Context, t *Target, now time.Time) ([]Happening, error) {
	active, err := b.store.Runs(ctx, store.RunFilter{Target: t.Name, Active: true})
	if err != nil {
		return nil, err
	}
	recent, err := b.store.Runs(ctx, store.RunFilter{Target: t.Name, Limit: 100})
	if err != nil {
		return nil, err
	}
	loss := b.lossText(t)
	lengths := map[string]time.Duration{}
	var out []Happening
	for _, r := range recent {
		if !r.State.Done() || r.EndedAt.Before(now.Add(-calendarPast)) {
			continue
		}
		if _, ok := lengths[r.Pipeline]; !ok && r.State == store.RunSucceeded && !r.StartedAt.IsZero() {
			lengths[r.Pipeline] = r.EndedAt.Sub(r.StartedAt)
		}
		start := r.StartedAt
		if start.IsZero() { // cancelled before it started
			start = r.StartAt
		}
		out = append(out, runHappening(r, start, maxTime(r.EndedAt, start.Add(time.Minute)), false, ""))
	}
	for _, r := range active {
		length := lengths[r.Pipeline]
		if length == 0 {
			length = defaultRunLength
		}
		length = max(length, time.Minute)
		start := r.StartAt
		if r.State == store.RunRunning && !r.StartedAt.IsZero() {
			start = r.StartedAt
		} else if start.Before(now) {
			// Held or waiting for approval past its time: it starts no
			// earlier than now.
			start = now
		}
		out = append(out, runHappening(r, start, maxTime(start.Add(length), now.Add(time.Minute)), true, loss))
	}
	return out, nil
}

// afterHolds moves a run or scheduled start that holds keep waiting to when
// the last of those holds ends: it cannot start before.
func afterHolds(hs, holds []Happening) {
	for i := range hs {
		h := &hs[i]
		if !h.Estimated || h.State == string(store.RunRunning) {
			continue
		}
		for _, hold := range holds {
			if hold.State == "held" && (hold.Target == h.Target || hold.Target == store.AllTargets) && hold.End.After(h.Start) && hold.Start.Before(h.End) {
				h.Start, h.End = hold.End, hold.End.Add(h.End.Sub(h.Start))
			}
		}
	}
}

func runHappening(r *store.Run, start, end time.Time, estimated bool, loss string) Happening {
	uid := fmt.Sprintf("run-%d", r.ID)
	if !r.Slot.IsZero() {
		uid = slotUID(r.Target, r.Pipeline, r.Slot)
	}
	return Happening{UID: uid, Kind: "run", Target: r.Target, Pipeline: r.Pipeline, RunID: r.ID, State: string(r.State),
		Start: start, End: end, Estimated: estimated, Who: r.Requester, Reason: r.Reason, Loss: loss}
}

func slotUID(target, pipeline string, slot time.Time) string {
	return fmt.Sprintf("slot-%s-%s-%d", target, pipeline, slot.Unix())
}

// calendarSlots are the target's scheduled starts until the horizon that
// have no run yet (a run is made for a slot as its announcements begin).
func (b *Bot) calendarSlots(t *Target, runs []Happening, now time.Time, horizon time.Duration) []Happening {
	made := map[string]bool{}
	length := map[string]time.Duration{}
	for _, h := range runs {
		made[h.UID] = true
		if !h.Estimated {
			if _, ok := length[h.Pipeline]; !ok {
				length[h.Pipeline] = h.End.Sub(h.Start)
			}
		}
	}
	var out []Happening
	for _, u := range UpcomingRuns(t, now, maxSlots) {
		uid := slotUID(t.Name, u.Pipeline, u.Start)
		if made[uid] || u.Start.After(now.Add(horizon)) {
			continue
		}
		d := length[u.Pipeline]
		if d == 0 {
			d = defaultRunLength
		}
		out = append(out, Happening{UID: uid, Kind: "scheduled", Target: t.Name, Pipeline: u.Pipeline, State: "scheduled",
			Start: u.Start, End: u.Start.Add(max(d, time.Minute)), Estimated: true, Who: store.Scheduler, Loss: b.lossText(t)})
	}
	return out
}

// maxSlots bounds the scheduled starts listed per target: an hourly
// schedule still shows its next eight days.
const maxSlots = 200

// calendarHolds are the holds in force and those that ended in the last two
// weeks; a hold in force lasts until it expires (a run's hold, until the
// run ends, shown as a minute past now).
func (b *Bot) calendarHolds(ctx context.Context, now time.Time) ([]Happening, error) {
	holds, err := b.store.Holds(ctx, false)
	if err != nil {
		return nil, err
	}
	var out []Happening
	for _, h := range holds {
		end := h.ExpiresAt
		switch {
		case !h.Active():
			end = h.EndedAt
		case h.Run != 0 || end.IsZero():
			end = now.Add(time.Minute)
		}
		if end.Before(now.Add(-calendarPast)) {
			continue
		}
		state := "held"
		if !h.Active() {
			state = "released"
		}
		out = append(out, Happening{UID: fmt.Sprintf("hold-%d", h.ID), Kind: "hold", Target: h.Target, State: state,
			Start: h.CreatedAt, End: maxTime(end, h.CreatedAt.Add(time.Minute)), Who: h.Holder, Reason: h.Reason})
	}
	return out, nil
}

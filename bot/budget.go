package bot

import (
	"context"
	"fmt"
	"time"

	"github.com/stagebot/stagebot/commands"
	"github.com/stagebot/stagebot/store"
)

// lastCallGap is how long after the last call a run past its target's
// max_age starts despite the holds: the holders' time to wrap up.
func lastCallGap(t *Target) time.Duration { return max(t.Notice, time.Minute) }

// dataTime is when the data staging holds came from production: the end
// of the refresh that made the copy in place (see dataSource). ok is false
// when staging was never refreshed.
func (b *Bot) dataTime(ctx context.Context, target string) (time.Time, bool) {
	from, _, ok := b.dataSource(ctx, target)
	if !ok {
		return time.Time{}, false
	}
	return from.EndedAt, true
}

// dataSource says which refresh's data staging holds (from) and which run
// put it in place (by: that refresh, a reset or a rollback), by replaying
// the target's successful runs: a refresh puts its copy in place and keeps
// the one it replaced; a reset puts back a copy of the last refresh; a
// rollback swaps the copy in place with the one kept.
func (b *Bot) dataSource(ctx context.Context, target string) (from, by *store.Run, ok bool) {
	runs, err := b.store.Runs(ctx, store.RunFilter{Target: target, States: []store.RunState{store.RunSucceeded}})
	if err != nil {
		return nil, nil, false
	}
	var current, previous, lastRefresh *store.Run
	for i := len(runs) - 1; i >= 0; i-- { // oldest first
		r := runs[i]
		switch r.Pipeline {
		case commands.ResetPipeline:
			if lastRefresh != nil {
				previous, current = current, lastRefresh
			}
		case commands.RollbackPipeline:
			current, previous = previous, current
		default:
			previous, current, lastRefresh = current, r, r
		}
		by = r
	}
	if current == nil {
		return nil, by, false
	}
	return current, by, true
}

// deadline is when holds stop keeping r waiting: its target's data reaches
// max_age (or later, as an admin extended it). ok is false for runs no
// budget applies to (asked for by people, no max_age, never refreshed).
func (b *Bot) deadline(ctx context.Context, r *store.Run) (time.Time, bool) {
	t := b.targets[r.Target]
	if t == nil || t.MaxAge <= 0 || r.Origin != store.OriginScheduled {
		return time.Time{}, false
	}
	at, ok := b.dataTime(ctx, r.Target)
	if !ok {
		return time.Time{}, false
	}
	d := at.Add(t.MaxAge)
	if r.BudgetUntil.After(d) {
		d = r.BudgetUntil
	}
	return d, true
}

// overdue is the scheduled run of target that holds may no longer keep
// waiting (its data is past max_age), if any.
func (b *Bot) overdue(ctx context.Context, target string, now time.Time) *store.Run {
	runs, err := b.store.Runs(ctx, store.RunFilter{Target: target, Active: true})
	if err != nil {
		return nil
	}
	for _, r := range runs {
		if r.State == store.RunRunning {
			continue
		}
		if d, ok := b.deadline(ctx, r); ok && !now.Before(d) && !now.Before(r.StartAt) {
			return r
		}
	}
	return nil
}

// Extend implements commands.Service: an admin lets holds keep a scheduled
// run waiting longer than its target's max_age, with a reason.
func (b *Bot) Extend(ctx context.Context, c *commands.Call) error {
	in := callFrom(ctx).in
	r, err := b.store.Run(ctx, c.Run)
	if err != nil {
		return refuse("There is no run %d.", c.Run)
	}
	if r.State.Done() || r.State == store.RunRunning {
		return refuse("Run %d %s: there is nothing to extend.", r.ID, stateWords(r.State))
	}
	d, ok := b.deadline(ctx, r)
	if !ok {
		return refuse("Run %d has no freshness budget to extend: only scheduled runs of targets with max_age have one.", r.ID)
	}
	now := b.clock.Now()
	from := d
	if from.Before(now) {
		from = now
	}
	until := from.Add(c.Duration)
	if !c.Until.IsZero() {
		until = c.Until
	}
	if !until.After(now) {
		return refuse("That time has passed: give a later one.")
	}
	r.BudgetUntil, r.LastCall = until, time.Time{}
	if err := b.store.UpdateRun(ctx, r); err != nil {
		return err
	}
	b.audit(ctx, in.User, "extended", r.Target, r.ID, 0, fmt.Sprintf("until %s: %s", until.Format(time.RFC3339), c.Reason))
	b.edit(ctx, r.Card, b.announcement(ctx, r, ""))
	b.reply(ctx, in, fmt.Sprintf("%s let holds keep run %d of %s waiting until %s, past its max_age: %s", in.User.Display(), r.ID, r.Target, b.fmtTime(until), c.Reason))
	return nil
}

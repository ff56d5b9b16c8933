package bot

import (
	"context"
	"fmt"
	"time"

	"github.com/stagebot/stagebot/store"
)

// Tick does everything that is due at the clock's current time: creates
// scheduled runs, sends reminders, warns and expires holds, and starts runs
// whose time has come. The scheduler loop calls it; tests call it after
// moving the clock.
func (b *Bot) Tick(ctx context.Context) error {
	if ctx.Err() != nil {
		return nil
	}
	ctx = context.WithoutCancel(ctx)
	b.mu.Lock()
	defer b.mu.Unlock()
	defer b.homeChanged()
	return b.tickLocked(ctx)
}

func (b *Bot) tickLocked(ctx context.Context) error {
	now := b.clock.Now()
	if err := b.tickCron(ctx, now); err != nil {
		return fmt.Errorf("cron: %w", err)
	}
	if err := b.tickHolds(ctx, now); err != nil {
		return fmt.Errorf("holds: %w", err)
	}
	if b.stopping {
		return nil // no run starts while the bot stops
	}
	if err := b.tickRuns(ctx, now); err != nil {
		return fmt.Errorf("runs: %w", err)
	}
	return nil
}

// lead is how long before a scheduled start its run is created and first
// announced.
func (t *Target) lead() time.Duration {
	d := t.Notice
	for _, l := range t.Ladder {
		d = max(d, l)
	}
	return d
}

// cronMark names the cursor of one schedule of a target.
func cronMark(target string, s Schedule) string {
	return "cron/" + target + "/" + s.Pipeline + "/" + s.Spec
}

// lateGrace is how long after its slot a scheduled run no bot created
// (the bot restarted, another took over) is still created, late, rather
// than reported missed.
const lateGrace = 5 * time.Minute

// tickCron creates the runs of cron slots whose first announcement is due.
// The request goes through the dispatcher as the scheduler principal, like a
// typed command.
func (b *Bot) tickCron(ctx context.Context, now time.Time) error {
	for _, name := range b.targetNames("") {
		t := b.targets[name]
		for _, sc := range t.Schedules {
			if err := b.tickSchedule(ctx, now, t, sc); err != nil {
				return err
			}
		}
	}
	return nil
}

func (b *Bot) tickSchedule(ctx context.Context, now time.Time, t *Target, sc Schedule) error {
	name, mark := t.Name, cronMark(t.Name, sc)
	cursor, err := b.store.Mark(ctx, mark)
	if err != nil {
		return err
	}
	if cursor.IsZero() {
		cursor = now
		if err := b.store.SetMark(ctx, mark, cursor); err != nil {
			return err
		}
	}
	for {
		next := sc.Cron.Next(cursor)
		if next.IsZero() || now.Before(next.Add(-t.lead())) {
			break
		}
		if !next.After(now) && now.Sub(next) <= lateGrace {
			// No bot acted when the slot came round, a moment ago (a
			// restart, another bot taking over): the run is announced
			// now, with the target's notice, rather than lost.
			b.audit(ctx, store.Scheduler, "late", name, 0, 0, next.Format(time.RFC3339))
			b.dispatchScheduled(ctx, t, sc, now.Add(t.Notice))
		} else if !next.After(now) {
			// The bot was not running when this slot came round.
			b.audit(ctx, store.Scheduler, "missed", name, 0, 0, next.Format(time.RFC3339))
			b.send(ctx, Message{Channel: b.channelOf(t), Text: fmt.Sprintf(
				"The scheduled run of %s/%s at %s was missed: stagebot was not running then. Ask for one with `%s resync %s %s` if it is still wanted.",
				name, sc.Pipeline, b.fmtTime(next), b.opts.Prefix, name, sc.Pipeline)})
		} else {
			b.dispatchScheduled(ctx, t, sc, next)
		}
		cursor = next
		if err := b.store.SetMark(ctx, mark, cursor); err != nil {
			return err
		}
	}
	return nil
}

// dispatchScheduled asks for a schedule's run through the dispatcher, as
// the scheduler principal, for start. The start goes with the request, not
// in its text: "at 12:00" names a minute that the parser reads against the
// clock a moment later, and a slot taken in its last second (or late,
// after a failover, with a notice under a minute) would be refused as
// passed or too soon, and lost.
func (b *Bot) dispatchScheduled(ctx context.Context, t *Target, sc Schedule, start time.Time) {
	text := fmt.Sprintf("%s resync %s %s", b.opts.Prefix, t.Name, sc.Pipeline)
	b.dispatch(ctx, Incoming{Channel: b.channelOf(t), User: store.Scheduler, Text: text, Start: start})
}

// tickRuns sends due reminders and starts, or holds back, runs whose time
// has come.
func (b *Bot) tickRuns(ctx context.Context, now time.Time) error {
	active, err := b.store.Runs(ctx, store.RunFilter{Active: true})
	if err != nil {
		return err
	}
	holds, err := b.store.Holds(ctx, true)
	if err != nil {
		return err
	}
	// Oldest first, so that of two due runs of one target the older starts.
	for i := len(active) - 1; i >= 0; i-- {
		if r := active[i]; r.State != store.RunRunning {
			if err := b.tickRun(ctx, now, r, holds, active); err != nil {
				return err
			}
		}
	}
	return nil
}

// tickRun moves one pending run on: a reminder before its start; at its
// start, the run starts unless something keeps it waiting, which it says.
func (b *Bot) tickRun(ctx context.Context, now time.Time, r *store.Run, holds []*store.Hold, active []*store.Run) error {
	t := b.targets[r.Target]
	if t == nil || t.Pipelines[r.Pipeline] == nil {
		return b.endPendingQuietly(ctx, r, "its target or pipeline is no longer in the config")
	}
	if now.Before(r.StartAt) {
		return b.remind(ctx, r, t, now)
	}
	k, err := b.blockersOf(ctx, r, holds, active)
	if err != nil {
		return err
	}
	overridden := false
	if d, ok := b.deadline(ctx, r); ok && len(k.holds) > 0 && !now.Before(d) {
		wait, err := b.lastCall(ctx, now, r, t, k)
		if err != nil || wait {
			return err
		}
		k.holds, overridden = nil, true
	}
	switch {
	case r.HoldWait && len(k.holds) == 0 && !overridden:
		// The last hold ended: announce a new start after the notice.
		r.State, r.HoldWait, r.WaitNotice, r.Reason = store.RunScheduled, false, "", ""
		r.StartAt = now.Add(t.Notice)
		r.Announced = t.Notice
		if err := b.store.UpdateRun(ctx, r); err != nil {
			return err
		}
		b.audit(ctx, store.Scheduler, "rescheduled", r.Target, r.ID, 0, "holds ended")
		b.renotice(ctx, r, "The holds on "+r.Target+" have ended, so the run has a new start.")
		return nil
	case k.none():
		if err := b.startRun(ctx, r, t); err != nil {
			return err
		}
		r.State = store.RunRunning // later runs of the target see it
		return nil
	}
	return b.waits(ctx, r, k)
}

// lastCall is a due run whose target's data has reached max_age while
// holds keep it waiting: the holders get a last call, then the run goes
// ahead despite them. wait is true while the last call lasts.
func (b *Bot) lastCall(ctx context.Context, now time.Time, r *store.Run, t *Target, k blockers) (wait bool, err error) {
	switch {
	case r.LastCall.IsZero():
		r.LastCall = now
		if err := b.store.UpdateRun(ctx, r); err != nil {
			return true, err
		}
		b.audit(ctx, store.Scheduler, "last call", r.Target, r.ID, 0, "data past max_age "+fmtDur(t.MaxAge))
		b.edit(ctx, r.Card, b.announcement(ctx, r, ""))
		b.send(ctx, Message{Channel: r.Channel, Thread: r.Card, Mentions: holdersOf(k.holds), Text: fmt.Sprintf(
			"⏰ Last call: %s's data is past its max_age (%s). Run %d starts at %s despite the holds (%s); no new hold on %s is accepted until it has run. An admin can give it more time: `%s extend %d 1d <reason>`.",
			r.Target, fmtDur(t.MaxAge), r.ID, b.fmtTime(now.Add(lastCallGap(t))), b.describe(blockers{holds: k.holds}), r.Target, b.opts.Prefix, r.ID)})
		return true, nil
	case now.Before(r.LastCall.Add(lastCallGap(t))):
		return true, nil
	}
	b.audit(ctx, store.Scheduler, "holds overridden", r.Target, r.ID, 0, b.describe(blockers{holds: k.holds}))
	return false, nil
}

// waits records that a due run waits and why, and says so once per reason.
func (b *Bot) waits(ctx context.Context, r *store.Run, k blockers) error {
	reason := b.describe(k)
	if r.State == store.RunWaiting && r.WaitNotice == reason {
		return nil
	}
	r.State, r.Reason, r.WaitNotice = store.RunWaiting, reason, reason
	r.HoldWait = r.HoldWait || len(k.holds) > 0
	if err := b.store.UpdateRun(ctx, r); err != nil {
		return err
	}
	b.audit(ctx, store.Scheduler, "waiting", r.Target, r.ID, 0, reason)
	b.edit(ctx, r.Card, b.announcement(ctx, r, ""))
	b.send(ctx, Message{Channel: r.Channel, Thread: r.Card, Text: fmt.Sprintf("Run %d of %s is due but waits: %s.", r.ID, r.Target, reason), Mentions: holdersOf(k.holds)})
	return nil
}

func (b *Bot) endPendingQuietly(ctx context.Context, r *store.Run, why string) error {
	r.State, r.EndedAt, r.Reason = store.RunCancelled, b.clock.Now(), "cancelled: "+why
	if err := b.store.UpdateRun(ctx, r); err != nil {
		return err
	}
	b.audit(ctx, store.Scheduler, "cancelled", r.Target, r.ID, 0, why)
	b.send(ctx, Message{Channel: r.Channel, Thread: r.Card, Text: fmt.Sprintf("Run %d of %s was cancelled: %s.", r.ID, r.Target, why)})
	return nil
}

// remind posts the reminder for the nearest ladder step that has come due
// and was not announced yet.
func (b *Bot) remind(ctx context.Context, r *store.Run, t *Target, now time.Time) error {
	due := time.Duration(-1)
	for _, d := range t.Ladder {
		if d < r.Announced && !now.Before(r.StartAt.Add(-d)) && (due < 0 || d < due) {
			due = d
		}
	}
	if due < 0 {
		return nil
	}
	r.Announced = due
	if err := b.store.UpdateRun(ctx, r); err != nil {
		return err
	}
	b.audit(ctx, store.Scheduler, "reminded", r.Target, r.ID, 0, fmtDur(due))
	b.renotice(ctx, r, fmt.Sprintf("Reminder: run %d starts in %s.", r.ID, fmtDur(r.StartAt.Sub(now))))
	return nil
}

// nextWake is the earliest time after a tick that ran at `after` at which
// a tick may have something to do. What was due by then, the tick has done;
// what it could not do (a run kept waiting by a hold or for approvals)
// waits for a command, a hold's end or a run's end, which wake the
// scheduler themselves, not for the clock.
func (b *Bot) nextWake(ctx context.Context, after time.Time) (time.Time, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var next time.Time
	consider := func(t time.Time) {
		if t.After(after) && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	for name, t := range b.targets {
		for _, sc := range t.Schedules {
			cursor, err := b.store.Mark(ctx, cronMark(name, sc))
			if err == nil && !cursor.IsZero() {
				if n := sc.Cron.Next(cursor); !n.IsZero() {
					consider(n.Add(-t.lead()))
				}
			}
		}
	}
	if holds, err := b.store.Holds(ctx, true); err == nil {
		for _, h := range holds {
			if h.Run != 0 {
				continue
			}
			if h.WarnedAt.IsZero() {
				consider(b.warnAt(h))
			} else {
				consider(h.ExpiresAt)
			}
		}
	}
	if runs, err := b.store.Runs(ctx, store.RunFilter{Active: true}); err == nil {
		for _, r := range runs {
			if r.State == store.RunRunning {
				continue
			}
			consider(r.StartAt)
			if t := b.targets[r.Target]; t != nil {
				for _, d := range t.Ladder {
					if d < r.Announced {
						consider(r.StartAt.Add(-d))
					}
				}
			}
		}
	}
	return next, !next.IsZero()
}

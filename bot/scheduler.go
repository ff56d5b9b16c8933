package bot

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/stagebot/stagebot/runner"
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

// warnAt is when a hold's holder is told it will expire: WarnBefore ahead,
// or half-way through holds shorter than that.
func (b *Bot) warnAt(h *store.Hold) time.Time {
	length := h.ExpiresAt.Sub(h.CreatedAt)
	if length <= b.opts.Holds.WarnBefore {
		return h.CreatedAt.Add(length / 2)
	}
	return h.ExpiresAt.Add(-b.opts.Holds.WarnBefore)
}

// tickHolds warns holders before expiry and ends holds whose time is up. A
// hold never expires before its warning went out: a late warning (the bot
// was down) moves the expiry so the holder still has time to extend.
func (b *Bot) tickHolds(ctx context.Context, now time.Time) error {
	holds, err := b.store.Holds(ctx, true)
	if err != nil {
		return err
	}
	for _, h := range holds {
		switch {
		case h.Run != 0:
			// Lasts while its run runs; ended with the run.
		case h.WarnedAt.IsZero() && !now.Before(b.warnAt(h)):
			h.WarnedAt = now
			if h.ExpiresAt.Sub(now) < b.opts.Holds.WarnBefore/2 {
				h.ExpiresAt = now.Add(b.opts.Holds.WarnBefore / 2)
			}
			if err := b.store.UpdateHold(ctx, h); err != nil {
				return err
			}
			b.audit(ctx, store.Scheduler, "hold warned", h.Target, 0, h.ID, "")
			ext := fmtDur(min(b.opts.Holds.Default, b.opts.Holds.Max))
			b.send(ctx, Message{
				Channel:  b.holdChannel(h),
				Text:     fmt.Sprintf("Your hold on %s (%s) expires at %s. Extend it if you still need it.", holdName(h.Target), h.Reason, b.fmtTime(h.ExpiresAt)),
				Mentions: []store.User{h.Holder},
				Buttons: []Button{
					{Label: "Extend " + ext, Command: fmt.Sprintf("%s hold %s %s %s", b.opts.Prefix, h.Target, ext, quote(h.Reason))},
					{Label: "Release", Command: fmt.Sprintf("%s release %s", b.opts.Prefix, h.Target)},
				},
			})
		case !h.WarnedAt.IsZero() && !now.Before(h.ExpiresAt):
			h.EndedAt, h.EndedBy, h.EndReason = now, store.Scheduler, "expired"
			if err := b.store.UpdateHold(ctx, h); err != nil {
				return err
			}
			b.audit(ctx, store.Scheduler, "hold expired", h.Target, 0, h.ID, "")
			b.send(ctx, Message{Channel: b.holdChannel(h), Text: fmt.Sprintf("The hold on %s by %s (%s) has expired.", holdName(h.Target), h.Holder.Display(), h.Reason)})
		}
	}
	return nil
}

func (b *Bot) holdChannel(h *store.Hold) string {
	if t := b.targets[h.Target]; t != nil {
		return b.channelOf(t)
	}
	if len(b.opts.Access.ControlChannels) > 0 {
		return b.opts.Access.ControlChannels[0]
	}
	return ""
}

// quote makes text one word for the command parser.
func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// blockers says what keeps a run from starting now; empty means nothing.
type blockers struct {
	holds    []*store.Hold
	missing  int // approvals still needed
	runningN uint64
}

func (k blockers) none() bool { return len(k.holds) == 0 && k.missing == 0 && k.runningN == 0 }

func (b *Bot) blockersOf(ctx context.Context, r *store.Run, holds []*store.Hold, active []*store.Run) (blockers, error) {
	var k blockers
	for _, h := range holds {
		if h.Covers(r.Target) {
			k.holds = append(k.holds, h)
		}
	}
	apps, err := b.store.Approvals(ctx, r.ID)
	if err != nil {
		return k, err
	}
	k.missing = max(b.rule(r).Count-b.countApprovals(r, apps), 0)
	for _, o := range active {
		if o.ID != r.ID && o.Target == r.Target && o.State == store.RunRunning {
			k.runningN = o.ID
		}
	}
	return k, nil
}

// currentBlockers is what keeps r waiting now. The runs under way are the
// ones this process executes: no need to read every active run.
// b.mu is held.
func (b *Bot) currentBlockers(ctx context.Context, r *store.Run) (blockers, error) {
	holds, err := b.store.Holds(ctx, true)
	if err != nil {
		return blockers{}, err
	}
	var running []*store.Run
	for id, x := range b.running {
		running = append(running, &store.Run{ID: id, Target: x.target, State: store.RunRunning})
	}
	return b.blockersOf(ctx, r, holds, running)
}

func (b *Bot) describe(k blockers) string {
	var parts []string
	for _, h := range k.holds {
		parts = append(parts, fmt.Sprintf("held by %s %s (%s)", h.Holder.Display(), b.holdUntil(h), h.Reason))
	}
	if k.missing > 0 {
		parts = append(parts, fmt.Sprintf("needs %d more approval(s)", k.missing))
	}
	if k.runningN > 0 {
		parts = append(parts, fmt.Sprintf("run %d of the same target is running", k.runningN))
	}
	return strings.Join(parts, "; ")
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
		r := active[i]
		if r.State == store.RunRunning {
			continue
		}
		t := b.targets[r.Target]
		if t == nil || t.Pipelines[r.Pipeline] == nil {
			if err := b.endPendingQuietly(ctx, r, "its target or pipeline is no longer in the config"); err != nil {
				return err
			}
			continue
		}
		if now.Before(r.StartAt) {
			if err := b.remind(ctx, r, t, now); err != nil {
				return err
			}
			continue
		}
		k, err := b.blockersOf(ctx, r, holds, active)
		if err != nil {
			return err
		}
		overridden := false
		if d, ok := b.deadline(ctx, r); ok && len(k.holds) > 0 && !now.Before(d) {
			// Staging's data has reached max_age: the holders get a last
			// call, then the run goes ahead despite them.
			switch {
			case r.LastCall.IsZero():
				r.LastCall = now
				if err := b.store.UpdateRun(ctx, r); err != nil {
					return err
				}
				b.audit(ctx, store.Scheduler, "last call", r.Target, r.ID, 0, "data past max_age "+fmtDur(t.MaxAge))
				b.edit(ctx, r.Card, b.announcement(ctx, r, ""))
				b.send(ctx, Message{Channel: r.Channel, Thread: r.Card, Mentions: holdersOf(k.holds), Text: fmt.Sprintf(
					"⏰ Last call: %s's data is past its max_age (%s). Run %d starts at %s despite the holds (%s); no new hold on %s is accepted until it has run. An admin can give it more time: `%s extend %d 1d <reason>`.",
					r.Target, fmtDur(t.MaxAge), r.ID, b.fmtTime(now.Add(lastCallGap(t))), b.describe(blockers{holds: k.holds}), r.Target, b.opts.Prefix, r.ID)})
				continue
			case now.Before(r.LastCall.Add(lastCallGap(t))):
				continue
			default:
				b.audit(ctx, store.Scheduler, "holds overridden", r.Target, r.ID, 0, b.describe(blockers{holds: k.holds}))
				k.holds, overridden = nil, true
			}
		}
		if r.HoldWait && len(k.holds) == 0 && !overridden {
			// The last hold ended: announce a new start after the notice.
			r.State, r.HoldWait, r.WaitNotice, r.Reason = store.RunScheduled, false, "", ""
			r.StartAt = now.Add(t.Notice)
			r.Announced = t.Notice
			if err := b.store.UpdateRun(ctx, r); err != nil {
				return err
			}
			b.audit(ctx, store.Scheduler, "rescheduled", r.Target, r.ID, 0, "holds ended")
			b.renotice(ctx, r, "The holds on "+r.Target+" have ended, so the run has a new start.")
			continue
		}
		if k.none() {
			if err := b.startRun(ctx, r, t); err != nil {
				return err
			}
			r.State = store.RunRunning // later runs of the target see it
			continue
		}
		reason := b.describe(k)
		if r.State == store.RunWaiting && r.WaitNotice == reason {
			continue
		}
		r.State, r.Reason, r.WaitNotice = store.RunWaiting, reason, reason
		r.HoldWait = r.HoldWait || len(k.holds) > 0
		if err := b.store.UpdateRun(ctx, r); err != nil {
			return err
		}
		b.audit(ctx, store.Scheduler, "waiting", r.Target, r.ID, 0, reason)
		b.edit(ctx, r.Card, b.announcement(ctx, r, ""))
		b.send(ctx, Message{Channel: r.Channel, Thread: r.Card, Text: fmt.Sprintf("Run %d of %s is due but waits: %s.", r.ID, r.Target, reason), Mentions: holdersOf(k.holds)})
	}
	return nil
}

func holdersOf(hs []*store.Hold) []store.User {
	var out []store.User
	for _, h := range hs {
		out = append(out, h.Holder)
	}
	return out
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

// Recover marks runs that were running when the bot stopped as
// interrupted (or as succeeded, when every step had finished) and says so
// in their channel, with what it repaired and which copy staging holds.
// Run calls it before anything else.
func (b *Bot) Recover(ctx context.Context) error {
	b.mu.Lock()
	runs, err := b.store.Runs(ctx, store.RunFilter{Active: true, States: []store.RunState{store.RunRunning}})
	if err != nil {
		b.mu.Unlock()
		return fmt.Errorf("recover: %w", err)
	}
	interrupted := map[string]bool{}
	ended := map[uint64]string{}
	for _, r := range runs {
		if b.running[r.ID] != nil {
			continue
		}
		interrupted[r.Target] = true
		// What its steps left running goes first: it may still be writing.
		var groups []string
		seen := map[int]bool{}
		for _, p := range r.Processes {
			found, err := runner.EndLeftover(p, 5*time.Second)
			if err != nil {
				b.log.Error("end a leftover process group", "run", r.ID, "pgid", p.PGID, "err", err)
			}
			if found {
				seen[p.PGID] = true
				groups = append(groups, strconv.Itoa(p.PGID))
			}
		}
		// And any started too late to be recorded, found by the run's token.
		for _, pgid := range runner.EndTokenHolders(r.Token, 5*time.Second) {
			if !seen[pgid] {
				groups = append(groups, strconv.Itoa(pgid))
			}
		}
		if len(groups) > 0 {
			ended[r.ID] = "ended the processes its steps had left running (process group " + strings.Join(groups, ", ") + ")"
		}
	}
	repaired := map[string]string{}
	for _, name := range b.targetNames("") {
		t := b.targets[name]
		if t.Recover == nil {
			continue
		}
		did, err := t.Recover(ctx)
		if err != nil {
			// The target stays as it is; its next run plans again and
			// reports what is wrong.
			b.log.Error("recover target", "target", name, "err", b.opts.Redact(err.Error()))
			b.send(ctx, Message{Channel: b.channelOf(t), Text: b.opts.Redact(fmt.Sprintf("I could not check %s after a restart: %v", name, err))})
			continue
		}
		if did == "" {
			continue
		}
		b.audit(ctx, store.Scheduler, "recovered", name, 0, 0, did)
		if interrupted[name] {
			repaired[name] = did // said with the interrupted run
			continue
		}
		b.send(ctx, Message{Channel: b.channelOf(t), Text: b.opts.Redact(fmt.Sprintf("After a restart I tidied up %s: %s.", name, did))})
	}
	var finals []*store.Run
	for _, r := range runs {
		if b.running[r.ID] != nil {
			continue
		}
		did := repaired[r.Target]
		if e := ended[r.ID]; e != "" {
			did = strings.TrimPrefix(e+"; "+did, "; ")
			did = strings.TrimSuffix(did, "; ")
		}
		if b.recoverRun(ctx, r, did) {
			finals = append(finals, r)
		}
		delete(repaired, r.Target)
	}
	err = b.reannounceMissed(ctx)
	b.mu.Unlock()
	for _, r := range finals {
		b.finallyAfterCrash(ctx, r)
	}
	return err
}

// reannounceMissed gives runs that were to start while the bot was not
// running a new start after their notice period, and says so: a run never
// starts after a restart without a word. Runs that wait for a hold or for
// approvals go on waiting for their person. b.mu is held.
func (b *Bot) reannounceMissed(ctx context.Context) error {
	now := b.clock.Now()
	active, err := b.store.Runs(ctx, store.RunFilter{Active: true, States: []store.RunState{store.RunScheduled}})
	if err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	for _, r := range active {
		t := b.targets[r.Target]
		if t == nil || r.StartAt.After(now) {
			continue
		}
		was := r.StartAt
		r.StartAt, r.Announced = now.Add(t.Notice), t.Notice
		if err := b.store.UpdateRun(ctx, r); err != nil {
			return fmt.Errorf("recover run %d: %w", r.ID, err)
		}
		b.audit(ctx, store.Scheduler, "rescheduled", r.Target, r.ID, 0, "due while stagebot was not running")
		b.renotice(ctx, r, fmt.Sprintf("Run %d was due at %s, while stagebot was not running, so it did not start. It now starts at %s: hold, defer or cancel it if that no longer suits.", r.ID, b.fmtTime(was), b.fmtTime(r.StartAt)))
	}
	return nil
}

// finallyAfterCrash runs the finally steps of run r, which the bot's stop
// interrupted before they could run (a pipeline that stopped the app
// starts it again), records their results and says how they went.
func (b *Bot) finallyAfterCrash(ctx context.Context, r *store.Run) {
	t := b.targets[r.Target]
	p := t.Pipelines[r.Pipeline]
	plan := runner.MakePlan(ctx, t.Name, &runner.Pipeline{Name: p.Name, Finally: p.Finally})
	logs := &logSink{b: b, run: r.ID}
	fmt.Fprintf(logs, "== after a restart: the finally steps of the interrupted run\n")
	results, err := runner.Execute(ctx, plan, runner.Env{Run: r.ID, Target: r.Target, Pipeline: r.Pipeline, Log: logs, Fence: b.opts.Fence}, nil, b.clock.Now)
	logs.flush()
	b.mu.Lock()
	defer b.mu.Unlock()
	var lines []string
	cur, lerr := b.store.Run(ctx, r.ID)
	if lerr == nil {
		j := 0
		for i := range cur.Steps {
			if cur.Steps[i].Finally && j < len(results) {
				cur.Steps[i] = results[j]
				j++
			}
		}
		lerr = b.store.UpdateRun(ctx, cur)
	}
	if lerr != nil {
		b.log.Error("record the finally steps of an interrupted run", "run", r.ID, "err", lerr)
	}
	for _, s := range results {
		mark := "✓"
		if s.State != store.StepSucceeded {
			mark = "✗"
		}
		line := fmt.Sprintf("%s %s", mark, s.Name)
		if s.Error != "" {
			line += ": " + s.Error
		}
		lines = append(lines, line)
	}
	text := fmt.Sprintf("I ran the finally steps of interrupted run %d of %s:\n%s", r.ID, r.Target, strings.Join(lines, "\n"))
	if err != nil {
		text += fmt.Sprintf("\n`%s log %d` has the output.", b.opts.Prefix, r.ID)
	}
	b.audit(ctx, store.Scheduler, "finally after restart", r.Target, r.ID, 0, strings.Join(lines, "; "))
	b.send(ctx, Message{Channel: r.Channel, Thread: r.Status, Mentions: []store.User{r.Requester}, Text: b.opts.Redact(text)})
}

// recoverRun records what became of run r, which was running when the bot
// stopped, and tells its channel. It reports whether the run's finally
// steps are still to run. b.mu is held.
func (b *Bot) recoverRun(ctx context.Context, r *store.Run, repaired string) bool {
	var running, lastDone, nextUp string
	done := 0
	for i := range r.Steps {
		switch st := &r.Steps[i]; st.State {
		case store.StepRunning:
			running = st.Name
			st.State, st.Error = store.StepAborted, "interrupted"
		case store.StepSucceeded:
			done++
			lastDone = st.Name
		case store.StepPending:
			if nextUp == "" {
				nextUp = st.Name
			}
		}
	}
	where := "before its first step"
	switch {
	case running != "":
		where = "during step " + running
	case lastDone != "" && nextUp != "":
		where = fmt.Sprintf("after step %s, before step %s", lastDone, nextUp)
	case lastDone != "":
		where = "after step " + lastDone
	}
	r.EndedAt, r.Processes = b.clock.Now(), nil
	if done == len(r.Steps) && done > 0 {
		// Every step had finished: only the record of the end was lost.
		r.State, r.Reason = store.RunSucceeded, "every step had finished when stagebot stopped; the end was recorded after a restart"
	} else {
		r.State, r.Reason = store.RunInterrupted, "stagebot stopped "+where
	}
	var holding string
	if t := b.targets[r.Target]; t != nil && t.Holding != nil {
		holding = t.Holding(ctx, r.ID)
		r.Reason += "; " + holding
	}
	// The finally steps that had not all succeeded run now, once.
	finals := false
	if t := b.targets[r.Target]; t != nil && t.Pipelines[r.Pipeline] != nil && len(t.Pipelines[r.Pipeline].Finally) > 0 && r.State != store.RunSucceeded {
		for _, s := range r.Steps {
			if s.Finally && s.State != store.StepSucceeded {
				finals = true
			}
		}
	}
	if err := b.store.UpdateRun(ctx, r); err != nil {
		b.log.Error("recover run", "run", r.ID, "err", err)
		return false
	}
	b.audit(ctx, store.Scheduler, string(r.State), r.Target, r.ID, 0, r.Reason)
	b.endRunHolds(ctx, r)
	b.edit(ctx, r.Status, b.statusMessage(r))
	var text string
	if r.State == store.RunSucceeded {
		text = fmt.Sprintf("Run %d of %s had finished every step when I stopped; I recorded it as succeeded after a restart.", r.ID, r.Target)
	} else {
		text = fmt.Sprintf("Run %d of %s was interrupted: stagebot stopped %s.", r.ID, r.Target, where)
	}
	if repaired != "" {
		text += " I repaired what it left: " + repaired + "."
	}
	if holding != "" {
		text += " " + upperFirst(holding) + "."
	}
	if finals {
		text += " Its finally steps run now."
	}
	if r.State != store.RunSucceeded {
		text += fmt.Sprintf(" Check staging, then ask again with `%s resync %s`.", b.opts.Prefix, r.Target)
	}
	b.send(ctx, Message{Channel: r.Channel, Thread: r.Status, Mentions: []store.User{r.Requester}, Text: b.opts.Redact(text)})
	return finals
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// Tell says text in target's channel, for what happens outside a command
// or a run (a background repair that finished).
func (b *Bot) Tell(target, text string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	ctx := context.Background()
	t := b.targets[target]
	if t == nil {
		return
	}
	b.audit(ctx, store.Scheduler, "note", target, 0, 0, text)
	b.send(ctx, Message{Channel: b.channelOf(t), Text: b.opts.Redact(text)})
}

// rule is the approval rule that applies to r.
func (b *Bot) rule(r *store.Run) ApprovalRule {
	t := b.targets[r.Target]
	if t == nil {
		return ApprovalRule{}
	}
	if r.Origin == store.OriginScheduled {
		return t.Scheduled
	}
	return t.Manual
}

// countApprovals counts the approvals that meet r's rule (a member of the
// group, not the requester unless allowed). Access may have changed since an
// approval was given, so this is checked again at start time.
func (b *Bot) countApprovals(r *store.Run, apps []store.Approval) int {
	rule := b.rule(r)
	n := 0
	for _, a := range apps {
		if a.User.ID == r.Requester.ID && !rule.AllowSelf {
			continue
		}
		if rule.Group != "" && !b.opts.Access.InGroup(a.User, rule.Group) {
			continue
		}
		n++
	}
	return n
}

package bot

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/stagebot/stagebot/commands"
	"github.com/stagebot/stagebot/runner"
	"github.com/stagebot/stagebot/store"
)

var _ commands.Service = (*Bot)(nil)

// Help implements commands.Service.
func (b *Bot) Help(ctx context.Context, c *commands.Call) error {
	text, err := commands.HelpText(b.opts.Prefix, c.Topic)
	if err != nil {
		return refuse("%s", err)
	}
	b.reply(ctx, callFrom(ctx).in, text)
	return nil
}

// Resync implements commands.Service: it plans the run, then creates and
// announces it (or, with --dry-run, shows the plan and stops).
func (b *Bot) Resync(ctx context.Context, c *commands.Call) error {
	in := callFrom(ctx).in
	t := b.targets[c.Target]
	if t == nil {
		return refuse("There is no target %q. `%s status` lists them.", c.Target, b.opts.Prefix)
	}
	pipeline := c.Pipeline
	if pipeline == "" {
		pipeline = t.DefaultPipeline
	}
	if t.Pipelines[pipeline] == nil {
		return refuse("Target %s has no pipeline %q. `%s help resync` says how to name one.", t.Name, pipeline, b.opts.Prefix)
	}
	now := b.clock.Now()
	origin := store.OriginManual
	if in.User.ID == store.Scheduler.ID {
		origin = store.OriginScheduled
	}
	start := startOf(c.When, now, t.Notice)
	if err := b.checkStart(ctx, in, t, now, start, c.When.Kind != commands.WhenNow && origin == store.OriginManual); err != nil {
		return err
	}
	// The announcement says what the refresh would wipe: staging is
	// looked at while the plan is checked.
	looked := make(chan struct{})
	go func() {
		defer close(looked)
		if !c.DryRun {
			b.refreshLoss(ctx, t)
		}
	}()
	plan := runner.MakePlan(ctx, t.Name, t.Pipelines[pipeline])
	<-looked
	if c.DryRun {
		b.reply(ctx, in, b.renderPlan(ctx, t, pipeline, plan, origin))
		return nil
	}
	if probs := plan.Problems(); len(probs) > 0 {
		return refuse("I can't run %s/%s: its plan has problems. Fix the config and ask again.\n• %s", t.Name, pipeline, strings.Join(probs, "\n• "))
	}
	if origin == store.OriginManual {
		if err := b.noSecondRequest(ctx, t, pipeline); err != nil {
			return err
		}
	}
	r := &store.Run{
		Target: t.Name, Pipeline: pipeline, Origin: origin, Requester: in.User,
		State: store.RunScheduled, CreatedAt: now, StartAt: start, Announced: start.Sub(now),
		Channel: b.channelOf(t),
	}
	if origin == store.OriginScheduled {
		r.Slot = start
	}
	if err := b.store.CreateRun(ctx, r); err != nil {
		return err
	}
	b.audit(ctx, in.User, "requested", t.Name, r.ID, 0, fmt.Sprintf("%s for %s", pipeline, start.Format(time.RFC3339)))
	card := b.announcement(ctx, r, "")
	r.Card = b.send(ctx, card)
	if err := b.store.UpdateRun(ctx, r); err != nil {
		return err
	}
	// What the plan warns of (a copy that will not fit) goes with the card.
	if warns := plan.Warnings(); len(warns) > 0 {
		b.send(ctx, Message{Channel: r.Channel, Thread: r.Card, Text: "⚠ " + strings.Join(warns, "\n⚠ ")})
	}
	if in.Channel != r.Channel && origin == store.OriginManual {
		b.reply(ctx, in, fmt.Sprintf("Run %d of %s is scheduled for %s and announced in #%s.", r.ID, t.Name, b.fmtTime(start), r.Channel))
	}
	return nil
}

// startOf is when a run asked for with w starts: now, after a while, at a
// time, or after the target's notice.
func startOf(w commands.When, now time.Time, notice time.Duration) time.Time {
	switch w.Kind {
	case commands.WhenNow:
		return now
	case commands.WhenIn:
		return now.Add(w.Duration)
	case commands.WhenAt:
		return w.Time
	}
	return now.Add(notice)
}

// noSecondRequest refuses a manual run of a pipeline that has one pending
// already.
func (b *Bot) noSecondRequest(ctx context.Context, t *Target, pipeline string) error {
	pending, err := b.store.Runs(ctx, store.RunFilter{Target: t.Name, Active: true})
	if err != nil {
		return err
	}
	for _, r := range pending {
		if r.Pipeline == pipeline && r.Origin == store.OriginManual && r.State != store.RunRunning {
			return refuse("Run %d of %s/%s is already %s for %s. Defer it (`%s defer %d 1h`) or cancel it first.",
				r.ID, r.Target, r.Pipeline, r.State, b.fmtTime(r.StartAt), b.opts.Prefix, r.ID)
		}
	}
	return nil
}

// Approve implements commands.Service.
func (b *Bot) Approve(ctx context.Context, c *commands.Call) error {
	in := callFrom(ctx).in
	r, err := b.store.Run(ctx, c.Run)
	if err != nil {
		return err
	}
	if r.State.Done() || r.State == store.RunRunning {
		return refuse("Run %d %s: there is nothing left to approve.", r.ID, stateWords(r.State))
	}
	rule := b.rule(r)
	if r.Requester.ID == in.User.ID && !rule.AllowSelf {
		return refuse("You asked for run %d, so someone else must approve it: %s does not allow self-approval.", r.ID, r.Target)
	}
	if rule.Group != "" && !b.opts.Access.InGroup(in.User, rule.Group) {
		return refuse("Only members of the group %s may approve runs of %s.", rule.Group, r.Target)
	}
	err = b.store.AddApproval(ctx, store.Approval{RunID: r.ID, User: in.User, At: b.clock.Now()})
	if errors.Is(err, store.ErrConflict) {
		return refuse("You have already approved run %d.", r.ID)
	}
	if err != nil {
		return err
	}
	b.audit(ctx, in.User, "approved", r.Target, r.ID, 0, "")
	apps, err := b.store.Approvals(ctx, r.ID)
	if err != nil {
		return err
	}
	b.edit(ctx, r.Card, b.announcement(ctx, r, ""))
	b.reply(ctx, in, fmt.Sprintf("%s approved run %d of %s (%d of %d).", in.User.Display(), r.ID, r.Target, b.countApprovals(r, apps), rule.Count))
	return nil
}

// Defer implements commands.Service.
func (b *Bot) Defer(ctx context.Context, c *commands.Call) error {
	in := callFrom(ctx).in
	r, err := b.store.Run(ctx, c.Run)
	if err != nil {
		return err
	}
	if r.State.Done() || r.State == store.RunRunning {
		return refuse("Run %d %s and can no longer be deferred.", r.ID, stateWords(r.State))
	}
	now := b.clock.Now()
	start := c.Until
	if start.IsZero() {
		start = maxTime(r.StartAt, now).Add(c.Duration)
	}
	t := b.targets[r.Target]
	if t == nil {
		return refuse("Run %d is of target %s, which is no longer configured: cancel it instead.", r.ID, r.Target)
	}
	// Moving a run earlier skips what is left of its notice: that is a "now".
	if start.Before(r.StartAt) {
		if err := b.need(ctx, in, r.Target, c.Text, commands.ScopeRoot+".now."+r.Target, "moving a run earlier skips its notice"); err != nil {
			return err
		}
	}
	if err := b.checkStart(ctx, in, t, now, start, false); err != nil {
		return err
	}
	if d, ok := b.deadline(ctx, r); ok && start.After(d) {
		if err := b.need(ctx, in, r.Target, c.Text, commands.ScopeAdmin, fmt.Sprintf("it would start after %s's data passes its max_age (%s)", r.Target, b.fmtTime(d))); err != nil {
			return err
		}
	} else if t.MaxAge > 0 && start.After(now.Add(t.MaxAge)) {
		if err := b.need(ctx, in, r.Target, c.Text, commands.ScopeAdmin, fmt.Sprintf("it would start more than %s's max_age (%s) from now", r.Target, fmtDur(t.MaxAge))); err != nil {
			return err
		}
	}
	r.StartAt, r.State, r.HoldWait, r.WaitNotice, r.Reason = start, store.RunScheduled, false, "", ""
	r.Announced = start.Sub(now)
	if err := b.store.UpdateRun(ctx, r); err != nil {
		return err
	}
	b.audit(ctx, in.User, "deferred", r.Target, r.ID, 0, start.Format(time.RFC3339))
	b.renotice(ctx, r, fmt.Sprintf("%s deferred run %d.", in.User.Display(), r.ID))
	return nil
}

// Cancel implements commands.Service.
func (b *Bot) Cancel(ctx context.Context, c *commands.Call) error {
	in := callFrom(ctx).in
	r, err := b.store.Run(ctx, c.Run)
	if err != nil {
		return err
	}
	switch {
	case r.State == store.RunRunning:
		return refuse("Run %d is running: stop it with `%s abort %d`.", r.ID, b.opts.Prefix, r.ID)
	case r.State.Done():
		return refuse("Run %d has already ended (%s).", r.ID, r.State)
	}
	return b.endPending(ctx, r, in.User, c.Reason)
}

func (b *Bot) endPending(ctx context.Context, r *store.Run, by store.User, reason string) error {
	r.State, r.EndedAt = store.RunCancelled, b.clock.Now()
	r.Reason = "cancelled by " + by.Display()
	if reason != "" {
		r.Reason += ": " + reason
	}
	if err := b.store.UpdateRun(ctx, r); err != nil {
		return err
	}
	b.audit(ctx, by, "cancelled", r.Target, r.ID, 0, reason)
	b.edit(ctx, r.Card, b.announcement(ctx, r, ""))
	b.send(ctx, Message{Channel: r.Channel, Thread: r.Card, Text: fmt.Sprintf("Run %d of %s was %s. Staging is unchanged.", r.ID, r.Target, r.Reason)})
	return nil
}

// Abort implements commands.Service.
func (b *Bot) Abort(ctx context.Context, c *commands.Call) error {
	in := callFrom(ctx).in
	r, err := b.store.Run(ctx, c.Run)
	if err != nil {
		return err
	}
	if r.State.Done() {
		return refuse("Run %d has already ended (%s).", r.ID, r.State)
	}
	if r.State != store.RunRunning {
		// Ending a run that has not started is a cancel, with its own scope.
		return refuse("Run %d has not started (it is %s): `%s cancel %d` ends it.", r.ID, r.State, b.opts.Prefix, r.ID)
	}
	x := b.running[r.ID]
	if x == nil {
		return refuse("Run %d is not running in this bot process.", r.ID)
	}
	x.abortedBy, x.abortReason = in.User, c.Reason
	x.cancel()
	b.audit(ctx, in.User, "abort", r.Target, r.ID, 0, c.Reason)
	b.reply(ctx, in, fmt.Sprintf("Aborting run %d of %s: stopping the step under way, then running the finally steps.", r.ID, r.Target))
	return nil
}

// Watch implements commands.Service.
func (b *Bot) Watch(ctx context.Context, c *commands.Call) error {
	in := callFrom(ctx).in
	if err := b.store.Watch(ctx, c.Target, in.User); err != nil {
		return err
	}
	b.audit(ctx, in.User, "watch", c.Target, 0, 0, "")
	b.reply(ctx, in, fmt.Sprintf("You will be mentioned in every announcement of %s.", c.Target))
	return nil
}

// Unwatch implements commands.Service.
func (b *Bot) Unwatch(ctx context.Context, c *commands.Call) error {
	in := callFrom(ctx).in
	err := b.store.Unwatch(ctx, c.Target, in.User)
	if errors.Is(err, store.ErrNotFound) {
		return refuse("You do not watch %s.", c.Target)
	}
	if err != nil {
		return err
	}
	b.audit(ctx, in.User, "unwatch", c.Target, 0, 0, "")
	b.reply(ctx, in, fmt.Sprintf("You will no longer be mentioned for %s.", c.Target))
	return nil
}

// maxAhead is how far ahead a run may be asked for or deferred: further
// is a mistake (or a way round max_age), and past year 9999 no store can
// keep the time.
const maxAhead = 366 * 24 * time.Hour

// checkStart refuses a start too far ahead and, when notice says so, a
// start sooner than the target's notice without the scope that skips it.
func (b *Bot) checkStart(ctx context.Context, in Incoming, t *Target, now, start time.Time, notice bool) error {
	if start.After(now.Add(maxAhead)) {
		return refuse("%s is more than a year ahead: ask for a time within the year.", b.fmtTime(start))
	}
	if notice && start.Before(now.Add(t.Notice)) {
		return b.need(ctx, in, t.Name, callFrom(ctx).Text, commands.ScopeRoot+".now."+t.Name,
			fmt.Sprintf("it starts sooner than %s's notice of %s", t.Name, fmtDur(t.Notice)))
	}
	return nil
}

// need refuses, and audits the refusal, unless in's user has scope.
func (b *Bot) need(ctx context.Context, in Incoming, target, text, scope, why string) error {
	if b.opts.Access.Allowed(in.User, scope) {
		return nil
	}
	b.audit(ctx, in.User, "denied", target, 0, 0, commands.Cut(text, auditTextMax))
	return refuse("You (%s) are not allowed to do that: %s, which needs the scope `%s`. Ask an admin to grant it in the config (access.users or access.groups).", in.User.Display(), why, scope)
}

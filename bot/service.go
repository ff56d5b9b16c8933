package bot

import (
	"context"
	"errors"
	"fmt"
	"sort"
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
	start := now.Add(t.Notice)
	switch c.When.Kind {
	case commands.WhenNow:
		start = now
	case commands.WhenIn:
		start = now.Add(c.When.Duration)
	case commands.WhenAt:
		start = c.When.Time
	}
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

// Approve implements commands.Service.
func (b *Bot) Approve(ctx context.Context, c *commands.Call) error {
	in := callFrom(ctx).in
	r, err := b.store.Run(ctx, c.Run)
	if err != nil {
		return err
	}
	if r.State.Done() || r.State == store.RunRunning {
		return refuse("Run %d is %s: there is nothing left to approve.", r.ID, r.State)
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
		return refuse("Run %d is %s and can no longer be deferred.", r.ID, r.State)
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

// Hold implements commands.Service. Holding a target you already hold
// extends your hold.
func (b *Bot) Hold(ctx context.Context, c *commands.Call) error {
	in := callFrom(ctx).in
	now := b.clock.Now()
	for _, name := range b.targetNames(c.Target) {
		if r := b.overdue(ctx, name, now); r != nil {
			return refuse("%s's data is past its max_age (%s): run %d goes ahead despite holds, and no new hold is accepted until it has run. An admin can give it more time: `%s extend %d 1d <reason>`.",
				name, fmtDur(b.targets[name].MaxAge), r.ID, b.opts.Prefix, r.ID)
		}
	}
	length := b.opts.Holds.Default
	if c.Duration > 0 {
		length = c.Duration
	}
	expires := now.Add(length)
	if !c.Until.IsZero() {
		expires = c.Until
	}
	if !expires.After(now) {
		return refuse("That time has passed: a hold must end in the future.")
	}
	if expires.Sub(now) > b.opts.Holds.Max {
		return refuse("A hold may last at most %s. Ask for less; you can extend it when you are warned before it expires.", fmtDur(b.opts.Holds.Max))
	}
	holds, err := b.store.Holds(ctx, true)
	if err != nil {
		return err
	}
	for _, h := range holds {
		if h.Target == c.Target && h.Holder.ID == in.User.ID {
			// Holding again extends; only "until" may shorten a hold.
			note := ""
			if expires.Before(h.ExpiresAt) && c.Until.IsZero() {
				expires = h.ExpiresAt
				note = fmt.Sprintf(" It already lasted that long; to end it sooner say `%s hold %s until <time>` or `%s release %s`.", b.opts.Prefix, c.Target, b.opts.Prefix, c.Target)
			}
			if !expires.Equal(h.ExpiresAt) {
				h.WarnedAt = time.Time{}
			}
			h.ExpiresAt, h.Reason = expires, c.Reason
			if err := b.store.UpdateHold(ctx, h); err != nil {
				return err
			}
			b.audit(ctx, in.User, "hold extended", h.Target, 0, h.ID, c.Reason)
			b.reply(ctx, in, fmt.Sprintf("Your hold on %s now lasts until %s (%s).%s", holdName(h.Target), b.fmtTime(expires), c.Reason, note))
			return nil
		}
	}
	h := &store.Hold{Target: c.Target, Holder: in.User, Reason: c.Reason, CreatedAt: now, ExpiresAt: expires}
	if err := b.store.CreateHold(ctx, h); err != nil {
		return err
	}
	b.audit(ctx, in.User, "hold", h.Target, 0, h.ID, c.Reason)
	text := fmt.Sprintf("%s holds %s until %s: %s", in.User.Display(), holdName(h.Target), b.fmtTime(expires), c.Reason)
	if blocked := b.blockedRuns(ctx, h); blocked != "" {
		text += "\n" + blocked
	}
	b.reply(ctx, in, text)
	// Refresh the cards of runs that now wait for this hold.
	b.refreshCards(ctx, h.Target)
	return nil
}

func holdName(target string) string {
	if target == store.AllTargets {
		return "all targets"
	}
	return target
}

func (b *Bot) blockedRuns(ctx context.Context, h *store.Hold) string {
	runs, err := b.store.Runs(ctx, store.RunFilter{Active: true})
	if err != nil {
		return ""
	}
	var ids []string
	for _, r := range runs {
		if h.Covers(r.Target) && r.State != store.RunRunning {
			ids = append(ids, fmt.Sprintf("%d (%s)", r.ID, r.Target))
		}
	}
	if len(ids) == 0 {
		return ""
	}
	return "Runs that will wait for it: " + strings.Join(ids, ", ") + "."
}

func (b *Bot) refreshCards(ctx context.Context, target string) {
	runs, err := b.store.Runs(ctx, store.RunFilter{Active: true})
	if err != nil {
		return
	}
	for _, r := range runs {
		// Waiting runs are redrawn by the next tick, which knows why they wait.
		if (target == store.AllTargets || r.Target == target) && r.State == store.RunScheduled {
			b.edit(ctx, r.Card, b.announcement(ctx, r, ""))
		}
	}
}

// Release implements commands.Service.
func (b *Bot) Release(ctx context.Context, c *commands.Call) error {
	in := callFrom(ctx).in
	holds, err := b.store.Holds(ctx, true)
	if err != nil {
		return err
	}
	var mine, others []*store.Hold
	for _, h := range holds {
		if h.Target != c.Target {
			continue
		}
		if h.Holder.ID == in.User.ID {
			mine = append(mine, h)
		} else {
			others = append(others, h)
		}
	}
	switch {
	case len(mine) > 0:
		return b.endHolds(ctx, mine, in.User, "released")
	case len(others) == 0:
		return refuse("Nobody holds %s.", holdName(c.Target))
	case !b.opts.Access.Allowed(in.User, commands.ScopeAdmin):
		return refuse("%s is held by %s, not you. Ask them to release it; releasing someone else's hold needs the %s scope.", holdName(c.Target), holders(others), commands.ScopeAdmin)
	case c.Reason == "":
		return refuse("Releasing %s's hold needs a reason, which they will be told: `%s release %s <reason>`.", holders(others), b.opts.Prefix, c.Target)
	}
	return b.endHolds(ctx, others, in.User, "released by "+in.User.Display()+": "+c.Reason)
}

func holders(hs []*store.Hold) string {
	var names []string
	for _, h := range hs {
		names = append(names, h.Holder.Display())
	}
	return strings.Join(names, ", ")
}

// endHolds ends holds and tells the channel (mentioning holders whose hold
// someone else ended).
func (b *Bot) endHolds(ctx context.Context, hs []*store.Hold, by store.User, reason string) error {
	in := callFrom(ctx).in
	for _, h := range hs {
		h.EndedAt, h.EndedBy, h.EndReason = b.clock.Now(), by, reason
		if err := b.store.UpdateHold(ctx, h); err != nil {
			return err
		}
		b.audit(ctx, by, "release", h.Target, 0, h.ID, reason)
		m := Message{Channel: in.Channel, Text: fmt.Sprintf("Hold on %s by %s ended: %s.", holdName(h.Target), h.Holder.Display(), reason)}
		if h.Holder.ID != by.ID {
			m.Mentions = []store.User{h.Holder}
		}
		b.send(ctx, m)
		b.refreshCards(ctx, h.Target)
	}
	return nil
}

// Holds implements commands.Service.
func (b *Bot) Holds(ctx context.Context, c *commands.Call) error {
	holds, err := b.store.Holds(ctx, true)
	if err != nil {
		return err
	}
	if len(holds) == 0 {
		b.reply(ctx, callFrom(ctx).in, "No holds.")
		return nil
	}
	var lines []string
	for _, h := range holds {
		lines = append(lines, b.holdLine(h))
	}
	b.reply(ctx, callFrom(ctx).in, "Holds:\n"+strings.Join(lines, "\n"))
	return nil
}

func (b *Bot) holdLine(h *store.Hold) string {
	return fmt.Sprintf("• %s held by %s %s: %s", holdName(h.Target), h.Holder.Display(), b.holdUntil(h), h.Reason)
}

// holdUntil says how long a hold lasts.
func (b *Bot) holdUntil(h *store.Hold) string {
	if h.Run != 0 {
		return "while it runs"
	}
	return "until " + b.fmtTime(h.ExpiresAt)
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

// History implements commands.Service.
func (b *Bot) History(ctx context.Context, c *commands.Call) error {
	runs, err := b.store.Runs(ctx, store.RunFilter{Target: c.Target, Limit: c.Count})
	if err != nil {
		return err
	}
	if len(runs) == 0 {
		b.reply(ctx, callFrom(ctx).in, "No runs yet.")
		return nil
	}
	var lines []string
	for _, r := range runs {
		lines = append(lines, b.historyLine(r))
	}
	b.reply(ctx, callFrom(ctx).in, "Runs, newest first:\n"+strings.Join(lines, "\n"))
	return nil
}

func (b *Bot) historyLine(r *store.Run) string {
	line := fmt.Sprintf("• #%d %s/%s %s %s", r.ID, r.Target, r.Pipeline, stateMark(r.State), r.State)
	switch {
	case !r.StartedAt.IsZero() && !r.EndedAt.IsZero():
		line += fmt.Sprintf(", started %s, took %s", b.fmtTime(r.StartedAt), fmtDur(r.EndedAt.Sub(r.StartedAt)))
	case !r.StartedAt.IsZero():
		line += ", started " + b.fmtTime(r.StartedAt)
	case !r.State.Done():
		line += ", starts " + b.fmtTime(r.StartAt)
	}
	line += ", asked by " + r.Requester.Display()
	if r.Reason != "" && r.State != store.RunSucceeded {
		line += " — " + r.Reason
	}
	return line
}

// Log implements commands.Service.
func (b *Bot) Log(ctx context.Context, c *commands.Call) error {
	r, err := b.store.Run(ctx, c.Run)
	if err != nil {
		return err
	}
	text, err := b.store.Log(ctx, r.ID)
	if err != nil {
		return err
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "Run %d of %s/%s: %s\n", r.ID, r.Target, r.Pipeline, r.State)
	sb.WriteString(b.stepLines(r.Steps))
	if len(text) > 0 {
		const max = 3000
		body := string(text)
		if len(body) > max {
			cut := strings.IndexByte(body[len(body)-max:], '\n')
			body = "…(earlier lines left out)\n" + body[len(body)-max+cut+1:]
		}
		sb.WriteString("\nLog:\n```\n" + strings.TrimRight(body, "\n") + "\n```")
	}
	b.reply(ctx, callFrom(ctx).in, strings.TrimRight(sb.String(), "\n"))
	return nil
}

// Status implements commands.Service.
func (b *Bot) Status(ctx context.Context, c *commands.Call) error {
	holds, err := b.store.Holds(ctx, true)
	if err != nil {
		return err
	}
	var parts []string
	for _, name := range b.targetNames(c.Target) {
		t := b.targets[name]
		var sb strings.Builder
		fmt.Fprintf(&sb, "*%s*", t.Name)
		if t.Description != "" {
			sb.WriteString(" — " + t.Description)
		}
		if from, by, ok := b.dataSource(ctx, name); ok {
			age := b.clock.Now().Sub(from.EndedAt)
			switch {
			case by.ID == from.ID:
				fmt.Fprintf(&sb, "\n  data: refreshed by run %d, %s", from.ID, fmtAge(age))
			default:
				fmt.Fprintf(&sb, "\n  data: run %d's refresh, put back by run %d (%s), %s", from.ID, by.ID, by.Pipeline, fmtAge(age))
			}
			if t.MaxAge > 0 {
				if age >= t.MaxAge {
					fmt.Fprintf(&sb, " (past its max_age of %s)", fmtDur(t.MaxAge))
				} else {
					fmt.Fprintf(&sb, " (max_age %s)", fmtDur(t.MaxAge))
				}
			}
		} else {
			sb.WriteString("\n  data: never refreshed by stagebot")
		}
		for _, h := range holds {
			if h.Covers(name) {
				sb.WriteString("\n  " + strings.TrimPrefix(b.holdLine(h), "• "))
			}
		}
		active, err := b.store.Runs(ctx, store.RunFilter{Target: name, Active: true})
		if err != nil {
			return err
		}
		for i := len(active) - 1; i >= 0; i-- {
			sb.WriteString("\n  " + strings.TrimPrefix(b.historyLine(active[i]), "• "))
		}
		if next := UpcomingRuns(t, b.clock.Now(), 1); len(next) > 0 {
			fmt.Fprintf(&sb, "\n  next scheduled: %s (%s)", b.fmtTime(next[0].Start), next[0].Pipeline)
		}
		parts = append(parts, sb.String())
	}
	b.reply(ctx, callFrom(ctx).in, strings.Join(parts, "\n"))
	return nil
}

// Schedule implements commands.Service.
func (b *Bot) Schedule(ctx context.Context, c *commands.Call) error {
	type line struct {
		at   time.Time
		text string
	}
	var lines []line
	now := b.clock.Now()
	for _, name := range b.targetNames(c.Target) {
		t := b.targets[name]
		active, err := b.store.Runs(ctx, store.RunFilter{Target: name, Active: true})
		if err != nil {
			return err
		}
		// A cron slot whose run exists already is listed once, as the run.
		made := map[string]bool{}
		for _, r := range active {
			if !r.Slot.IsZero() {
				made[r.Pipeline+"@"+r.Slot.UTC().Format(time.RFC3339)] = true
			}
			lines = append(lines, line{r.StartAt, fmt.Sprintf("• %s/%s at %s: run %d, %s", r.Target, r.Pipeline, b.fmtTime(r.StartAt), r.ID, r.State)})
		}
		shown := 0
		for _, e := range UpcomingRuns(t, now, 3+len(active)) {
			if made[e.Pipeline+"@"+e.Start.UTC().Format(time.RFC3339)] || shown == 3 {
				continue
			}
			shown++
			var ann []string
			for _, a := range e.Announcements {
				if a.After(now) {
					ann = append(ann, b.fmtTime(a))
				}
			}
			text := fmt.Sprintf("• %s/%s at %s (scheduled)", t.Name, e.Pipeline, b.fmtTime(e.Start))
			if len(ann) > 0 {
				text += ", announced " + strings.Join(ann, ", ")
			}
			lines = append(lines, line{e.Start, text})
		}
	}
	if len(lines) == 0 {
		b.reply(ctx, callFrom(ctx).in, "Nothing is scheduled.")
		return nil
	}
	sort.SliceStable(lines, func(i, j int) bool { return lines[i].at.Before(lines[j].at) })
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = l.text
	}
	b.reply(ctx, callFrom(ctx).in, "Upcoming runs:\n"+strings.Join(out, "\n"))
	return nil
}

func (b *Bot) targetNames(only string) []string {
	if only != "" {
		return []string{only}
	}
	var out []string
	for n := range b.targets {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Upcoming is one scheduled start, its pipeline and the times it will be
// announced.
type Upcoming struct {
	Start         time.Time
	Pipeline      string
	Announcements []time.Time
}

// UpcomingRuns lists a target's next n scheduled starts after now, across
// all its schedules, soonest first.
func UpcomingRuns(t *Target, now time.Time, n int) []Upcoming {
	var out []Upcoming
	for _, sc := range t.Schedules {
		at := now
		for i := 0; i < n; i++ {
			next := sc.Cron.Next(at)
			if next.IsZero() {
				break
			}
			u := Upcoming{Start: next, Pipeline: sc.Pipeline}
			for _, d := range t.Ladder {
				u.Announcements = append(u.Announcements, next.Add(-d))
			}
			if len(u.Announcements) == 0 {
				u.Announcements = []time.Time{next}
			}
			out = append(out, u)
			at = next
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out[:min(n, len(out))]
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
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

package bot

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/stagebot/stagebot/commands"
	"github.com/stagebot/stagebot/store"
)

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
	m := Message{Channel: in.Channel, Text: text, Buttons: []Button{{Label: "Notify me when free", Command: fmt.Sprintf("%s notify %s", b.opts.Prefix, h.Target)}}}
	if in.Thread != "" {
		m.Thread = store.MessageRef{Channel: in.Channel, ID: in.Thread}
	}
	b.send(ctx, m)
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
	b.tellFree(ctx)
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

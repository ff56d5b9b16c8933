package bot

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/stagebot/stagebot/store"
)

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
	expired := false
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
				Channel:  b.channelOf(b.targets[h.Target]),
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
			b.send(ctx, Message{Channel: b.channelOf(b.targets[h.Target]), Text: fmt.Sprintf("The hold on %s by %s (%s) has expired.", holdName(h.Target), h.Holder.Display(), h.Reason)})
			expired = true
		}
	}
	if expired {
		b.tellFree(ctx)
	}
	return nil
}

// quote makes text one word for the command parser.
func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

package bot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/stagebot/stagebot/commands"
	"github.com/stagebot/stagebot/store"
)

// notifyWait is one person waiting to hear that a target is free: told
// once, in the channel they asked in, when no hold covers it any more.
type notifyWait struct {
	User    store.User `json:"user"`
	Channel string     `json:"channel"`
}

func notifyKey(target string) string { return "notify:" + target }

func (b *Bot) notifyWaits(ctx context.Context, target string) ([]notifyWait, error) {
	data, err := b.store.Value(ctx, notifyKey(target))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ws []notifyWait
	if err := json.Unmarshal(data, &ws); err != nil {
		return nil, fmt.Errorf("who waits for %s to be free: %w", target, err)
	}
	return ws, nil
}

func (b *Bot) setNotifyWaits(ctx context.Context, target string, ws []notifyWait) error {
	data, err := json.Marshal(ws)
	if err != nil {
		return err
	}
	return b.store.SetValue(ctx, notifyKey(target), data)
}

// coveringHolds are the active holds that keep target from a refresh.
func (b *Bot) coveringHolds(ctx context.Context, target string) ([]*store.Hold, error) {
	holds, err := b.store.Holds(ctx, true)
	if err != nil {
		return nil, err
	}
	var out []*store.Hold
	for _, h := range holds {
		if h.Covers(target) {
			out = append(out, h)
		}
	}
	return out, nil
}

// Notify implements commands.Service: the person is told, once, when the
// last hold on the target ends or expires.
func (b *Bot) Notify(ctx context.Context, c *commands.Call) error {
	in := callFrom(ctx).in
	holds, err := b.coveringHolds(ctx, c.Target)
	if err != nil {
		return err
	}
	if len(holds) == 0 {
		return refuse("%s is not held now: it is free. `%s hold %s <duration> <reason>` holds it for you.", c.Target, b.opts.Prefix, c.Target)
	}
	ws, err := b.notifyWaits(ctx, c.Target)
	if err != nil {
		return err
	}
	var by []string
	for _, h := range holds {
		by = append(by, h.Holder.Display()+" "+b.holdUntil(h))
	}
	held := strings.Join(by, ", ")
	if slices.ContainsFunc(ws, func(w notifyWait) bool { return w.User.ID == in.User.ID }) {
		b.reply(ctx, in, fmt.Sprintf("You will already be told when %s is free (held by %s).", c.Target, held))
		return nil
	}
	ws = append(ws, notifyWait{User: in.User, Channel: in.Channel})
	if err := b.setNotifyWaits(ctx, c.Target, ws); err != nil {
		return err
	}
	b.audit(ctx, in.User, "notify", c.Target, 0, 0, "")
	b.reply(ctx, in, fmt.Sprintf("I will tell you here when %s is free: held by %s.", c.Target, held))
	return nil
}

// tellFree tells the people waiting for targets that no hold covers any
// more, and forgets them: a notice is sent once.
func (b *Bot) tellFree(ctx context.Context) {
	for _, name := range b.targetNames("") {
		ws, err := b.notifyWaits(ctx, name)
		if err != nil {
			b.log.Error("read who waits for a target", "target", name, "err", err)
			continue
		}
		if len(ws) == 0 {
			continue
		}
		holds, err := b.coveringHolds(ctx, name)
		if err != nil || len(holds) > 0 {
			continue
		}
		if err := b.setNotifyWaits(ctx, name, nil); err != nil {
			b.log.Error("forget who waited for a target", "target", name, "err", err)
			continue
		}
		byChannel := map[string][]store.User{}
		var channels []string
		for _, w := range ws {
			if byChannel[w.Channel] == nil {
				channels = append(channels, w.Channel)
			}
			byChannel[w.Channel] = append(byChannel[w.Channel], w.User)
		}
		for _, ch := range channels {
			b.send(ctx, Message{Channel: ch, Mentions: byChannel[ch],
				Text: fmt.Sprintf("%s is free: no hold is on it now. `%s hold %s <duration> <reason>` holds it for you.", name, b.opts.Prefix, name)})
		}
	}
}

// Watches implements commands.Service: what the person waits for or
// follows.
func (b *Bot) Watches(ctx context.Context, c *commands.Call) error {
	in := callFrom(ctx).in
	var lines []string
	for _, name := range b.targetNames("") {
		ws, err := b.notifyWaits(ctx, name)
		if err != nil {
			return err
		}
		if slices.ContainsFunc(ws, func(w notifyWait) bool { return w.User.ID == in.User.ID }) {
			lines = append(lines, fmt.Sprintf("• %s: you will be told once when it is free", name))
		}
		watchers, err := b.store.Watchers(ctx, name)
		if err != nil {
			return err
		}
		if slices.ContainsFunc(watchers, func(u store.User) bool { return u.ID == in.User.ID }) {
			lines = append(lines, fmt.Sprintf("• %s: you are mentioned in its announcements (`%s unwatch %s` stops it)", name, b.opts.Prefix, name))
		}
	}
	if len(lines) == 0 {
		b.reply(ctx, in, fmt.Sprintf("You wait for nothing and watch nothing. `%s notify <target>` tells you when a held target is free; `%s watch <target>` mentions you in its announcements.", b.opts.Prefix, b.opts.Prefix))
		return nil
	}
	b.reply(ctx, in, "Yours:\n"+strings.Join(lines, "\n"))
	return nil
}

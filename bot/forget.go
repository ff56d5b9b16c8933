package bot

import (
	"context"
	"fmt"

	"github.com/stagebot/stagebot/commands"
	"github.com/stagebot/stagebot/store"
)

// Forget implements commands.Service: it drops a copy the target keeps on
// staging's server (the previous one, for rollback; the base, for reset)
// to give its space back, unless a run of the target is running.
func (b *Bot) Forget(ctx context.Context, c *commands.Call) error {
	in := callFrom(ctx).in
	t := b.targets[c.Target]
	if t == nil || t.Forget == nil {
		return refuse("%s has no database, so it keeps no copies to forget.", c.Target)
	}
	running, err := b.store.Runs(ctx, store.RunFilter{Target: c.Target, States: []store.RunState{store.RunRunning}})
	if err != nil {
		return err
	}
	if len(running) > 0 {
		return refuse("Run %d of %s is running: forget a copy once it has ended (`%s abort %d` ends it now).", running[0].ID, c.Target, b.opts.Prefix, running[0].ID)
	}
	did, err := t.Forget(ctx, c.Copy)
	if err != nil {
		return refuse("Nothing was dropped: %v", err)
	}
	b.audit(ctx, in.User, "forget", c.Target, 0, 0, fmt.Sprintf("%s: %s", c.Copy, did))
	b.reply(ctx, in, fmt.Sprintf("%s forgot a copy of %s: %s.", in.User.Display(), c.Target, did))
	return nil
}

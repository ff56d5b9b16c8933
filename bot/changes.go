package bot

import (
	"context"
	"sync"
	"time"

	"github.com/stagebot/stagebot/commands"
	"github.com/stagebot/stagebot/store"
)

// lossCache keeps, per target, what a refresh would wipe on staging (its
// Changes), so that rendering a card never waits for a database.
type lossCache struct {
	mu    sync.Mutex
	notes map[string]lossNote
}

type lossNote struct {
	text  string
	roles []string // database roles connected to staging
	at    time.Time
	busy  bool
}

// lossTimeout bounds one look at staging.
const lossTimeout = 3 * time.Second

// refreshLoss looks at what a refresh of t would wipe now, and keeps it.
func (b *Bot) refreshLoss(ctx context.Context, t *Target) string {
	if t == nil || t.Changes == nil {
		return ""
	}
	ctx, cancel := context.WithTimeout(ctx, lossTimeout)
	defer cancel()
	text, roles, err := t.Changes(ctx)
	if err != nil {
		text = "Changed on staging since the last refresh: unknown (staging could not be read: " + err.Error() + ")."
	}
	b.loss.mu.Lock()
	defer b.loss.mu.Unlock()
	if b.loss.notes == nil {
		b.loss.notes = map[string]lossNote{}
	}
	b.loss.notes[t.Name] = lossNote{text: text, roles: roles, at: time.Now()}
	return text
}

// connected are the chat users (Access.DatabaseRoles) whose database roles
// were connected to t's staging at the last look.
func (b *Bot) connected(t *Target) []store.User {
	if t == nil {
		return nil
	}
	b.loss.mu.Lock()
	roles := b.loss.notes[t.Name].roles
	b.loss.mu.Unlock()
	var out []store.User
	for _, r := range roles {
		if u, ok := b.opts.Access.DatabaseRoles[r]; ok {
			out = append(out, u)
		}
	}
	return out
}

// lossText is what a refresh of t would wipe, as last seen; a look older
// than a minute is renewed in the background for the next message.
func (b *Bot) lossText(t *Target) string {
	if t == nil || t.Changes == nil {
		return ""
	}
	b.loss.mu.Lock()
	defer b.loss.mu.Unlock()
	n := b.loss.notes[t.Name]
	if !n.busy && time.Since(n.at) > time.Minute {
		n.busy = true
		if b.loss.notes == nil {
			b.loss.notes = map[string]lossNote{}
		}
		b.loss.notes[t.Name] = n
		go b.refreshLoss(context.Background(), t)
	}
	return n.text
}

// Changes implements commands.Service: what a refresh would wipe now.
func (b *Bot) Changes(ctx context.Context, c *commands.Call) error {
	t := b.targets[c.Target]
	if t == nil || t.Changes == nil {
		return refuse("%s has no database, so there is nothing I can look at.", c.Target)
	}
	b.reply(ctx, callFrom(ctx).in, b.refreshLoss(ctx, t))
	return nil
}

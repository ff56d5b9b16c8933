package bot

import (
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/stagebot/stagebot/commands"
	"github.com/stagebot/stagebot/store"
)

// Access says who may do what, and where.
type Access struct {
	// ControlChannels are the channels where state may change; read-only
	// commands work anywhere. Empty means every channel.
	ControlChannels []string
	// Everyone lists scopes granted to every user.
	Everyone []string
	// Users maps a user's stable ID to the scopes granted to them.
	Users map[string][]string
	// Groups are named sets of users with scopes.
	Groups map[string]Group
	// ScopedReads makes reading (status, changes, history, log, dry runs:
	// the stage.read scope) need a grant everywhere. Without it, anyone in
	// a control channel or a target's channel may read; elsewhere (direct
	// messages, other channels) the scope is needed.
	ScopedReads bool
	// DatabaseRoles maps a database role to the chat user who logs in
	// with it: people connected to staging are mentioned when a refresh
	// would cut them off.
	DatabaseRoles map[string]store.User
}

// Group is a named set of user IDs and the scopes they share.
type Group struct {
	Members []string
	Scopes  []string
}

// Granted lists every scope u holds.
func (a *Access) Granted(u store.User) []string {
	if u.ID == store.Scheduler.ID {
		return []string{"stage"}
	}
	out := append([]string(nil), a.Everyone...)
	out = append(out, a.Users[u.ID]...)
	for _, g := range a.Groups {
		if slices.Contains(g.Members, u.ID) {
			out = append(out, g.Scopes...)
		}
	}
	return out
}

// Allowed reports whether u holds scope, directly or through a scope above it
// ("stage.resync" grants "stage.resync.fas2").
func (a *Access) Allowed(u store.User, scope string) bool {
	for _, g := range a.Granted(u) {
		if ScopeCovers(g, scope) {
			return true
		}
	}
	return false
}

// ScopeCovers reports whether the granted scope g covers scope.
func ScopeCovers(g, scope string) bool {
	return g == scope || strings.HasPrefix(scope, g+".")
}

// InGroup reports whether u is a member of group.
func (a *Access) InGroup(u store.User, group string) bool {
	return slices.Contains(a.Groups[group].Members, u.ID)
}

// IsControl reports whether state may change in channel.
func (a *Access) IsControl(channel string) bool {
	return len(a.ControlChannels) == 0 || slices.Contains(a.ControlChannels, channel)
}

// openRead reports whether scope is a read anyone may do in channel: a
// control channel or a target's channel, unless reads are scoped.
func (b *Bot) openRead(channel, scope string) bool {
	if b.opts.Access.ScopedReads || !ScopeCovers(commands.ScopeRead, scope) {
		return false
	}
	if b.opts.Access.IsControl(channel) {
		return true
	}
	for _, t := range b.targets {
		if b.channelOf(t) == channel {
			return true
		}
	}
	return false
}

// dryRunsPerMinute bounds the dry runs one person may ask for: each opens
// connections to production.
const dryRunsPerMinute = 5

// rateLimit counts what each person asked for in the last minute.
type rateLimit struct {
	mu   sync.Mutex
	last map[string][]time.Time
}

// take notes a request of user's at now, or says how long to wait when
// the user already made dryRunsPerMinute in the minute before.
func (l *rateLimit) take(user string, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last == nil {
		l.last = map[string][]time.Time{}
	}
	recent := slices.DeleteFunc(l.last[user], func(t time.Time) bool { return now.Sub(t) >= time.Minute })
	if len(recent) >= dryRunsPerMinute {
		l.last[user] = recent
		return recent[0].Add(time.Minute).Sub(now)
	}
	l.last[user] = append(recent, now)
	if len(l.last) > 10000 { // forget the quiet ones
		for u, ts := range l.last {
			if len(ts) == 0 || now.Sub(ts[len(ts)-1]) >= time.Minute {
				delete(l.last, u)
			}
		}
	}
	return 0
}

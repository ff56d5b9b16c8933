package bot

import (
	"slices"
	"strings"

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

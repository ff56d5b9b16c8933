package bot

import (
	"slices"

	"github.com/stagebot/stagebot/store"
)

// TargetInfo is what a read-only view shows of a target.
type TargetInfo struct {
	Name, Description string
	Pipelines         []string
}

// Targets lists the configured targets, by name.
func (b *Bot) Targets() []TargetInfo {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []TargetInfo
	for _, name := range b.targetNames("") {
		t := b.targets[name]
		var ps []string
		for p := range t.Pipelines {
			ps = append(ps, p)
		}
		slices.Sort(ps)
		out = append(out, TargetInfo{Name: name, Description: t.Description, Pipelines: ps})
	}
	return out
}

// LiveRun is a run under way as it is this moment, with its steps'
// progress, which the store gets only as each step ends.
func (b *Bot) LiveRun(id uint64) (store.Run, bool) {
	b.mu.Lock()
	var up *updater
	if x := b.running[id]; x != nil {
		up = x.up
	}
	b.mu.Unlock()
	if up == nil {
		return store.Run{}, false
	}
	up.mu.Lock()
	defer up.mu.Unlock()
	r := up.run
	r.Steps = slices.Clone(r.Steps)
	return r, true
}

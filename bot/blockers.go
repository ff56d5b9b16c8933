package bot

import (
	"context"
	"fmt"
	"strings"

	"github.com/stagebot/stagebot/store"
)

// blockers says what keeps a run from starting now; empty means nothing.
type blockers struct {
	holds    []*store.Hold
	missing  int // approvals still needed
	runningN uint64
}

func (k blockers) none() bool { return len(k.holds) == 0 && k.missing == 0 && k.runningN == 0 }

func (b *Bot) blockersOf(ctx context.Context, r *store.Run, holds []*store.Hold, active []*store.Run) (blockers, error) {
	var k blockers
	for _, h := range holds {
		if h.Covers(r.Target) {
			k.holds = append(k.holds, h)
		}
	}
	apps, err := b.store.Approvals(ctx, r.ID)
	if err != nil {
		return k, err
	}
	k.missing = max(b.rule(r).Count-b.countApprovals(r, apps), 0)
	for _, o := range active {
		if o.ID != r.ID && o.Target == r.Target && o.State == store.RunRunning {
			k.runningN = o.ID
		}
	}
	return k, nil
}

// currentBlockers is what keeps r waiting now. The runs under way are the
// ones this process executes: no need to read every active run.
// b.mu is held.
func (b *Bot) currentBlockers(ctx context.Context, r *store.Run) (blockers, error) {
	holds, err := b.store.Holds(ctx, true)
	if err != nil {
		return blockers{}, err
	}
	var running []*store.Run
	for id, x := range b.running {
		running = append(running, &store.Run{ID: id, Target: x.target, State: store.RunRunning})
	}
	return b.blockersOf(ctx, r, holds, running)
}

func (b *Bot) describe(k blockers) string {
	var parts []string
	for _, h := range k.holds {
		parts = append(parts, fmt.Sprintf("held by %s %s (%s)", h.Holder.Display(), b.holdUntil(h), h.Reason))
	}
	if k.missing > 0 {
		parts = append(parts, "needs "+strings.Replace(countOf(k.missing, "approval"), " ", " more ", 1))
	}
	if k.runningN > 0 {
		parts = append(parts, fmt.Sprintf("run %d of the same target is running", k.runningN))
	}
	return strings.Join(parts, "; ")
}

func holdersOf(hs []*store.Hold) []store.User {
	var out []store.User
	for _, h := range hs {
		out = append(out, h.Holder)
	}
	return out
}

// rule is the approval rule that applies to r.
func (b *Bot) rule(r *store.Run) ApprovalRule {
	t := b.targets[r.Target]
	if t == nil {
		return ApprovalRule{}
	}
	if r.Origin == store.OriginScheduled {
		return t.Scheduled
	}
	return t.Manual
}

// countApprovals counts the approvals that meet r's rule (a member of the
// group, not the requester unless allowed). Access may have changed since an
// approval was given, so this is checked again at start time.
func (b *Bot) countApprovals(r *store.Run, apps []store.Approval) int {
	rule := b.rule(r)
	n := 0
	for _, a := range apps {
		if a.User.ID == r.Requester.ID && !rule.AllowSelf {
			continue
		}
		if rule.Group != "" && !b.opts.Access.InGroup(a.User, rule.Group) {
			continue
		}
		n++
	}
	return n
}

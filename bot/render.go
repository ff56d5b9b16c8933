package bot

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/stagebot/stagebot/commands"
	"github.com/stagebot/stagebot/runner"
	"github.com/stagebot/stagebot/store"
)

func joinLines(lines []string) string { return strings.Join(lines, "; ") }

func stateMark(s store.RunState) string {
	switch s {
	case store.RunScheduled:
		return "🗓"
	case store.RunWaiting:
		return "⏸"
	case store.RunRunning:
		return "▶"
	case store.RunSucceeded:
		return "✅"
	case store.RunFailed:
		return "❌"
	case store.RunCancelled:
		return "🚫"
	case store.RunAborted:
		return "⏹"
	case store.RunInterrupted:
		return "⚠"
	}
	return "?"
}

func stepMark(s store.StepState) string {
	switch s {
	case store.StepRunning:
		return "▶"
	case store.StepSucceeded:
		return "✓"
	case store.StepFailed:
		return "✗"
	case store.StepSkipped:
		return "–"
	case store.StepAborted:
		return "⏹"
	}
	return "·"
}

// stepLines renders one line per step: mark, name, time, error or detail.
func (b *Bot) stepLines(steps []store.StepResult) string {
	var sb strings.Builder
	for _, s := range steps {
		name := s.Name
		if s.Finally {
			name += " (finally)"
		}
		fmt.Fprintf(&sb, "%s %s", stepMark(s.State), name)
		if s.Duration > 0 {
			fmt.Fprintf(&sb, " — %s", fmtDur(s.Duration))
		} else if s.State == store.StepRunning {
			fmt.Fprintf(&sb, " — running for %s", fmtDur(b.clock.Now().Sub(s.StartedAt)))
		}
		if s.Error != "" {
			fmt.Fprintf(&sb, " — %s", s.Error)
		} else if s.Detail != "" {
			fmt.Fprintf(&sb, " (%s)", s.Detail)
		}
		sb.WriteString("\n")
	}
	return sb.String()
}

// statusMessage is the message edited while a run executes.
func (b *Bot) statusMessage(r *store.Run) Message {
	head := fmt.Sprintf("%s Run %d of %s/%s: %s", stateMark(r.State), r.ID, r.Target, r.Pipeline, r.State)
	if r.State == store.RunRunning {
		done := 0
		for _, s := range r.Steps {
			if s.State != store.StepPending && s.State != store.StepRunning {
				done++
			}
		}
		head += fmt.Sprintf(" (%d/%d steps)", done, len(r.Steps))
	} else if !r.EndedAt.IsZero() {
		head += " after " + fmtDur(r.EndedAt.Sub(r.StartedAt))
	}
	text := head + "\n" + strings.TrimRight(b.stepLines(r.Steps), "\n")
	if r.Reason != "" && r.State != store.RunRunning && !saidInSteps(r.Reason, r.Steps) {
		text += "\n" + r.Reason
	}
	m := Message{Channel: r.Channel, Text: text}
	if r.State == store.RunRunning {
		m.Buttons = []Button{{Label: "Abort", Command: fmt.Sprintf("%s abort %d", b.opts.Prefix, r.ID), Danger: true}}
	}
	return m
}

// runTitle names what a run does: a rollback of a target, or a refresh
// by one of its pipelines.
func runTitle(r *store.Run) string {
	if r.Pipeline == commands.RollbackPipeline {
		return "rollback of " + r.Target
	}
	return fmt.Sprintf("refresh of %s (%s pipeline)", r.Target, r.Pipeline)
}

// announcement renders a run's card; lead, when set, is a line put first
// (a reminder or a change).
func (b *Bot) announcement(ctx context.Context, r *store.Run, lead string) Message {
	return b.renderCard(b.cardView(ctx, r, lead))
}

// cardView is everything a run's card shows, gathered in one go, so that
// rendering it reads no store.
type cardView struct {
	r    *store.Run
	t    *Target // nil once the target left the config
	lead string  // a line put first (a reminder, a change)
	now  time.Time
	// blocked is what keeps a due or waiting run from starting, when it
	// could be read.
	blocked   *blockers
	deadline  time.Time // when holds stop keeping it waiting (max_age)
	rule      ApprovalRule
	approvals []store.Approval
	holds     []*store.Hold // active holds covering the target
	watchers  []store.User
}

// cardView gathers what r's card shows.
func (b *Bot) cardView(ctx context.Context, r *store.Run, lead string) cardView {
	v := cardView{r: r, t: b.targets[r.Target], lead: lead, now: b.clock.Now(), rule: b.rule(r)}
	if !r.State.Done() && r.State != store.RunRunning {
		if r.State != store.RunScheduled || !r.StartAt.After(v.now) {
			if k, err := b.currentBlockers(ctx, r); err == nil {
				v.blocked = &k
			}
		}
		if d, ok := b.deadline(ctx, r); ok {
			v.deadline = d
		}
		if v.rule.Count > 0 {
			v.approvals, _ = b.store.Approvals(ctx, r.ID)
		}
		if holds, err := b.store.Holds(ctx, true); err == nil {
			for _, h := range holds {
				if h.Covers(r.Target) {
					v.holds = append(v.holds, h)
				}
			}
		}
		v.watchers, _ = b.store.Watchers(ctx, r.Target)
	}
	return v
}

// renderCard is a run's card: what it is and when, and, while it is to
// come, what it will wipe, its approvals and holds, who is told and the
// buttons.
func (b *Bot) renderCard(v cardView) Message {
	r, t := v.r, v.t
	var sb strings.Builder
	if v.lead != "" {
		sb.WriteString(v.lead + "\n")
	}
	fmt.Fprintf(&sb, "%s Run %d: %s%s", stateMark(r.State), r.ID, runTitle(r), b.cardState(v))
	m := Message{Channel: r.Channel}
	m.Fields = append(m.Fields, Field{"Asked by", r.Requester.Display()})
	if t != nil && t.Description != "" {
		m.Fields = append(m.Fields, Field{"Target", t.Description})
	}
	if t != nil && t.Masking != "" && r.Pipeline != commands.RollbackPipeline {
		m.Fields = append(m.Fields, Field{"Masking", "production's values are masked on their way in, " + t.Masking})
	}
	if r.State.Done() || r.State == store.RunRunning {
		m.Text = sb.String()
		if r.Reason != "" && r.State != store.RunRunning {
			m.Fields = append(m.Fields, Field{"Outcome", r.Reason})
		}
		return m
	}
	if !v.deadline.IsZero() && t != nil {
		latest := maxTime(v.deadline, r.StartAt).Add(lastCallGap(t))
		if !r.LastCall.IsZero() {
			latest = r.LastCall.Add(lastCallGap(t))
		}
		fmt.Fprintf(&sb, "\nRuns by %s at the latest: holds keep it waiting only until %s's data reaches its max_age (%s).", b.fmtTime(latest), r.Target, fmtDur(t.MaxAge))
	}
	fmt.Fprintf(&sb, "\nWhat will be lost: the staging data of %s is replaced; save anything you need, or hold it.", r.Target)
	if note := b.lossText(t); note != "" {
		sb.WriteString("\n" + note)
	}
	m.Text = sb.String()
	if v.rule.Count > 0 {
		m.Fields = append(m.Fields, Field{"Approvals", b.approvalsText(v)})
	}
	var in []string
	for _, h := range v.holds {
		in = append(in, fmt.Sprintf("%s %s (%s)", h.Holder.Display(), b.holdUntil(h), h.Reason))
	}
	if len(in) > 0 {
		m.Fields = append(m.Fields, Field{"Held by", strings.Join(in, "; ")})
	}
	m.Mentions = append(m.Mentions, v.watchers...)
	// People connected to staging now lose their session and their work.
	for _, u := range b.connected(t) {
		if !slices.ContainsFunc(m.Mentions, func(w store.User) bool { return w.ID == u.ID }) {
			m.Mentions = append(m.Mentions, u)
		}
	}
	m.Buttons = b.cardButtons(v)
	return m
}

// cardState is what the card's first line says of the run's state.
func (b *Bot) cardState(v cardView) string {
	r := v.r
	switch {
	case r.State == store.RunScheduled && !r.StartAt.After(v.now):
		// Due: it starts now unless something keeps it waiting (a hold,
		// even the requester's own, or an approval).
		if v.blocked != nil && !v.blocked.none() {
			return fmt.Sprintf(" is due but waits: %s.", b.describe(*v.blocked))
		}
		return " starts now."
	case r.State == store.RunScheduled:
		return fmt.Sprintf(" starts at %s (in %s).", b.fmtTime(r.StartAt), fmtDur(r.StartAt.Sub(v.now)))
	case r.State == store.RunRunning:
		return " is running."
	case r.State.Done():
		return fmt.Sprintf(": %s.", r.State)
	}
	// What it waits for now, not when it was last looked at: an approval
	// or a release since then shows at once.
	reason := r.Reason
	switch {
	case v.blocked != nil && v.blocked.none():
		reason = "nothing any more; it starts in a moment"
	case v.blocked != nil:
		reason = b.describe(*v.blocked)
	}
	return fmt.Sprintf(" is waiting: %s.", reason)
}

// approvalsText is "1 of 2 from dba (bob)".
func (b *Bot) approvalsText(v cardView) string {
	var who []string
	for _, a := range v.approvals {
		who = append(who, a.User.Display())
	}
	s := fmt.Sprintf("%d of %d", b.countApprovals(v.r, v.approvals), v.rule.Count)
	if v.rule.Group != "" {
		s += " from " + v.rule.Group
	}
	if len(who) > 0 {
		s += " (" + strings.Join(who, ", ") + ")"
	}
	return s
}

// cardButtons are what can be done to a run still to come.
func (b *Bot) cardButtons(v cardView) []Button {
	p, r := b.opts.Prefix, v.r
	var bs []Button
	if v.rule.Count > 0 {
		bs = append(bs, Button{Label: "Approve", Command: fmt.Sprintf("%s approve %d", p, r.ID)})
	}
	return append(bs,
		Button{Label: "Defer 1h", Command: fmt.Sprintf("%s defer %d 1h", p, r.ID)},
		Button{Label: "Hold " + fmtDur(b.buttonHold()), Command: fmt.Sprintf("%s hold %s %s %s", p, r.Target, fmtDur(b.buttonHold()), quote(fmt.Sprintf("keep run %d waiting", r.ID)))},
		Button{Label: "Cancel", Command: fmt.Sprintf("%s cancel %d", p, r.ID), Danger: true},
	)
}

// renotice tells the channel that r changed (lead: a reminder, a release,
// a defer) without a second card: the card is edited to the run's state
// and the news goes in its thread, mentioning whom the card mentions, with
// no buttons of its own (the card's stay the only live ones). Where there
// is no card to reply to, a whole announcement is posted instead.
func (b *Bot) renotice(ctx context.Context, r *store.Run, lead string) {
	card := b.announcement(ctx, r, "")
	if r.Card.IsZero() {
		b.send(ctx, b.announcement(ctx, r, lead))
		return
	}
	b.edit(ctx, r.Card, card)
	head, _, _ := strings.Cut(card.Text, "\n")
	b.send(ctx, Message{Channel: r.Channel, Thread: r.Card, Text: lead + "\n" + head, Mentions: card.Mentions})
}

// buttonHold is how long an announcement's Hold button holds: two hours,
// or the longest hold the configuration allows when that is shorter.
func (b *Bot) buttonHold() time.Duration { return min(2*time.Hour, b.opts.Holds.Max) }

// renderPlan answers a --dry-run: the steps and the checks, nothing changed.
func (b *Bot) renderPlan(ctx context.Context, t *Target, pipeline string, plan *runner.Plan, origin store.Origin) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "Dry run of %s/%s (nothing was run or changed; each step was planned):\n", t.Name, pipeline)
	for i, s := range plan.Steps {
		mark := "·" // planned: a ✓ would say it ran
		if s.Problem != "" {
			mark = "✗"
		}
		fin := ""
		if s.Finally {
			fin = " (finally)"
		}
		fmt.Fprintf(&sb, "%s %d. %s%s [%s]: %s", mark, i+1, s.Name, fin, s.Kind, s.Description)
		if s.Problem != "" {
			fmt.Fprintf(&sb, " — problem: %s", s.Problem)
		}
		sb.WriteString("\n")
	}
	rule := t.Manual
	if origin == store.OriginScheduled {
		rule = t.Scheduled
	}
	if rule.Count > 0 {
		fmt.Fprintf(&sb, "Needs %s", countOf(rule.Count, "approval"))
		if rule.Group != "" {
			fmt.Fprintf(&sb, " from %s", rule.Group)
		}
		sb.WriteString(".\n")
	}
	if holds, err := b.store.Holds(ctx, true); err == nil {
		for _, h := range holds {
			if h.Covers(t.Name) {
				sb.WriteString("Would wait for: " + strings.TrimPrefix(b.holdLine(h), "• ") + "\n")
			}
		}
	}
	if probs := plan.Problems(); len(probs) > 0 {
		sb.WriteString("The plan has problems, so a real run would be refused.")
	} else {
		sb.WriteString("The plan is ready.")
	}
	return sb.String()
}

// saidInSteps reports whether a run's reason only repeats a step's error,
// which its step line shows already.
func saidInSteps(reason string, steps []store.StepResult) bool {
	for _, s := range steps {
		if s.Error != "" && strings.Contains(reason, s.Error) {
			return true
		}
	}
	return false
}

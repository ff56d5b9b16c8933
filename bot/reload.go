package bot

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Reconfigure applies a new, validated configuration while the bot runs:
// targets, their schedules, pipelines and approval rules, access and hold
// limits change; runs, holds and the chat connection stay. A run under way
// keeps the pipeline it started with; a pending run whose target or
// pipeline is gone is cancelled by the next tick, saying why. It returns
// what changed, one item a line ("" when nothing did). The prefix, time
// zone, edit interval and chat settings need a restart: the caller says so.
func (b *Bot) Reconfigure(o Options) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var changes []string
	old := b.targets
	next := map[string]*Target{}
	for _, t := range o.Targets {
		next[t.Name] = t
	}
	for _, name := range slices.Sorted(maps.Keys(next)) {
		t, was := next[name], old[name]
		switch {
		case was == nil:
			changes = append(changes, "added target "+name)
		case targetShape(was) != targetShape(t):
			changes = append(changes, "changed target "+name+" ("+targetShape(t)+")")
		}
	}
	for _, name := range slices.Sorted(maps.Keys(old)) {
		if next[name] == nil {
			changes = append(changes, "removed target "+name+" (its pending runs are cancelled)")
		}
	}
	if fmt.Sprint(b.opts.Access) != fmt.Sprint(o.Access) {
		changes = append(changes, "changed access")
	}
	if b.opts.Holds != o.Holds {
		changes = append(changes, fmt.Sprintf("hold limits: default %s, max %s, warned %s before", fmtDur(o.Holds.Default), fmtDur(o.Holds.Max), fmtDur(o.Holds.WarnBefore)))
	}
	if o.StopGrace != 0 && o.StopGrace != b.opts.StopGrace {
		changes = append(changes, "stop grace "+fmtDur(o.StopGrace))
	}
	b.targets = next
	b.opts.Access, b.opts.StopGrace = o.Access, cmpOr(o.StopGrace, b.opts.StopGrace)
	if o.Holds != (HoldOptions{}) {
		b.opts.Holds = o.Holds
	}
	b.opts.KeepRuns, b.opts.KeepAge = o.KeepRuns, o.KeepAge
	b.poke()
	return strings.Join(changes, "\n")
}

var bgCtx = context.Background()

func cmpOr(a, b time.Duration) time.Duration {
	if a != 0 {
		return a
	}
	return b
}

// targetShape summarises what a target does, to tell whether a reload
// changed it.
func targetShape(t *Target) string {
	var ps []string
	for name, p := range t.Pipelines {
		var steps []string
		for _, s := range p.Steps {
			steps = append(steps, s.Kind()+":"+s.Name())
		}
		for _, s := range p.Finally {
			steps = append(steps, "finally "+s.Kind()+":"+s.Name())
		}
		ps = append(ps, fmt.Sprintf("%s=[%s]", name, strings.Join(steps, ", ")))
	}
	slices.Sort(ps)
	var sched []string
	for _, s := range t.Schedules {
		sched = append(sched, s.Spec+" "+s.Pipeline)
	}
	return fmt.Sprintf("pipelines %s; schedules %v; notice %s; ladder %v; approvals %+v/%+v; channel %s",
		strings.Join(ps, " "), sched, fmtDur(t.Notice), t.Ladder, t.Manual, t.Scheduled, t.Channel)
}

// Say posts text in the control channels (the first one), or in every
// target's channel when there are none; for what the operator's actions
// mean to the people in chat (a reload).
func (b *Bot) Say(text string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	channels := b.opts.Access.ControlChannels
	if len(channels) == 0 {
		seen := map[string]bool{}
		for _, name := range b.targetNames("") {
			if c := b.channelOf(b.targets[name]); !seen[c] {
				seen[c] = true
				channels = append(channels, c)
			}
		}
	}
	for _, c := range channels[:min(len(channels), 1)] {
		b.send(bgCtx, Message{Channel: c, Text: text})
	}
}

package bot

import (
	"context"
	"fmt"
	"strings"

	"github.com/stagebot/stagebot/store"
)

// Home is what one person's home view shows: every target with its data's
// age, its holds (with Release and Extend on the person's own), the run
// under way with its step, and the runs waiting (with Approve and Defer
// where the person may). Its Channel is where the buttons act: the first
// control channel, since changes are accepted only there.
func (b *Bot) Home(ctx context.Context, u store.User) Message {
	snap, err := b.Snapshot(ctx)
	if err != nil {
		return Message{Text: "stagebot cannot read its state just now: " + err.Error()}
	}
	holds, err := b.store.Holds(ctx, true)
	if err != nil {
		return Message{Text: "stagebot cannot read its holds just now: " + err.Error()}
	}
	m := Message{}
	if len(b.opts.Access.ControlChannels) > 0 {
		m.Channel = b.opts.Access.ControlChannels[0]
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "*stagebot*, as of %s. Buttons act as if you typed the command in the control channel.\n", b.fmtTime(snap.Now))
	for _, t := range b.Targets() {
		fmt.Fprintf(&sb, "\n*%s*", t.Name)
		if t.Description != "" {
			fmt.Fprintf(&sb, " (%s)", t.Description)
		}
		if from, ok := snap.DataFrom[t.Name]; ok {
			fmt.Fprintf(&sb, ": data from production %s ago", fmtDur(snap.Now.Sub(from)))
		} else {
			sb.WriteString(": never refreshed by stagebot")
		}
		for _, h := range holds {
			if !h.Covers(t.Name) {
				continue
			}
			fmt.Fprintf(&sb, "\n• held by %s %s: %s", h.Holder.Display(), b.holdUntil(h), h.Reason)
			if h.Holder.ID == u.ID && h.Run == 0 && h.Target == t.Name {
				ext := fmtDur(min(b.opts.Holds.Default, b.opts.Holds.Max))
				m.Buttons = append(m.Buttons,
					Button{Label: "Release " + t.Name, Command: fmt.Sprintf("%s release %s", b.opts.Prefix, t.Name)},
					Button{Label: "Extend " + t.Name + " " + ext, Command: fmt.Sprintf("%s hold %s %s %s", b.opts.Prefix, t.Name, ext, quote(h.Reason))})
			}
		}
		b.homeRuns(ctx, u, t.Name, &sb, &m)
	}
	m.Text = sb.String()
	if len(m.Buttons) > 25 {
		m.Buttons = m.Buttons[:25]
	}
	return m
}

// homeRuns adds a target's runs under way and waiting to a home view.
func (b *Bot) homeRuns(ctx context.Context, u store.User, target string, sb *strings.Builder, m *Message) {
	active, err := b.store.Runs(ctx, store.RunFilter{Target: target, Active: true})
	if err != nil {
		return
	}
	for i := len(active) - 1; i >= 0; i-- {
		r := active[i]
		if live, ok := b.LiveRun(r.ID); ok {
			r = &live
		}
		if r.State == store.RunRunning {
			fmt.Fprintf(sb, "\n• ▶ run %d (%s) running", r.ID, r.Pipeline)
			for _, s := range r.Steps {
				if s.State == store.StepRunning {
					fmt.Fprintf(sb, ": %s", s.Name)
					if s.Detail != "" {
						fmt.Fprintf(sb, " (%s)", s.Detail)
					}
				}
			}
			continue
		}
		fmt.Fprintf(sb, "\n• run %d (%s) %s, starts %s, asked by %s", r.ID, r.Pipeline, r.State, b.fmtTime(maxTime(r.StartAt, b.clock.Now())), r.Requester.Display())
		if r.Reason != "" {
			fmt.Fprintf(sb, ": %s", r.Reason)
		}
		if r.Requester.ID != u.ID && b.opts.Access.Allowed(u, "stage.approve."+r.Target) {
			m.Buttons = append(m.Buttons, Button{Label: fmt.Sprintf("Approve %d", r.ID), Command: fmt.Sprintf("%s approve %d", b.opts.Prefix, r.ID)})
		}
		if b.opts.Access.Allowed(u, "stage.defer."+r.Target) {
			m.Buttons = append(m.Buttons, Button{Label: fmt.Sprintf("Defer %d 1h", r.ID), Command: fmt.Sprintf("%s defer %d 1h", b.opts.Prefix, r.ID)})
		}
	}
}

package bot

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/stagebot/stagebot/store"
)

// maxCompletions is how many choices a platform shows (Discord: 25).
const maxCompletions = 25

// Complete offers the targets, pipelines or runs ("target", "pipeline",
// "run") that begin with what the person typed so far (runs not yet ended
// first, then the latest); the hold lengths within the limits
// ("hold-length"); or the channel changes are made in ("control-channel").
func (b *Bot) Complete(ctx context.Context, kind, typed string) []Completion {
	typed = strings.ToLower(strings.TrimSpace(typed))
	var out []Completion
	add := func(label, value string) {
		if len(out) < maxCompletions && strings.HasPrefix(strings.ToLower(value), typed) && !slices.ContainsFunc(out, func(c Completion) bool { return c.Value == value }) {
			out = append(out, Completion{Label: label, Value: value})
		}
	}
	switch kind {
	case "target", "pipeline":
		for _, t := range b.Targets() {
			if kind == "target" {
				label := t.Name
				if t.Description != "" {
					label += " — " + t.Description
				}
				add(truncate(label, 100), t.Name)
				continue
			}
			for _, p := range t.Pipelines {
				add(p, p)
			}
		}
	case "hold-length":
		return b.holdChoices()
	case "control-channel":
		if len(b.opts.Access.ControlChannels) > 0 {
			return []Completion{{Label: b.opts.Access.ControlChannels[0], Value: b.opts.Access.ControlChannels[0]}}
		}
		return nil
	case "run":
		active, err := b.store.Runs(ctx, store.RunFilter{Active: true})
		if err != nil {
			return nil
		}
		recent, err := b.store.Runs(ctx, store.RunFilter{Limit: maxCompletions})
		if err != nil {
			return nil
		}
		for _, r := range append(active, recent...) {
			add(truncate(fmt.Sprintf("%d: %s/%s, %s", r.ID, r.Target, r.Pipeline, r.State), 100), strconv.FormatUint(r.ID, 10))
		}
	}
	return out
}

func truncate(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// holdLengths are the lengths a hold picker offers, up to the longest hold
// allowed.
var holdLengths = []time.Duration{30 * time.Minute, time.Hour, 2 * time.Hour, 4 * time.Hour, 8 * time.Hour, 24 * time.Hour, 72 * time.Hour, 7 * 24 * time.Hour}

// holdChoices are the hold lengths within the limits, the default first.
func (b *Bot) holdChoices() []Completion {
	def := min(b.opts.Holds.Default, b.opts.Holds.Max)
	out := []Completion{{Label: fmtDur(def) + " (the default)", Value: fmtDur(def)}}
	for _, d := range holdLengths {
		if d <= b.opts.Holds.Max && d != def {
			out = append(out, Completion{Label: fmtDur(d), Value: fmtDur(d)})
		}
	}
	return out
}

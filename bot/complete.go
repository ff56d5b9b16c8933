package bot

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/stagebot/stagebot/store"
)

// maxCompletions is how many choices a platform shows (Discord: 25).
const maxCompletions = 25

// Complete offers the targets, pipelines or runs ("target", "pipeline",
// "run") that begin with what the person typed so far: runs not yet ended
// first, then the latest.
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

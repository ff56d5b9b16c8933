package bot

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/stagebot/stagebot/commands"
	"github.com/stagebot/stagebot/runner/mask"
)

// maskTimeout bounds one look at production for !stage mask.
const maskTimeout = 30 * time.Second

// Mask implements commands.Service: how production's columns fare under
// the target's masking, read from production now.
func (b *Bot) Mask(ctx context.Context, c *commands.Call) error {
	t := b.targets[c.Target]
	if t == nil || t.MaskReport == nil {
		return refuse("%s has no production database, so there is nothing to mask.", c.Target)
	}
	in := callFrom(ctx).in
	r, err := b.unlocked(func() (mask.Report, error) {
		rctx, cancel := context.WithTimeout(ctx, maskTimeout)
		defer cancel()
		return t.MaskReport(rctx)
	})
	if err != nil {
		return refuse("I could not read production's columns for %s: %v", c.Target, err)
	}
	b.reply(ctx, in, maskText(t, r))
	return nil
}

// unlocked runs f without holding the bot (b.mu is held around every
// command): reading production may take seconds, and other commands go on
// meanwhile. The lock is taken again however f ends, a panic included.
func (b *Bot) unlocked(f func() (mask.Report, error)) (mask.Report, error) {
	b.mu.Unlock()
	defer b.mu.Lock()
	return f()
}

// maskText words a masking report for chat.
func maskText(t *Target, r mask.Report) string {
	var sb strings.Builder
	if t.Masking == "" {
		fmt.Fprintf(&sb, "%s is not masked: a refresh copies production's values as they are (%s in %s).", t.Name, countOf(r.Columns, "column"), countOf(r.Tables, "table"))
	} else {
		fmt.Fprintf(&sb, "Masking of %s (%s): %s in %s; %d masked, %d kept, %s truncated.", t.Name, t.Masking, countOf(r.Columns, "column"), countOf(r.Tables, "table"), r.Masked, r.Kept, countOf(len(r.Truncated), "table"))
	}
	var stops []string
	for _, p := range r.Problems {
		if !strings.HasPrefix(p.What, "no rule covers") {
			stops = append(stops, p.String())
		}
	}
	if t.Masking != "" && len(r.Proposals)+len(stops) > 0 {
		fmt.Fprintf(&sb, "\n⚠ The next refresh stops before copying anything until these are settled:")
		for _, s := range stops {
			sb.WriteString("\n• " + s)
		}
		if len(r.Proposals) > 0 {
			fmt.Fprintf(&sb, "\n• %s without a rule.", countOf(len(r.Proposals), "column"))
		}
	}
	for _, f := range r.Findings {
		fmt.Fprintf(&sb, "\n⚠ Kept, but looks personal: %s.", f)
	}
	if len(r.Proposals) > 0 {
		sb.WriteString("\nRules to start from (check each; `stagebot mask-rules " + t.Name + "` prints them all):\n```")
		for i, p := range r.Proposals {
			if i == 15 {
				fmt.Fprintf(&sb, "\n# and %d more", len(r.Proposals)-15)
				break
			}
			sb.WriteString("\n" + p.YAML())
		}
		sb.WriteString("\n```")
	}
	return sb.String()
}

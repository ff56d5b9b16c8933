package bot

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/stagebot/stagebot/commands"
	"github.com/stagebot/stagebot/store"
)

// History implements commands.Service.
func (b *Bot) History(ctx context.Context, c *commands.Call) error {
	runs, err := b.store.Runs(ctx, store.RunFilter{Target: c.Target, Limit: c.Count})
	if err != nil {
		return err
	}
	if len(runs) == 0 {
		b.reply(ctx, callFrom(ctx).in, "No runs yet.")
		return nil
	}
	var lines []string
	for _, r := range runs {
		lines = append(lines, b.historyLine(r))
	}
	b.reply(ctx, callFrom(ctx).in, "Runs, newest first:\n"+strings.Join(lines, "\n"))
	return nil
}

func (b *Bot) historyLine(r *store.Run) string {
	line := fmt.Sprintf("• #%d %s/%s %s %s", r.ID, r.Target, r.Pipeline, stateMark(r.State), r.State)
	switch {
	case !r.StartedAt.IsZero() && !r.EndedAt.IsZero():
		line += fmt.Sprintf(", started %s, took %s", b.fmtTime(r.StartedAt), fmtDur(r.EndedAt.Sub(r.StartedAt)))
	case !r.StartedAt.IsZero():
		line += ", started " + b.fmtTime(r.StartedAt)
	case !r.State.Done():
		line += ", starts " + b.fmtTime(r.StartAt)
	}
	line += ", asked by " + r.Requester.Display()
	if r.Reason != "" && r.State != store.RunSucceeded {
		line += " — " + r.Reason
	}
	return line
}

// Log implements commands.Service: in the channel, a run's steps and
// their outcome, the last lines of a failed run's output, and where the
// whole log is; with full, the log's last lines too.
func (b *Bot) Log(ctx context.Context, c *commands.Call) error {
	r, err := b.store.Run(ctx, c.Run)
	if err != nil {
		return err
	}
	text, err := b.store.Log(ctx, r.ID)
	if err != nil {
		return err
	}
	var sb strings.Builder
	sb.WriteString(b.logHead(r) + "\n")
	sb.WriteString(b.stepLines(r.Steps))
	body := strings.TrimRight(string(text), "\n")
	switch {
	case body == "":
	case c.Full:
		sb.WriteString("\nLog:\n```\n" + lastLines(body, 3000, 0) + "\n```\n")
	case r.State == store.RunFailed || r.State == store.RunAborted || r.State == store.RunInterrupted:
		sb.WriteString("\nThe log's last lines:\n```\n" + lastLines(body, 1500, 12) + "\n```\n")
	}
	sb.WriteString(b.logWhere(r.ID, body, c.Full))
	b.reply(ctx, callFrom(ctx).in, strings.TrimRight(sb.String(), "\n"))
	return nil
}

// logHead is the first line of log's reply: the run, its outcome, how long
// it took and who asked.
func (b *Bot) logHead(r *store.Run) string {
	head := fmt.Sprintf("%s Run %d of %s/%s: %s", stateMark(r.State), r.ID, r.Target, r.Pipeline, r.State)
	switch {
	case !r.StartedAt.IsZero() && !r.EndedAt.IsZero():
		head += " after " + fmtDur(r.EndedAt.Sub(r.StartedAt))
	case !r.StartedAt.IsZero():
		head += ", started " + b.fmtTime(r.StartedAt)
	case !r.State.Done():
		head += ", starts " + b.fmtTime(r.StartAt)
	}
	return head + ", asked by " + r.Requester.Display()
}

// logWhere says where the rest of a run's log is: its page on the status
// page when the page has an address, else the full form of the command.
func (b *Bot) logWhere(id uint64, body string, full bool) string {
	if body == "" {
		return "No output was logged."
	}
	lines := strings.Count(body, "\n") + 1
	if b.opts.PageURL != "" {
		return fmt.Sprintf("The whole log (%s): %s", countOf(lines, "line"), b.runLink(id))
	}
	if full {
		return ""
	}
	return fmt.Sprintf("Its log has %s: `%s log %d full` shows the last of them here.", countOf(lines, "line"), b.opts.Prefix, id)
}

// runLink is the address of run id's page, with its key when the pages
// need a token.
func (b *Bot) runLink(id uint64) string {
	link := fmt.Sprintf("%s/runs/%d", b.opts.PageURL, id)
	if b.opts.RunLinkKey != nil {
		link += "?key=" + b.opts.RunLinkKey(id)
	}
	return link
}

// lastLines is the end of a log: at most max bytes and, when n > 0, n
// lines, cut at a line's start, saying when earlier lines were left out.
func lastLines(body string, max, n int) string {
	cut := 0
	if len(body) > max {
		cut = len(body) - max
		if i := strings.IndexByte(body[cut:], '\n'); i >= 0 {
			cut += i + 1
		}
		for cut < len(body) && !utf8.RuneStart(body[cut]) {
			cut++ // one long line: never cut a character in two
		}
	}
	if n > 0 {
		at := len(body)
		for i := 0; i < n && at > cut; i++ {
			at = strings.LastIndexByte(body[:at], '\n')
			if at < 0 {
				at = 0
				break
			}
		}
		if at > cut {
			cut = at + 1
		}
	}
	if cut == 0 {
		return body
	}
	return "…(earlier lines left out)\n" + body[cut:]
}

// Status implements commands.Service.
func (b *Bot) Status(ctx context.Context, c *commands.Call) error {
	holds, err := b.store.Holds(ctx, true)
	if err != nil {
		return err
	}
	var parts []string
	for _, name := range b.targetNames(c.Target) {
		t := b.targets[name]
		var sb strings.Builder
		fmt.Fprintf(&sb, "*%s*", t.Name)
		if t.Description != "" {
			sb.WriteString(" — " + t.Description)
		}
		if from, by, ok := b.dataSource(ctx, name); ok {
			age := b.clock.Now().Sub(from.EndedAt)
			switch {
			case by.ID == from.ID:
				fmt.Fprintf(&sb, "\n  data: refreshed by run %d, %s", from.ID, fmtAge(age))
			default:
				fmt.Fprintf(&sb, "\n  data: run %d's refresh, put back by run %d (%s), %s", from.ID, by.ID, by.Pipeline, fmtAge(age))
			}
			if t.MaxAge > 0 {
				if age >= t.MaxAge {
					fmt.Fprintf(&sb, " (past its max_age of %s)", fmtDur(t.MaxAge))
				} else {
					fmt.Fprintf(&sb, " (max_age %s)", fmtDur(t.MaxAge))
				}
			}
		} else {
			sb.WriteString("\n  data: never refreshed by stagebot")
		}
		for _, h := range holds {
			if h.Covers(name) {
				sb.WriteString("\n  " + strings.TrimPrefix(b.holdLine(h), "• "))
			}
		}
		active, err := b.store.Runs(ctx, store.RunFilter{Target: name, Active: true})
		if err != nil {
			return err
		}
		for i := len(active) - 1; i >= 0; i-- {
			sb.WriteString("\n  " + strings.TrimPrefix(b.historyLine(active[i]), "• "))
		}
		if next := UpcomingRuns(t, b.clock.Now(), 1); len(next) > 0 {
			fmt.Fprintf(&sb, "\n  next scheduled: %s (%s)", b.fmtTime(next[0].Start), next[0].Pipeline)
		}
		parts = append(parts, sb.String())
	}
	b.reply(ctx, callFrom(ctx).in, strings.Join(parts, "\n"))
	return nil
}

// Schedule implements commands.Service.
func (b *Bot) Schedule(ctx context.Context, c *commands.Call) error {
	type line struct {
		at   time.Time
		text string
	}
	var lines []line
	now := b.clock.Now()
	for _, name := range b.targetNames(c.Target) {
		t := b.targets[name]
		active, err := b.store.Runs(ctx, store.RunFilter{Target: name, Active: true})
		if err != nil {
			return err
		}
		// A cron slot whose run exists already is listed once, as the run.
		made := map[string]bool{}
		for _, r := range active {
			if !r.Slot.IsZero() {
				made[r.Pipeline+"@"+r.Slot.UTC().Format(time.RFC3339)] = true
			}
			lines = append(lines, line{r.StartAt, fmt.Sprintf("• %s/%s at %s: run %d, %s", r.Target, r.Pipeline, b.fmtTime(r.StartAt), r.ID, r.State)})
		}
		shown := 0
		for _, e := range UpcomingRuns(t, now, 3+len(active)) {
			if made[e.Pipeline+"@"+e.Start.UTC().Format(time.RFC3339)] || shown == 3 {
				continue
			}
			shown++
			var ann []string
			for _, a := range e.Announcements {
				if a.After(now) {
					ann = append(ann, b.fmtTime(a))
				}
			}
			text := fmt.Sprintf("• %s/%s at %s (scheduled)", t.Name, e.Pipeline, b.fmtTime(e.Start))
			if len(ann) > 0 {
				text += ", announced " + strings.Join(ann, ", ")
			}
			lines = append(lines, line{e.Start, text})
		}
	}
	calendar := ""
	if b.opts.PageURL != "" {
		calendar = "\nIn your calendar: subscribe to the Calendar link on " + b.opts.PageURL + "/ (every run, scheduled start and hold, four weeks ahead)."
	}
	if len(lines) == 0 {
		b.reply(ctx, callFrom(ctx).in, "Nothing is scheduled."+calendar)
		return nil
	}
	sort.SliceStable(lines, func(i, j int) bool { return lines[i].at.Before(lines[j].at) })
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = l.text
	}
	b.reply(ctx, callFrom(ctx).in, "Upcoming runs:\n"+strings.Join(out, "\n")+calendar)
	return nil
}

func (b *Bot) targetNames(only string) []string {
	if only != "" {
		return []string{only}
	}
	var out []string
	for n := range b.targets {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Upcoming is one scheduled start, its pipeline and the times it will be
// announced.
type Upcoming struct {
	Start         time.Time
	Pipeline      string
	Announcements []time.Time
}

// UpcomingRuns lists a target's next n scheduled starts after now, across
// all its schedules, soonest first.
func UpcomingRuns(t *Target, now time.Time, n int) []Upcoming {
	var out []Upcoming
	for _, sc := range t.Schedules {
		at := now
		for i := 0; i < n; i++ {
			next := sc.Cron.Next(at)
			if next.IsZero() {
				break
			}
			u := Upcoming{Start: next, Pipeline: sc.Pipeline}
			for _, d := range t.Ladder {
				u.Announcements = append(u.Announcements, next.Add(-d))
			}
			if len(u.Announcements) == 0 {
				u.Announcements = []time.Time{next}
			}
			out = append(out, u)
			at = next
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out[:min(n, len(out))]
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

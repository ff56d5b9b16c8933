package bot

import (
	"fmt"
	"strings"
	"time"

	"github.com/stagebot/stagebot/store"
)

// fmtTime shows t in the configured zone.
func (b *Bot) fmtTime(t time.Time) string {
	now := b.clock.Now().In(b.opts.Location)
	t = t.In(b.opts.Location)
	if t.Year() == now.Year() && t.YearDay() == now.YearDay() {
		return t.Format("15:04 MST")
	}
	return t.Format("Mon 2006-01-02 15:04 MST")
}

// fmtDur shows a duration as people write it: the two largest units that
// matter (90s is 1m30s, 26h is 1d2h), seconds to one decimal under ten,
// milliseconds under one second.
func fmtDur(d time.Duration) string {
	if d < 0 {
		return "-" + fmtDur(-d)
	}
	switch {
	case d == 0:
		return "0s"
	case d < time.Second:
		return fmt.Sprintf("%dms", max(d.Milliseconds(), 1))
	case d < 10*time.Second:
		s := fmt.Sprintf("%.1f", d.Seconds())
		return strings.TrimSuffix(s, ".0") + "s"
	}
	units := []struct {
		size time.Duration
		name string
	}{{7 * 24 * time.Hour, "w"}, {24 * time.Hour, "d"}, {time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}}
	for i, u := range units[:len(units)-1] {
		next := units[i+1]
		r := d.Round(next.size)
		if r < u.size {
			continue
		}
		major, minor := r/u.size, (r%u.size)/next.size
		if minor == 0 {
			return fmt.Sprintf("%d%s", major, u.name)
		}
		return fmt.Sprintf("%d%s%d%s", major, u.name, minor, next.name)
	}
	return fmt.Sprintf("%ds", int64(d.Round(time.Second)/time.Second))
}

// fmtAge shows how long ago something happened.
func fmtAge(d time.Duration) string {
	if d < time.Minute {
		return "less than a minute ago"
	}
	return fmtDur(d) + " ago"
}

// stateWords says a run's state as a verb phrase: "has succeeded", "was
// cancelled", "is waiting" ("Run 5 is succeeded" is not English).
func stateWords(s store.RunState) string {
	switch s {
	case store.RunSucceeded, store.RunFailed:
		return "has " + string(s)
	case store.RunCancelled, store.RunAborted, store.RunInterrupted:
		return "was " + string(s)
	}
	return "is " + string(s)
}

// countOf is "1 approval" or "2 approvals".
func countOf(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

package commands

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/xhit/go-str2duration/v2"
)

// MaxDuration bounds every duration a command accepts.
const MaxDuration = 90 * 24 * time.Hour

// ParseDuration reads durations like 90m, 2h, 1d, 1h30m and 1w.
func ParseDuration(s string) (time.Duration, error) {
	if s == "" {
		return 0, errors.New("give a duration, like 30m, 2h or 1d")
	}
	d, err := str2duration.ParseDuration(strings.ToLower(s))
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration: write it like 30m, 2h, 1d or 1h30m", s)
	}
	if d < time.Minute {
		return 0, fmt.Errorf("%q is too short: give at least 1m", s)
	}
	if d > MaxDuration {
		return 0, fmt.Errorf("%q is too long: give at most 90d", s)
	}
	return d, nil
}

// ParseTime reads "18:00" (its next occurrence after now, in loc),
// "2026-12-01 00:10" or "2026-12-01T00:10" (in loc). A time that has passed is
// an error.
func ParseTime(s string, now time.Time, loc *time.Location) (time.Time, error) {
	if loc == nil {
		loc = time.UTC
	}
	now = now.In(loc)
	if t, err := time.ParseInLocation("15:04", s, loc); err == nil {
		at := time.Date(now.Year(), now.Month(), now.Day(), t.Hour(), t.Minute(), 0, 0, loc)
		if !at.After(now) {
			at = time.Date(now.Year(), now.Month(), now.Day()+1, t.Hour(), t.Minute(), 0, 0, loc)
		}
		return at, nil
	}
	for _, layout := range []string{"2006-01-02 15:04", "2006-01-02T15:04"} {
		if at, err := time.ParseInLocation(layout, s, loc); err == nil {
			if !at.After(now) {
				return time.Time{}, fmt.Errorf("%s has already passed (it is %s now)", s, now.Format("2006-01-02 15:04 MST"))
			}
			return at, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a time: write 18:00 or 2026-12-01 00:10 (%s)", s, loc)
}

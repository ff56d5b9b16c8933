package web_test

import (
	"context"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	ics "github.com/arran4/golang-ical"
	"github.com/robfig/cron/v3"

	"github.com/stagebot/stagebot/bot"
	"github.com/stagebot/stagebot/bot/bottest"
	"github.com/stagebot/stagebot/bot/web"
	"github.com/stagebot/stagebot/runner"
	"github.com/stagebot/stagebot/store"
)

// calendarBot is a target refreshed every day at 03:00, behind a token.
func calendarBot(t *testing.T) (*bottest.Adapter, *bottest.Scenario, string) {
	a := bottest.NewAdapter()
	metrics := web.NewMetrics("console")
	daily, err := cron.ParseStandard("0 3 * * *")
	if err != nil {
		t.Fatal(err)
	}
	sc := bottest.StartBotWith(t, a, bottest.NewClock(time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)), bot.Options{
		EditInterval: 10 * time.Millisecond, Observer: metrics, PageURL: "https://stagebot.example.org",
		Access: bot.Access{ControlChannels: []string{"infra"}, Everyone: []string{"stage"}},
		Targets: []*bot.Target{{
			Name: "fas2", Channel: "infra", Notice: 10 * time.Minute,
			Schedules:       []bot.Schedule{{Spec: "0 3 * * *", Cron: daily, Pipeline: "default"}},
			Pipelines:       map[string]*runner.Pipeline{"default": {Name: "default", Steps: []runner.Step{&runner.Exec{StepName: "copy", Shell: "echo copying"}}}},
			DefaultPipeline: "default",
		}},
	})
	return a, sc, serve(t, sc, metrics, web.Options{Token: "s3cret"})
}

// fetchCalendar reads /calendar.ics with the subscription link's key and
// parses it with an iCalendar parser that is not the one that wrote it.
func fetchCalendar(t *testing.T, url string) map[string]*ics.VEvent {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/calendar") {
		t.Fatalf("%s: %s, %s", url, resp.Status, resp.Header.Get("Content-Type"))
	}
	cal, err := ics.ParseCalendar(resp.Body)
	if err != nil {
		t.Fatalf("the calendar does not parse: %v", err)
	}
	events := map[string]*ics.VEvent{}
	for _, e := range cal.Events() {
		if events[e.Id()] != nil {
			t.Errorf("two events with UID %s", e.Id())
		}
		events[e.Id()] = e
	}
	return events
}

func prop(e *ics.VEvent, p ics.ComponentProperty) string {
	if v := e.GetProperty(p); v != nil {
		return v.Value
	}
	return ""
}

// TestCalendar_RunsSchedulesAndHolds subscribes as a calendar client does
// (the link from the status page, no Authorization header) and finds the
// hold, the waiting run (never in the past), four weeks of scheduled
// starts, and, once a scheduled start becomes a run, the same event.
func TestCalendar_RunsSchedulesAndHolds(t *testing.T) {
	a, sc, base := calendarBot(t)
	ctx := context.Background()
	a.Type(ctx, "infra", alice, "!stage hold fas2 2h testing the login; with commas, semicolons \\\\ and a backslash, in ünïcödé to fold: ✓✓✓✓✓✓✓✓✓✓✓✓✓✓✓✓✓✓✓✓✓✓✓✓✓✓✓✓")
	a.Type(ctx, "infra", bob, "!stage resync fas2 now")
	// !stage schedule points at the calendar, on the page's address.
	a.Type(ctx, "infra", bob, "!stage schedule")
	if len(a.Find("subscribe to the Calendar link on https://stagebot.example.org/")) != 1 {
		t.Error("!stage schedule does not point at the calendar")
	}

	// The page (behind the token) gives the subscription link; the key
	// opens the calendar and nothing else.
	if code, _ := get(t, base+"/calendar.ics", ""); code != http.StatusUnauthorized {
		t.Errorf("/calendar.ics with no token: %d, want 401", code)
	}
	if code, _ := get(t, base+"/calendar.ics?key=0123456789abcdef0123456789abcdef", ""); code != http.StatusUnauthorized {
		t.Errorf("/calendar.ics with a wrong key: %d, want 401", code)
	}
	_, page := get(t, base+"/", "s3cret")
	m := regexp.MustCompile(`href="(/calendar\.ics\?key=[0-9a-f]{32})"`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("the status page has no calendar link:\n%s", page)
	}
	key := strings.TrimPrefix(m[1], "/calendar.ics?")
	if code, _ := get(t, base+"/?"+key, ""); code != http.StatusUnauthorized {
		t.Errorf("the calendar's key opened the status page: %d", code)
	}
	if strings.Contains(page, "s3cret") {
		t.Error("the status page shows the token")
	}

	now := sc.Clock.Now()
	// Lines are folded at 75 octets (RFC 5545, 3.1), never inside a
	// character.
	_, raw := get(t, base+m[1], "")
	for _, l := range strings.Split(raw, "\r\n") {
		if len(l) > 75 || !utf8.ValidString(l) {
			t.Errorf("line of %d octets (valid UTF-8: %t): %q", len(l), utf8.ValidString(l), l)
		}
	}
	events := fetchCalendar(t, base+m[1])
	host := strings.TrimPrefix(base, "http://")
	hold := events["hold-1@"+host]
	if hold == nil {
		t.Fatalf("no hold in the calendar: %v", keys(events))
	}
	if s := prop(hold, ics.ComponentPropertySummary); s != "fas2 held by alice" {
		t.Errorf("hold summary %q", s)
	}
	if d := prop(hold, ics.ComponentPropertyDescription); !strings.Contains(d, "testing the login; with commas, semicolons \\ and a backslash") {
		t.Errorf("hold description %q lost the reason as typed", d)
	}
	if end, err := hold.GetEndAt(); err != nil || !end.Equal(now.Add(2*time.Hour)) {
		t.Errorf("the hold ends %v (%v), want %v", end, err, now.Add(2*time.Hour))
	}
	run := events["run-1@"+host]
	if run == nil {
		t.Fatalf("no run 1 in the calendar: %v", keys(events))
	}
	if s := prop(run, ics.ComponentPropertySummary); s != "Refresh of fas2 (default): run 1, waiting" {
		t.Errorf("run summary %q", s)
	}
	// Held for two hours, it starts when the hold ends at the earliest.
	if start, err := run.GetStartAt(); err != nil || start.Before(now.Add(2*time.Hour)) {
		t.Errorf("the held run starts %v (%v), before its hold ends at %v", start, err, now.Add(2*time.Hour))
	}
	if d := prop(run, ics.ComponentPropertyDescription); !strings.Contains(d, "asked by bob") || !strings.Contains(d, "What will be lost") {
		t.Errorf("run description %q", d)
	}
	if u := prop(run, ics.ComponentPropertyUrl); u != base+"/runs/1" {
		t.Errorf("run URL %q, want %s/runs/1", u, base)
	}
	var slots []string
	for uid, e := range events {
		if strings.HasPrefix(uid, "slot-") {
			slots = append(slots, uid)
			start, err := e.GetStartAt()
			if err != nil || start.Hour() != 3 || start.Before(now) || start.After(now.Add(28*24*time.Hour)) {
				t.Errorf("scheduled start %s at %v (%v)", uid, start, err)
			}
			if s := prop(e, ics.ComponentPropertyStatus); s != "TENTATIVE" {
				t.Errorf("scheduled start %s is %q, want TENTATIVE", uid, s)
			}
		}
	}
	if len(slots) != 28 {
		t.Errorf("%d scheduled starts in four weeks of a daily schedule, want 28", len(slots))
	}
	tomorrow := "slot-fas2-default-" + itoa(time.Date(2026, 11, 24, 3, 0, 0, 0, time.UTC).Unix()) + "@" + host

	// The hold ends, the run runs; then tomorrow's start becomes a run
	// and keeps its event.
	a.Type(ctx, "infra", alice, "!stage release fas2")
	bottest.Eventually(t, "run 1 to succeed", func() bool {
		sc.Clock.Advance(time.Minute)
		r, err := sc.Store.Run(ctx, 1)
		return err == nil && r.State == store.RunSucceeded
	})
	events = fetchCalendar(t, base+m[1])
	if s := prop(events["run-1@"+host], ics.ComponentPropertySummary); s != "Refresh of fas2 (default): run 1, succeeded" {
		t.Errorf("after the run, its summary is %q", s)
	}
	if s := prop(events["hold-1@"+host], ics.ComponentPropertySummary); s != "fas2 was held by alice" {
		t.Errorf("after the release, the hold's summary is %q", s)
	}
	sc.Clock.Advance(time.Date(2026, 11, 24, 2, 55, 0, 0, time.UTC).Sub(sc.Clock.Now()))
	bottest.Eventually(t, "tomorrow's start to be a run", func() bool {
		sc.Clock.Advance(10 * time.Second)
		e := fetchCalendar(t, base+m[1])[tomorrow]
		return e != nil && strings.Contains(prop(e, ics.ComponentPropertySummary), "run 2")
	})
}

func keys(m map[string]*ics.VEvent) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

package web

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-ical"

	"github.com/stagebot/stagebot/bot"
	"github.com/stagebot/stagebot/store"
)

// calendarHorizon is how far ahead the calendar lists scheduled starts.
const calendarHorizon = 28 * 24 * time.Hour

// calendarRefresh is how often calendar clients are asked to look again.
const calendarRefresh = 5 * time.Minute

// calendarKey is the key a calendar subscription gives as ?key= when the
// pages need a token: calendar clients send no Authorization header. It is
// derived from the token, so it opens the calendar and nothing else, and
// changes when the token does.
func calendarKey(token string) string {
	m := hmac.New(sha256.New, []byte(token))
	m.Write([]byte("stagebot calendar"))
	return hex.EncodeToString(m.Sum(nil))[:32]
}

// calendarGuard lets a request in with the bearer token, or with the
// calendar's key in the query.
func (s *Server) calendarGuard(h http.Handler) http.Handler {
	bearer := s.guard(h)
	if s.o.Token == "" {
		return bearer
	}
	key := []byte(calendarKey(s.o.Token))
	withKey := s.checkHost(h)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if k := r.URL.Query().Get("key"); k != "" {
			if subtle.ConstantTimeCompare([]byte(k), key) != 1 {
				http.Error(w, "unauthorized: this calendar key is not the current one; copy the subscription link from the status page again", http.StatusUnauthorized)
				return
			}
			withKey.ServeHTTP(w, r)
			return
		}
		bearer.ServeHTTP(w, r)
	})
}

// calendarPath is the subscription's path, with its key when the pages
// need a token.
func (s *Server) calendarPath() string {
	if s.o.Token == "" {
		return "/calendar.ics"
	}
	return "/calendar.ics?key=" + calendarKey(s.o.Token)
}

// calendar is /calendar.ics: every run of the last two weeks and the
// next four, every scheduled start, every hold, as iCalendar (RFC 5545)
// for the calendars teams plan in. Clients are asked to look again every
// five minutes.
func (s *Server) calendar(w http.ResponseWriter, r *http.Request) {
	hs, err := s.b.Calendar(r.Context(), calendarHorizon)
	if err != nil {
		http.Error(w, "cannot read the bot's state: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	cal := ical.NewCalendar()
	cal.Props.SetText(ical.PropVersion, "2.0")
	cal.Props.SetText(ical.PropProductID, "-//stagebot//staging refreshes//EN")
	cal.Props.SetText("CALSCALE", "GREGORIAN")
	cal.Props.SetText("X-WR-CALNAME", "stagebot: staging refreshes and holds")
	refresh := ical.NewProp("REFRESH-INTERVAL")
	refresh.SetDuration(calendarRefresh)
	cal.Props.Set(refresh)
	ttl := ical.NewProp("X-PUBLISHED-TTL")
	ttl.SetDuration(calendarRefresh)
	cal.Props.Set(ttl)
	now, base := time.Now().UTC(), pageBase(r)
	for _, h := range hs {
		cal.Children = append(cal.Children, s.event(h, now, base).Component)
	}
	var buf bytes.Buffer
	if err := ical.NewEncoder(&folder{w: &buf}).Encode(cal); err != nil {
		s.o.Logger.Warn("render the calendar", "err", err)
		http.Error(w, "cannot render the calendar: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/calendar; charset=utf-8")
	w.Header().Set("Content-Disposition", `inline; filename="stagebot.ics"`)
	w.Write(buf.Bytes())
}

// event is one happening as a VEVENT.
func (s *Server) event(h bot.Happening, now time.Time, base *url.URL) *ical.Event {
	e := ical.NewEvent()
	e.Props.SetText(ical.PropUID, h.UID+"@"+s.uidDomain())
	e.Props.SetDateTime(ical.PropDateTimeStamp, now)
	e.Props.SetDateTime(ical.PropDateTimeStart, h.Start.UTC())
	e.Props.SetDateTime(ical.PropDateTimeEnd, h.End.UTC())
	e.Props.SetText(ical.PropSummary, summary(h))
	e.Props.SetText(ical.PropDescription, description(h))
	e.Props.SetText(ical.PropCategories, h.Kind)
	if h.Kind == "hold" {
		// A hold blocks refreshes, not the holder's day.
		e.Props.SetText(ical.PropTransparency, "TRANSPARENT")
	}
	switch {
	case h.State == "cancelled":
		e.SetStatus(ical.EventCancelled)
	case h.Kind == "scheduled" || h.State == "waiting" || h.State == "scheduled":
		e.SetStatus(ical.EventTentative)
	default:
		e.SetStatus(ical.EventConfirmed)
	}
	if h.RunID != 0 {
		u := *base
		u.Path = fmt.Sprintf("/runs/%d", h.RunID)
		e.Props.SetURI(ical.PropURL, &u)
	}
	return e
}

func summary(h bot.Happening) string {
	switch h.Kind {
	case "hold":
		if h.State == "released" {
			return fmt.Sprintf("%s was held by %s", h.Target, h.Who.Display())
		}
		return fmt.Sprintf("%s held by %s", h.Target, h.Who.Display())
	case "scheduled":
		return fmt.Sprintf("Refresh of %s (%s), scheduled", h.Target, h.Pipeline)
	}
	return fmt.Sprintf("Refresh of %s (%s): run %d, %s", h.Target, h.Pipeline, h.RunID, h.State)
}

func description(h bot.Happening) string {
	var lines []string
	switch h.Kind {
	case "hold":
		lines = append(lines, "Held by "+h.Who.Display()+": "+h.Reason, "No refresh of "+h.Target+" starts while it is held.")
	default:
		who := h.Who.Display()
		if h.Kind == "scheduled" {
			who = "the schedule"
		}
		lines = append(lines, fmt.Sprintf("Target %s, pipeline %s, asked by %s.", h.Target, h.Pipeline, who))
		if h.Reason != "" {
			lines = append(lines, h.Reason)
		}
		if h.Estimated {
			lines = append(lines, "The end is an estimate: as long as the last successful refresh took.")
		}
		if h.Kind == "scheduled" || !store.RunState(h.State).Done() {
			loss := h.Loss
			if loss == "" {
				loss = "the staging data of " + h.Target + " is replaced; save anything you need, or hold it."
			}
			lines = append(lines, "What will be lost: "+loss)
			lines = append(lines, "To keep it: !stage hold "+h.Target+" <duration> <reason>")
		}
	}
	return strings.Join(lines, "\n")
}

// uidDomain makes event UIDs unique to this bot: the host people reach it
// by, else its listen address.
func (s *Server) uidDomain() string {
	if len(s.o.Hosts) > 0 {
		return s.o.Hosts[0]
	}
	if s.ln != nil {
		return s.ln.Addr().String()
	}
	return "stagebot"
}

// pageBase is the address the request reached the pages by, for links:
// https when a proxy in front says so.
func pageBase(r *http.Request) *url.URL {
	scheme := "http"
	if r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https") {
		scheme = "https"
	}
	return &url.URL{Scheme: scheme, Host: r.Host}
}

// folder folds the lines written through it at 75 octets, as RFC 5545
// (3.1) asks: a long line goes on in lines that begin with a space, and
// never splits a UTF-8 character. Each Write is one whole line (the
// encoder writes them so).
type folder struct{ w io.Writer }

func (f *folder) Write(p []byte) (int, error) {
	line := bytes.TrimSuffix(p, []byte("\r\n"))
	var out bytes.Buffer
	limit := 75
	for len(line) > limit {
		cut := limit
		for cut > 0 && !utf8.RuneStart(line[cut]) {
			cut--
		}
		out.Write(line[:cut])
		out.WriteString("\r\n ")
		line = line[cut:]
		limit = 74 // after the space
	}
	out.Write(line)
	out.WriteString("\r\n")
	if _, err := f.w.Write(out.Bytes()); err != nil {
		return 0, err
	}
	return len(p), nil
}

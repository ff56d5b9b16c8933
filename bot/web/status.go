package web

import (
	_ "embed"
	"fmt"
	"html/template"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/stagebot/stagebot/bot"
	"github.com/stagebot/stagebot/store"
)

//go:embed status.html
var statusHTML string

var pages = template.Must(template.New("status").Funcs(template.FuncMap{
	"ago": func(now, t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return roundDur(now.Sub(t)) + " ago"
	},
	"at":      func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 MST") },
	"until":   func(now, t time.Time) string { return roundDur(max(t.Sub(now), 0)) },
	"dur":     roundDur,
	"mark":    mark,
	"percent": percent,
	"pending": pendingLabel,
}).Parse(statusHTML))

func roundDur(d time.Duration) string {
	switch {
	case d >= time.Hour:
		return d.Round(time.Minute).String()
	case d >= time.Second:
		return d.Round(time.Second).String()
	}
	return d.Round(time.Millisecond).String()
}

// mark is the icon of a step's or a run's state.
func mark(state any) string {
	return map[string]string{"pending": "·", "running": "▶", "succeeded": "✓", "failed": "✗", "skipped": "–", "aborted": "■",
		"cancelled": "■", "interrupted": "✗", "waiting": "‖", "scheduled": "○"}[fmt.Sprint(state)]
}

// percent is the share done at the head of a step's progress line ("41%,
// 1.2 GB of 3 GB…"), or "" when it gives none.
func percent(detail string) string {
	n, _, ok := strings.Cut(detail, "%")
	if !ok || n == "" || len(n) > 3 {
		return ""
	}
	if v, err := strconv.Atoi(n); err != nil || v < 0 || v > 100 {
		return ""
	}
	return n
}

// pendingView is how a run not yet started is shown: a label, a colour
// and when it starts, never a time already past.
type pendingView struct{ Label, Class, When string }

func pendingLabel(now time.Time, r *store.Run) pendingView {
	at := r.StartAt.UTC().Format("15:04 MST")
	if r.StartAt.Format("2006-01-02") != now.Format("2006-01-02") {
		at = r.StartAt.UTC().Format("2006-01-02 15:04 MST")
	}
	v := pendingView{Label: "○ scheduled", Class: "scheduled", When: "starts " + at + " (in " + roundDur(r.StartAt.Sub(now)) + ")"}
	if r.Origin == store.OriginManual {
		v.Label, v.Class = "○ requested", "requested"
	}
	switch {
	case r.State == store.RunWaiting && r.HoldWait:
		v.Label, v.Class, v.When = "‖ held", "held", "starts once the holds end, after a new notice"
	case r.State == store.RunWaiting:
		v.Label, v.Class, v.When = "‖ waiting", "waiting", "starts once it may"
	case !r.StartAt.After(now):
		v.When = "due now"
	}
	return v
}

// targetView is one target on the status page.
type targetView struct {
	bot.TargetInfo
	LastSuccess time.Time
	DataFrom    time.Time // when the data in place left production
	MaxAge      time.Duration
	Stale       bool // older than MaxAge
	Holds       []*store.Hold
	Pending     []*store.Run
	Running     []store.Run
}

type statusView struct {
	Now      time.Time
	Targets  []targetView
	History  []*store.Run
	Fragment bool
	// Calendar is the calendar subscription's path (with its key).
	Calendar string
}

// status is the page at /: every target, its data age, holds, runs waiting
// and under way (with live progress), and the recent history. With
// ?part=live only the live part, which the page's script fetches every
// two seconds.
func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" {
		http.NotFound(w, r)
		return
	}
	ctx := r.Context()
	snap, err := s.b.Snapshot(ctx)
	if err != nil {
		http.Error(w, "cannot read the bot's state: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	holds, err := s.st.Holds(ctx, true)
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	active, err := s.st.Runs(ctx, store.RunFilter{Active: true})
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	v := statusView{Now: snap.Now, Fragment: r.URL.Query().Get("part") == "live", Calendar: s.calendarPath()}
	for _, t := range s.b.Targets() {
		tv := targetView{TargetInfo: t, LastSuccess: snap.LastSuccess[t.Name], DataFrom: snap.DataFrom[t.Name], MaxAge: snap.MaxAge[t.Name]}
		tv.Stale = tv.MaxAge > 0 && !tv.DataFrom.IsZero() && snap.Now.Sub(tv.DataFrom) >= tv.MaxAge
		for _, h := range holds {
			if h.Covers(t.Name) {
				tv.Holds = append(tv.Holds, h)
			}
		}
		for i := len(active) - 1; i >= 0; i-- {
			run := active[i]
			if run.Target != t.Name {
				continue
			}
			if live, ok := s.b.LiveRun(run.ID); ok {
				tv.Running = append(tv.Running, live)
			} else if run.State == store.RunRunning {
				tv.Running = append(tv.Running, *run)
			} else {
				tv.Pending = append(tv.Pending, run)
			}
		}
		v.Targets = append(v.Targets, tv)
	}
	{
		// The runs that have ended; the others are with their targets.
		recent, err := s.st.Runs(ctx, store.RunFilter{Limit: 20 + len(active)})
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		for _, r := range recent {
			if r.State.Done() && len(v.History) < 20 {
				v.History = append(v.History, r)
			}
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	name := "page"
	if v.Fragment {
		name = "live"
	}
	if err := pages.ExecuteTemplate(w, name, v); err != nil {
		s.o.Logger.Warn("render the status page", "err", err)
	}
}

// run is the page of one run: its steps and its log.
func (s *Server) run(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseUint(strings.TrimPrefix(r.URL.Path, "/runs/"), 10, 64)
	if err != nil {
		http.Error(w, "give a run number: /runs/42", http.StatusBadRequest)
		return
	}
	ctx := r.Context()
	run, err := s.st.Run(ctx, id)
	if err != nil {
		http.Error(w, fmt.Sprintf("there is no run %d", id), http.StatusNotFound)
		return
	}
	if live, ok := s.b.LiveRun(id); ok {
		run = &live
	}
	log, err := s.st.Log(ctx, id)
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	name := "run"
	if r.URL.Query().Get("part") == "live" {
		name = "runlive"
	}
	if err := pages.ExecuteTemplate(w, name, struct {
		Run *store.Run
		Log string
	}{run, string(log)}); err != nil {
		s.o.Logger.Warn("render a run's page", "err", err)
	}
}

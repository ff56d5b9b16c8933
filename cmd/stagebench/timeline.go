package main

import (
	"context"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// A timeline is what staging's server did during one method's run, seen
// from outside by sampling pg_stat_activity: every COPY, index build,
// constraint, ANALYZE and VACUUM, when it started and ended, how long it
// waited on locks, and how busy the machine was meanwhile. It is the same
// instrument for every method, so the critical path of each is visible.
type timeline struct {
	start time.Time
	end   time.Duration
	acts  []*activity
	ticks []tick // one per sample
}

// activity is one statement of one backend.
type activity struct {
	kind, object, table string // "COPY", "events"; for an index, its table
	from, to            time.Duration
	samples, lockWaits  int
	busy                float64 // the machine's busy share over the samples
}

// tick is one sample: what ran and the machine's busy share since the last.
type tick struct {
	at    time.Duration
	kinds map[string]bool
	busy  float64
}

// sampleEvery is the timeline's resolution; a sample costs staging's server
// a scan of pg_stat_activity, well under a millisecond.
const sampleEvery = 100 * time.Millisecond

// trace samples staging's server until stop is called, then returns the
// timeline.
func (b *env) trace(ctx context.Context) (stop func() *timeline) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan *timeline, 1)
	go func() { done <- b.sample(ctx) }()
	return func() *timeline {
		cancel()
		return <-done
	}
}

func (b *env) sample(ctx context.Context) *timeline {
	tl := &timeline{start: time.Now()}
	c, err := pgx.Connect(context.WithoutCancel(ctx), b.stg.DSN("postgres"))
	if err != nil {
		return tl
	}
	defer c.Close(context.WithoutCancel(ctx))
	open := map[string]*activity{} // by pid and query start
	last := cpuStat()
	t := time.NewTicker(sampleEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			tl.end = time.Since(tl.start)
			return tl
		case <-t.C:
		}
		rows, err := c.Query(ctx, `select pid, query_start, query, coalesce(wait_event_type, '') from pg_stat_activity
			where state = 'active' and pid <> pg_backend_pid() and backend_type = 'client backend'`)
		if err != nil {
			continue
		}
		now := time.Since(tl.start)
		busy := last.busySince()
		last = cpuStat()
		tk := tick{at: now, busy: busy, kinds: map[string]bool{}}
		for rows.Next() {
			var pid int
			var started time.Time
			var q, wait string
			if rows.Scan(&pid, &started, &q, &wait) != nil {
				continue
			}
			kind, object, table := classify(q)
			if kind == "" {
				continue
			}
			tk.kinds[kind] = true
			key := fmt.Sprint(pid, started.UnixNano())
			a := open[key]
			if a == nil {
				from := max(started.Sub(tl.start), 0)
				a = &activity{kind: kind, object: object, table: table, from: from}
				open[key] = a
				tl.acts = append(tl.acts, a)
			}
			a.to = now
			a.samples++
			a.busy += busy
			if wait == "Lock" {
				a.lockWaits++
			}
		}
		rows.Close()
		tl.ticks = append(tl.ticks, tk)
	}
}

// name matches a possibly qualified, possibly quoted SQL name.
const name = `((?:"(?:[^"]|"")*"|[^\s(".;]+)(?:\.(?:"(?:[^"]|"")*"|[^\s(".;]+))*)`

var (
	copyRE     = regexp.MustCompile(`(?is)^\s*COPY\s+(?:ONLY\s+)?` + name)
	indexRE    = regexp.MustCompile(`(?is)^\s*CREATE\s+(?:UNIQUE\s+)?INDEX\s+(?:CONCURRENTLY\s+)?(?:IF\s+NOT\s+EXISTS\s+)?` + name + `\s+ON\s+(?:ONLY\s+)?` + name)
	alterRE    = regexp.MustCompile(`(?is)^\s*ALTER\s+TABLE\s+(?:ONLY\s+)?` + name + `\s+(?:ADD\s+CONSTRAINT\s+` + name + `\s+(PRIMARY KEY|UNIQUE|FOREIGN KEY|CHECK)|VALIDATE\s+CONSTRAINT\s+` + name + `)`)
	maintainRE = regexp.MustCompile(`(?is)^\s*(ANALYZE|VACUUM)\b(?:\s*\([^)]*\))?(?:\s+(?:VERBOSE\s+|ANALYZE\s+|FREEZE\s+)*` + name + `)?`)
)

// classify names a statement's kind and object, or "" for one the
// timeline does not show.
func classify(q string) (kind, object, table string) {
	if m := copyRE.FindStringSubmatch(q); m != nil {
		return "COPY", short(m[1]), short(m[1])
	}
	if m := indexRE.FindStringSubmatch(q); m != nil {
		return "INDEX", short(m[1]), short(m[2])
	}
	if m := alterRE.FindStringSubmatch(q); m != nil {
		switch {
		case m[4] != "":
			return "VALIDATE", short(m[4]), short(m[1])
		case strings.EqualFold(m[3], "FOREIGN KEY"):
			return "FOREIGN KEY", short(m[2]), short(m[1])
		case strings.EqualFold(m[3], "CHECK"):
			return "CHECK", short(m[2]), short(m[1])
		}
		return "CONSTRAINT", short(m[2]), short(m[1])
	}
	if m := maintainRE.FindStringSubmatch(q); m != nil {
		kind = strings.ToUpper(m[1])
		if m[2] == "" {
			return kind, "(database)", ""
		}
		return kind, short(m[2]), short(m[2])
	}
	return "", "", ""
}

// short is the last part of a qualified name, unquoted.
func short(name string) string {
	if !strings.HasSuffix(name, `"`) {
		return name[strings.LastIndexByte(name, '.')+1:]
	}
	// The opening quote: the first of the quotes that end the name that
	// is not part of a doubled one.
	i := len(name) - 1
	for {
		j := strings.LastIndexByte(name[:i], '"')
		if j <= 0 || name[j-1] != '"' {
			return strings.ReplaceAll(name[j+1:len(name)-1], `""`, `"`)
		}
		i = j - 1
	}
}

// phases sums the samples by what ran at the time: the share of the run
// each combination took and how busy the machine was meanwhile. "idle" is
// when staging's server ran none of the statements above: connecting,
// planning, the schema, the swap.
func (tl *timeline) phases() []phase {
	by := map[string]*phase{}
	var order []string
	prev := time.Duration(0)
	for _, tk := range tl.ticks {
		var kinds []string
		for k := range tk.kinds {
			kinds = append(kinds, k)
		}
		slices.Sort(kinds)
		name := strings.Join(kinds, "+")
		if name == "" {
			name = "idle"
		}
		p := by[name]
		if p == nil {
			p = &phase{name: name}
			by[name] = p
			order = append(order, name)
		}
		d := tk.at - prev
		prev = tk.at
		p.time += d
		p.busy += tk.busy * d.Seconds()
	}
	var out []phase
	for _, n := range order {
		p := by[n]
		if p.time > 0 {
			p.busy /= p.time.Seconds()
		}
		out = append(out, *p)
	}
	slices.SortFunc(out, func(a, b phase) int { return int(b.time - a.time) })
	return out
}

type phase struct {
	name string
	time time.Duration
	busy float64
}

// critical is the table whose statements took longest in all: the one
// a refresh of this database waits for.
func (tl *timeline) critical() string {
	sum := map[string]time.Duration{}
	best := ""
	for _, a := range tl.acts {
		if a.table == "" {
			continue
		}
		sum[a.table] += a.to - a.from
		if best == "" || sum[a.table] > sum[best] {
			best = a.table
		}
	}
	return best
}

// print writes the timeline: the phases, then every statement on the
// critical table and every other statement that took at least a twentieth
// of the run, in the order they started.
func (tl *timeline) print(w io.Writer, method string) {
	if tl == nil || len(tl.ticks) == 0 {
		return
	}
	total := tl.end
	fmt.Fprintf(w, "\nTimeline of %s (%s, sampled every %s from pg_stat_activity on staging; busy: the machine's CPU in use):\n", method, dur(total), sampleEvery)
	var ps []string
	for _, p := range tl.phases() {
		ps = append(ps, fmt.Sprintf("%s %s (%.0f%% busy)", p.name, dur(p.time), 100*p.busy))
	}
	fmt.Fprintf(w, "  phases: %s\n", strings.Join(ps, " · "))
	crit := tl.critical()
	acts := slices.Clone(tl.acts)
	slices.SortStableFunc(acts, func(a, b *activity) int { return int(a.from - b.from) })
	shown := 0
	for _, a := range acts {
		d := a.to - a.from
		if a.table != crit && d < total/20 {
			continue
		}
		note := ""
		if a.samples > 0 {
			note = fmt.Sprintf("%.0f%% busy", 100*a.busy/float64(a.samples))
			if a.lockWaits > 0 {
				note += fmt.Sprintf(", waited on a lock %.0f%% of it", 100*float64(a.lockWaits)/float64(a.samples))
			}
		}
		what := a.kind + " " + a.object
		if a.table != "" && a.table != a.object {
			what += " on " + a.table
		}
		fmt.Fprintf(w, "  %7s – %7s  %-60s %s\n", dur(a.from), dur(a.to), what, note)
		if shown++; shown >= 40 {
			fmt.Fprintln(w, "  … (more left out)")
			break
		}
	}
}

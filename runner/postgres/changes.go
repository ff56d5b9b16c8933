package postgres

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stagebot/stagebot/store"
)

// Values keeps small named values between runs; the bot's store is one.
// A Registry that is also Values keeps the baseline of what changed.
type Values interface {
	SetValue(ctx context.Context, name string, v []byte) error
	Value(ctx context.Context, name string) ([]byte, error)
}

// baseline is staging's write counters when a refresh put it in place.
type baseline struct {
	At     time.Time           `json:"at"`
	Run    uint64              `json:"run"`
	Server string              `json:"server"`
	OID    uint32              `json:"oid"`
	Tables map[string][3]int64 `json:"tables"` // inserted, updated, deleted
}

func (t *Target) values() Values {
	v, _ := t.Registry.(Values)
	return v
}

func (t *Target) baselineName() string { return "baseline/" + t.Name }

// counters reads the write counters of the database c is connected to.
func counters(ctx context.Context, c *pgx.Conn) (map[string][3]int64, error) {
	rows, err := c.Query(ctx, `select format('%I.%I', schemaname, relname), n_tup_ins, n_tup_upd, n_tup_del from pg_stat_user_tables`)
	if err != nil {
		return nil, err
	}
	out := map[string][3]int64{}
	for rows.Next() {
		var name string
		var v [3]int64
		if err := rows.Scan(&name, &v[0], &v[1], &v[2]); err != nil {
			return nil, err
		}
		out[name] = v
	}
	return out, rows.Err()
}

// recordBaseline notes staging's counters right after run put it in place:
// what people change afterwards is counted from here.
func (t *Target) recordBaseline(ctx context.Context, run uint64, log func(string, ...any)) {
	vals := t.values()
	if vals == nil {
		return
	}
	db, _, _, err := t.names()
	if err != nil {
		return
	}
	err = func() error {
		c, err := connect(ctx, t.StagingDSN, db, true)
		if err != nil {
			return err
		}
		defer c.Close(ctx)
		b := baseline{At: time.Now(), Run: run}
		if b.Server, err = serverID(ctx, c); err != nil {
			return err
		}
		if err := c.QueryRow(ctx, "select oid from pg_database where datname = current_database()").Scan(&b.OID); err != nil {
			return err
		}
		if b.Tables, err = counters(ctx, c); err != nil {
			return err
		}
		data, err := json.Marshal(b)
		if err != nil {
			return err
		}
		return vals.SetValue(ctx, t.baselineName(), data)
	}()
	if err != nil {
		log("could not note staging's write counters (what people change on staging will show as unknown): %v", err)
	}
}

// Changes says what would be lost if staging were replaced now: the
// tables written since the last refresh (busiest first), new and dropped
// tables, who is connected, and whether the replaced copy is kept. roles
// are the database roles connected now.
func (t *Target) Changes(ctx context.Context) (text string, roles []string, err error) {
	db, _, _, err := t.names()
	if err != nil {
		return "", nil, err
	}
	c, err := connect(ctx, t.StagingDSN, db, true)
	if err != nil {
		var pe interface{ SQLState() string }
		if errors.As(err, &pe) && pe.SQLState() == "3D000" {
			return fmt.Sprintf("%s does not exist yet: nothing to lose.", db), nil, nil
		}
		return "", nil, err
	}
	defer c.Close(ctx)
	var parts []string
	parts = append(parts, t.written(ctx, c))
	s, roles := sessions(ctx, c)
	if s != "" {
		parts = append(parts, s)
	}
	if t.KeepPrevious {
		parts = append(parts, "The copy it replaces is kept for rollback.")
	} else {
		parts = append(parts, "The copy it replaces is not kept (keep_previous is off).")
	}
	return strings.Join(parts, "\n"), roles, nil
}

// written compares staging's counters with the baseline.
func (t *Target) written(ctx context.Context, c *pgx.Conn) string {
	unknown := func(why string) string { return "Changed on staging since the last refresh: unknown (" + why + ")." }
	b, why := t.loadBaseline(ctx)
	if why == "" {
		why = b.stale(ctx, c)
	}
	if why != "" {
		return unknown(why)
	}
	now, err := counters(ctx, c)
	if err != nil {
		return unknown(err.Error())
	}
	d, why := diffCounters(b.Tables, now)
	if why != "" {
		return unknown(why)
	}
	return d.text(fmt.Sprintf("since run %d (%s ago)", b.Run, time.Since(b.At).Round(time.Minute)))
}

// loadBaseline reads the counters the last refresh recorded, or says why
// there are none.
func (t *Target) loadBaseline(ctx context.Context) (b baseline, why string) {
	vals := t.values()
	if vals == nil {
		return b, "this bot keeps no record of the last refresh"
	}
	data, err := vals.Value(ctx, t.baselineName())
	if errors.Is(err, store.ErrNotFound) {
		return b, "no refresh by this bot has been recorded yet"
	}
	if err != nil {
		return b, err.Error()
	}
	if err := json.Unmarshal(data, &b); err != nil {
		return b, "the record of the last refresh is unreadable"
	}
	return b, ""
}

// stale says why staging's counters can no longer be compared with b
// ("" when they can): staging is another copy, or its counters were reset
// or lost since.
func (b baseline) stale(ctx context.Context, c *pgx.Conn) string {
	var oid uint32
	var reset, started time.Time
	var server string
	err := c.QueryRow(ctx, `select d.oid, coalesce(s.stats_reset, 'epoch'), pg_postmaster_start_time(), (select system_identifier::text from pg_control_system())
		from pg_database d left join pg_stat_database s on s.datid = d.oid where d.datname = current_database()`).Scan(&oid, &reset, &started, &server)
	switch {
	case err != nil:
		return err.Error()
	case oid != b.OID || server != b.Server:
		return "staging is not the copy run " + fmt.Sprint(b.Run) + " made: it was replaced or rolled back since"
	case reset.After(b.At):
		return "staging's statistics were reset at " + reset.UTC().Format(time.RFC3339)
	case started.After(b.At):
		return "staging's server restarted at " + started.UTC().Format(time.RFC3339) + ", and may have lost its counters"
	}
	return ""
}

// tableChange is what was written to one table: rows inserted, updated,
// deleted.
type tableChange struct {
	table string
	d     [3]int64
}

// changes are the tables written, added and dropped since the baseline.
type changes struct {
	changed        []tableChange // busiest first
	added, dropped []string      // sorted
}

// diffCounters compares staging's counters now with the baseline's, or
// says why it cannot (a counter went back).
func diffCounters(then, now map[string][3]int64) (changes, string) {
	var ch changes
	for name, v := range now {
		old, ok := then[name]
		if !ok {
			ch.added = append(ch.added, name)
			continue
		}
		d := [3]int64{v[0] - old[0], v[1] - old[1], v[2] - old[2]}
		if d[0] < 0 || d[1] < 0 || d[2] < 0 {
			return ch, "the counters of " + name + " went back: they were reset"
		}
		if d != [3]int64{} {
			ch.changed = append(ch.changed, tableChange{name, d})
		}
	}
	for name := range then {
		if _, ok := now[name]; !ok {
			ch.dropped = append(ch.dropped, name)
		}
	}
	slices.SortFunc(ch.changed, func(x, y tableChange) int {
		return cmp.Or(cmp.Compare(y.d[0]+y.d[1]+y.d[2], x.d[0]+x.d[1]+x.d[2]), cmp.Compare(x.table, y.table))
	})
	slices.Sort(ch.added)
	slices.Sort(ch.dropped)
	return ch, ""
}

// text says the changes, the five busiest tables first.
func (ch changes) text(since string) string {
	if len(ch.changed)+len(ch.added)+len(ch.dropped) == 0 {
		return "Changed on staging " + since + ": nothing."
	}
	var sb strings.Builder
	sb.WriteString("Changed on staging " + since + ":")
	const shown = 5
	for i, c := range ch.changed {
		if i == shown {
			fmt.Fprintf(&sb, "\n• …and %d more tables", len(ch.changed)-shown)
			break
		}
		var what []string
		for j, verb := range []string{"inserted", "updated", "deleted"} {
			if c.d[j] > 0 {
				what = append(what, fmt.Sprintf("%s %s", count(c.d[j]), verb))
			}
		}
		fmt.Fprintf(&sb, "\n• %s: %s", c.table, strings.Join(what, ", "))
	}
	if len(ch.added) > 0 {
		fmt.Fprintf(&sb, "\n• new tables: %s", list(ch.added, shown))
	}
	if len(ch.dropped) > 0 {
		fmt.Fprintf(&sb, "\n• tables dropped: %s", list(ch.dropped, shown))
	}
	return sb.String()
}

// sessions lists who is connected to staging now, and their roles.
func sessions(ctx context.Context, c *pgx.Conn) (string, []string) {
	rows, err := c.Query(ctx, `select coalesce(usename, ''), coalesce(application_name, ''), coalesce(host(client_addr), 'local'), backend_start
		from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid() and backend_type = 'client backend'
		order by backend_start`)
	if err != nil {
		return "", nil
	}
	var who, roles []string
	for rows.Next() {
		var user, app, addr string
		var since time.Time
		if rows.Scan(&user, &app, &addr, &since) != nil {
			continue
		}
		if !slices.Contains(roles, user) {
			roles = append(roles, user)
		}
		s := user
		if app != "" {
			s += " (" + app + ")"
		}
		who = append(who, fmt.Sprintf("%s from %s for %s", s, addr, time.Since(since).Round(time.Minute)))
	}
	if len(who) == 0 {
		return "", nil
	}
	return "Connected now: " + list(who, 5) + ".", roles
}

func list(items []string, n int) string {
	if len(items) <= n {
		return strings.Join(items, "; ")
	}
	return strings.Join(items[:n], "; ") + fmt.Sprintf("; …and %d more", len(items)-n)
}

// count writes n with thousands separated.
func count(n int64) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

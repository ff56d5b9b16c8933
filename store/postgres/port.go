package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stagebot/stagebot/store"
)

// dumpTables are the tables Import fills, each locked while it does and,
// where what names it, required to be empty first (the counters follow
// the records).
var dumpTables = []struct{ table, what string }{
	{"stagebot_runs", "runs"}, {"stagebot_logs", "logs"}, {"stagebot_holds", "holds"},
	{"stagebot_approvals", "approvals"}, {"stagebot_watchers", "watchers"}, {"stagebot_events", "events"},
	{"stagebot_marks", "marks"}, {"stagebot_databases", "databases"}, {"stagebot_values", "values"},
	{"stagebot_counters", ""},
}

var _ store.Porter = (*Store)(nil)

// Export implements store.Porter.
func (s *Store) Export(ctx context.Context) (*store.Dump, error) {
	d := &store.Dump{Logs: map[uint64][]byte{}, Watchers: map[string][]store.User{}, Marks: map[string]time.Time{}, Databases: map[string]uint64{}, Values: map[string][]byte{}}
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		records := func(q string, fn func(rec []byte, extra string) error) error {
			rows, err := tx.Query(ctx, q)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				var rec []byte
				var extra string
				if err := rows.Scan(&rec, &extra); err != nil {
					return err
				}
				if err := fn(rec, extra); err != nil {
					return err
				}
			}
			return rows.Err()
		}
		steps := []struct {
			q  string
			fn func(rec []byte, extra string) error
		}{
			{"select record, '' from stagebot_runs order by id", func(rec []byte, _ string) error {
				var r store.Run
				d.Runs = append(d.Runs, &r)
				return json.Unmarshal(rec, &r)
			}},
			{"select text, run_id::text from stagebot_logs", func(rec []byte, id string) error {
				var n uint64
				_, err := fmt.Sscan(id, &n)
				d.Logs[n] = rec
				return err
			}},
			{"select record, '' from stagebot_holds order by id", func(rec []byte, _ string) error {
				var h store.Hold
				d.Holds = append(d.Holds, &h)
				return json.Unmarshal(rec, &h)
			}},
			{"select record, '' from stagebot_approvals order by seq", func(rec []byte, _ string) error {
				var a store.Approval
				err := json.Unmarshal(rec, &a)
				d.Approvals = append(d.Approvals, a)
				return err
			}},
			{`select record, target from stagebot_watchers order by target, user_id collate "C"`, func(rec []byte, target string) error {
				var u store.User
				err := json.Unmarshal(rec, &u)
				d.Watchers[target] = append(d.Watchers[target], u)
				return err
			}},
			{"select record, '' from stagebot_events order by id", func(rec []byte, _ string) error {
				var e store.Event
				err := json.Unmarshal(rec, &e)
				d.Events = append(d.Events, e)
				return err
			}},
			{"select convert_to(at, 'UTF8'), name from stagebot_marks", func(rec []byte, name string) error {
				var t time.Time
				err := t.UnmarshalText(rec)
				d.Marks[name] = t
				return err
			}},
			{"select value, name from stagebot_values", func(rec []byte, name string) error {
				d.Values[name] = rec
				return nil
			}},
			{"select convert_to(run_id::text, 'UTF8'), key from stagebot_databases", func(rec []byte, key string) error {
				var n uint64
				_, err := fmt.Sscan(string(rec), &n)
				d.Databases[key] = n
				return err
			}},
		}
		for _, st := range steps {
			if err := records(st.q, st.fn); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	return d, nil
}

// Import implements store.Porter.
func (s *Store) Import(ctx context.Context, d *store.Dump) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// Nobody writes while the copy goes in.
		var tables, checks []string
		for _, d := range dumpTables {
			tables = append(tables, d.table)
			if d.what != "" {
				checks = append(checks, fmt.Sprintf("(select '%s' from %s limit 1)", d.what, d.table))
			}
		}
		if _, err := tx.Exec(ctx, "lock table "+strings.Join(tables, ", ")+" in exclusive mode"); err != nil {
			return err
		}
		var what string
		err := tx.QueryRow(ctx, "select coalesce("+strings.Join(checks, ", ")+", '')").Scan(&what)
		if err != nil {
			return err
		}
		if what != "" {
			return fmt.Errorf("%w: it has %s", store.ErrNotEmpty, what)
		}
		counters := map[string]uint64{}
		for _, r := range d.Runs {
			if err := putRun(ctx, tx, r); err != nil {
				return err
			}
			counters["runs"] = max(counters["runs"], r.ID)
		}
		for id, text := range d.Logs {
			if _, err := tx.Exec(ctx, "insert into stagebot_logs (run_id, text) values ($1, $2)", id, text); err != nil {
				return fmt.Errorf("log of run %d: %w", id, err)
			}
		}
		for _, h := range d.Holds {
			if err := putHold(ctx, tx, h); err != nil {
				return err
			}
			counters["holds"] = max(counters["holds"], h.ID)
		}
		for _, a := range d.Approvals {
			rec, err := json.Marshal(a)
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, "insert into stagebot_approvals (run_id, user_id, record) values ($1, $2, $3)", a.RunID, a.User.ID, rec); err != nil {
				return fmt.Errorf("approval of run %d: %w", a.RunID, err)
			}
		}
		for target, users := range d.Watchers {
			for _, u := range users {
				rec, err := json.Marshal(u)
				if err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, "insert into stagebot_watchers (target, user_id, record) values ($1, $2, $3)", target, u.ID, rec); err != nil {
					return err
				}
			}
		}
		for i := range d.Events {
			if err := putEvent(ctx, tx, &d.Events[i]); err != nil {
				return err
			}
			counters["events"] = max(counters["events"], d.Events[i].ID)
		}
		for name, t := range d.Marks {
			text, err := t.MarshalText()
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, "insert into stagebot_marks (name, at) values ($1, $2)", name, string(text)); err != nil {
				return err
			}
		}
		for key, run := range d.Databases {
			if _, err := tx.Exec(ctx, "insert into stagebot_databases (key, run_id) values ($1, $2)", key, run); err != nil {
				return err
			}
		}
		for name, v := range d.Values {
			if _, err := tx.Exec(ctx, "insert into stagebot_values (name, value) values ($1, $2)", name, v); err != nil {
				return err
			}
		}
		for name, v := range counters {
			if _, err := tx.Exec(ctx, "update stagebot_counters set value = greatest(value, $2) where name = $1", name, v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	return nil
}

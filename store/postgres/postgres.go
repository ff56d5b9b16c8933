package postgres

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/stagebot/stagebot/store"
)

//go:embed migrations/*.sql
var migrations embed.FS

// MaxLogBytes bounds one run's log: store.MaxLogBytes.
const MaxLogBytes = store.MaxLogBytes

// ErrFenced means a newer leader holds the lease: this process's writes
// are refused, so that a leader that was paused or cut off and comes back
// cannot undo what its successor did.
var ErrFenced = errors.New("the leadership lease does not allow it")

// Store is a store.Store in a PostgreSQL database.
type Store struct {
	pool *pgxpool.Pool
	// token is the fencing token every write carries: the lease's token
	// when this process became leader (0 before).
	token atomic.Uint64
}

var _ store.Store = (*Store)(nil)

// Open connects to dsn and creates or upgrades the store's tables. Two
// processes may open the same database at once: the migrations run under
// an advisory lock.
func Open(ctx context.Context, dsn string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("store.dsn: %w", err)
	}
	if cfg.ConnConfig.RuntimeParams == nil {
		cfg.ConnConfig.RuntimeParams = map[string]string{}
	}
	// A transaction left open by a process that was paused must not keep
	// the lease row locked for its successor.
	cfg.ConnConfig.RuntimeParams["idle_in_transaction_session_timeout"] = "5000"
	cfg.ConnConfig.RuntimeParams["application_name"] = "stagebot"
	cfg.MaxConns = 8
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	if err := migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	return &Store{pool: pool}, nil
}

func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	fsys, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockTimeout(1, 60))
	if err != nil {
		return err
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, fsys, goose.WithSessionLocker(locker), goose.WithTableName("stagebot_schema_version"))
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	have, err := p.GetDBVersion(ctx)
	if err != nil && !errors.Is(err, goose.ErrNoMigrations) {
		// A fresh database has no version table yet: Up creates it.
		have = 0
	}
	sources := p.ListSources()
	if latest := sources[len(sources)-1].Version; have > latest {
		return fmt.Errorf("store: the database has schema version %d, newer than this stagebot understands (%d); upgrade stagebot", have, latest)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("store: create or upgrade the tables: %w", err)
	}
	return nil
}

// Close closes the connections.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// Pool is the store's connection pool (the Elector shares it).
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Fence makes every later write carry token and be refused once a newer
// leader exists.
func (s *Store) Fence(token uint64) { s.token.Store(token) }

// write runs fn in a transaction that holds the lease row shared: a new
// leader's takeover waits until it commits, and it is refused once a newer
// leader exists.
func (s *Store) write(ctx context.Context, fn func(tx pgx.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var current uint64
		if err := tx.QueryRow(ctx, "select token from stagebot_lease where id = 1 for share").Scan(&current); err != nil {
			return err
		}
		if mine := s.token.Load(); current > mine {
			return fmt.Errorf("%w: a newer leader holds the lease (token %d, this process's %d)", ErrFenced, current, mine)
		}
		return fn(tx)
	})
}

// next takes the next number of a kind of record.
func next(ctx context.Context, tx pgx.Tx, name string) (uint64, error) {
	var v uint64
	err := tx.QueryRow(ctx, "update stagebot_counters set value = value + 1 where name = $1 returning value", name).Scan(&v)
	return v, err
}

func endedAt(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// CreateRun implements store.Store.
func (s *Store) CreateRun(ctx context.Context, r *store.Run) error {
	err := s.write(ctx, func(tx pgx.Tx) error {
		id, err := next(ctx, tx, "runs")
		if err != nil {
			return err
		}
		c := *r
		c.ID, c.Version = id, 1
		if err := putRun(ctx, tx, &c); err != nil {
			return err
		}
		r.ID, r.Version = c.ID, c.Version
		return nil
	})
	if err != nil {
		return fmt.Errorf("create run: %w", err)
	}
	return nil
}

func putRun(ctx context.Context, tx pgx.Tx, r *store.Run) error {
	rec, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `insert into stagebot_runs (id, target, active, ended_at, version, record) values ($1, $2, $3, $4, $5, $6)
		on conflict (id) do update set target = excluded.target, active = excluded.active, ended_at = excluded.ended_at,
		version = excluded.version, record = excluded.record`,
		r.ID, r.Target, !r.State.Done(), endedAt(r.EndedAt), r.Version, rec)
	return err
}

// UpdateRun implements store.Store.
func (s *Store) UpdateRun(ctx context.Context, r *store.Run) error {
	err := s.write(ctx, func(tx pgx.Tx) error {
		var stored uint64
		err := tx.QueryRow(ctx, "select version from stagebot_runs where id = $1 for update", r.ID).Scan(&stored)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("run %d: %w", r.ID, store.ErrNotFound)
		}
		if err != nil {
			return err
		}
		if stored != r.Version {
			return fmt.Errorf("run %d changed since it was read (version %d, stored %d): %w", r.ID, r.Version, stored, store.ErrConflict)
		}
		c := *r
		c.Version++
		if err := putRun(ctx, tx, &c); err != nil {
			return err
		}
		r.Version = c.Version
		return nil
	})
	if err != nil {
		return fmt.Errorf("update run %d: %w", r.ID, err)
	}
	return nil
}

func scanRuns(rows pgx.Rows) ([]*store.Run, error) {
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (*store.Run, error) {
		var rec []byte
		if err := row.Scan(&rec); err != nil {
			return nil, err
		}
		var r store.Run
		if err := json.Unmarshal(rec, &r); err != nil {
			return nil, fmt.Errorf("decode run: %w", err)
		}
		return &r, nil
	})
}

// Run implements store.Store.
func (s *Store) Run(ctx context.Context, id uint64) (*store.Run, error) {
	rows, err := s.pool.Query(ctx, "select record from stagebot_runs where id = $1", id)
	if err != nil {
		return nil, fmt.Errorf("run %d: %w", id, err)
	}
	runs, err := scanRuns(rows)
	if err != nil {
		return nil, fmt.Errorf("run %d: %w", id, err)
	}
	if len(runs) == 0 {
		return nil, fmt.Errorf("run %d: %w", id, store.ErrNotFound)
	}
	return runs[0], nil
}

// Runs implements store.Store.
func (s *Store) Runs(ctx context.Context, f store.RunFilter) ([]*store.Run, error) {
	q := "select record from stagebot_runs where ($1 = '' or target = $1) and (not $2 or active) order by id desc"
	rows, err := s.pool.Query(ctx, q, f.Target, f.Active)
	if err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	all, err := scanRuns(rows)
	if err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	var out []*store.Run
	for _, r := range all {
		if !f.Match(r) {
			continue
		}
		out = append(out, r)
		if f.Limit > 0 && len(out) >= f.Limit {
			break
		}
	}
	return out, nil
}

func exists(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, runID uint64) error {
	var one int
	err := q.QueryRow(ctx, "select 1 from stagebot_runs where id = $1", runID).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("run %d: %w", runID, store.ErrNotFound)
	}
	return err
}

// AppendLog implements store.Store.
func (s *Store) AppendLog(ctx context.Context, runID uint64, text []byte) error {
	err := s.write(ctx, func(tx pgx.Tx) error {
		if err := exists(ctx, tx, runID); err != nil {
			return err
		}
		var old []byte
		err := tx.QueryRow(ctx, "select text from stagebot_logs where run_id = $1 for update", runID).Scan(&old)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		buf, ok := store.AppendLogText(old, text)
		if !ok {
			return nil
		}
		_, err = tx.Exec(ctx, "insert into stagebot_logs (run_id, text) values ($1, $2) on conflict (run_id) do update set text = excluded.text", runID, buf)
		return err
	})
	if err != nil {
		return fmt.Errorf("append log of run %d: %w", runID, err)
	}
	return nil
}

// Log implements store.Store.
func (s *Store) Log(ctx context.Context, runID uint64) ([]byte, error) {
	if err := exists(ctx, s.pool, runID); err != nil {
		return nil, err
	}
	var out []byte
	err := s.pool.QueryRow(ctx, "select text from stagebot_logs where run_id = $1", runID).Scan(&out)
	if errors.Is(err, pgx.ErrNoRows) {
		return []byte{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("log of run %d: %w", runID, err)
	}
	if out == nil {
		out = []byte{}
	}
	return out, nil
}

func putHold(ctx context.Context, tx pgx.Tx, h *store.Hold) error {
	rec, err := json.Marshal(h)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `insert into stagebot_holds (id, active, ended_at, record) values ($1, $2, $3, $4)
		on conflict (id) do update set active = excluded.active, ended_at = excluded.ended_at, record = excluded.record`,
		h.ID, h.Active(), endedAt(h.EndedAt), rec)
	return err
}

// CreateHold implements store.Store.
func (s *Store) CreateHold(ctx context.Context, h *store.Hold) error {
	err := s.write(ctx, func(tx pgx.Tx) error {
		id, err := next(ctx, tx, "holds")
		if err != nil {
			return err
		}
		c := *h
		c.ID = id
		if err := putHold(ctx, tx, &c); err != nil {
			return err
		}
		h.ID = id
		return nil
	})
	if err != nil {
		return fmt.Errorf("create hold: %w", err)
	}
	return nil
}

// UpdateHold implements store.Store.
func (s *Store) UpdateHold(ctx context.Context, h *store.Hold) error {
	err := s.write(ctx, func(tx pgx.Tx) error {
		var one int
		err := tx.QueryRow(ctx, "select 1 from stagebot_holds where id = $1 for update", h.ID).Scan(&one)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("hold %d: %w", h.ID, store.ErrNotFound)
		}
		if err != nil {
			return err
		}
		return putHold(ctx, tx, h)
	})
	if err != nil {
		return fmt.Errorf("update hold %d: %w", h.ID, err)
	}
	return nil
}

// Holds implements store.Store.
func (s *Store) Holds(ctx context.Context, activeOnly bool) ([]*store.Hold, error) {
	rows, err := s.pool.Query(ctx, "select record from stagebot_holds where not $1 or active order by id", activeOnly)
	if err != nil {
		return nil, fmt.Errorf("list holds: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*store.Hold, error) {
		var rec []byte
		if err := row.Scan(&rec); err != nil {
			return nil, err
		}
		var h store.Hold
		return &h, json.Unmarshal(rec, &h)
	})
	if err != nil {
		return nil, fmt.Errorf("list holds: %w", err)
	}
	return out, nil
}

// AddApproval implements store.Store.
func (s *Store) AddApproval(ctx context.Context, a store.Approval) error {
	err := s.write(ctx, func(tx pgx.Tx) error {
		if err := exists(ctx, tx, a.RunID); err != nil {
			return err
		}
		rec, err := json.Marshal(a)
		if err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, "insert into stagebot_approvals (run_id, user_id, record) values ($1, $2, $3) on conflict (run_id, user_id) do nothing", a.RunID, a.User.ID, rec)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("%s already approved run %d: %w", a.User.Display(), a.RunID, store.ErrConflict)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("add approval: %w", err)
	}
	return nil
}

// Approvals implements store.Store.
func (s *Store) Approvals(ctx context.Context, runID uint64) ([]store.Approval, error) {
	rows, err := s.pool.Query(ctx, "select record from stagebot_approvals where run_id = $1 order by seq", runID)
	if err != nil {
		return nil, fmt.Errorf("list approvals of run %d: %w", runID, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Approval, error) {
		var rec []byte
		var a store.Approval
		if err := row.Scan(&rec); err != nil {
			return a, err
		}
		return a, json.Unmarshal(rec, &a)
	})
	if err != nil {
		return nil, fmt.Errorf("list approvals of run %d: %w", runID, err)
	}
	return out, nil
}

// Watch implements store.Store.
func (s *Store) Watch(ctx context.Context, target string, user store.User) error {
	err := s.write(ctx, func(tx pgx.Tx) error {
		rec, err := json.Marshal(user)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, "insert into stagebot_watchers (target, user_id, record) values ($1, $2, $3) on conflict (target, user_id) do update set record = excluded.record", target, user.ID, rec)
		return err
	})
	if err != nil {
		return fmt.Errorf("watch %s: %w", target, err)
	}
	return nil
}

// Unwatch implements store.Store.
func (s *Store) Unwatch(ctx context.Context, target string, user store.User) error {
	err := s.write(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, "delete from stagebot_watchers where target = $1 and user_id = $2", target, user.ID)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("%s does not watch %s: %w", user.Display(), target, store.ErrNotFound)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("unwatch %s: %w", target, err)
	}
	return nil
}

// Watchers implements store.Store.
func (s *Store) Watchers(ctx context.Context, target string) ([]store.User, error) {
	// Ordered by user ID as Go compares strings: byte by byte.
	rows, err := s.pool.Query(ctx, `select record from stagebot_watchers where target = $1 order by user_id collate "C"`, target)
	if err != nil {
		return nil, fmt.Errorf("list watchers of %s: %w", target, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.User, error) {
		var rec []byte
		var u store.User
		if err := row.Scan(&rec); err != nil {
			return u, err
		}
		return u, json.Unmarshal(rec, &u)
	})
	if err != nil {
		return nil, fmt.Errorf("list watchers of %s: %w", target, err)
	}
	return out, nil
}

func putEvent(ctx context.Context, tx pgx.Tx, e *store.Event) error {
	rec, err := json.Marshal(e)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, "insert into stagebot_events (id, target, run_id, record) values ($1, $2, $3, $4)", e.ID, e.Target, e.RunID, rec)
	return err
}

// AppendEvent implements store.Store.
func (s *Store) AppendEvent(ctx context.Context, e *store.Event) error {
	err := s.write(ctx, func(tx pgx.Tx) error {
		id, err := next(ctx, tx, "events")
		if err != nil {
			return err
		}
		c := *e
		c.ID = id
		if err := putEvent(ctx, tx, &c); err != nil {
			return err
		}
		e.ID = id
		return nil
	})
	if err != nil {
		return fmt.Errorf("append event: %w", err)
	}
	return nil
}

// Events implements store.Store.
func (s *Store) Events(ctx context.Context, f store.EventFilter) ([]store.Event, error) {
	limit := int64(f.Limit)
	if limit <= 0 {
		limit = -1
	}
	rows, err := s.pool.Query(ctx, `select record from stagebot_events where ($1 = '' or target = $1) and ($2 = 0 or run_id = $2)
		order by id desc limit case when $3::bigint < 0 then null else $3::bigint end`, f.Target, f.RunID, limit)
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Event, error) {
		var rec []byte
		var e store.Event
		if err := row.Scan(&rec); err != nil {
			return e, err
		}
		return e, json.Unmarshal(rec, &e)
	})
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	return out, nil
}

// Mark implements store.Store.
func (s *Store) Mark(ctx context.Context, name string) (time.Time, error) {
	var text string
	err := s.pool.QueryRow(ctx, "select at from stagebot_marks where name = $1", name).Scan(&text)
	if errors.Is(err, pgx.ErrNoRows) {
		return time.Time{}, nil
	}
	var t time.Time
	if err == nil {
		err = t.UnmarshalText([]byte(text))
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("read mark %s: %w", name, err)
	}
	return t, nil
}

// SetMark implements store.Store.
func (s *Store) SetMark(ctx context.Context, name string, t time.Time) error {
	err := s.write(ctx, func(tx pgx.Tx) error {
		text, err := t.MarshalText()
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, "insert into stagebot_marks (name, at) values ($1, $2) on conflict (name) do update set at = excluded.at", name, string(text))
		return err
	})
	if err != nil {
		return fmt.Errorf("set mark %s: %w", name, err)
	}
	return nil
}

// RecordDatabase implements store.Store.
func (s *Store) RecordDatabase(ctx context.Context, key string, run uint64) error {
	err := s.write(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "insert into stagebot_databases (key, run_id) values ($1, $2) on conflict (key) do update set run_id = excluded.run_id", key, run)
		return err
	})
	if err != nil {
		return fmt.Errorf("record database %s: %w", key, err)
	}
	return nil
}

// DatabaseRun implements store.Store.
func (s *Store) DatabaseRun(ctx context.Context, key string) (uint64, error) {
	var run uint64
	err := s.pool.QueryRow(ctx, "select run_id from stagebot_databases where key = $1", key).Scan(&run)
	if errors.Is(err, pgx.ErrNoRows) {
		err = store.ErrNotFound
	}
	if err != nil {
		return 0, fmt.Errorf("look up database %s: %w", key, err)
	}
	return run, nil
}

// SetValue implements store.Store.
func (s *Store) SetValue(ctx context.Context, name string, v []byte) error {
	err := s.write(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "insert into stagebot_values (name, value) values ($1, $2) on conflict (name) do update set value = excluded.value", name, v)
		return err
	})
	if err != nil {
		return fmt.Errorf("set value %s: %w", name, err)
	}
	return nil
}

// Value implements store.Store.
func (s *Store) Value(ctx context.Context, name string) ([]byte, error) {
	var v []byte
	err := s.pool.QueryRow(ctx, "select value from stagebot_values where name = $1", name).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		err = store.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("value %s: %w", name, err)
	}
	if v == nil {
		v = []byte{}
	}
	return v, nil
}

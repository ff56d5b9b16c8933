package postgres_test

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stagebot/stagebot/internal/patience"
	"github.com/stagebot/stagebot/internal/pgtest"
	"github.com/stagebot/stagebot/runner"
	"github.com/stagebot/stagebot/runner/postgres"
	"github.com/stagebot/stagebot/store"
)

// One "production" and one "staging" server for the whole package; every
// test uses databases of its own.
var (
	servers   struct{ prod, stg *pgtest.Server }
	serverErr error
	once      sync.Once
	dbSeq     atomic.Int64
	runSeq    atomic.Int64 // each run of a test pipeline has its own number
)

func TestMain(m *testing.M) {
	code := m.Run()
	if servers.prod != nil {
		servers.prod.Stop()
	}
	if servers.stg != nil {
		servers.stg.Stop()
	}
	os.Exit(code)
}

func pair(t *testing.T) (prod, stg *pgtest.Server) {
	t.Helper()
	once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), patience.D(2*time.Minute))
		defer cancel()
		o := pgtest.Options{Extensions: configExtension}
		servers.prod, serverErr = pgtest.Start(ctx, o)
		if serverErr == nil {
			servers.stg, serverErr = pgtest.Start(ctx, o)
		}
	})
	if serverErr != nil {
		t.Fatal(serverErr)
	}
	return servers.prod, servers.stg
}

// configExtension is an extension with a configuration table and
// sequence, as PostGIS and pg_cron have: CREATE EXTENSION puts a row in the
// table, and a dump carries the rows added since (the ones its filter
// selects) and the sequence's position.
var configExtension = map[string]string{
	"stagebot_cfg.control": "default_version = '1.0'\nrelocatable = false\n",
	"stagebot_cfg--1.0.sql": `
create table stagebot_cfg (k text primary key, v text, builtin bool not null default false);
insert into stagebot_cfg values ('shipped', 'with the extension', true);
select pg_catalog.pg_extension_config_dump('stagebot_cfg', 'WHERE NOT builtin');
create sequence stagebot_cfg_seq;
select pg_catalog.pg_extension_config_dump('stagebot_cfg_seq', '');
`,
}

// fixture is a production database with one of everything, and the
// target that refreshes a staging database from it.
type fixture struct {
	prodDB, stgDB string
	prod, stg     *pgtest.Server
	target        *postgres.Target
}

func newFixture(t *testing.T) *fixture {
	prod, stg := pair(t)
	n := dbSeq.Add(1)
	f := &fixture{prodDB: fmt.Sprintf("app%d", n), stgDB: fmt.Sprintf("app%d_stg", n), prod: prod, stg: stg}
	pgtest.Exec(t, prod.DSN("postgres"), "create database "+f.prodDB, "alter database "+f.prodDB+" set work_mem = '12MB'", "alter database "+f.prodDB+" set statement_timeout = '45s'")
	pgtest.Exec(t, prod.DSN(f.prodDB), seedSQL...)
	f.target = &postgres.Target{Name: "app", ProductionDSN: prod.DSN(f.prodDB), StagingDSN: stg.DSN(f.stgDB), KeepPrevious: true, Jobs: 2}
	return f
}

var seedSQL = []string{
	`create sequence invoice_no start 1000`,
	`create table users (id bigserial primary key, email text not null unique, name text, created timestamptz not null default now(), active boolean default true, prefs jsonb)`,
	`create table orders (id bigserial primary key, user_id bigint not null references users(id), amount numeric(12,2) check (amount >= 0), note text, placed date)`,
	`create index orders_user_idx on orders(user_id)`,
	`create index orders_placed_idx on orders(placed) where amount > 100`,
	`create table audit (at timestamptz, what text)`,
	`insert into users (email, name, prefs) select 'user' || g || '@example.org', 'User ' || g, jsonb_build_object('n', g) from generate_series(1, 3000) g`,
	`insert into orders (user_id, amount, note, placed) select 1 + (g % 3000), (g % 500)::numeric + 0.25, 'note ' || g, date '2026-01-01' + (g % 300) from generate_series(1, 8000) g`,
	`select setval('invoice_no', 4242)`,
	`create view big_orders as select o.*, u.email from orders o join users u on u.id = o.user_id where amount > 400`,
	`create function order_total(uid bigint) returns numeric language sql stable as $$ select coalesce(sum(amount), 0) from orders where user_id = uid $$`,
	`analyze`,
}

// fingerprint describes a database's data and schema: a checksum of every
// table's rows, sequence values, indexes, constraints, views, functions and
// database settings.
func fingerprint(t *testing.T, dsn string) map[string]string {
	t.Helper()
	ctx := context.Background()
	c := pgtest.Connect(t, dsn)
	defer c.Close(ctx)
	out := map[string]string{}
	rows, _ := c.Query(ctx, `select tablename from pg_tables where schemaname = 'public'`)
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	for _, tb := range tables {
		var sum string
		var n int64
		q := fmt.Sprintf(`select count(*), coalesce(md5(string_agg(t::text, '|' order by t::text)), '') from %s t`, pgx.Identifier{tb}.Sanitize())
		if err := c.QueryRow(ctx, q).Scan(&n, &sum); err != nil {
			t.Fatal(err)
		}
		out["table "+tb] = fmt.Sprintf("%d rows, %s", n, sum)
	}
	queries := map[string]string{
		"sequences":   `select string_agg(sequencename || '=' || coalesce(last_value::text, 'null'), ',' order by sequencename) from pg_sequences`,
		"indexes":     `select string_agg(indexdef, ';' order by indexdef) from pg_indexes where schemaname = 'public'`,
		"constraints": `select string_agg(conname || ':' || pg_get_constraintdef(oid), ';' order by conname, pg_get_constraintdef(oid)) from pg_constraint where connamespace = 'public'::regnamespace`,
		"views":       `select string_agg(viewname || ':' || definition, ';' order by viewname) from pg_views where schemaname = 'public'`,
		"functions":   `select string_agg(proname || '(' || pg_get_function_identity_arguments(oid) || '):' || prosrc, ';' order by proname, pg_get_function_identity_arguments(oid)) from pg_proc where pronamespace = 'public'::regnamespace`,
		"settings":    `select coalesce(string_agg(s, ',' order by s), '') from pg_db_role_setting, unnest(setconfig) s where setdatabase = (select oid from pg_database where datname = current_database())`,
	}
	for k, q := range queries {
		var v *string
		if err := c.QueryRow(ctx, q).Scan(&v); err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		if v != nil {
			out[k] = *v
		}
	}
	return out
}

func diffPrints(a, b map[string]string) string {
	var keys []string
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var out []string
	for _, k := range keys {
		if a[k] != b[k] {
			out = append(out, fmt.Sprintf("%s:\n  want %q\n  got  %q", k, a[k], b[k]))
		}
	}
	return strings.Join(out, "\n")
}

func databases(t *testing.T, s *pgtest.Server) []string {
	t.Helper()
	ctx := context.Background()
	c := pgtest.Connect(t, s.DSN("postgres"))
	defer c.Close(ctx)
	rows, _ := c.Query(ctx, "select datname from pg_database order by 1")
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func has(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

type progressLog struct {
	mu    sync.Mutex
	ps    []runner.Progress
	steps []int // the step each report came from
}

func (p *progressLog) StepStarted(int, store.StepResult)  {}
func (p *progressLog) StepFinished(int, store.StepResult) {}
func (p *progressLog) StepProgress(i int, pr runner.Progress) {
	p.mu.Lock()
	p.ps = append(p.ps, pr)
	p.steps = append(p.steps, i)
	p.mu.Unlock()
}

// run plans and executes steps as one pipeline and returns the log.
func run(t *testing.T, steps []runner.Step, rep runner.Reporter) (string, error) {
	t.Helper()
	plan := runner.MakePlan(context.Background(), "app", &runner.Pipeline{Name: "default", Steps: steps})
	if probs := plan.Problems(); len(probs) > 0 {
		return "", fmt.Errorf("plan: %s", strings.Join(probs, "; "))
	}
	var log strings.Builder
	var mu sync.Mutex
	w := writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return log.Write(p) })
	_, err := runner.Execute(context.Background(), plan, runner.Env{Run: uint64(runSeq.Add(1)), Target: "app", Log: w}, rep, nil)
	mu.Lock()
	defer mu.Unlock()
	return log.String(), err
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

package postgres_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/stagebot/stagebot/internal/pgtest"
	"github.com/stagebot/stagebot/runner"
	"github.com/stagebot/stagebot/runner/postgres"
)

// awkward is a production database built to be hard to copy faithfully:
// list-valued and per-role database settings, a non-ISO DateStyle, the
// database's owner, privileges and comment, unlogged tables, an exclusion
// constraint, large objects (one longer than a copy's chunk), CLUSTER ON,
// NOT VALID constraints, a materialized view left WITH NO DATA, an event
// trigger, row-level security, default privileges and a table without a
// primary key holding duplicate rows.
type awkward struct {
	db                         string
	owner, reader, app, billed string // roles, on both servers
}

func newAwkward(t *testing.T, prod, stg *pgtest.Server) *awkward {
	t.Helper()
	n := dbSeq.Add(1)
	a := &awkward{db: fmt.Sprintf("awk%d", n), owner: fmt.Sprintf("awk%d_owner", n), reader: fmt.Sprintf("awk%d_reader", n), app: fmt.Sprintf("awk%d_app", n), billed: fmt.Sprintf("Awk%d Billing", n)}
	for _, s := range []*pgtest.Server{prod, stg} {
		pgtest.Exec(t, s.DSN("postgres"), "create role "+a.owner+" createdb", "create role "+a.reader, "create role "+a.app)
	}
	q := pgx.Identifier{a.billed}.Sanitize()
	pgtest.Exec(t, prod.DSN("postgres"),
		"create database "+a.db+" owner "+a.owner,
		`alter database `+a.db+` set search_path = "$user", public, app, `+q,
		`alter database `+a.db+` set datestyle = 'SQL, DMY'`,
		`alter database `+a.db+` set statement_timeout = '40s'`,
		"alter role "+a.app+" in database "+a.db+" set work_mem = '7MB'",
		"alter role "+a.app+" in database "+a.db+" set search_path = app, public",
		"revoke connect, temporary on database "+a.db+" from public",
		"grant connect on database "+a.db+" to "+a.reader,
		"comment on database "+a.db+" is 'the shop''s books\nsecond line'",
		"alter database "+a.db+" connection limit 50",
	)
	pgtest.Exec(t, prod.DSN(a.db),
		"create schema app",
		"create schema "+q,
		"create table "+q+".invoices (id int primary key, amount numeric, issued date)",
		"insert into "+q+".invoices select g, g * 1.5, date '2026-03-01' + g from generate_series(1, 500) g",
		"create table app.accounts (id serial primary key, name text, owner_name text)",
		"insert into app.accounts (name, owner_name) select 'acct ' || g, 'user' || (g % 7) from generate_series(1, 300) g",
		"create unlogged table app.sessions (id int primary key, token text)",
		"insert into app.sessions select g, md5(g::text) from generate_series(1, 200) g",
		"create table app.bookings (id int, during tstzrange, exclude using gist (during with &&))",
		"insert into app.bookings select g, tstzrange(timestamptz '2026-01-01' + g * interval '1 hour', timestamptz '2026-01-01' + (g + 1) * interval '1 hour') from generate_series(1, 100) g",
		"create table app.clustered (id int primary key, v text)",
		"insert into app.clustered select g, 'v' || g from generate_series(1, 100) g",
		"alter table app.clustered cluster on clustered_pkey",
		// Keys of every kind the streaming copy builds as an index first,
		// and of the kinds it must not (deferrable, descending, a name
		// with a semicolon).
		`create table app.keyed (a int not null, b text, c int, d int,
			constraint keyed_pk primary key (a) include (c) with (fillfactor = 70),
			constraint keyed_b unique nulls not distinct (b),
			constraint keyed_c unique (c) deferrable initially deferred,
			constraint "keyed;odd" unique (b, a))`,
		"create unique index keyed_d_desc on app.keyed (d desc)",
		"insert into app.keyed select g, case when g > 1 then 'b' || g end, g, g from generate_series(1, 301) g",
		"alter table app.keyed cluster on keyed_b",
		"create table app.legacy (amount int)",
		"insert into app.legacy values (-5), (10)",
		"alter table app.legacy add constraint legacy_positive check (amount > 0) not valid",
		"create table app.dupes (a int, b text)",
		"insert into app.dupes values (1, 'x'), (1, 'x'), (1, 'x'), (2, null), (2, null)",
		"create materialized view app.summary as select owner_name, count(*) from app.accounts group by 1 with no data",
		"create table app.secrets (id int, owner_name text)",
		"insert into app.secrets select g, 'user' || (g % 7) from generate_series(1, 70) g",
		"alter table app.secrets enable row level security",
		"alter table app.secrets force row level security",
		"create policy own on app.secrets using (owner_name = current_user)",
		"alter default privileges in schema app grant select on tables to "+a.reader,
		"grant usage on schema app to "+a.reader,
		"grant select on app.accounts to "+a.reader,
		`create function app.no_drops() returns event_trigger language plpgsql as $$ begin raise notice 'ddl'; end $$`,
		"create event trigger "+a.db+"_ddl on ddl_command_start execute function app.no_drops()",
		"select lo_from_bytea(0, 'small object')",
		"select lo_from_bytea(0, convert_to(repeat('large object ', 200000), 'UTF8'))",
		"select lo_from_bytea(0, '')",
		"analyze",
	)
	// A large object with an owner and a comment.
	c := pgtest.Connect(t, prod.DSN(a.db))
	defer c.Close(context.Background())
	var oid uint32
	if err := c.QueryRow(context.Background(), "select min(oid) from pg_largeobject_metadata").Scan(&oid); err != nil {
		t.Fatal(err)
	}
	pgtest.Exec(t, prod.DSN(a.db), fmt.Sprintf("alter large object %d owner to %s", oid, a.owner), fmt.Sprintf("comment on large object %d is 'the first'", oid),
		fmt.Sprintf("grant select on large object %d to %s", oid, a.reader))
	return a
}

// observe describes, check by check, everything a client can see of a
// database: the database itself, how a session behaves in it, its schema
// and its data.
func observe(t *testing.T, dsn string) map[string]string {
	t.Helper()
	ctx := context.Background()
	c := pgtest.Connect(t, dsn)
	defer c.Close(ctx)
	out := map[string]string{}
	checks := map[string]string{
		"database: settings":          `select coalesce((select setconfig::text from pg_db_role_setting where setrole = 0 and setdatabase = d.oid), '') from pg_database d where datname = current_database()`,
		"database: per-role settings": `select coalesce(string_agg(x, '; ' order by x), '') from (select pg_get_userbyid(setrole) || '=' || setconfig::text x from pg_db_role_setting where setrole <> 0 and setdatabase = (select oid from pg_database where datname = current_database())) s`,
		"database: owner":             `select pg_get_userbyid(datdba) from pg_database where datname = current_database()`,
		"database: privileges":        `select coalesce(datacl::text, 'default') from pg_database where datname = current_database()`,
		"database: comment":           `select coalesce(shobj_description(oid, 'pg_database'), '(none)') from pg_database where datname = current_database()`,
		"database: connection limit":  `select datconnlimit::text from pg_database where datname = current_database()`,
		"database: encoding, locale":  `select pg_encoding_to_char(encoding) || ' ' || datcollate || ' ' || datctype from pg_database where datname = current_database()`,
		"session: search_path":        `select current_setting('search_path') || ' → ' || current_schemas(false)::text`,
		"session: DateStyle":          `select current_setting('DateStyle') || ' → ' || (date '2026-12-01')::text`,
		"session: unqualified name":   `select count(*)::text from invoices`,
		"relations": `select coalesce(string_agg(x, '; ' order by x), '') from (select format('%s.%s %s %s rls=%s/%s populated=%s', n.nspname, c.relname, c.relkind, c.relpersistence, c.relrowsecurity, c.relforcerowsecurity, c.relispopulated) x
			from pg_class c join pg_namespace n on n.oid = c.relnamespace where n.nspname not in ('pg_catalog', 'information_schema', 'pg_toast') and c.relkind <> 'i') s`,
		"indexes": `select coalesce(string_agg(x, '; ' order by x), '') from (select format('%s clustered=%s valid=%s immediate=%s %s', indexrelid::regclass, indisclustered, indisvalid, indimmediate, pg_get_indexdef(indexrelid)) x from pg_index
			where indrelid in (select oid from pg_class where relnamespace not in ('pg_catalog'::regnamespace, 'information_schema'::regnamespace, 'pg_toast'::regnamespace))) s`,
		"constraints": `select coalesce(string_agg(x, '; ' order by x), '') from (select format('%s %s validated=%s', conname, pg_get_constraintdef(oid), convalidated) x from pg_constraint
			where connamespace not in ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)) s`,
		"policies":           `select coalesce(string_agg(x, '; ' order by x), '') from (select format('%s.%s %s %s', schemaname, tablename, policyname, qual) x from pg_policies) s`,
		"event triggers":     `select coalesce(string_agg(x, '; ' order by x), '') from (select format('%s %s %s', evtname, evtevent, evtenabled) x from pg_event_trigger) s`,
		"default privileges": `select coalesce(string_agg(x, '; ' order by x), '') from (select defaclacl::text x from pg_default_acl) s`,
		"schema privileges":  `select coalesce(string_agg(x, '; ' order by x), '') from (select nspname || '=' || coalesce(nspacl::text, '') x from pg_namespace where nspname not like 'pg\_%' and nspname <> 'information_schema') s`,
		"large objects":      `select coalesce(string_agg(x, '; ' order by x), '') from (select format('%s owner=%s acl=%s comment=%s md5=%s', oid, pg_get_userbyid(lomowner), lomacl, obj_description(oid, 'pg_largeobject'), md5(lo_get(oid))) x from pg_largeobject_metadata) s`,
		"sequences":          `select coalesce(string_agg(x, '; ' order by x), '') from (select format('%s.%s=%s', schemaname, sequencename, last_value) x from pg_sequences) s`,
		"statistics": `select coalesce(string_agg(x, '; ' order by x), '') from (select format('%s.%s.%s', schemaname, tablename, attname) x from pg_stats
			where schemaname not in ('pg_catalog', 'information_schema')) s`,
	}
	for name, q := range checks {
		var v string
		if err := c.QueryRow(ctx, q).Scan(&v); err != nil {
			out[name] = "error: " + err.Error()
			continue
		}
		out[name] = v
	}
	// Every table's rows (row-level security does not hide rows from the
	// superuser the tests log in as).
	rows, err := c.Query(ctx, `select format('%I.%I', schemaname, tablename) from pg_tables where schemaname not in ('pg_catalog', 'information_schema')`)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	for _, tb := range tables {
		var n int64
		var sum string
		if err := c.QueryRow(ctx, fmt.Sprintf(`select count(*), coalesce(md5(string_agg(t::text, '|' order by t::text)), '') from %s t`, tb)).Scan(&n, &sum); err != nil {
			t.Fatalf("%s: %v", tb, err)
		}
		out["rows of "+tb] = fmt.Sprintf("%d rows, %s", n, sum)
	}
	return out
}

// TestRefresh_FaithfulCopyOfAnAwkwardDatabase refreshes staging from the
// awkward database by every method and from every kind of backup, and
// compares what a client sees, check by check.
func TestRefresh_FaithfulCopyOfAnAwkwardDatabase(t *testing.T) {
	prod, stg := pair(t)
	a := newAwkward(t, prod, stg)
	want := observe(t, prod.DSN(a.db))
	// The checks see what they must compare.
	for _, c := range [][2]string{
		{"database: settings", `"search_path=\"$user\", public, app, \"` + a.billed + `\""`},
		{"session: search_path", `{public,app,"` + a.billed + `"}`},
		{"session: DateStyle", "01/12/2026"},
		{"database: privileges", a.reader + "=c/"},
		{"database: comment", "the shop's books\nsecond line"},
		{"session: unqualified name", "500"},
		{"large objects", "comment=the first"},
		{"indexes", "clustered_pkey clustered=t"},
		{"constraints", "keyed_c UNIQUE (c) DEFERRABLE INITIALLY DEFERRED"},
		{"constraints", "legacy_positive CHECK ((amount > 0)) NOT VALID validated=f"},
		{"relations", "app.summary m p rls=f/f populated=f"},
		{"rows of app.dupes", "5 rows"},
		{"statistics", "app.accounts.owner_name"},
		{"indexes", "keyed_b clustered=t"},
	} {
		k, v := c[0], c[1]
		if !strings.Contains(want[k], v) {
			t.Fatalf("production's %s = %q, want it to contain %q", k, want[k], v)
		}
	}
	dir := t.TempDir()
	custom := filepath.Join(dir, "awk.dump")
	if err := os.WriteFile(custom, pgDump(t, prod.DSN(a.db), "-Fc"), 0o644); err != nil {
		t.Fatal(err)
	}
	plain := filepath.Join(dir, "awk.sql.xz")
	if err := os.WriteFile(plain, compress(t, pgDump(t, prod.DSN(a.db), "-C"), "xz"), 0o644); err != nil {
		t.Fatal(err)
	}
	methods := []struct {
		name  string
		steps func(tg *postgres.Target) []runner.Step
		live  bool
	}{
		{name: "stream", live: true, steps: func(tg *postgres.Target) []runner.Step { return refreshSteps(tg) }},
		{name: "dump", live: true, steps: func(tg *postgres.Target) []runner.Step {
			return []runner.Step{&postgres.Refresh{StepName: "refresh", Target: tg, Method: postgres.MethodDump}, &postgres.Swap{StepName: "swap", Target: tg}}
		}},
		{name: "custom-format file", steps: func(tg *postgres.Target) []runner.Step { return fileSteps(tg, custom) }},
		{name: "plain -C file, xz", steps: func(tg *postgres.Target) []runner.Step { return fileSteps(tg, plain) }},
	}
	for i, m := range methods {
		t.Run(m.name, func(t *testing.T) {
			// Staging has production's name on its own server, as it
			// usually does: a plain -C dump names it.
			stgDB := a.db
			if i > 0 {
				stgDB = fmt.Sprintf("%s_%d", a.db, i)
			}
			tg := &postgres.Target{Name: "awk", StagingDSN: stg.DSN(stgDB), KeepPrevious: true, Jobs: 2}
			if m.live {
				tg.ProductionDSN = prod.DSN(a.db)
			}
			// Twice: the second refresh replaces a copy, and the first is
			// kept for rollback.
			for round := 1; round <= 2; round++ {
				log, err := run(t, m.steps(tg), nil)
				if err != nil {
					t.Fatalf("round %d: %v\n%s", round, err, log)
				}
				// Every database-level statement was understood: pg_dump's
				// own session settings are not properties to warn about.
				if strings.Contains(log, "does not recognise") {
					t.Errorf("round %d: a database-level statement was left out:\n%s", round, log)
				}
				if d := diffPrints(want, observe(t, stg.DSN(stgDB))); d != "" {
					t.Fatalf("round %d: staging differs from production:\n%s", round, d)
				}
			}
			// The kept copy refuses connections until a rollback.
			prev := stgDB + postgres.PrevSuffix
			pgtest.Exec(t, stg.DSN("postgres"), "alter database "+prev+" allow_connections true")
			got := observe(t, stg.DSN(prev))
			pgtest.Exec(t, stg.DSN("postgres"), "alter database "+prev+" allow_connections false")
			if d := diffPrints(want, got); d != "" {
				t.Fatalf("the copy kept for rollback differs from production:\n%s", d)
			}
		})
	}
	if d := diffPrints(want, observe(t, prod.DSN(a.db))); d != "" {
		t.Fatalf("production changed:\n%s", d)
	}
}

// TestRefresh_PlainCreateDumpNeverTouchesStagingInUse restores a plain
// pg_dump -C backup whose database has staging's name, with a check that
// fails on the shadow: the database-level statements in the dump must have
// gone to the shadow, so staging keeps its own properties.
func TestRefresh_PlainCreateDumpNeverTouchesStagingInUse(t *testing.T) {
	prod, stg := pair(t)
	a := newAwkward(t, prod, stg)
	plain := filepath.Join(t.TempDir(), "awk.sql")
	if err := os.WriteFile(plain, pgDump(t, prod.DSN(a.db), "-C"), 0o644); err != nil {
		t.Fatal(err)
	}
	tg := &postgres.Target{Name: "awk", StagingDSN: stg.DSN(a.db), KeepPrevious: true}
	pgtest.Exec(t, stg.DSN("postgres"), "create database "+a.db, "comment on database "+a.db+" is 'staging as it is'", "alter database "+a.db+" set work_mem = '3MB'")
	tg.Adopt = true
	before := observe(t, stg.DSN(a.db))
	failing := &postgres.Check{StepName: "verify", Target: tg, On: postgres.OnShadow, Query: "select false"}
	steps := []runner.Step{&postgres.Refresh{StepName: "restore", Target: tg, Source: postgres.Source{File: plain}}, failing, &postgres.Swap{StepName: "swap", Target: tg}}
	if _, err := run(t, steps, nil); err == nil {
		t.Fatal("the failing check did not fail the run")
	}
	if d := diffPrints(before, observe(t, stg.DSN(a.db))); d != "" {
		t.Fatalf("staging changed before any swap:\n%s", d)
	}
	// And where staging does not exist yet, the restore works.
	pgtest.Exec(t, stg.DSN("postgres"), "drop database "+a.db)
	if log, err := run(t, fileSteps(tg, plain), nil); err != nil {
		t.Fatalf("restore with no staging database: %v\n%s", err, log)
	}
	if d := diffPrints(observe(t, prod.DSN(a.db)), observe(t, stg.DSN(a.db))); d != "" {
		t.Fatalf("staging differs from production:\n%s", d)
	}
}

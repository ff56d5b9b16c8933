package postgres_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stagebot/stagebot/internal/pgtest"
	"github.com/stagebot/stagebot/runner"
	"github.com/stagebot/stagebot/runner/postgres"
)

// The streaming method against what COPY makes hard: tables split into
// page ranges, generated and dropped columns, partitions, materialized
// views, triggers, unlogged tables, foreign keys between tables copied by
// different workers. Both methods must give production's fingerprint.
func TestRefresh_StreamCopiesTheHardCases(t *testing.T) {
	defer postgres.SetSplitSize(64 << 10)() // split anything over 64 KiB
	f := newFixture(t)
	pgtest.Exec(t, f.prod.DSN(f.prodDB),
		`create table events (id bigint primary key, kind text, payload text, size int generated always as (length(payload)) stored, gone int)`,
		`alter table events drop column gone`,
		`insert into events select g, 'k' || (g % 7), repeat('x', g % 200) from generate_series(1, 20000) g`,
		`create index events_kind_idx on events (kind)`,
		`create table measurements (city int not null, at date not null, temp int) partition by range (at)`,
		`create table measurements_2025 partition of measurements for values from ('2025-01-01') to ('2026-01-01')`,
		// One partition is partitioned in turn, another table has no
		// partitions at all.
		`create table measurements_2026 partition of measurements for values from ('2026-01-01') to ('2027-01-01') partition by range (city)`,
		`create table measurements_2026_low partition of measurements_2026 for values from (0) to (25)`,
		`create table measurements_2026_high partition of measurements_2026 for values from (25) to (100)`,
		`create table readings (at date not null, v int) partition by range (at)`,
		`create index measurements_city_idx on measurements (city)`,
		`insert into measurements select g % 50, date '2025-06-01' + (g % 400), g % 40 from generate_series(1, 5000) g`,
		`create materialized view order_counts as select user_id, count(*) as n from orders group by user_id`,
		`create unique index order_counts_user on order_counts (user_id)`,
		`create function touch() returns trigger language plpgsql as $$ begin new.note := coalesce(new.note, 'touched'); return new; end $$`,
		`create trigger orders_touch before insert on orders for each row execute function touch()`,
		`create unlogged table cache (k text primary key, v text)`,
		`insert into cache select 'k' || g, 'v' || g from generate_series(1, 100) g`,
		`create table event_tags (event_id bigint references events(id), tag text)`,
		`insert into event_tags select g, 't' || (g % 3) from generate_series(1, 20000, 3) g`,
		// Foreign keys to the same table, to a unique index rather than a
		// constraint, and to a partitioned table (checked at the end).
		`create table nodes (id int primary key, parent int references nodes (id))`,
		`insert into nodes select g, nullif(g / 2, 0) from generate_series(1, 1000) g`,
		`create table codes (code text not null)`,
		`create unique index codes_code on codes (code)`,
		`insert into codes select 'c' || g from generate_series(1, 100) g`,
		`create table code_uses (code text references codes (code))`,
		`insert into code_uses select 'c' || (1 + g % 100) from generate_series(1, 1000) g`,
		`create table regions (id int, part int, primary key (id, part)) partition by list (part)`,
		`create table regions_1 partition of regions for values in (1)`,
		`insert into regions select g, 1 from generate_series(1, 10) g`,
		`create table sites (region int, part int, foreign key (region, part) references regions)`,
		`insert into sites select 1 + g % 10, 1 from generate_series(1, 100) g`,
		// An extension's configuration table: the row its script inserts
		// comes with CREATE EXTENSION, the ones added since with the data.
		// Long values are TOASTed and compressed; one column names its
		// own compression method.
		`create table docs (id int primary key, body text, pinned text compression pglz)`,
		`insert into docs select g, repeat(md5(g::text), 200), repeat(md5(g::text), 200) from generate_series(1, 200) g`,
		// A GIN index on an expression: no parallel workers for it.
		`create index docs_words on docs using gin (to_tsvector('simple', body))`,
		`create extension stagebot_cfg`,
		`insert into stagebot_cfg (k, v) values ('site', 'production'), ('mode', 'live')`,
		`select setval('stagebot_cfg_seq', 77)`,
		`analyze`,
	)
	prod := fingerprint(t, f.prod.DSN(f.prodDB))
	log, err := run(t, refreshSteps(f.target), nil)
	if err != nil {
		t.Fatalf("%v\n%s", err, log)
	}
	if d := diffPrints(prod, fingerprint(t, f.stg.DSN(f.stgDB))); d != "" {
		t.Fatalf("streamed staging differs from production:\n%s\n%s", d, log)
	}
	for _, want := range []string{"binary format", "copied public.events: 20000 rows", "built index events_kind_idx", "analyzed after", "built index docs_words in",
		"checked foreign key event_tags event_tags_event_id_fkey", "checked foreign key nodes nodes_parent_fkey", "checked foreign key code_uses code_uses_code_fkey"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	// A partitioned table's statistics are gathered as soon as its
	// partitions' data is in, beside the index builds, not alone at the
	// end; each level of a tree has its own.
	end := strings.Index(log, "data and ")
	for _, name := range []string{"public.measurements", "public.measurements_2026", "public.regions"} {
		if i := strings.Index(log, "analyzed partitioned table "+name+" in "); i < 0 || i > end {
			t.Errorf("%s was not analyzed while the indexes were built:\n%s", name, log)
		}
	}
	if strings.Contains(log, "analyzed partitioned table public.readings") {
		t.Errorf("a partitioned table without partitions was analyzed beside the builds:\n%s", log)
	}
	if strings.Contains(log, "checked foreign key sites") {
		t.Errorf("the foreign key to a partitioned table was checked before its partitions were indexed:\n%s", log)
	}
	var tables, streams int
	if i := strings.Index(log, "data after "); i < 0 {
		t.Errorf("log does not describe the copy:\n%s", log)
	} else if i += strings.Index(log[i:], ": "); false {
	} else if _, err := fmt.Sscanf(log[i:], ": %d tables", &tables); err != nil {
		t.Errorf("log: %v", err)
	} else if j := strings.Index(log[i:], "), "); j < 0 {
		t.Errorf("log does not count the streams:\n%s", log)
	} else if fmt.Sscanf(log[i+j+3:], "%d COPY streams", &streams); streams <= tables {
		t.Errorf("%d COPY streams for %d tables: nothing was split\n%s", streams, tables, log)
	}
	stg := f.stg.DSN(f.stgDB)
	for q, want := range map[string]string{
		`select count(*) from order_counts`:                                                                    "3000",
		`select count(*) from pg_trigger where tgname = 'orders_touch'`:                                        "1",
		`select sum(size) from events`:                                                                         pgtest.Value(t, f.prod.DSN(f.prodDB), `select sum(size) from events`),
		`select count(*) from pg_stats where tablename = 'events'`:                                             "4",
		`select count(*) from pg_stats where inherited and tablename in ('measurements', 'measurements_2026')`: "6",
		`select relpersistence::text from pg_class where relname = 'cache'`:                                    "u",
	} {
		if got := pgtest.Value(t, stg, q); got != want {
			t.Errorf("%s = %s, want %s", q, got, want)
		}
	}
	// Staging compresses what it TOASTs with lz4 where it can, except
	// where a column says otherwise; the values are the same.
	want := "pglz"
	if pgtest.Value(t, stg, `select 'lz4' = any(enumvals) from pg_settings where name = 'default_toast_compression'`) == "true" {
		want = "lz4"
	}
	if got := pgtest.Value(t, stg, `select string_agg(distinct pg_column_compression(body), ',') from docs`); got != want {
		t.Errorf("TOASTed values compressed with %s, want %s", got, want)
	}
	if got := pgtest.Value(t, stg, `select string_agg(distinct pg_column_compression(pinned), ',') from docs`); got != "pglz" {
		t.Errorf("a column that names pglz was compressed with %s", got)
	}
	// The dump method gives the same.
	f.target.KeepPrevious = false
	dump := refreshSteps(f.target)
	dump[0].(*postgres.Refresh).Method = postgres.MethodDump
	if log, err := run(t, dump, nil); err != nil {
		t.Fatalf("%v\n%s", err, log)
	}
	if d := diffPrints(prod, fingerprint(t, stg)); d != "" {
		t.Fatalf("dumped staging differs from production:\n%s", d)
	}
}

// Progress of the streaming method follows the copy: bytes of data and
// indexes against production's sizes never go backwards, and the last
// report counts every row, table and index.
func TestRefresh_StreamProgress(t *testing.T) {
	defer postgres.SetProgressEvery(2 * time.Millisecond)()
	f := newFixture(t)
	prodDSN := f.prod.DSN(f.prodDB)
	pgtest.Exec(t, prodDSN, `insert into audit select now(), 'row ' || g from generate_series(1, 50000) g`, `analyze`)
	rep := &progressLog{}
	log, err := run(t, refreshSteps(f.target), rep)
	if err != nil {
		t.Fatalf("%v\n%s", err, log)
	}
	rep.mu.Lock()
	defer rep.mu.Unlock()
	var refresh []runner.Progress // the swap step reports too
	for i, p := range rep.ps {
		if rep.steps[i] == 0 {
			refresh = append(refresh, p)
		}
	}
	if len(refresh) == 0 {
		t.Fatalf("no progress reported\n%s", log)
	}
	var last int64
	for _, p := range refresh {
		if p.Unit != "bytes" || p.Total <= 0 || p.Done > p.Total || p.Done < last {
			t.Fatalf("progress %+v after %d bytes: want bytes, growing, within the total", p, last)
		}
		last = p.Done
	}
	final := refresh[len(refresh)-1]
	rows := pgtest.Value(t, prodDSN, `select (select count(*) from users) + (select count(*) from orders) + (select count(*) from audit)`)
	indexes := pgtest.Value(t, prodDSN, `select count(*) from pg_indexes where schemaname = 'public'`)
	want := fmt.Sprintf("%s rows, 3/3 tables, %s/%s indexes", rows, indexes, indexes)
	if final.Done != final.Total || final.Items != want {
		t.Errorf("last progress = %q (%d of %d bytes), want %q at 100%%", final.Items, final.Done, final.Total, want)
	}
}

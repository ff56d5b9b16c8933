package main

import (
	"context"
	"fmt"
)

// shape is one kind of production database the bench generates. Sizes grow
// with -scale; at scale 10 each is a few hundred MB.
type shape struct {
	name     string
	describe func(scale int) string
	generate func(b *env, ctx context.Context, scale int) error
}

var shapes = []shape{
	{"pgbench", func(s int) string { return fmt.Sprintf("pgbench scale %d plus orders", s) }, (*env).generate},
	{"dominant", func(s int) string {
		return fmt.Sprintf("one dominant table (%d rows, three secondary indexes, two on text) with a foreign key, and a table indexed on two text columns", s*300000)
	}, (*env).dominant},
	{"small", func(s int) string { return fmt.Sprintf("%d small tables", 2000) }, (*env).smallTables},
	{"wide", func(s int) string {
		return fmt.Sprintf("%d wide rows of TOASTed text and jsonb, a GIN index on the jsonb", s*20000)
	}, (*env).wide},
	{"partitioned", func(s int) string { return fmt.Sprintf("a table of %d rows in 48 monthly partitions", s*200000) }, (*env).partitioned},
	{"fks", func(s int) string { return fmt.Sprintf("40 tables of %d rows chained by foreign keys", s*10000) }, (*env).foreignKeys},
}

func shapeNames() []string {
	var out []string
	for _, s := range shapes {
		out = append(out, s.name)
	}
	return out
}

func (b *env) dominant(ctx context.Context, scale int) error {
	return sqlExec(ctx, b.prod.DSN(db),
		`create table accounts (id int primary key, name text not null)`,
		fmt.Sprintf(`insert into accounts select g, 'account ' || g from generate_series(1, %d) g`, scale*1000),
		`create table events (id bigint generated always as identity primary key, account_id int not null references accounts(id),
			kind text not null, subject text not null, amount numeric(12,2), at timestamptz not null)`,
		fmt.Sprintf(`insert into events (account_id, kind, subject, amount, at)
			select 1 + (g::bigint * 7919) %% %d, (array['login','purchase','refund','logout','view'])[1 + g %% 5],
			       md5((g %% 100000)::text), (g %% 10000) / 100.0, timestamptz '2025-01-01' + g * interval '3 seconds'
			from generate_series(1, %d) g`, scale*1000, scale*300000),
		`create index events_subject_idx on events (subject)`,
		`create index events_kind_at_idx on events (kind, at)`,
		`create index events_amount_idx on events (amount)`,
		`create table people (id int primary key, first_name text not null, last_name text not null)`,
		fmt.Sprintf(`insert into people select g, md5(g::text), md5((g*3)::text) from generate_series(1, %d) g`, scale*50000),
		`create index people_name_idx on people (last_name, first_name)`)
}

func (b *env) smallTables(ctx context.Context, scale int) error {
	sql := `do $$ begin for i in 1..2000 loop
		execute format('create table t%s (id int primary key, v text not null, n int)', i);
		execute format('insert into t%s select g, md5(g::text), g %% 7 from generate_series(1, %s) g', i, ` + fmt.Sprint(scale*20) + `);
		execute format('create index t%s_v on t%s (v)', i, i);
	end loop; end $$`
	return sqlExec(ctx, b.prod.DSN(db), sql)
}

func (b *env) wide(ctx context.Context, scale int) error {
	return sqlExec(ctx, b.prod.DSN(db),
		`create table documents (id bigint primary key, title text not null, body text not null, meta jsonb not null)`,
		fmt.Sprintf(`insert into documents select g, 'document ' || g, repeat(md5(g::text), 64),
			jsonb_build_object('n', g, 'tags', jsonb_build_array(md5(g::text), g %% 13), 'text', repeat(md5((g*7)::text), 8))
			from generate_series(1, %d) g`, scale*20000),
		`create index documents_title_idx on documents (title)`,
		`create index documents_meta_idx on documents using gin (meta)`)
}

func (b *env) partitioned(ctx context.Context, scale int) error {
	return sqlExec(ctx, b.prod.DSN(db),
		`create table readings (id bigint not null, sensor int not null, at timestamptz not null, value double precision, primary key (id, at)) partition by range (at)`,
		`do $$ begin for m in 0..47 loop
			execute format('create table readings_%s partition of readings for values from (%L) to (%L)', m,
				timestamptz '2022-01-01' + m * interval '1 month', timestamptz '2022-01-01' + (m + 1) * interval '1 month');
		end loop; end $$`,
		fmt.Sprintf(`insert into readings select g, g %% 500, timestamptz '2022-01-01' + (g::bigint * 1461 * 86400 / %d) * interval '1 second', random()
			from generate_series(0, %d - 1) g`, scale*200000, scale*200000),
		`create index readings_sensor_idx on readings (sensor, at)`)
}

func (b *env) foreignKeys(ctx context.Context, scale int) error {
	sql := `do $$ begin for i in 1..40 loop
		if i = 1 then
			execute 'create table fk1 (id int primary key, v text not null)';
		else
			execute format('create table fk%s (id int primary key, parent int not null references fk%s(id), v text not null)', i, i - 1);
		end if;
	end loop; end $$`
	stmts := []string{sql}
	for i := 1; i <= 40; i++ {
		if i == 1 {
			stmts = append(stmts, fmt.Sprintf(`insert into fk1 select g, md5(g::text) from generate_series(1, %d) g`, scale*10000))
			continue
		}
		stmts = append(stmts, fmt.Sprintf(`insert into fk%d select g, 1 + (g * 31) %% %d, md5(g::text) from generate_series(1, %d) g`, i, scale*10000, scale*10000),
			fmt.Sprintf(`create index fk%d_parent on fk%d (parent)`, i, i))
	}
	return sqlExec(ctx, b.prod.DSN(db), stmts...)
}

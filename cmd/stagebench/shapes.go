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
	// The database's size is about fixed + scale × perScale MiB (measured
	// at scales 1 and 10), for -size.
	fixed, perScale float64
}

var shapes = []shape{
	{"pgbench", func(s int) string { return fmt.Sprintf("pgbench scale %d plus orders", s) }, (*env).generate, 8.4, 30.6},
	{"dominant", func(s int) string {
		return fmt.Sprintf("one dominant table (%d rows, three secondary indexes, two on text) with a foreign key, and a table indexed on two text columns", s*300000)
	}, (*env).dominant, 14, 63.8},
	{"skewed", func(s int) string {
		return fmt.Sprintf("one dominant table (%d rows) whose secondary indexes lead with keys of 2 to 5 distinct values, two foreign keys, and a table indexed on two text columns", s*300000)
	}, (*env).skewed, 7.6, 65.4},
	{"small", func(s int) string { return fmt.Sprintf("%d small tables of %d rows", 2000, s*20) }, (*env).smallTables, 178, 6},
	{"wide", func(s int) string {
		return fmt.Sprintf("%d wide rows of TOASTed text and jsonb, a GIN index on the jsonb", s*20000)
	}, (*env).wide, 8.8, 14.2},
	{"partitioned", func(s int) string { return fmt.Sprintf("a table of %d rows in 48 monthly partitions", s*200000) }, (*env).partitioned, 11.6, 23.4},
	{"fks", func(s int) string { return fmt.Sprintf("40 tables of %d rows chained by foreign keys", s*10000) }, (*env).foreignKeys, 11, 46},
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

func (b *env) skewed(ctx context.Context, scale int) error {
	return sqlExec(ctx, b.prod.DSN(db),
		`create table customers (id int primary key, region text not null, name text not null)`,
		fmt.Sprintf(`insert into customers select g, (array['emea','apac','amer'])[1 + g %% 3], 'customer ' || g from generate_series(1, %d) g`, scale*2000),
		`create table products (id int primary key, title text not null)`,
		fmt.Sprintf(`insert into products select g, 'product ' || md5(g::text) from generate_series(1, %d) g`, scale*500),
		`create table line_items (id bigint generated always as identity primary key,
			customer_id int not null references customers(id), product_id int not null references products(id),
			status text not null, channel smallint not null, refunded boolean not null,
			quantity int not null, price numeric(10,2) not null, created timestamptz not null, note text)`,
		fmt.Sprintf(`insert into line_items (customer_id, product_id, status, channel, refunded, quantity, price, created, note)
			select 1 + (g::bigint * 7919) %% %d, 1 + (g::bigint * 104729) %% %d,
			       (array['open','paid','shipped','cancelled','returned'])[1 + (g * 13) %% 5], (g %% 3)::smallint, g %% 17 = 0,
			       1 + g %% 9, (g %% 50000) / 100.0, timestamptz '2024-01-01' + g * interval '7 seconds',
			       case when g %% 4 = 0 then md5(g::text) end
			from generate_series(1, %d) g`, scale*2000, scale*500, scale*300000),
		`create index line_items_status_idx on line_items (status, created)`,
		`create index line_items_refunded_idx on line_items (refunded, customer_id)`,
		`create index line_items_channel_idx on line_items (channel, product_id)`,
		`create index line_items_customer_idx on line_items (customer_id)`,
		`create table contacts (id int primary key, email text not null, first_name text not null, last_name text not null)`,
		fmt.Sprintf(`insert into contacts select g, 'c' || g || '@example.com', md5((g*7)::text), md5((g*11)::text) from generate_series(1, %d) g`, scale*50000),
		`create index contacts_name_idx on contacts (last_name, first_name)`,
		`create index contacts_email_idx on contacts (email, last_name)`)
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

package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// fp is a database's fingerprint: per table its row count and an
// order-independent sum of row hashes, plus its indexes, constraints and
// sequence positions.
type fp map[string]string

func (a fp) equal(b fp) string {
	var diff []string
	for k, v := range b {
		if a[k] != v {
			diff = append(diff, k)
		}
	}
	for k := range a {
		if _, ok := b[k]; !ok {
			diff = append(diff, k)
		}
	}
	return strings.Join(diff, ", ")
}

func fingerprint(ctx context.Context, dsn string) (fp, error) {
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, err
	}
	defer c.Close(ctx)
	rows, err := c.Query(ctx, `select format('%I.%I', schemaname, tablename) from pg_tables
		where schemaname not in ('pg_catalog', 'information_schema') order by 1`)
	if err != nil {
		return nil, err
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	out := fp{}
	for _, t := range tables {
		var n int64
		var sum string
		if err := c.QueryRow(ctx, "select count(*), coalesce(sum(hashtext(t::text)::bigint), 0)::text from only "+t+" t").Scan(&n, &sum); err != nil {
			return nil, err
		}
		out["table "+t] = fmt.Sprintf("%d rows, %s", n, sum)
	}
	for k, q := range map[string]string{
		"indexes":     `select coalesce(string_agg(indexdef, '; ' order by indexdef), '') from pg_indexes where schemaname = 'public'`,
		"constraints": `select coalesce(string_agg(conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid), '; ' order by conrelid::regclass::text, conname), '') from pg_constraint where connamespace = 'public'::regnamespace`,
		"sequences":   `select coalesce(string_agg(sequencename || '=' || coalesce(last_value::text, 'unset'), '; ' order by sequencename), '') from pg_sequences where schemaname = 'public'`,
	} {
		var v string
		if err := c.QueryRow(ctx, q).Scan(&v); err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
		out[k] = v
	}
	return out, nil
}

func sqlExec(ctx context.Context, dsn string, sql ...string) error {
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	for _, s := range sql {
		if _, err := c.Exec(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", strings.Fields(s)[0], err)
		}
	}
	return nil
}

func query(ctx context.Context, dsn, q string, dst any) error {
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	return c.QueryRow(ctx, q).Scan(dst)
}

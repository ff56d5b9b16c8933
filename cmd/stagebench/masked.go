package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// maskKey is the bench's masking key (nothing secret is masked here).
const maskKey = "the bench's masking key, not a secret"

// maskedColumn is one column the masked methods change, with its
// function for stagebot's masking and the UPDATE that does the same after
// the copy.
type maskedColumn struct {
	table, column string // quoted
	rule, fn      string // schema.table.column and the function
	update        string // the SET expression
}

// maskedColumns picks a quarter of production's columns to mask: every
// fourth of those a function can change without breaking a key (columns of
// a primary key, unique index or foreign key stay), by type.
func maskedColumns(ctx context.Context, dsn string) (picked []maskedColumn, total int, err error) {
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, 0, err
	}
	defer c.Close(ctx)
	rows, err := c.Query(ctx, `
		select n.nspname, c.relname, a.attname, format('%I.%I', n.nspname, c.relname), quote_ident(a.attname), t.typname,
		       exists (select 1 from pg_index i where i.indrelid = c.oid and (i.indisunique or i.indisprimary) and a.attnum = any (i.indkey))
		       or exists (select 1 from pg_constraint k where k.conrelid = c.oid and k.contype = 'f' and a.attnum = any (k.conkey))
		from pg_class c join pg_namespace n on n.oid = c.relnamespace
		  join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped and a.attgenerated = ''
		  join pg_type t on t.oid = a.atttypid
		where c.relkind = 'r' and n.nspname not in ('pg_catalog', 'information_schema') and n.nspname not like 'pg\_%'
		order by 1, 2, a.attnum`)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	var eligible []maskedColumn
	for rows.Next() {
		var schema, table, column, qtable, qcolumn, typ string
		var keyed bool
		if err := rows.Scan(&schema, &table, &column, &qtable, &qcolumn, &typ, &keyed); err != nil {
			return nil, 0, err
		}
		total++
		m := maskedColumn{table: qtable, column: qcolumn, rule: schema + "." + table + "." + column}
		switch typ {
		case "text", "varchar", "bpchar":
			m.fn, m.update = "'text: keep_length'", fmt.Sprintf("translate(%s, 'abcdefghijklmnopqrstuvwxyz0123456789', 'bcdefghijklmnopqrstuvwxyza1234567890')", qcolumn)
		case "int2", "int4", "int8", "numeric":
			m.fn, m.update = "'number: noise 5%'", fmt.Sprintf("%s + 1", qcolumn)
		case "date":
			m.fn, m.update = "'date: shift 30'", fmt.Sprintf("%s + 7", qcolumn)
		case "timestamp", "timestamptz":
			m.fn, m.update = "'date: shift 30'", fmt.Sprintf("%s + interval '7 days'", qcolumn)
		default:
			continue
		}
		if !keyed {
			eligible = append(eligible, m)
		}
	}
	for i := 0; i < len(eligible) && len(picked) < (total+3)/4; i += max(1, len(eligible)/((total+3)/4)) {
		picked = append(picked, eligible[i])
	}
	return picked, total, rows.Err()
}

// maskingYAML is the database section's masking for picked (the rest kept).
func maskingYAML(picked []maskedColumn) string {
	var sb strings.Builder
	sb.WriteString("      masking:\n        key_env: STAGEBENCH_MASK_KEY\n        default: keep\n        rules:\n")
	for _, m := range picked {
		fmt.Fprintf(&sb, "          %q: %s\n", m.rule, m.fn)
	}
	return sb.String()
}

// updateSQL is a sql step on the shadow that changes the same columns, as
// teams do today after an unmasked copy.
func updateSQL(picked []maskedColumn) string {
	sets := map[string][]string{}
	var order []string
	for _, m := range picked {
		if sets[m.table] == nil {
			order = append(order, m.table)
		}
		sets[m.table] = append(sets[m.table], m.column+" = "+m.update)
	}
	var sb strings.Builder
	sb.WriteString("          - name: mask by update\n            sql: |\n")
	for _, t := range order {
		fmt.Fprintf(&sb, "              UPDATE %s SET %s;\n", t, strings.Join(sets[t], ", "))
	}
	return sb.String()
}

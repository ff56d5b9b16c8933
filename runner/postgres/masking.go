package postgres

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/stagebot/stagebot/runner/mask"
)

// Masking says how production's rows are masked on their way to the
// shadow: nothing unmasked reaches staging's server.
type Masking struct {
	Rules []mask.Rule
	// Default masks the columns no rule covers; nil: such a column stops
	// the refresh before anything is copied.
	Default *mask.Func
	// Key is the key of the keyed functions (from the environment
	// variable KeyEnv); the same key gives the same masked values refresh
	// after refresh.
	Key    []byte
	KeyEnv string
}

// NeedsKey says whether a keyed function is in the rules and the key is
// missing: a refresh then refuses to start.
func (m *Masking) NeedsKey() bool {
	if len(m.Key) > 0 {
		return false
	}
	for _, r := range m.Rules {
		if r.Func.Keyed() {
			return true
		}
	}
	return m.Default != nil && m.Default.Keyed()
}

// maskedSource refuses, for a masked target, a source masking cannot
// serve: backups and pg_dump copies are masked by the bot, which cannot
// compute sql: rules (production's server does, for the stream).
func (r *Refresh) maskedSource() error {
	m := r.Target.Masking
	if m == nil || (r.live() && r.Method != MethodDump) {
		return nil
	}
	var computed []string
	for _, rule := range m.Rules {
		if rule.Func.Kind == mask.SQL {
			computed = append(computed, rule.Pattern)
		}
	}
	if m.Default != nil && m.Default.Kind == mask.SQL {
		computed = append(computed, "the default")
	}
	if len(computed) > 0 {
		return fmt.Errorf("refused: %s is masked with sql: rules (%s), which production's server computes as the streaming method reads it; a backup or method: dump is masked by stagebot, which cannot: give them another function, or use the streaming method", r.Target.Name, strings.Join(computed, ", "))
	}
	return nil
}

// tableMask is what masking does to one copied table.
type tableMask struct {
	plan *mask.TablePlan
	rows *mask.Rows // the proof's (a COPY stream makes its own: stream)
	key  []byte
	salt string
	// keys are the primary key's columns (quoted), when none is masked:
	// the proof compares the same rows by them.
	keys     []string
	keyTypes []string // their types, as PostgreSQL writes them
}

// maskTables reads the columns of the tables to copy and gives each its
// mask; any problem (a column no rule covers, a rule that covers nothing,
// a function that cannot make a column's type) stops the refresh here,
// before a row is copied.
func (t *Target) maskTables(ctx context.Context, c *pgx.Conn, tables []*streamTable, largeObjects int64) error {
	m := t.Masking
	if m == nil {
		return nil
	}
	cols, err := readColumns(ctx, c, tables)
	if err != nil {
		return err
	}
	var list []mask.Table
	for _, tb := range tables {
		list = append(list, cols[tb.oid].table)
	}
	plans, problems := mask.Plan(m.Rules, m.Default, list)
	if m.NeedsKey() {
		problems = append(problems, mask.Problem{Where: "the masking key", What: fmt.Sprintf("$%s is not set in stagebot's environment: set it to a key of 16 characters or more (openssl rand -hex 32), the same every refresh", m.KeyEnv)})
	}
	if largeObjects > 0 && m.Default == nil {
		problems = append(problems, mask.Problem{Where: "large objects", What: fmt.Sprintf("production has %d, which masking cannot look into: give masking a default (keep) to copy them as they are", largeObjects)})
	}
	if len(problems) > 0 {
		return maskProblems(problems)
	}
	for _, tb := range tables {
		ci := cols[tb.oid]
		p := plans[ci.table.Schema+"."+ci.table.Name]
		tm := &tableMask{plan: p, rows: p.Rows(m.Key, t.Name), key: m.Key, salt: t.Name}
		keyMasked := false
		for _, k := range ci.keys {
			keyMasked = keyMasked || p.Funcs[k].Kind != mask.Keep
			tm.keys = append(tm.keys, quoteIdent(ci.table.Columns[k].Name))
			tm.keyTypes = append(tm.keyTypes, ci.table.Columns[k].Type)
		}
		if keyMasked {
			tm.keys, tm.keyTypes = nil, nil
		}
		tb.mask = tm
	}
	return nil
}

// binary says whether the table's masked columns can be masked in binary
// COPY (numeric, say, cannot: such a table goes in text).
func (tm *tableMask) binary(t *Target) bool { return tm.rows.Binary() && !t.rt.maskText }

// stream is a masker for one COPY stream of the table.
func (tm *tableMask) stream() *mask.Rows { return tm.plan.Rows(tm.key, tm.salt) }

// maskProblems is the gate's refusal: every problem, and what to do.
func maskProblems(problems []mask.Problem) error {
	var sb strings.Builder
	fmt.Fprintf(&sb, "masking stops the refresh before anything is copied: %d %s", len(problems), plural(len(problems), "problem", "problems"))
	for i, p := range problems {
		if i == 20 {
			fmt.Fprintf(&sb, "\n• and %d more", len(problems)-20)
			break
		}
		sb.WriteString("\n• " + p.String())
	}
	return fmt.Errorf("%s", sb.String())
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// selectList is the COPY's select list: sql rules' expressions in place
// of their columns, computed by production's server; "" when there are
// none.
func (tm *tableMask) selectList() string {
	var exprs []string
	any := false
	for i, f := range tm.plan.Funcs {
		c := tm.plan.Table.Columns[i]
		if f.Kind == mask.SQL {
			exprs = append(exprs, "("+f.Value+")::"+c.Type+" AS "+quoteIdent(c.Name))
			any = true
		} else {
			exprs = append(exprs, quoteIdent(c.Name))
		}
	}
	if !any {
		return ""
	}
	return strings.Join(exprs, ", ")
}

// columnsInfo is what readColumns learns of one table.
type columnsInfo struct {
	table mask.Table
	keys  []int // the primary key's columns, by position
}

// readColumns reads, for each table, its copied columns (those COPY
// carries: not generated, in order), with what the functions need of
// their types, and its primary key.
func readColumns(ctx context.Context, c *pgx.Conn, tables []*streamTable) (map[uint32]*columnsInfo, error) {
	oids := make([]uint32, len(tables))
	for i, tb := range tables {
		oids[i] = tb.oid
	}
	rows, err := c.Query(ctx, columnsQuery, oids)
	if err != nil {
		return nil, fmt.Errorf("production: read the columns to mask: %w", err)
	}
	defer rows.Close()
	out := map[uint32]*columnsInfo{}
	for rows.Next() {
		var oid uint32
		var schema, table string
		var col mask.Column
		var key bool
		if err := rows.Scan(&oid, &schema, &table, &col.Name, &col.Type, &col.Base, &col.MaxLen, &col.Array, &col.NotNull, &col.Unique, &key); err != nil {
			return nil, err
		}
		ci := out[oid]
		if ci == nil {
			ci = &columnsInfo{table: mask.Table{Schema: schema, Name: table}}
			out[oid] = ci
		}
		if key {
			ci.keys = append(ci.keys, len(ci.table.Columns))
		}
		ci.table.Columns = append(ci.table.Columns, col)
	}
	return out, rows.Err()
}

// columnsQuery walks each column's type down through domains to its base
// (with the length limit of a varchar or char, the column's or its
// domain's), and says whether a unique index of that column alone covers
// it and whether it is in the primary key.
const columnsQuery = `
with recursive dom (attrelid, attnum, typ, typmod) as (
	select a.attrelid, a.attnum, a.atttypid, a.atttypmod from pg_attribute a
	where a.attrelid = any ($1) and a.attnum > 0 and not a.attisdropped and a.attgenerated = ''
	union all
	select d.attrelid, d.attnum, t.typbasetype, case when d.typmod >= 0 then d.typmod else t.typtypmod end
	from dom d join pg_type t on t.oid = d.typ where t.typtype = 'd')
select a.attrelid, n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod),
       case when bt.typcategory = 'A' then et.typname else bt.typname end,
       case when bt.typname in ('varchar', 'bpchar') and d.typmod > 4 then d.typmod - 4 else 0 end,
       bt.typcategory = 'A', a.attnotnull,
       exists (select 1 from pg_index i where i.indrelid = a.attrelid and i.indisunique and i.indnkeyatts = 1
               and i.indkey[0] = a.attnum and i.indpred is null and i.indexprs is null),
       exists (select 1 from pg_index i where i.indrelid = a.attrelid and i.indisprimary and a.attnum = any (i.indkey))
from pg_attribute a
  join pg_class c on c.oid = a.attrelid join pg_namespace n on n.oid = c.relnamespace
  join dom d on d.attrelid = a.attrelid and d.attnum = a.attnum
  join pg_type bt on bt.oid = d.typ and bt.typtype <> 'd'
  left join pg_type et on et.oid = bt.typelem
where a.attrelid = any ($1) and a.attnum > 0 and not a.attisdropped and a.attgenerated = ''
order by a.attrelid, a.attnum`

package postgres

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/stagebot/stagebot/runner/mask"
)

// scanRows is how many rows of each table the scan for personal data
// reads.
const scanRows = 200

// MaskReport looks at production (read-only): how the target's masking
// (none, if it has none) classifies production's columns, what stops the
// next refresh, which kept columns hold values that look personal, and
// rules for the columns no rule covers.
func (t *Target) MaskReport(ctx context.Context) (mask.Report, error) {
	c, err := t.production(ctx)
	if err != nil {
		return mask.Report{}, fmt.Errorf("production (read-only): %w", err)
	}
	defer closeConn(ctx, c)
	tables, err := streamTables(ctx, c)
	if err != nil {
		return mask.Report{}, err
	}
	cols, err := readColumns(ctx, c, tables)
	if err != nil {
		return mask.Report{}, err
	}
	var list []mask.Table
	found := map[string]mask.Finding{}
	for _, tb := range tables {
		ci := cols[tb.oid]
		list = append(list, ci.table)
		if err := scanTable(ctx, c, tb, ci.table, found, "bernoulli"); err != nil {
			return mask.Report{}, fmt.Errorf("production: sample %s: %w", tb.name, err)
		}
	}
	var rules []mask.Rule
	var def *mask.Func
	if t.Masking != nil {
		rules, def = t.Masking.Rules, t.Masking.Default
	}
	return mask.NewReport(rules, def, list, found), nil
}

// scanTable samples the textual columns of one table and notes those
// whose values look personal. The sampling is bernoulli (rows from every
// page: the whole table is read) or system (whole pages: only those are
// read, for the proof, which must not cost a refresh much).
func scanTable(ctx context.Context, c *pgx.Conn, tb *streamTable, table mask.Table, found map[string]mask.Finding, sampling string) error {
	sql, idx := scanQuery(tb, table, sampling)
	if sql == "" {
		return nil
	}
	rows, err := textRows(ctx, c, sql)
	if err != nil {
		return err
	}
	noteFound(table, idx, rows, found)
	return nil
}

// scanQuery is the query that samples table's textual columns, and their
// positions ("" when it has none).
func scanQuery(tb *streamTable, table mask.Table, sampling string) (string, []int) {
	var idx []int
	var list []string
	for i, col := range table.Columns {
		if col.Textual() {
			idx = append(idx, i)
			list = append(list, quoteIdent(col.Name)+"::text")
		}
	}
	if len(idx) == 0 {
		return "", nil
	}
	// A sample of about four times the rows wanted, in random order: the
	// rows first on disk are not all alike (updated rows move to the end).
	pct := 100.0
	if tb.tuples > scanRows {
		pct = min(100, 400*float64(scanRows)/float64(tb.tuples))
	}
	return fmt.Sprintf("select * from (select %s from only %s tablesample %s (%g)) s order by random() limit %d", strings.Join(list, ", "), tb.name, sampling, pct, scanRows), idx
}

// noteFound notes the columns (at idx) of the sampled rows whose values
// look personal.
func noteFound(table mask.Table, idx []int, rows [][][]byte, found map[string]mask.Finding) {
	for j, i := range idx {
		var values []string
		for _, r := range rows {
			if r[j] != nil {
				values = append(values, string(r[j]))
			}
		}
		where := table.Schema + "." + table.Name + "." + table.Columns[i].Name
		if f, ok := mask.Detect(where, values); ok {
			found[where] = f
		}
	}
}

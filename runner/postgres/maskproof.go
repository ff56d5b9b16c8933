package postgres

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/stagebot/stagebot/runner/mask"
)

// The proof samples at most proofRows rows of a masked table, and
// proofBudget rows in all, shared out by the tables' sizes with at least
// proofMinRows each: a copy of many masked tables (48 partitions, say)
// must not spend more on its proof than on its copy. A bypassed rule
// shows in every sampled row, so a few hundred rows find it.
const (
	proofRows    = 10000
	proofBudget  = 20000
	proofMinRows = 200
)

// proofShares is how many rows the proof samples of each table, by name.
func proofShares(tables []*streamTable) map[string]int {
	var total int64
	for _, tb := range tables {
		if len(tb.mask.compared()) > 0 {
			total += max(tb.tuples, 1)
		}
	}
	out := map[string]int{}
	for _, tb := range tables {
		if len(tb.mask.compared()) > 0 {
			share := int(float64(proofBudget) * float64(max(tb.tuples, 1)) / float64(total))
			out[tb.name] = min(proofRows, max(proofMinRows, share))
		}
	}
	return out
}

// proof is what proveMasked found.
type proof struct {
	columns, tables int
	sampled         int64
	found           int64
	leaks           []string // table.column (count)
	unchecked       []string // masked columns it could not compare
	personal        []string // kept columns whose values look personal
}

func (p proof) String() string {
	s := fmt.Sprintf("masked %d %s in %d %s; %d production %s found in %s sampled rows",
		p.columns, plural(p.columns, "column", "columns"), p.tables, plural(p.tables, "table", "tables"),
		p.found, plural(int(p.found), "value", "values"), thousands(p.sampled))
	if len(p.unchecked) > 0 {
		slices.Sort(p.unchecked)
		s += fmt.Sprintf(" (not compared, as no row is told apart by an unmasked primary key or by its unmasked columns: %s)", strings.Join(p.unchecked, ", "))
	}
	return s
}

// proveMasked checks the shadow before it may be swapped in: for a sample
// of each masked table's rows, no masked column holds production's value
// for the same row (where masking would have changed it). Found values
// fail the refresh, and staging stays as it was.
func (s *streamer) proveMasked(ctx context.Context) error {
	if s.r.Target.Masking == nil {
		return nil
	}
	prod, shadow, done, err := s.bothConns(ctx)
	if err != nil {
		return err
	}
	defer done()
	// Both sessions write values alike, whatever their servers' settings.
	if _, err := shadow.Exec(ctx, textOutput("session")); err != nil {
		return fmt.Errorf("shadow: %w", err)
	}
	var p proof
	shares := proofShares(s.all)
	for _, tb := range s.all {
		if err := scanKept(ctx, shadow, tb, &p); err != nil {
			return fmt.Errorf("masking proof, %s: %w", tb.name, err)
		}
		cols := tb.mask.compared()
		if len(cols) == 0 {
			continue
		}
		p.tables++
		p.columns += len(cols)
		if err := s.proveTable(ctx, prod, shadow, tb, cols, shares[tb.name], &p); err != nil {
			return fmt.Errorf("masking proof, %s: %w", tb.name, err)
		}
	}
	s.maskNote = p.String()
	fmt.Fprintf(s.env.Log, "masking: %s\n", p)
	if p.found > 0 {
		return fmt.Errorf("masking proof failed: %d production %s found in the shadow (%s); staging stays as it was", p.found, plural(int(p.found), "value", "values"), strings.Join(p.leaks, ", "))
	}
	return p.personalErr()
}

// personalErr fails the proof for kept columns that look personal.
func (p proof) personalErr() error {
	if len(p.personal) == 0 {
		return nil
	}
	return fmt.Errorf("masking proof failed: kept columns hold values that look personal (%s): give each a masking rule, or write keep: reviewed for one kept on purpose; staging stays as it was", strings.Join(p.personal, "; "))
}

// scanKept samples the shadow's kept textual columns of tb (a rule's keep
// or the default's, not keep: reviewed) and notes those whose values look
// personal: a column kept by a default, or decided before it held such
// values, that masking would copy in clear.
func scanKept(ctx context.Context, shadow *pgx.Conn, tb *streamTable, p *proof) error {
	tm := tb.mask
	if tm == nil || tm.plan.Truncate {
		return nil
	}
	kept := mask.Table{Schema: tm.plan.Table.Schema, Name: tm.plan.Table.Name}
	for i, f := range tm.plan.Funcs {
		if f.Kind == mask.Keep && f.Value != mask.Reviewed {
			kept.Columns = append(kept.Columns, tm.plan.Table.Columns[i])
		}
	}
	found := map[string]mask.Finding{}
	if err := scanTable(ctx, shadow, tb, kept, found, "system"); err != nil {
		return err
	}
	for _, where := range slices.Sorted(maps.Keys(found)) {
		p.personal = append(p.personal, found[where].String())
	}
	return nil
}

// compared are the columns whose values masking changes, by position.
func (tm *tableMask) compared() []int {
	if tm == nil || tm.plan.Truncate {
		return nil
	}
	var out []int
	for i, f := range tm.plan.Funcs {
		switch f.Kind {
		case mask.Keep, mask.SQL, mask.Null:
		default:
			out = append(out, i)
		}
	}
	return out
}

// proveTable samples tb's rows on production, finds the same rows on
// the shadow, and counts masked columns that hold production's value
// where masking would have changed it. Rows are found by the primary key
// when masking leaves it as it is, else by the unmasked columns
// together: a row whose unmasked columns no other row shares is the same
// row on both sides.
func (s *streamer) proveTable(ctx context.Context, prod, shadow *pgx.Conn, tb *streamTable, cols []int, want int, p *proof) error {
	tm := tb.mask
	var masked []string
	for _, i := range cols {
		masked = append(masked, quoteIdent(tm.plan.Table.Columns[i].Name)+"::text")
	}
	pct := 100.0
	if tb.tuples > int64(want) {
		pct = min(100, 200*float64(want)/float64(tb.tuples))
	}
	var pairs []rowPair
	sampled, err := 1, error(nil)
	switch kept := tm.keptColumns(); {
	case len(tm.keys) > 0:
		pairs, sampled, err = pairsByKey(ctx, prod, shadow, tb, masked, pct, want)
	case len(kept) > 0:
		pairs, sampled, err = pairsByColumns(ctx, prod, shadow, tb, kept, masked, pct, want)
	}
	if err != nil || sampled == 0 {
		return err // an empty table holds nothing to compare
	}
	if len(pairs) == 0 {
		for _, i := range cols {
			p.unchecked = append(p.unchecked, tb.name+"."+shownIdent(tm.plan.Table.Columns[i].Name))
		}
		return nil
	}
	leaks := map[string]int64{}
	for _, pr := range pairs {
		for j, i := range cols {
			v, was := pr.shadow[j], pr.prod[j]
			if was != nil && bytes.Equal(v, was) && !bytes.Equal(tm.rows.Value(i, was), was) {
				leaks[tb.name+"."+shownIdent(tm.plan.Table.Columns[i].Name)]++
			}
		}
	}
	for _, where := range slices.Sorted(maps.Keys(leaks)) {
		p.found += leaks[where]
		p.leaks = append(p.leaks, fmt.Sprintf("%s (%d)", where, leaks[where]))
	}
	p.sampled += int64(len(pairs))
	return nil
}

// rowPair is one row's masked columns as text, on production and on the
// shadow.
type rowPair struct{ prod, shadow [][]byte }

// keptColumns are the columns masking leaves as they are (quoted): what
// tells a row apart when no unmasked primary key does.
func (tm *tableMask) keptColumns() []string {
	var out []string
	for i, f := range tm.plan.Funcs {
		if f.Kind == mask.Keep {
			out = append(out, quoteIdent(tm.plan.Table.Columns[i].Name))
		}
	}
	return out
}

// pairsByKey samples rows on production and reads the same rows on the
// shadow by the primary key. A sampled row the shadow lacks is a copy
// that is not whole, and nothing the proof may pass over.
func pairsByKey(ctx context.Context, prod, shadow *pgx.Conn, tb *streamTable, masked []string, pct float64, want int) ([]rowPair, int, error) {
	tm := tb.mask
	var list []string
	for _, k := range tm.keys {
		list = append(list, k+"::text")
	}
	list = append(list, masked...)
	// SYSTEM samples whole pages: it reads only those, where BERNOULLI
	// reads the whole table to pick rows.
	sample, err := textRows(ctx, prod, fmt.Sprintf("select %s from only %s tablesample system (%g) limit %d", strings.Join(list, ", "), tb.name, pct, want))
	if err != nil || len(sample) == 0 {
		return nil, 0, err
	}
	byKey := map[string][][]byte{}
	keyArrays := make([][]string, len(tm.keys))
	for _, row := range sample {
		byKey[rowKey(row[:len(tm.keys)])] = row
		for k := range tm.keys {
			keyArrays[k] = append(keyArrays[k], string(row[k]))
		}
	}
	var params []string
	args := make([]any, len(tm.keys))
	for k := range tm.keys {
		// Typed, so that the shadow's primary key index finds the rows.
		params = append(params, fmt.Sprintf("$%d::text[]::%s[]", k+1, tm.keyTypes[k]))
		args[k] = keyArrays[k]
	}
	got, err := textRows(ctx, shadow, fmt.Sprintf("select %s from only %s where (%s) in (select * from unnest(%s))", strings.Join(list, ", "), tb.name, strings.Join(tm.keys, ", "), strings.Join(params, ", ")), args...)
	if err != nil {
		return nil, 0, err
	}
	var pairs []rowPair
	for _, row := range got {
		if orig := byKey[rowKey(row[:len(tm.keys)])]; orig != nil {
			pairs = append(pairs, rowPair{prod: orig[len(tm.keys):], shadow: row[len(tm.keys):]})
		}
	}
	if len(pairs) < len(sample) {
		return nil, 0, fmt.Errorf("%d of %d sampled rows are not in the shadow by their primary key, so they could not be compared", len(sample)-len(pairs), len(sample))
	}
	return pairs, len(sample), nil
}

// pairsByColumns samples rows on production and finds them on the shadow
// by their unmasked columns together (as one row value's text, which
// tells NULL from empty). Only rows whose unmasked columns no other row
// of the table shares are paired: for those the pairing is exact. A
// sampled row whose unmasked columns the shadow lacks is a copy that is
// not whole.
func pairsByColumns(ctx context.Context, prod, shadow *pgx.Conn, tb *streamTable, kept, masked []string, pct float64, want int) ([]rowPair, int, error) {
	fp := "row(" + strings.Join(kept, ", ") + ")::text"
	sample, err := textRows(ctx, prod, fmt.Sprintf("select %s, %s from only %s tablesample system (%g) limit %d", fp, strings.Join(masked, ", "), tb.name, pct, want))
	if err != nil || len(sample) == 0 {
		return nil, 0, err
	}
	byPrint, count := map[string][][]byte{}, map[string]int{}
	var prints []string
	for _, row := range sample {
		k := string(row[0])
		if count[k]++; count[k] == 1 {
			prints = append(prints, k)
		}
		byPrint[k] = row[1:]
	}
	aggs := make([]string, len(masked))
	for j := range masked {
		aggs[j] = fmt.Sprintf("min(m%d)", j)
	}
	var inner []string
	for j, m := range masked {
		inner = append(inner, fmt.Sprintf("%s as m%d", m, j))
	}
	got, err := textRows(ctx, shadow, fmt.Sprintf("select fp, count(*)::text, %s from (select %s as fp, %s from only %s where %s = any($1::text[])) s group by fp",
		strings.Join(aggs, ", "), fp, strings.Join(inner, ", "), tb.name, fp), prints)
	if err != nil {
		return nil, 0, err
	}
	var pairs []rowPair
	for _, row := range got {
		k := string(row[0])
		if string(row[1]) == "1" && count[k] == 1 {
			pairs = append(pairs, rowPair{prod: byPrint[k], shadow: row[2:]})
		}
		delete(count, k)
	}
	if len(count) > 0 {
		return nil, 0, fmt.Errorf("%d of %d sampled rows are not in the shadow by their unmasked columns, so they could not be compared", len(count), len(prints))
	}
	return pairs, len(sample), nil
}

// shownIdent is a column's name as a message shows it: quoted only when
// it must be.
func shownIdent(s string) string {
	if plainIdent.MatchString(s) {
		return s
	}
	return quoteIdent(s)
}

var plainIdent = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

// thousands writes n with commas: 250,000.
func thousands(n int64) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0 && s[i-1] != '-'; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func rowKey(vals [][]byte) string {
	var sb strings.Builder
	for _, v := range vals {
		if v == nil {
			sb.WriteString("\x00N")
		}
		sb.Write(v)
		sb.WriteByte(0)
	}
	return sb.String()
}

// textRows reads a query's rows as text (nil: NULL).
func textRows(ctx context.Context, c *pgx.Conn, sql string, args ...any) ([][][]byte, error) {
	rows, err := c.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out [][][]byte
	for rows.Next() {
		raw := rows.RawValues()
		row := make([][]byte, len(raw))
		for i, v := range raw {
			if v != nil {
				row[i] = append([]byte{}, v...)
			}
		}
		out = append(out, row)
	}
	return out, rows.Err()
}

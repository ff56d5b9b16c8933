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
// proofMinRows each, or, when there are too many tables for that, an even
// share of the budget but never less than proofLeastRows: a copy of many
// masked tables (48 partitions, 2,000 small tables) must not spend more on
// its proof than on its copy. A bypassed rule shows in every sampled row,
// so a few dozen rows find it. Its queries go in batches of proofBatch
// tables: one round trip each, and only one batch's rows held at a time.
const (
	proofRows      = 10000
	proofBudget    = 20000
	proofMinRows   = 200
	proofLeastRows = 25
)

// proofBatch is how many tables' queries go in one batch (a test makes it
// small, to cross batches with a few tables).
var proofBatch = 200

// proofShares is how many rows the proof samples of each table, by name.
func proofShares(tables []*streamTable) map[string]int {
	var total int64
	n := 0
	for _, tb := range tables {
		if len(tb.mask.compared()) > 0 {
			total += max(tb.tuples, 1)
			n++
		}
	}
	least := proofMinRows
	if n*proofMinRows > proofBudget {
		least = max(proofLeastRows, proofBudget/n)
	}
	out := map[string]int{}
	for _, tb := range tables {
		if len(tb.mask.compared()) > 0 {
			share := int(float64(proofBudget) * float64(max(tb.tuples, 1)) / float64(total))
			out[tb.name] = min(proofRows, max(least, share))
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
// fail the refresh, and staging stays as it was. Its queries go in
// batches (proofBatch): the kept columns' samples on the shadow,
// production's samples, and the same rows on the shadow.
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
	if err := scanKept(ctx, shadow, s.all, &p); err != nil {
		return err
	}
	if err := compareRows(ctx, prod, shadow, tableChecks(s.all, &p), &p); err != nil {
		return err
	}
	s.maskNote = p.String()
	fmt.Fprintf(s.env.Log, "masking: %s\n", p)
	return p.err()
}

// err fails the proof for production values found, then for kept columns
// that look personal.
func (p proof) err() error {
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

// scanKept samples the shadow's kept textual columns (a rule's keep or
// the default's, not keep: reviewed) and notes those whose values look
// personal: a column kept by a default, or decided before it held such
// values, that masking would copy in clear.
func scanKept(ctx context.Context, shadow *pgx.Conn, tables []*streamTable, p *proof) error {
	type scan struct {
		kept mask.Table
		idx  []int
	}
	var scans []scan
	var qs []batchQuery
	for _, tb := range tables {
		tm := tb.mask
		if tm == nil || tm.plan.Truncate {
			continue
		}
		kept := mask.Table{Schema: tm.plan.Table.Schema, Name: tm.plan.Table.Name}
		for i, f := range tm.plan.Funcs {
			if f.Kind == mask.Keep && f.Value != mask.Reviewed {
				kept.Columns = append(kept.Columns, tm.plan.Table.Columns[i])
			}
		}
		if sql, idx := scanQuery(tb, kept, "system"); sql != "" {
			scans = append(scans, scan{kept, idx})
			qs = append(qs, batchQuery{what: "masking proof, " + tb.name, sql: sql})
		}
	}
	found := map[string]mask.Finding{}
	for i := 0; i < len(qs); i += proofBatch {
		end := min(i+proofBatch, len(qs))
		results, err := textBatch(ctx, shadow, qs[i:end])
		if err != nil {
			return err
		}
		for j, sc := range scans[i:end] {
			noteFound(sc.kept, sc.idx, results[j], found)
		}
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

// tableCheck is the proof's look at one masked table: it samples the
// table's rows on production, finds the same rows on the shadow, and
// counts masked columns that hold production's value where masking would
// have changed it. Rows are found by the primary key when masking leaves
// it as it is (byKey), else by the unmasked columns together (byColumns):
// a row whose unmasked columns no other row shares is the same row on
// both sides. A table with neither is named as not compared.
type tableCheck struct {
	tb     *streamTable
	cols   []int    // the masked columns, by position
	masked []string // the same, as text
	pct    float64  // of the table's pages sampled
	want   int      // rows sampled at most
	by     pairing
	sample [][][]byte // production's sampled rows
}

// pairing finds a table's sampled production rows on the shadow.
type pairing interface {
	// sample is the query that samples production.
	sample(c *tableCheck) string
	// lookup is the query that reads the sampled rows on the shadow.
	lookup(c *tableCheck) (string, []any)
	// pairs matches the sampled rows with the shadow's; a sampled row the
	// shadow lacks is a copy that is not whole, and nothing the proof may
	// pass over.
	pairs(c *tableCheck, got [][][]byte) ([]rowPair, error)
}

// tableChecks are the checks of the tables with masked columns, counted
// in p.
func tableChecks(tables []*streamTable, p *proof) []*tableCheck {
	shares := proofShares(tables)
	var out []*tableCheck
	for _, tb := range tables {
		cols := tb.mask.compared()
		if len(cols) == 0 {
			continue
		}
		p.tables++
		p.columns += len(cols)
		c := &tableCheck{tb: tb, cols: cols, want: shares[tb.name], pct: 100}
		for _, i := range cols {
			c.masked = append(c.masked, quoteIdent(tb.mask.plan.Table.Columns[i].Name)+"::text")
		}
		if tb.tuples > int64(c.want) {
			c.pct = min(100, 200*float64(c.want)/float64(tb.tuples))
		}
		switch kept := tb.mask.keptColumns(); {
		case len(tb.mask.keys) > 0:
			c.by = byKey{}
		case len(kept) > 0:
			c.by = &byColumns{print: "row(" + strings.Join(kept, ", ") + ")::text"}
		default:
			p.unchecked = append(p.unchecked, c.columnNames()...)
			continue
		}
		out = append(out, c)
	}
	return out
}

func (c *tableCheck) columnNames() []string {
	var out []string
	for _, i := range c.cols {
		out = append(out, c.tb.name+"."+shownIdent(c.tb.mask.plan.Table.Columns[i].Name))
	}
	return out
}

// compareRows runs the checks proofBatch tables at a time.
func compareRows(ctx context.Context, prod, shadow *pgx.Conn, checks []*tableCheck, p *proof) error {
	for i := 0; i < len(checks); i += proofBatch {
		if err := compareBatch(ctx, prod, shadow, checks[i:min(i+proofBatch, len(checks))], p); err != nil {
			return err
		}
	}
	return nil
}

// compareBatch samples every check's table on production in one batch,
// reads the same rows on the shadow in another, and counts what it finds
// in p.
func compareBatch(ctx context.Context, prod, shadow *pgx.Conn, checks []*tableCheck, p *proof) error {
	var qs []batchQuery
	for _, c := range checks {
		qs = append(qs, batchQuery{what: "masking proof, " + c.tb.name, sql: c.by.sample(c)})
	}
	samples, err := textBatch(ctx, prod, qs)
	if err != nil {
		return err
	}
	qs = qs[:0]
	var sampled []*tableCheck
	for i, c := range checks {
		// An empty table holds nothing to compare.
		if c.sample = samples[i]; len(c.sample) > 0 {
			sql, args := c.by.lookup(c)
			qs = append(qs, batchQuery{what: "masking proof, " + c.tb.name, sql: sql, args: args})
			sampled = append(sampled, c)
		}
	}
	got, err := textBatch(ctx, shadow, qs)
	if err != nil {
		return err
	}
	for i, c := range sampled {
		pairs, err := c.by.pairs(c, got[i])
		if err != nil {
			return fmt.Errorf("masking proof, %s: %w", c.tb.name, err)
		}
		c.tally(pairs, p)
	}
	return nil
}

// tally counts the masked values of pairs that are production's.
func (c *tableCheck) tally(pairs []rowPair, p *proof) {
	if len(pairs) == 0 {
		p.unchecked = append(p.unchecked, c.columnNames()...)
		return
	}
	tm := c.tb.mask
	leaks := map[string]int64{}
	for _, pr := range pairs {
		for j, i := range c.cols {
			v, was := pr.shadow[j], pr.prod[j]
			if was != nil && bytes.Equal(v, was) && !bytes.Equal(tm.rows.Value(i, was), was) {
				leaks[c.tb.name+"."+shownIdent(tm.plan.Table.Columns[i].Name)]++
			}
		}
	}
	for _, where := range slices.Sorted(maps.Keys(leaks)) {
		p.found += leaks[where]
		p.leaks = append(p.leaks, fmt.Sprintf("%s (%d)", where, leaks[where]))
	}
	p.sampled += int64(len(pairs))
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

// byKey pairs rows by the primary key.
type byKey struct{}

func (byKey) list(c *tableCheck) string {
	var list []string
	for _, k := range c.tb.mask.keys {
		list = append(list, k+"::text")
	}
	return strings.Join(append(list, c.masked...), ", ")
}

func (k byKey) sample(c *tableCheck) string {
	// SYSTEM samples whole pages: it reads only those, where BERNOULLI
	// reads the whole table to pick rows.
	return fmt.Sprintf("select %s from only %s tablesample system (%g) limit %d", k.list(c), c.tb.name, c.pct, c.want)
}

func (k byKey) lookup(c *tableCheck) (string, []any) {
	tm := c.tb.mask
	var params []string
	args := make([]any, len(tm.keys))
	for i := range tm.keys {
		var values []string
		for _, row := range c.sample {
			values = append(values, string(row[i]))
		}
		// Typed, so that the shadow's primary key index finds the rows.
		params = append(params, fmt.Sprintf("$%d::text[]::%s[]", i+1, tm.keyTypes[i]))
		args[i] = values
	}
	return fmt.Sprintf("select %s from only %s where (%s) in (select * from unnest(%s))", k.list(c), c.tb.name, strings.Join(tm.keys, ", "), strings.Join(params, ", ")), args
}

func (byKey) pairs(c *tableCheck, got [][][]byte) ([]rowPair, error) {
	n := len(c.tb.mask.keys)
	byKey := map[string][][]byte{}
	for _, row := range c.sample {
		byKey[rowKey(row[:n])] = row
	}
	var pairs []rowPair
	for _, row := range got {
		if orig := byKey[rowKey(row[:n])]; orig != nil {
			pairs = append(pairs, rowPair{prod: orig[n:], shadow: row[n:]})
		}
	}
	if len(pairs) < len(c.sample) {
		return nil, fmt.Errorf("%d of %d sampled rows are not in the shadow by their primary key, so they could not be compared", len(c.sample)-len(pairs), len(c.sample))
	}
	return pairs, nil
}

// byColumns pairs rows by their unmasked columns together (as one row
// value's text, which tells NULL from empty). Only rows whose unmasked
// columns no other row of the table shares are paired: for those the
// pairing is exact.
type byColumns struct {
	print  string // the unmasked columns' row value as text
	rows   map[string][][]byte
	count  map[string]int
	prints []string
}

func (b *byColumns) sample(c *tableCheck) string {
	return fmt.Sprintf("select %s, %s from only %s tablesample system (%g) limit %d", b.print, strings.Join(c.masked, ", "), c.tb.name, c.pct, c.want)
}

func (b *byColumns) lookup(c *tableCheck) (string, []any) {
	b.rows, b.count, b.prints = map[string][][]byte{}, map[string]int{}, nil
	for _, row := range c.sample {
		k := string(row[0])
		if b.count[k]++; b.count[k] == 1 {
			b.prints = append(b.prints, k)
		}
		b.rows[k] = row[1:]
	}
	aggs := make([]string, len(c.masked))
	inner := make([]string, len(c.masked))
	for j, m := range c.masked {
		aggs[j] = fmt.Sprintf("min(m%d)", j)
		inner[j] = fmt.Sprintf("%s as m%d", m, j)
	}
	return fmt.Sprintf("select fp, count(*)::text, %s from (select %s as fp, %s from only %s where %s = any($1::text[])) s group by fp",
		strings.Join(aggs, ", "), b.print, strings.Join(inner, ", "), c.tb.name, b.print), []any{b.prints}
}

func (b *byColumns) pairs(c *tableCheck, got [][][]byte) ([]rowPair, error) {
	var pairs []rowPair
	for _, row := range got {
		k := string(row[0])
		if string(row[1]) == "1" && b.count[k] == 1 {
			pairs = append(pairs, rowPair{prod: b.rows[k], shadow: row[2:]})
		}
		delete(b.count, k)
	}
	if len(b.count) > 0 {
		return nil, fmt.Errorf("%d of %d sampled rows are not in the shadow by their unmasked columns, so they could not be compared", len(b.count), len(b.prints))
	}
	return pairs, nil
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
	return readText(rows)
}

// readText reads rows as text (nil: NULL) and closes them.
func readText(rows pgx.Rows) ([][][]byte, error) {
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

// batchQuery is one query of a batch, and what it is about (for errors).
type batchQuery struct {
	what string
	sql  string
	args []any
}

// textBatch sends queries to c in one round trip and reads each one's rows
// as text (nil: NULL).
func textBatch(ctx context.Context, c *pgx.Conn, qs []batchQuery) ([][][][]byte, error) {
	if len(qs) == 0 {
		return nil, nil
	}
	b := &pgx.Batch{}
	for _, q := range qs {
		b.Queue(q.sql, q.args...)
	}
	br := c.SendBatch(ctx, b)
	out := make([][][][]byte, len(qs))
	for i, q := range qs {
		rows, err := br.Query()
		if err == nil {
			out[i], err = readText(rows)
		}
		if err != nil {
			br.Close()
			return nil, fmt.Errorf("%s: %w", q.what, err)
		}
	}
	return out, br.Close()
}

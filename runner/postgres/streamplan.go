package postgres

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
)

// streamPlan is what production's catalog says the copy is: the tables,
// the builds and checks that follow each, what must come last, the
// sequences' values, and whether COPY may be binary.
type streamPlan struct {
	tables   []*streamTable
	parents  map[*streamTable][]*partitioned
	preamble string       // pg_dump's session settings for post-data
	fks      []*postEntry // foreign keys checked as their tables are ready
	rest     []postEntry  // everything else, at the end in dump order
	entries  int          // post-data entries in all
	seqs     []seqValue
	binary   bool
}

// readPlan puts production's schema into the shadow (pg_dump
// --section=pre-data | psql) while it dumps the post-data section (DDL
// only, kept in memory) and reads production's catalog, and returns the
// plan they make.
func (src *streamSource) readPlan(ctx context.Context, tl tools) (*streamPlan, error) {
	schemaCtx, cancelSchema := context.WithCancel(ctx)
	defer cancelSchema()
	var post bytes.Buffer
	cmd := tool(schemaCtx, src.env, src.penv, tl.dump, src.dumpArgs("post-data")...)
	cmd.Stdout = &post
	postErr := make(chan error, 1)
	go func() { postErr <- cmd.Run() }()
	type schemaResult struct {
		binary bool
		err    error
	}
	schemaDone := make(chan schemaResult, 1)
	prodMajor := majorVersion(src.snap)
	go func() {
		binary, err := src.schema(schemaCtx, tl, prodMajor)
		schemaDone <- schemaResult{binary, err}
	}()
	cat, err := readCatalog(ctx, src.snap)
	if err == nil {
		err = src.t.maskTables(ctx, src.snap, cat.tables, src.largeObjects)
	}
	if err != nil {
		cancelSchema()
		<-schemaDone
		<-postErr
		return nil, err
	}
	sch := <-schemaDone
	if sch.err != nil {
		cancelSchema()
		<-postErr
		return nil, sch.err
	}
	fmt.Fprintf(src.env.Log, "schema in after %s\n", src.since())
	if err := <-postErr; err != nil {
		return nil, fmt.Errorf("pg_dump --section=post-data: %w", cmdErrOf(ctx, err, cmd))
	}
	p := &streamPlan{tables: cat.tables, parents: cat.parents, binary: sch.binary}
	var entries []postEntry
	p.preamble, entries = splitPostData(post.String())
	p.entries = len(entries)
	p.assign(entries, cat.info)
	if p.seqs, err = sequenceValues(ctx, src.snap); err != nil {
		return nil, err
	}
	return p, nil
}

// catalog is what production's catalog says of the tables to copy and
// of the post-data entries.
type catalog struct {
	tables  []*streamTable
	info    map[string]entryInfo
	parents map[*streamTable][]*partitioned
}

func readCatalog(ctx context.Context, c *pgx.Conn) (*catalog, error) {
	var cat catalog
	var err error
	if cat.tables, err = streamTables(ctx, c); err != nil {
		return nil, err
	}
	if err := textOnlyTables(ctx, c, cat.tables); err != nil {
		return nil, err
	}
	if cat.info, err = entryTables(ctx, c); err != nil {
		return nil, err
	}
	if cat.parents, err = partitionedTables(ctx, c, cat.tables); err != nil {
		return nil, err
	}
	return &cat, nil
}

// assign gives each post-data entry its place. Indexes and constraints are
// built as soon as their table is in; a foreign key is checked as soon as
// both its tables are in and indexed (the unique index it needs among the
// referenced table's). The rest waits for the end, in dump order.
func (p *streamPlan) assign(entries []postEntry, info map[string]entryInfo) {
	byOID := map[uint32]*streamTable{}
	for _, tb := range p.tables {
		byOID[tb.oid] = tb
	}
	builds := map[uint32]*streamTable{} // index OID → the table whose entry builds it
	for _, e := range entries {
		in := info[e.schema+"."+e.name]
		if tb := byOID[in.table]; tb != nil && e.kind.isIndexBuild() {
			builds[in.index] = tb
		}
	}
	for _, e := range entries {
		in := info[e.schema+"."+e.name]
		switch tb, ref := byOID[in.table], byOID[in.ref]; {
		case tb != nil && e.kind.isIndexBuild():
			e.table, e.size, e.cost, e.sort, e.am = tb, in.size, buildCost(in), in.sort, in.am
			if e.kind == kindConstraint && in.indexDef != "" {
				if after, ok := afterConstraint(e.sql); ok {
					e.sql, e.attach = in.indexDef, in.attach+";"+after
				}
			}
			tb.entries = append(tb.entries, e)
			tb.unbuilt++
		case tb != nil && e.kind == kindFK && ref != nil && builds[in.index] == ref:
			// Checking it reads the whole referencing table once.
			e.table, e.ref, e.cost = tb, ref, tb.size/8
			p.fks = append(p.fks, &e)
		default:
			p.rest = append(p.rest, e)
		}
	}
}

// entryKind is what a post-data entry is: pg_dump's own kinds, and two of
// stagebot's (making a built index its constraint; gathering statistics).
type entryKind string

const (
	kindIndex      entryKind = "INDEX"
	kindConstraint entryKind = "CONSTRAINT"
	kindFK         entryKind = "FK CONSTRAINT"
	kindAttach     entryKind = "ATTACH"
	kindAnalyze    entryKind = "ANALYZE"
)

// isIndexBuild says whether the entry builds an index (a constraint's
// too), which runs beside the other index builds on its table.
func (k entryKind) isIndexBuild() bool { return k == kindIndex || k == kindConstraint }

// word names the kind in the log: "index", "fk constraint".
func (k entryKind) word() string { return strings.ToLower(string(k)) }

// copyTask is one COPY: a whole table, or one range of its pages.
type copyTask struct {
	table    *streamTable
	from, to int64 // page range; to < 0: to the end
	split    bool
}

// streamTable is a production table whose data is copied.
type streamTable struct {
	oid     uint32
	name    string // schema-qualified, quoted
	size    int64
	pages   int64
	columns string // quoted, comma-separated; generated columns left out
	tuples  int64  // production's estimate; < 0 when never analyzed
	// config: an extension's configuration table, whose rows CREATE
	// EXTENSION has already put in the shadow; filter (a WHERE clause, or
	// empty) selects the rows production has beyond those.
	config bool
	filter string
	// textOnly names the column types that keep this table out of binary
	// COPY (see textOnlyTables); empty when binary is safe.
	textOnly string
	// mask is what masking does to its rows (nil: the target is not
	// masked); masked rows go in text format, through the bot.
	mask *tableMask

	streamed atomic.Int64 // rows sent so far
	copied   atomic.Bool  // every task done
	indexed  bool         // copied and every entry built (streamer.mu)

	mu      sync.Mutex
	pending int // copy tasks not yet done
	rows    int64
	entries []postEntry // its indexes and constraints
	unbuilt int         // entries not yet built
}

// postEntry is one object of pg_dump's post-data section.
type postEntry struct {
	name, schema string
	kind         entryKind
	sql          string
	table        *streamTable // the table an index or constraint is on
	size         int64        // the index's size on production
	cost         int64        // a guess at the work it takes (buildCost)
	ref          *streamTable // a foreign key's referenced table
	queued       bool         // a foreign key handed to the builders
	parallel     int          // PostgreSQL's parallel workers it may use
	sort         int64        // bytes its sort handles (entryInfo.sort)
	am           string       // the index's access method (entryInfo.am)
	// attach, for a constraint built as its index first, makes the index
	// the constraint once the table's other builds are done (it needs the
	// table to itself), with the rest of pg_dump's entry.
	attach string
	// reads: the partitions a partitioned table's ANALYZE samples (it
	// holds ACCESS SHARE on each until it ends).
	reads []*streamTable
}

// partitioned is a partitioned table whose partitions are all copied here:
// its statistics are gathered as soon as their data is in, beside the
// index builds, instead of alone at the end.
type partitioned struct {
	name   string
	leaves []*streamTable
	left   int // leaves not yet copied (streamer.mu)
}

var entryHeader = regexp.MustCompile(`(?m)^--\n-- Name: (.*?); Type: (.*?); Schema: (.*?);.*\n--\n`)

// splitPostData cuts pg_dump's plain post-data output into its preamble
// (session settings) and its entries, in order.
func splitPostData(sql string) (preamble string, entries []postEntry) {
	// psql meta-commands (\restrict from newer pg_dumps) are not SQL.
	var kept []string
	for _, line := range strings.Split(sql, "\n") {
		if !strings.HasPrefix(line, "\\") {
			kept = append(kept, line)
		}
	}
	sql = strings.Join(kept, "\n")
	locs := entryHeader.FindAllStringSubmatchIndex(sql, -1)
	if len(locs) == 0 {
		return sql, nil
	}
	preamble = sql[:locs[0][0]]
	for i, l := range locs {
		end := len(sql)
		if i+1 < len(locs) {
			end = locs[i+1][0]
		}
		body := strings.TrimSpace(sql[l[1]:end])
		if body == "" {
			continue
		}
		entries = append(entries, postEntry{name: sql[l[2]:l[3]], kind: entryKind(sql[l[4]:l[5]]), schema: sql[l[6]:l[7]], sql: body})
	}
	return preamble, entries
}

// streamTables lists the tables whose data pg_dump would dump, largest
// first: every table outside extensions, and extensions' configuration
// tables (the rows their filter selects: the others come with CREATE
// EXTENSION).
func streamTables(ctx context.Context, c *pgx.Conn) ([]*streamTable, error) {
	rows, err := c.Query(ctx, `
		select c.oid, format('%I.%I', n.nspname, c.relname), pg_relation_size(c.oid)::bigint, c.relpages::bigint, c.reltuples::bigint,
		       coalesce((select string_agg(quote_ident(a.attname), ', ' order by a.attnum) from pg_attribute a
		                 where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped and a.attgenerated = ''), ''),
		       x.extcondition[array_position(x.extconfig, c.oid)] is not null, coalesce(x.extcondition[array_position(x.extconfig, c.oid)], '')
		from pg_class c join pg_namespace n on n.oid = c.relnamespace
		  left join pg_extension x on c.oid = any (x.extconfig)
		where c.relkind = 'r' and n.nspname not in ('pg_catalog', 'information_schema')
		  and n.nspname not like 'pg\_toast%' and n.nspname not like 'pg\_temp%'
		  and (x.oid is not null
		       or not exists (select 1 from pg_depend d where d.classid = 'pg_class'::regclass and d.objid = c.oid and d.deptype = 'e'))
		order by 3 desc, 2`)
	if err != nil {
		return nil, fmt.Errorf("production: list tables: %w", err)
	}
	defer rows.Close()
	var out []*streamTable
	for rows.Next() {
		tb := &streamTable{}
		if err := rows.Scan(&tb.oid, &tb.name, &tb.size, &tb.pages, &tb.tuples, &tb.columns, &tb.config, &tb.filter); err != nil {
			return nil, err
		}
		out = append(out, tb)
	}
	return out, rows.Err()
}

// partitionedTables lists, for each copied table, the partitioned tables
// it is a partition of (at any depth) whose partitions are all copied
// tables: their statistics can be gathered once those are in. The others
// (with a foreign table among their partitions, say) wait for the end.
func partitionedTables(ctx context.Context, c *pgx.Conn, tables []*streamTable) (map[*streamTable][]*partitioned, error) {
	rows, err := c.Query(ctx, `
		with recursive tree (root, rel) as (
			select c.oid, c.oid from pg_class c join pg_namespace n on n.oid = c.relnamespace
			where c.relkind = 'p' and n.nspname not in ('pg_catalog', 'information_schema')
			union all
			select t.root, i.inhrelid from tree t join pg_inherits i on i.inhparent = t.rel)
		select format('%I.%I', n.nspname, p.relname),
		       coalesce(array_agg(t.rel) filter (where c.relkind not in ('p', 'I')), '{}')
		from tree t join pg_class c on c.oid = t.rel
		  join pg_class p on p.oid = t.root join pg_namespace n on n.oid = p.relnamespace
		group by t.root, n.nspname, p.relname`)
	if err != nil {
		return nil, fmt.Errorf("production: list partitioned tables: %w", err)
	}
	byOID := map[uint32]*streamTable{}
	for _, tb := range tables {
		byOID[tb.oid] = tb
	}
	out := map[*streamTable][]*partitioned{}
	for rows.Next() {
		var name string
		var leaves []uint32
		if err := rows.Scan(&name, &leaves); err != nil {
			rows.Close()
			return nil, err
		}
		p := &partitioned{name: name}
		for _, oid := range leaves {
			tb := byOID[oid]
			if tb == nil {
				p = nil
				break
			}
			p.leaves = append(p.leaves, tb)
		}
		if p == nil || len(p.leaves) == 0 {
			continue
		}
		p.left = len(p.leaves)
		for _, tb := range p.leaves {
			out[tb] = append(out[tb], p)
		}
	}
	rows.Close()
	return out, rows.Err()
}

// entryInfo is what production's catalog says of one post-data entry.
type entryInfo struct {
	table uint32 // the table it is on
	index uint32 // the index it builds; for a foreign key, the one it needs
	ref   uint32 // for a foreign key: the table it references
	size  int64  // the size of the index it builds (0 for other constraints)
	// sort is what building the index sorts, in bytes: rows times the
	// keys' width and a tuple's overhead (the index's size when the table
	// was never analyzed; deduplication makes an index far smaller than
	// its sort).
	sort int64
	// For an index: whether the table is in the order of its first key
	// (production's statistics say so), and whether a key compares
	// slowly (text in a collation other than C, numeric, expressions…).
	sorted, slow bool
	// am is the index's access method: btree, gin, gist…
	am string
	// For a primary key or unique constraint that can be built as its
	// index first: the index (CREATE UNIQUE INDEX, which other builds on
	// the table may run beside) and the statement that makes it the
	// constraint (ADD CONSTRAINT … USING INDEX, which locks the table
	// out, but only for an instant).
	indexDef, attach string
}

// entryTables maps pg_dump's names of indexes ("schema.index") and
// constraints ("schema.table constraint") to their tables and indexes.
func entryTables(ctx context.Context, c *pgx.Conn) (map[string]entryInfo, error) {
	rows, err := c.Query(ctx, `
		-- One pass over the statistics and the index keys, joined by hash:
		-- a subquery on pg_stats per index takes minutes on thousands.
		with st as materialized (
		  select schemaname, tablename, attname, correlation, avg_width from pg_stats
		  where not inherited and schemaname not in ('pg_catalog', 'information_schema')),
		keys as (
		  select i.indexrelid, k.n, a.attname, a.atttypid, i.indcollation[k.n] as coll
		  from pg_index i cross join lateral generate_series(0, i.indnkeyatts - 1) k(n)
		    left join pg_attribute a on a.attrelid = i.indrelid and a.attnum = i.indkey[k.n]),
		ix as (
		  select i.indexrelid, i.indrelid, pg_relation_size(i.indexrelid) as size, am.amname as am,
		         case when c.reltuples > 0 then c.reltuples::bigint * (24 + sum(coalesce(st.avg_width, 32)))::bigint
		              else pg_relation_size(i.indexrelid) end as sort,
		         coalesce(bool_or(k.n = 0 and abs(st.correlation) > 0.9), false) as sorted,
		         coalesce(bool_or(k.atttypid is null
		                    or not (k.atttypid = any ('{int2,int4,int8,oid,float4,float8,bool,date,time,timestamp,timestamptz,uuid}'::regtype[])
		                            or k.coll in (950, 951) -- C, POSIX
		                            or k.coll = 100 and db.c)), false) or am.amname <> 'btree' as slow
		  from pg_index i join pg_class c on c.oid = i.indrelid join pg_namespace cn on cn.oid = c.relnamespace
		    join pg_class ic on ic.oid = i.indexrelid join pg_am am on am.oid = ic.relam
		    join keys k on k.indexrelid = i.indexrelid
		    left join st on st.schemaname = cn.nspname and st.tablename = c.relname and st.attname = k.attname
		    cross join (select datcollate in ('C', 'POSIX') as c from pg_database where datname = current_database()) db
		  where cn.nspname not in ('pg_catalog', 'information_schema') and cn.nspname not like 'pg\_toast%'
		  group by i.indexrelid, i.indrelid, c.reltuples, db.c, am.amname)
		select n.nspname || '.' || ci.relname, ix.indrelid, ix.indexrelid, 0::oid, ix.size, ix.sort, ix.sorted, ix.slow, ix.am, '', ''
		from ix join pg_class ci on ci.oid = ix.indexrelid join pg_namespace n on n.oid = ci.relnamespace
		union all
		select n.nspname || '.' || t.relname || ' ' || con.conname, con.conrelid, con.conindid, con.confrelid,
		       case when con.contype <> 'f' then coalesce(ix.size, 0) else 0 end,
		       case when con.contype <> 'f' then coalesce(ix.sort, 0) else 0 end,
		       coalesce(ix.sorted and con.contype <> 'f', false), coalesce(ix.slow and con.contype <> 'f', false),
		       case when con.contype <> 'f' then coalesce(ix.am, '') else '' end, coalesce(u.def, ''), coalesce(u.attach, '')
		from pg_constraint con
		  join pg_class t on t.oid = con.conrelid join pg_namespace n on n.oid = t.relnamespace
		  left join ix on ix.indexrelid = con.conindid
		  -- What ADD CONSTRAINT … USING INDEX accepts: a plain b-tree
		  -- index in default order, on a plain table, for a constraint
		  -- that is not deferrable; its own tablespace left to pg_dump.
		  left join lateral (
		    select pg_get_indexdef(i.indexrelid) as def,
		           format('ALTER TABLE ONLY %I.%I ADD CONSTRAINT %I %s USING INDEX %I', n.nspname, t.relname, con.conname,
		                  case con.contype when 'p' then 'PRIMARY KEY' else 'UNIQUE' end, ci.relname) as attach
		    from pg_index i join pg_class ci on ci.oid = i.indexrelid join pg_am am on am.oid = ci.relam
		    where i.indexrelid = con.conindid and con.contype in ('p', 'u') and not con.condeferrable
		      and t.relkind = 'r' and am.amname = 'btree' and i.indexprs is null and i.indpred is null
		      and ci.reltablespace = 0 and ci.relname = con.conname and 0 = all (i.indoption::int2[])) u on true
		where n.nspname not in ('pg_catalog', 'information_schema')`)
	if err != nil {
		return nil, fmt.Errorf("production: list indexes: %w", err)
	}
	defer rows.Close()
	out := map[string]entryInfo{}
	for rows.Next() {
		var k string
		var e entryInfo
		if err := rows.Scan(&k, &e.table, &e.index, &e.ref, &e.size, &e.sort, &e.sorted, &e.slow, &e.am, &e.indexDef, &e.attach); err != nil {
			return nil, err
		}
		out[k] = e
	}
	return out, rows.Err()
}

// afterConstraint returns what follows the ADD CONSTRAINT statement in a
// pg_dump entry for a primary key or unique constraint (CLUSTER ON, for
// one), and false when the entry is not the expected shape, which then
// runs as it is.
func afterConstraint(sql string) (string, bool) {
	if !strings.HasPrefix(sql, "ALTER TABLE ONLY ") || !strings.Contains(sql, "\n    ADD CONSTRAINT ") {
		return "", false
	}
	i := strings.Index(sql, ";\n")
	if i < 0 {
		return "", strings.HasSuffix(sql, ";") && strings.Count(sql, ";") == 1
	}
	after := strings.TrimSpace(sql[i+1:])
	if after != "" && !strings.HasPrefix(after, "ALTER ") {
		return "", false
	}
	return after, true
}

// defaultBuildMemory is the shadow sessions' maintenance_work_mem, until
// sortMemory sizes a build's.
const defaultBuildMemory = 256 << 20

// sortMemory sizes one index build's maintenance_work_mem from what it
// sorts. More is not faster: a sort far larger than the CPU's cache runs
// slower (measured on PostgreSQL 15, two builders and four indexes on a
// table of 3 M rows: 8–16 MB each took 6.6–7.4 s, 64 MB 8.4–8.7 s, 256 MB
// 8.6–10.4 s). A GIN build, which gathers its entries in that memory,
// is no faster with more either: on 500,000 jsonb documents, 4.5–5.9 s
// with 16 MB, 4.8 s with 64 MB, 7.2–7.6 s with 256 MB, 5.6 s with 1 GB. A build needs only enough for its merge to be one pass:
// runs of m bytes merged through buffers of 256 kB each, so m² ≥ bytes ×
// 256 kB, with room to spare. Each of PostgreSQL's parallel workers wants
// 32 MB.
func sortMemory(bytes int64, parallel int) int64 {
	m := int64(2 * math.Sqrt(float64(bytes)*(256<<10)))
	m = max(m, 16<<20)
	if parallel > 0 {
		m = max(m, int64(parallel+1)*(32<<20))
	}
	return min(m, 1<<30)
}

// buildCost guesses how long an index takes to build, in units of one byte
// sorted on a presorted integer key: sorting is the work, and it is
// cheapest on rows already in order and on keys that compare as machine
// words. Measured on PostgreSQL 15: an unsorted integer key costs about 1.6
// times a sorted one, a text (non-C collation) or numeric key about 2.5
// times more.
func buildCost(in entryInfo) int64 {
	c := float64(max(in.sort, in.size))
	if !in.sorted {
		c *= 1.6
	}
	if in.slow {
		c *= 2.5
	}
	return int64(c)
}

type seqValue struct {
	name   string
	last   int64
	called bool
}

// sequenceValues reads every sequence's position, as pg_dump does.
func sequenceValues(ctx context.Context, c *pgx.Conn) ([]seqValue, error) {
	rows, err := c.Query(ctx, `
		select format('%I.%I', n.nspname, c.relname) from pg_class c join pg_namespace n on n.oid = c.relnamespace
		where c.relkind = 'S' and n.nspname not in ('pg_catalog', 'information_schema')
		  and (c.oid in (select unnest(extconfig) from pg_extension)
		       or not exists (select 1 from pg_depend d where d.classid = 'pg_class'::regclass and d.objid = c.oid and d.deptype = 'e'))`)
	if err != nil {
		return nil, fmt.Errorf("production: list sequences: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	var out []seqValue
	for _, n := range names {
		v := seqValue{name: n}
		if err := c.QueryRow(ctx, "select last_value, is_called from "+n).Scan(&v.last, &v.called); err != nil {
			return nil, fmt.Errorf("production: sequence %s: %w", n, err)
		}
		out = append(out, v)
	}
	return out, nil
}

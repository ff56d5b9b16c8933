package postgres

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stagebot/stagebot/runner"
)

// Methods of copying a live production database.
const (
	// MethodStream copies server to server: schema first, table data in
	// parallel COPY streams on one exported snapshot, each table's indexes
	// as soon as its data is in, then ANALYZE. No temporary files.
	MethodStream = "stream"
	// MethodDump is pg_dump -Fd -j into a temporary directory, then
	// pg_restore -j.
	MethodDump = "dump"
)

// progressEvery is how often the streaming method reports progress.
var progressEvery = time.Second

// splitSize is the size above which a table may be copied in several
// ranges; splitAlways (for tests) splits every such table.
var (
	splitSize   int64 = 256 << 20
	splitAlways       = false
)

// splitParts says in how many page ranges to copy a table of size bytes out
// of total. A range cannot be written FREEZE (that needs the one
// transaction that truncated the table), so every later reader pays for
// hint bits: a table is split only when, whole, it would keep one worker
// busy more than one and a half times as long as an even share of the work.
func splitParts(size, total int64, jobs int) int64 {
	if size <= splitSize || (!splitAlways && 2*size*int64(jobs) <= 3*total) {
		return 1
	}
	return min(int64(jobs)*2, (size+splitSize-1)/splitSize)
}

// freezeMin is the size from which a table is written FREEZE.
const freezeMin = 1 << 20

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
	name, kind, schema string
	sql                string
	table              *streamTable // the table an index or constraint is on
	size               int64        // the index's size on production
	cost               int64        // a guess at the work it takes (buildCost)
	ref                *streamTable // a foreign key's referenced table
	queued             bool         // a foreign key handed to the builders
	parallel           int          // PostgreSQL's parallel workers it may use
	sort               int64        // bytes its sort handles (entryInfo.sort)
	am                 string       // the index's access method (entryInfo.am)
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
		entries = append(entries, postEntry{name: sql[l[2]:l[3]], kind: sql[l[4]:l[5]], schema: sql[l[6]:l[7]], sql: body})
	}
	return preamble, entries
}

// streamer holds what the workers share.
type streamer struct {
	r        *Refresh
	env      *runner.Env
	snapshot string
	next     string
	binary   bool
	preamble string
	// lz4: the shadow's server compresses TOASTed values with lz4.
	lz4     bool
	lz4Once sync.Once
	start   time.Time

	mu       sync.Mutex
	cond     *sync.Cond
	copies   []copyTask
	builds   []postEntry
	pending  int // copy tasks handed out but not finished
	building int // builds handed out but not finished
	err      error
	tables   int
	built    int
	fks      []*postEntry // foreign keys checked as their tables are ready
	parents  map[*streamTable][]*partitioned
	// The tables that builds in flight lock, counted by lock mode.
	held map[*streamTable]*[lockModes]int

	// Progress: what is done, against production's sizes.
	totalData, totalIndex int64
	totalRows             int64
	all                   []*streamTable
	indexes               int // entries built per table
	tablesDone            atomic.Int64
	indexDone             atomic.Int64
}

func majorVersion(c *pgx.Conn) int {
	v := c.PgConn().ParameterStatus("server_version")
	n, _ := strconv.Atoi(strings.SplitN(strings.Fields(v + " ")[0], ".", 2)[0])
	return n
}

// stream copies live production into the shadow database next.
func (r *Refresh) stream(ctx context.Context, env *runner.Env, tl tools, next string, prog *progressPoller) error {
	t := r.Target
	start := time.Now()
	// The shadow is created while production is read; nothing goes into it
	// before created says so.
	created := make(chan error, 1)
	go func() { created <- t.createShadow(ctx, env) }()
	var shadowOnce sync.Once
	var shadowErr error
	waitShadow := func() error {
		shadowOnce.Do(func() { shadowErr = <-created })
		return shadowErr
	}
	defer waitShadow()
	snapConn, err := t.production(ctx)
	if err != nil {
		return err
	}
	defer closeConn(ctx, snapConn)
	if _, err := snapConn.Exec(ctx, "begin isolation level repeatable read read only"); err != nil {
		return fmt.Errorf("production: %w", err)
	}
	var snapshot string
	if err := snapConn.QueryRow(ctx, "select pg_export_snapshot()").Scan(&snapshot); err != nil {
		return fmt.Errorf("production: export a snapshot: %w", err)
	}
	var largeObjects int64
	if err := snapConn.QueryRow(ctx, "select count(*) from pg_largeobject_metadata").Scan(&largeObjects); err != nil {
		return fmt.Errorf("production: %w", err)
	}
	pconn, penv, releaseProd, err := libpq(t.ProductionDSN, "", readOnly)
	if err != nil {
		return err
	}
	defer releaseProd()
	sconn, senv, releaseStg, err := libpq(t.StagingDSN, next)
	if err != nil {
		return err
	}
	defer releaseStg()
	dumpArgs := func(section string) []string {
		a := []string{"--section=" + section, "--snapshot=" + snapshot, "--no-password", "-d", pconn}
		if t.NoOwner {
			a = append(a, "--no-owner")
		}
		if t.NoACL {
			a = append(a, "--no-acl")
		}
		return a
	}

	// The post-data section (indexes, constraints, triggers… only DDL,
	// kept in memory) is dumped and production's catalog read while the
	// shadow is created and the schema goes into it, straight from pg_dump
	// --section=pre-data.
	schemaCtx, cancelSchema := context.WithCancel(ctx)
	defer cancelSchema()
	var post bytes.Buffer
	cmd := tool(schemaCtx, env, penv, tl.dump, dumpArgs("post-data")...)
	cmd.Stdout = &post
	postErr := make(chan error, 1)
	go func() { postErr <- cmd.Run() }()
	schemaErr := make(chan error, 1)
	prodMajor, binary := majorVersion(snapConn), false
	go func() {
		schemaErr <- pipeSchema(schemaCtx, env, tl, penv, senv, dumpArgs("pre-data"), sconn, func() error {
			if err := waitShadow(); err != nil {
				return err
			}
			shadow, err := connect(schemaCtx, t.StagingDSN, next, false)
			if err != nil {
				return err
			}
			binary = prodMajor == majorVersion(shadow)
			shadow.Close(schemaCtx)
			fmt.Fprintf(env.Log, "schema: pg_dump --section=pre-data | psql into %s, created after %s\n", next, time.Since(start).Round(time.Millisecond))
			return nil
		})
	}()
	tables, err := streamTables(ctx, snapConn)
	if err == nil {
		err = textOnlyTables(ctx, snapConn, tables)
	}
	var info map[string]entryInfo
	if err == nil {
		info, err = entryTables(ctx, snapConn)
	}
	var parents map[*streamTable][]*partitioned
	if err == nil {
		parents, err = partitionedTables(ctx, snapConn, tables)
	}
	if err != nil {
		cancelSchema()
		<-schemaErr
		<-postErr
		return err
	}
	if err := <-schemaErr; err != nil {
		cancelSchema()
		<-postErr
		return err
	}
	fmt.Fprintf(env.Log, "schema in after %s\n", time.Since(start).Round(time.Millisecond))
	if err := <-postErr; err != nil {
		return fmt.Errorf("pg_dump --section=post-data: %w", cmdErrOf(ctx, err, cmd))
	}
	preamble, entries := splitPostData(post.String())

	byOID := map[uint32]*streamTable{}
	for _, tb := range tables {
		byOID[tb.oid] = tb
	}
	// Indexes and constraints are built as soon as their table is in; a
	// foreign key is checked as soon as both its tables are in and indexed
	// (the unique index it needs among the referenced table's). The rest
	// waits for the end, in dump order.
	builds := map[uint32]*streamTable{} // index OID → the table whose entry builds it
	for _, e := range entries {
		in := info[e.schema+"."+e.name]
		if tb := byOID[in.table]; tb != nil && (e.kind == "INDEX" || e.kind == "CONSTRAINT") {
			builds[in.index] = tb
		}
	}
	var rest []postEntry
	var fks []*postEntry
	for _, e := range entries {
		in := info[e.schema+"."+e.name]
		switch tb, ref := byOID[in.table], byOID[in.ref]; {
		case tb != nil && (e.kind == "INDEX" || e.kind == "CONSTRAINT"):
			e.table, e.size, e.cost, e.sort, e.am = tb, in.size, buildCost(in), in.sort, in.am
			if e.kind == "CONSTRAINT" && in.indexDef != "" {
				if after, ok := afterConstraint(e.sql); ok {
					e.sql, e.attach = in.indexDef, in.attach+";"+after
				}
			}
			tb.entries = append(tb.entries, e)
			tb.unbuilt++
		case tb != nil && e.kind == "FK CONSTRAINT" && ref != nil && builds[in.index] == ref:
			// Checking it reads the whole referencing table once.
			e.table, e.ref, e.cost = tb, ref, tb.size/8
			fks = append(fks, &e)
		default:
			rest = append(rest, e)
		}
	}
	seqs, err := sequenceValues(ctx, snapConn)
	if err != nil {
		return err
	}

	s := &streamer{r: r, env: env, snapshot: snapshot, next: next, binary: binary, preamble: preamble, start: start, fks: fks, parents: parents}
	if binary {
		for _, tb := range tables {
			if tb.textOnly != "" {
				fmt.Fprintf(env.Log, "%s is copied in text format, not binary: its columns hold %s (no binary input/output, or a user-defined type inside an array or composite)\n", tb.name, tb.textOnly)
			}
		}
	}
	s.cond = sync.NewCond(&s.mu)
	s.all = tables
	var allData int64
	for _, tb := range tables {
		allData += tb.size
	}
	for _, tb := range tables {
		s.indexes += len(tb.entries)
		s.totalData += tb.size
		s.totalRows += max(tb.tuples, 0)
		for _, e := range tb.entries {
			s.totalIndex += e.size
		}
		parts := splitParts(tb.size, allData, t.jobs())
		if parts <= 1 || tb.pages < parts || tb.config {
			tb.pending = 1
			s.copies = append(s.copies, copyTask{table: tb, to: -1})
			continue
		}
		step := tb.pages / parts
		for i := int64(0); i < parts; i++ {
			task := copyTask{table: tb, from: i * step, to: (i + 1) * step, split: true}
			if i == parts-1 {
				task.to = -1
			}
			s.copies = append(s.copies, task)
		}
		tb.pending = int(parts)
	}
	s.tables = len(tables)
	fmt.Fprintf(env.Log, "data after %s: %d tables (%s), %d COPY streams (%s format) on %d workers; %d indexes and constraints built and %d foreign keys checked by %d more as tables finish\n",
		time.Since(start).Round(time.Millisecond), len(tables), runner.Bytes(s.totalData), len(s.copies), map[bool]string{true: "binary", false: "text"}[binary], t.jobs(), len(entries)-len(rest)-len(fks), len(fks), t.jobs())

	stopProgress := every(ctx, progressEvery, func(context.Context) { s.report(false) })
	var wg sync.WaitGroup
	if largeObjects > 0 {
		// Their metadata (lo_create, owner, privileges, comment) came with
		// the schema; their contents go beside the tables.
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.copyLargeObjects(ctx, largeObjects); err != nil {
				s.fail(err)
			}
		}()
	}
	for _, r := range []role{copier, builder} {
		for range t.jobs() {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.work(ctx, r)
			}()
		}
	}
	wg.Wait()
	stopProgress()
	if s.err != nil {
		return s.err
	}
	s.report(true)
	fmt.Fprintf(env.Log, "data and %d indexes in after %s\n", s.built, time.Since(start).Round(time.Millisecond))

	// The rest in dump order: foreign keys, triggers, views' data…
	c, err := s.shadowConn(ctx)
	if err != nil {
		return err
	}
	defer closeConn(ctx, c)
	for _, e := range rest {
		if err := c.PgConn().Exec(ctx, e.sql).Close(); err != nil {
			return fmt.Errorf("%s %s: %w", strings.ToLower(e.kind), e.name, err)
		}
	}
	restDone := time.Since(start)
	for _, sq := range seqs {
		if _, err := c.Exec(ctx, "select pg_catalog.setval($1::regclass, $2, $3)", sq.name, sq.last, sq.called); err != nil {
			return fmt.Errorf("sequence %s: %w", sq.name, err)
		}
	}
	// Tables were analyzed as they finished; materialized views and
	// partitioned tables have their data only now.
	rows, err := c.Query(ctx, `select format('%I.%I', n.nspname, c.relname) from pg_class c
		join pg_namespace n on n.oid = c.relnamespace where c.relkind in ('m', 'p')
		and n.nspname not in ('pg_catalog', 'information_schema')`)
	if err != nil {
		return fmt.Errorf("shadow: %w", err)
	}
	others, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("shadow: %w", err)
	}
	early := map[string]bool{}
	for _, ps := range parents {
		for _, p := range ps {
			early[p.name] = true
		}
	}
	others = slices.DeleteFunc(others, func(name string) bool { return early[name] })
	for _, name := range others {
		if _, err := c.Exec(ctx, "ANALYZE "+name); err != nil {
			return fmt.Errorf("analyze %s: %w", name, err)
		}
	}
	fmt.Fprintf(env.Log, "%d other objects in after %s; %d sequences set and %d views and partitioned tables analyzed after %s\n", len(rest), restDone.Round(time.Millisecond), len(seqs), len(others), time.Since(start).Round(time.Millisecond))
	return nil
}

// pipeSchema runs pg_dump args | psql into the shadow. pg_dump starts at
// once (it reads the whole catalog before it writes a line); psql once
// ready says the shadow is there.
func pipeSchema(ctx context.Context, env *runner.Env, tl tools, penv, senv, args []string, sconn string, ready func() error) error {
	dump := tool(ctx, env, penv, tl.dump, args...)
	dump.Stdout = nil // piped into psql
	out, err := dump.StdoutPipe()
	if err != nil {
		return err
	}
	if err := dump.Start(); err != nil {
		return fmt.Errorf("pg_dump: %w", err)
	}
	if err := ready(); err != nil {
		dump.Process.Kill()
		dump.Wait()
		return err
	}
	psql := tool(ctx, env, senv, tl.psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "--no-password", "-d", sconn)
	psql.Stdin = out
	psql.Stdout = io.Discard
	perr := psql.Run()
	derr := dump.Wait()
	if derr != nil {
		return fmt.Errorf("pg_dump --section=pre-data: %w", cmdErrOf(ctx, derr, dump))
	}
	if perr != nil {
		return fmt.Errorf("schema into the shadow (psql): %w", cmdErrOf(ctx, perr, psql))
	}
	return nil
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

// queue adds builds (with s.mu held): the ones that take no time first
// (they let foreign keys be checked), then the longest: the longest build
// should not be the one left running alone at the end.
func (s *streamer) queue(e ...postEntry) {
	s.builds = append(s.builds, e...)
	slices.SortStableFunc(s.builds, func(a, b postEntry) int {
		if ta, tb := a.cost < tinyBuild, b.cost < tinyBuild; ta != tb {
			if ta {
				return -1
			}
			return 1
		}
		return cmp.Compare(b.cost, a.cost)
	})
}

// tinyBuild is the cost under which a build is done in an instant.
const tinyBuild = 1 << 20

// builtAll says that a table is copied and its indexes built (with s.mu
// held): its statistics are gathered next, and the indexes built for its
// constraints are made those constraints.
func (s *streamer) builtAll(tb *streamTable) {
	s.queue(analyzeEntry(tb))
	if tb.attaches() {
		s.queue(postEntry{name: tb.name, kind: "ATTACH", table: tb})
		return
	}
	s.indexed(tb)
}

// indexed marks a table's constraints in place (with s.mu held): the
// foreign keys between it and other such tables are checked next.
func (s *streamer) indexed(tb *streamTable) {
	tb.indexed = true
	for _, fk := range s.fks {
		if !fk.queued && fk.table.indexed && fk.ref.indexed {
			fk.queued = true
			s.queue(*fk)
		}
	}
}

// attaches says whether some of the table's constraints are built as
// their indexes first.
func (tb *streamTable) attaches() bool {
	for _, e := range tb.entries {
		if e.attach != "" {
			return true
		}
	}
	return false
}

// attach makes the indexes built for a table's constraints its
// constraints, once nothing else is being built on it.
func (s *streamer) attach(ctx context.Context, shadow *pgx.Conn, tb *streamTable) error {
	for _, e := range tb.entries {
		if e.attach == "" {
			continue
		}
		if err := shadow.PgConn().Exec(ctx, e.attach).Close(); err != nil {
			return fmt.Errorf("constraint %s: %w", e.name, err)
		}
	}
	return nil
}

// analyzeEntry is the work item that gathers a table's statistics.
func analyzeEntry(tb *streamTable) postEntry {
	// It reads a sample of at most 30,000 pages (the default statistics
	// target).
	return postEntry{name: tb.name, kind: "ANALYZE", sql: "ANALYZE " + tb.name, table: tb, cost: min(tb.size, 30000*8192) / 32}
}

// shadowConn opens a session on the shadow set up for bulk work.
func (s *streamer) shadowConn(ctx context.Context) (*pgx.Conn, error) {
	c, err := connect(ctx, s.r.Target.StagingDSN, s.next, false)
	if err != nil {
		return nil, err
	}
	// Index builds are parallel already, one per builder: PostgreSQL's own
	// parallel workers on top of them only fight for the same cores.
	setup := s.preamble + fmt.Sprintf("\nSET synchronous_commit = off; SET maintenance_work_mem = '%dMB'; SET max_parallel_maintenance_workers = 0;", defaultBuildMemory>>20)
	// Values TOASTed on staging are compressed with lz4 where the server
	// has it (PostgreSQL 14 and later, built with lz4): pglz, the default,
	// spends more CPU compressing than the copy spends on everything else
	// for tables of long text or jsonb. The data is the same; columns that
	// name their own compression keep it.
	s.lz4Once.Do(func() {
		err := c.QueryRow(ctx, `SELECT coalesce((SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'), false)`).Scan(&s.lz4)
		if err != nil {
			s.lz4 = false
		}
	})
	if s.lz4 {
		setup += " SET default_toast_compression = 'lz4';"
	}
	if err := c.PgConn().Exec(ctx, setup).Close(); err != nil {
		c.Close(ctx)
		return nil, fmt.Errorf("shadow session: %w", err)
	}
	return c, nil
}

// productionConn opens a read-only session on the shared snapshot.
func (s *streamer) productionConn(ctx context.Context) (*pgx.Conn, error) {
	c, err := s.r.Target.production(ctx)
	if err != nil {
		return nil, err
	}
	setup := "begin isolation level repeatable read read only; set transaction snapshot " + quoteLiteral(s.snapshot) + "; set local row_security = off"
	if err := c.PgConn().Exec(ctx, setup).Close(); err != nil {
		c.Close(ctx)
		return nil, fmt.Errorf("production: join the snapshot: %w", err)
	}
	return c, nil
}

// loChunk is how much of a large object one round trip carries.
const loChunk = 1 << 20

// copyLargeObjects copies the contents of production's large objects,
// read on the shared snapshot, into the ones the schema created in the
// shadow. Rows of at most loChunk bytes keep memory flat however large an
// object is.
func (s *streamer) copyLargeObjects(ctx context.Context, count int64) error {
	start := time.Now()
	prod, err := s.productionConn(ctx)
	if err != nil {
		return err
	}
	defer closeConn(ctx, prod)
	shadow, err := s.shadowConn(ctx)
	if err != nil {
		return err
	}
	defer closeConn(ctx, shadow)
	if _, err := shadow.Exec(ctx, "begin"); err != nil {
		return fmt.Errorf("shadow: %w", err)
	}
	// The first chunk of every object in one pass; objects longer than a
	// chunk are read on, chunk by chunk, afterwards.
	rows, err := prod.Query(ctx, "select oid, lo_get(oid, 0, $1) from pg_largeobject_metadata order by oid", loChunk)
	if err != nil {
		return fmt.Errorf("production: read large objects: %w", err)
	}
	var long []uint32
	var bytes, batched int64
	batch := &pgx.Batch{}
	flush := func() error {
		if batch.Len() == 0 {
			return nil
		}
		err := shadow.SendBatch(ctx, batch).Close()
		batch, batched = &pgx.Batch{}, 0
		return err
	}
	for rows.Next() {
		var oid uint32
		var data []byte
		if err := rows.Scan(&oid, &data); err != nil {
			rows.Close()
			return fmt.Errorf("production: read large objects: %w", err)
		}
		if len(data) == loChunk {
			long = append(long, oid)
		}
		bytes += int64(len(data))
		batched += int64(len(data))
		if len(data) > 0 {
			batch.Queue("select lo_put($1, 0, $2)", oid, data)
		}
		if batch.Len() >= 256 || batched >= 4*loChunk {
			if err := flush(); err != nil {
				rows.Close()
				return fmt.Errorf("shadow: write large object %d: %w", oid, err)
			}
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("production: read large objects: %w", err)
	}
	if err := flush(); err != nil {
		return fmt.Errorf("shadow: write large objects: %w", err)
	}
	for _, oid := range long {
		for off := int64(loChunk); ; off += loChunk {
			var data []byte
			if err := prod.QueryRow(ctx, "select lo_get($1, $2, $3)", oid, off, loChunk).Scan(&data); err != nil {
				return fmt.Errorf("production: read large object %d: %w", oid, err)
			}
			if len(data) > 0 {
				if _, err := shadow.Exec(ctx, "select lo_put($1, $2, $3)", oid, off, data); err != nil {
					return fmt.Errorf("shadow: write large object %d: %w", oid, err)
				}
			}
			bytes += int64(len(data))
			if len(data) < loChunk {
				break
			}
		}
	}
	if _, err := shadow.Exec(ctx, "commit"); err != nil {
		return fmt.Errorf("shadow: %w", err)
	}
	fmt.Fprintf(s.env.Log, "%d large objects (%s) copied in %s\n", count, runner.Bytes(bytes), time.Since(start).Round(time.Millisecond))
	return nil
}

// A worker either copies tables or builds indexes: copies never wait
// behind builds, and builds start the moment a table is in.
type role int

const (
	copier role = iota
	builder
)

// lockMode is how a build locks its tables, from PostgreSQL's table lock
// modes: what a builder takes must not wait on what is in flight.
type lockMode int

const (
	// lockRead: ACCESS SHARE, a partitioned table's ANALYZE sampling its
	// partitions; only an ACCESS EXCLUSIVE lock waits for it.
	lockRead lockMode = iota
	// lockShare: SHARE, CREATE INDEX; index builds run beside each other.
	lockShare
	// lockExclusive: SHARE UPDATE EXCLUSIVE (ANALYZE) or SHARE ROW
	// EXCLUSIVE (a foreign key check): one at a time, and not beside an
	// index build.
	lockExclusive
	// lockAll: ACCESS EXCLUSIVE, making a built index a constraint.
	lockAll
	lockModes
)

// conflicts says whether locks in modes a and b wait for each other.
func conflicts(a, b lockMode) bool {
	switch {
	case a == lockAll || b == lockAll:
		return true
	case a == lockRead || b == lockRead:
		return false
	}
	return a == lockExclusive || b == lockExclusive
}

// locks are the tables a build locks, and how.
func (e *postEntry) locks() ([]*streamTable, lockMode) {
	switch {
	case e.reads != nil:
		return e.reads, lockRead
	case e.kind == "INDEX" || e.kind == "CONSTRAINT":
		return []*streamTable{e.table}, lockShare
	case e.kind == "ATTACH":
		return []*streamTable{e.table}, lockAll
	case e.kind == "FK CONSTRAINT":
		return []*streamTable{e.table, e.ref}, lockExclusive
	}
	return []*streamTable{e.table}, lockExclusive
}

// runnable is the first queued build whose locks do not conflict with the
// builds in flight, or -1 (with s.mu held). A builder that took a
// conflicting one would only wait on PostgreSQL's lock with a core idle:
// on a chain of foreign keys each check locks two tables, and every
// table's ANALYZE waits for the checks on it.
func (s *streamer) runnable() int {
	for i := range s.builds {
		tables, mode := s.builds[i].locks()
		ok := true
	tables:
		for _, t := range tables {
			if h := s.held[t]; t != nil && h != nil {
				for m := range lockModes {
					if h[m] > 0 && conflicts(mode, m) {
						ok = false
						break tables
					}
				}
			}
		}
		if ok {
			return i
		}
	}
	return -1
}

// lock counts a build's locks in (n = 1) or out (n = -1), with s.mu held.
func (s *streamer) lock(e *postEntry, n int) {
	if s.held == nil {
		s.held = map[*streamTable]*[lockModes]int{}
	}
	tables, mode := e.locks()
	for _, t := range tables {
		if t == nil {
			continue
		}
		if s.held[t] == nil {
			s.held[t] = new([lockModes]int)
		}
		s.held[t][mode] += n
	}
}

// take hands a worker its next piece of work. ok is false when there is
// nothing left for it to do.
func (s *streamer) take(r role) (c *copyTask, b *postEntry, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		switch {
		case s.err != nil:
			return nil, nil, false
		case r == builder && s.runnable() >= 0:
			i := s.runnable()
			e := s.builds[i]
			s.builds = slices.Delete(s.builds, i, i+1)
			s.lock(&e, 1)
			s.building++
			// Once every copy is done, a build that would leave cores idle
			// (fewer builds than sessions) may use PostgreSQL's parallel
			// workers for them (PostgreSQL 15 builds only b-trees so).
			if (e.kind == "INDEX" || e.kind == "CONSTRAINT") && (e.am == "" || e.am == "btree") {
				if len(s.copies) == 0 && s.pending == 0 {
					e.parallel = max(0, s.r.Target.jobs()-s.building-len(s.builds))
				}
			}
			return nil, &e, true
		case r == copier && len(s.copies) > 0:
			t := s.copies[0]
			s.copies = s.copies[1:]
			s.pending++
			return &t, nil, true
		case r == copier:
			return nil, nil, false
		case len(s.copies) == 0 && s.pending == 0 && s.building == 0:
			return nil, nil, false
		}
		s.cond.Wait() // a copy or build in flight may yet queue builds
	}
}

func (s *streamer) fail(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
	s.cond.Broadcast()
}

func (s *streamer) work(ctx context.Context, r role) {
	var prod, shadow *pgx.Conn
	defer func() {
		for _, c := range []*pgx.Conn{prod, shadow} {
			if c != nil {
				closeConn(ctx, c)
			}
		}
	}()
	var err error
	if shadow, err = s.shadowConn(ctx); err != nil {
		s.fail(err)
		return
	}
	// The session's max_parallel_maintenance_workers and
	// maintenance_work_mem (shadowConn's).
	workers, mem := 0, int64(defaultBuildMemory)
	for {
		task, build, ok := s.take(r)
		if !ok {
			return
		}
		if build != nil {
			t0 := time.Now()
			index := build.kind == "INDEX" || build.kind == "CONSTRAINT"
			if want := sortMemory(build.sort, build.parallel); index && (build.parallel != workers || want != mem) {
				workers, mem = build.parallel, want
				if err := shadow.PgConn().Exec(ctx, fmt.Sprintf("SET max_parallel_maintenance_workers = %d; SET maintenance_work_mem = '%dkB'", workers, mem>>10)).Close(); err != nil {
					s.fail(fmt.Errorf("shadow session: %w", err))
					return
				}
			}
			if err := shadow.PgConn().Exec(ctx, build.sql).Close(); err != nil {
				s.fail(fmt.Errorf("%s %s: %w", strings.ToLower(build.kind), build.name, err))
				return
			}
			tb := build.table
			last := false
			if index && tb != nil {
				s.mu.Lock()
				tb.unbuilt--
				last = tb.unbuilt == 0
				s.mu.Unlock()
			}
			if build.kind == "ATTACH" {
				if err := s.attach(ctx, shadow, tb); err != nil {
					s.fail(err)
					return
				}
			}
			s.mu.Lock()
			s.lock(build, -1)
			s.building--
			if index {
				s.built++
			}
			switch {
			case last:
				s.builtAll(tb)
			case build.kind == "ATTACH":
				s.indexed(tb)
			}
			s.mu.Unlock()
			s.cond.Broadcast()
			switch build.kind {
			case "ATTACH":
				continue
			case "ANALYZE":
				// Logged when it takes long enough to matter.
				switch d := time.Since(t0); {
				case build.reads != nil:
					fmt.Fprintf(s.env.Log, "analyzed partitioned table %s in %s\n", build.name, d.Round(time.Millisecond))
				case d >= 100*time.Millisecond:
					fmt.Fprintf(s.env.Log, "analyzed %s in %s\n", build.name, d.Round(time.Millisecond))
				}
				continue
			case "FK CONSTRAINT":
				fmt.Fprintf(s.env.Log, "checked foreign key %s in %s\n", build.name, time.Since(t0).Round(time.Millisecond))
				continue
			}
			s.indexDone.Add(build.size)
			fmt.Fprintf(s.env.Log, "built %s %s in %s (%d parallel workers, %s to sort %s)\n", strings.ToLower(build.kind), build.name, time.Since(t0).Round(time.Millisecond), build.parallel, runner.Bytes(mem), runner.Bytes(build.sort))
			continue
		}
		if prod == nil {
			if prod, err = s.productionConn(ctx); err != nil {
				s.fail(err)
				return
			}
		}
		n, err := s.copy(ctx, prod, shadow, task)
		if err != nil {
			s.fail(fmt.Errorf("copy %s: %w", task.table.name, err))
			return
		}
		tb := task.table
		tb.mu.Lock()
		tb.pending--
		tb.rows += n
		done, rows := tb.pending == 0, tb.rows
		tb.mu.Unlock()
		if done {
			tb.copied.Store(true)
			s.tablesDone.Add(1)
		}
		s.mu.Lock()
		s.pending--
		if done {
			// Its indexes now; statistics once they are built (an
			// expression index has statistics of its own).
			s.queue(tb.entries...)
			if len(tb.entries) == 0 {
				s.builtAll(tb)
			}
			// A partitioned table's statistics need only its
			// partitions' rows (ANALYZE gathers none for its indexes).
			for _, p := range s.parents[tb] {
				if p.left--; p.left == 0 {
					var size int64
					for _, l := range p.leaves {
						size += l.size
					}
					s.queue(postEntry{name: p.name, kind: "ANALYZE", sql: "ANALYZE " + p.name, reads: p.leaves, cost: min(size, 30000*8192) / 32})
				}
			}
		}
		s.mu.Unlock()
		s.cond.Broadcast()
		if done {
			fmt.Fprintf(s.env.Log, "copied %s: %d rows after %s\n", tb.name, rows, time.Since(s.start).Round(time.Millisecond))
		}
	}
}

// copy streams one task from production to the shadow and returns the
// rows copied.
func (s *streamer) copy(ctx context.Context, prod, shadow *pgx.Conn, task *copyTask) (int64, error) {
	tb := task.table
	cols := ""
	if tb.columns != "" {
		cols = " (" + tb.columns + ")"
	}
	format := "text"
	if s.binary && tb.textOnly == "" {
		format = "binary"
	}
	src := "COPY " + tb.name + cols + " TO STDOUT (FORMAT " + format + ")"
	sel := "*"
	if tb.columns != "" {
		sel = tb.columns
	}
	if tb.config {
		src = "COPY (SELECT " + sel + " FROM ONLY " + tb.name + " " + tb.filter + ") TO STDOUT (FORMAT " + format + ")"
	}
	if task.split {
		where := fmt.Sprintf("ctid >= '(%d,0)'::tid", task.from)
		if task.to >= 0 {
			where += fmt.Sprintf(" and ctid < '(%d,0)'::tid", task.to)
		}
		src = "COPY (SELECT " + sel + " FROM ONLY " + tb.name + " WHERE " + where + ") TO STDOUT (FORMAT " + format + ")"
	}
	// A configuration table keeps the rows CREATE EXTENSION put there, so
	// it is neither truncated nor written FREEZE. Neither is a small table:
	// the truncation costs more than the hint bits it saves (measured: 3 ms
	// a table against 0.6 ms for a plain COPY of 200 rows).
	whole := !task.split && !tb.config && tb.size >= freezeMin
	dst := "COPY " + tb.name + cols + " FROM STDIN (FORMAT " + format
	if whole {
		// Rows written frozen: no hint-bit rewrite or anti-wraparound
		// vacuum later. Needs the table truncated in the same transaction.
		if err := shadow.PgConn().Exec(ctx, "BEGIN; TRUNCATE ONLY "+tb.name).Close(); err != nil {
			return 0, err
		}
		dst += ", FREEZE"
	}
	dst += ")"
	pipe := newChunkPipe(copyChunks, copyBuffer)
	errc := make(chan error, 1)
	// Rows are counted as they go by; the count COPY returns replaces them.
	var sent atomic.Int64
	defer func() { tb.streamed.Add(-sent.Load()) }()
	go func() {
		_, err := prod.PgConn().CopyTo(ctx, rowCounter{pipe, &sent, &tb.streamed}, src)
		pipe.CloseWrite(err)
		errc <- err
	}()
	tag, err := shadow.PgConn().CopyFrom(ctx, pipe, dst)
	pipe.CloseRead()
	if perr := <-errc; perr != nil && err == nil {
		err = perr
	}
	if err != nil {
		if whole {
			actx, cancel := afterwards(ctx)
			shadow.PgConn().Exec(actx, "ROLLBACK").Close()
			cancel()
		}
		return 0, err
	}
	if whole {
		if err := shadow.PgConn().Exec(ctx, "COMMIT").Close(); err != nil {
			return 0, err
		}
	}
	tb.streamed.Add(tag.RowsAffected())
	return tag.RowsAffected(), nil
}

// report sends one progress line: bytes of data copied and of indexes
// built against production's sizes, rows, tables, indexes and an ETA from
// the pace so far.
func (s *streamer) report(final bool) {
	if s.env.Progress == nil {
		return
	}
	s.mu.Lock()
	built := s.built
	s.mu.Unlock()
	var data, rows int64
	for _, tb := range s.all {
		n := tb.streamed.Load()
		rows += n
		switch {
		case tb.copied.Load():
			data += tb.size
		case tb.tuples > 0:
			data += min(tb.size, int64(float64(tb.size)*float64(n)/float64(tb.tuples)))
		}
	}
	p := runner.Progress{Done: data + s.indexDone.Load(), Total: s.totalData + s.totalIndex, Unit: "bytes", Rows: rows}
	rowsText := runner.Estimated(rows, s.totalRows, "rows")
	if final {
		rowsText = fmt.Sprintf("%d rows", rows)
		p.Done = p.Total
	}
	p.Items = fmt.Sprintf("%s, %d/%d tables, %d/%d indexes", rowsText, min(s.tablesDone.Load(), int64(len(s.all))), len(s.all), min(built, s.indexes), s.indexes)
	if !final {
		p.ETA = runner.ETA(time.Since(s.start), p.Done, p.Total)
	}
	s.env.Progress(p)
}

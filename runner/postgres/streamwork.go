package postgres

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stagebot/stagebot/runner"
	"github.com/stagebot/stagebot/runner/mask"
)

// freezeMin is the size from which a table is written FREEZE.
const freezeMin = 1 << 20

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
	setup := "begin isolation level repeatable read read only; set transaction snapshot " + quoteLiteral(s.snapshot) + "; set local row_security = off; " + textOutput("local")
	if err := c.PgConn().Exec(ctx, setup).Close(); err != nil {
		c.Close(ctx)
		return nil, fmt.Errorf("production: join the snapshot: %w", err)
	}
	return c, nil
}

// textOutput sets how a session writes values as text, whatever the
// database or role says: as pg_dump does (ISO dates, postgres intervals,
// exact floats, hex bytea), and times in UTC. Text COPY then reads back on
// any server, the masker reads dates it would otherwise leave as they are,
// and the proof's two sessions write a value alike. scope is "local" (the
// transaction) or "session".
func textOutput(scope string) string {
	var out []string
	for _, kv := range [][2]string{{"datestyle", "ISO, YMD"}, {"intervalstyle", "postgres"}, {"extra_float_digits", "3"}, {"bytea_output", "hex"}, {"timezone", "UTC"}} {
		out = append(out, "set "+scope+" "+kv[0]+" = "+quoteLiteral(kv[1]))
	}
	return strings.Join(out, "; ")
}

// bothConns opens a production session on the snapshot and a session on
// the shadow; done closes both.
func (s *streamer) bothConns(ctx context.Context) (prod, shadow *pgx.Conn, done func(), err error) {
	if prod, err = s.productionConn(ctx); err != nil {
		return nil, nil, nil, err
	}
	if shadow, err = s.shadowConn(ctx); err != nil {
		closeConn(ctx, prod)
		return nil, nil, nil, err
	}
	return prod, shadow, func() { closeConn(ctx, shadow); closeConn(ctx, prod) }, nil
}

// run copies and builds with jobs copiers and jobs builders (and one
// worker for the large objects), reporting progress, until everything is
// in or one of them fails.
func (s *streamer) run(ctx context.Context) error {
	t := s.r.Target
	format := map[bool]string{true: "binary", false: "text"}[s.binary]
	masked, inText, truncated := 0, 0, 0
	for _, tb := range s.all {
		switch {
		case tb.mask == nil:
		case tb.mask.plan.Truncate:
			truncated++
		case tb.mask.plan.Masked():
			masked++
			if !s.binary || tb.textOnly != "" || !tb.mask.binary(t) {
				inText++
			}
		}
	}
	maskNote := ""
	if masked+truncated > 0 {
		maskNote = fmt.Sprintf("; %d tables masked on the way (%d of them in text format), %d left empty by truncate", masked, inText, truncated)
	}
	fmt.Fprintf(s.env.Log, "data after %s: %d tables (%s), %d COPY streams (%s format) on %d workers; %d indexes and constraints built and %d foreign keys checked by %d more as tables finish%s\n",
		time.Since(s.start).Round(time.Millisecond), len(s.all), runner.Bytes(s.totalData), len(s.copies), format,
		t.jobs(), s.plan.entries-len(s.plan.rest)-len(s.plan.fks), len(s.plan.fks), t.jobs(), maskNote)
	stopProgress := every(ctx, progressEvery, func(context.Context) { s.report(false) })
	var wg sync.WaitGroup
	if s.objects > 0 {
		// Their metadata (lo_create, owner, privileges, comment) came with
		// the schema; their contents go beside the tables.
		wg.Go(func() {
			if err := s.copyLargeObjects(ctx, s.objects); err != nil {
				s.fail(err)
			}
		})
	}
	for _, r := range []role{copier, builder} {
		for range t.jobs() {
			wg.Go(func() { s.work(ctx, r) })
		}
	}
	wg.Wait()
	stopProgress()
	if s.err != nil {
		return s.err
	}
	s.report(true)
	fmt.Fprintf(s.env.Log, "data and %d indexes in after %s\n", s.built, time.Since(s.start).Round(time.Millisecond))
	return nil
}

// session is a builder's settings on its shadow session: the
// max_parallel_maintenance_workers and maintenance_work_mem in force.
type session struct {
	workers int
	mem     int64
}

// work is one worker: it takes jobs for its role until none are left.
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
	sess := session{mem: defaultBuildMemory} // shadowConn's
	for {
		j, ok := s.take(r)
		if !ok {
			return
		}
		if j.build != nil {
			if err := s.build(ctx, shadow, &sess, j.build); err != nil {
				s.fail(err)
				return
			}
			continue
		}
		if prod == nil {
			if prod, err = s.productionConn(ctx); err != nil {
				s.fail(err)
				return
			}
		}
		n, err := s.copy(ctx, prod, shadow, j.copy)
		if err != nil {
			s.fail(fmt.Errorf("copy %s: %w", j.copy.table.name, err))
			return
		}
		s.copied(j.copy.table, n)
	}
}

// build runs one build on a builder's shadow session, sized for it, then
// lets what it waited for start.
func (s *streamer) build(ctx context.Context, shadow *pgx.Conn, sess *session, e *postEntry) error {
	t0 := time.Now()
	index := e.kind.isIndexBuild()
	if want := sortMemory(e.sort, e.parallel); index && (e.parallel != sess.workers || want != sess.mem) {
		sess.workers, sess.mem = e.parallel, want
		if err := shadow.PgConn().Exec(ctx, fmt.Sprintf("SET max_parallel_maintenance_workers = %d; SET maintenance_work_mem = '%dkB'", sess.workers, sess.mem>>10)).Close(); err != nil {
			return fmt.Errorf("shadow session: %w", err)
		}
	}
	if err := shadow.PgConn().Exec(ctx, e.sql).Close(); err != nil {
		return fmt.Errorf("%s %s: %w", e.kind.word(), e.name, err)
	}
	if e.kind == kindAttach {
		if err := s.attach(ctx, shadow, e.table); err != nil {
			return err
		}
	}
	s.finished(e)
	s.logBuild(e, time.Since(t0), sess.mem)
	return nil
}

// finished counts a build done and queues what it lets start: a table's
// statistics once its last index is in, the foreign keys on it once its
// constraints are.
func (s *streamer) finished(e *postEntry) {
	index := e.kind.isIndexBuild()
	if index {
		s.indexDone.Add(e.size)
	}
	s.mu.Lock()
	tb := e.table
	last := false
	if index && tb != nil {
		tb.unbuilt--
		last = tb.unbuilt == 0
	}
	s.lock(e, -1)
	s.building--
	if index {
		s.built++
	}
	switch {
	case last:
		s.builtAll(tb)
	case e.kind == kindAttach:
		s.indexed(tb)
	}
	s.mu.Unlock()
	s.cond.Broadcast()
}

// logBuild says what a build took: every index, every foreign key check,
// and an ANALYZE when it took long enough to matter.
func (s *streamer) logBuild(e *postEntry, d time.Duration, mem int64) {
	switch {
	case e.kind == kindAttach:
	case e.kind == kindAnalyze && e.reads != nil:
		fmt.Fprintf(s.env.Log, "analyzed partitioned table %s in %s\n", e.name, d.Round(time.Millisecond))
	case e.kind == kindAnalyze && d >= 100*time.Millisecond:
		fmt.Fprintf(s.env.Log, "analyzed %s in %s\n", e.name, d.Round(time.Millisecond))
	case e.kind == kindAnalyze:
	case e.kind == kindFK:
		fmt.Fprintf(s.env.Log, "checked foreign key %s in %s\n", e.name, d.Round(time.Millisecond))
	default:
		fmt.Fprintf(s.env.Log, "built %s %s in %s (%d parallel workers, %s to sort %s)\n", e.kind.word(), e.name, d.Round(time.Millisecond), e.parallel, runner.Bytes(mem), runner.Bytes(e.sort))
	}
}

// copied counts the rows one copy task of tb moved; the table's last task
// lets its builds start.
func (s *streamer) copied(tb *streamTable, n int64) {
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
		s.tableIn(tb)
	}
	s.mu.Unlock()
	s.cond.Broadcast()
	if done {
		fmt.Fprintf(s.env.Log, "copied %s: %d rows after %s\n", tb.name, rows, time.Since(s.start).Round(time.Millisecond))
	}
}

// tableIn queues what a table's data being in lets start (with s.mu
// held): its indexes, its statistics once they are built (an expression
// index has statistics of its own), and the statistics of a partitioned
// table whose last partition it was (ANALYZE gathers none for a
// partitioned table's indexes).
func (s *streamer) tableIn(tb *streamTable) {
	s.queue(tb.entries...)
	if len(tb.entries) == 0 {
		s.builtAll(tb)
	}
	for _, p := range s.parents[tb] {
		if p.left--; p.left == 0 {
			var size int64
			for _, l := range p.leaves {
				size += l.size
			}
			s.queue(postEntry{name: p.name, kind: kindAnalyze, sql: "ANALYZE " + p.name, reads: p.leaves, cost: min(size, 30000*8192) / 32})
		}
	}
}

// copy streams one task from production to the shadow and returns the
// rows copied.
func (s *streamer) copy(ctx context.Context, prod, shadow *pgx.Conn, task *copyTask) (int64, error) {
	tb := task.table
	if tb.mask != nil && tb.mask.plan.Truncate {
		return 0, nil
	}
	masked := tb.mask != nil && tb.mask.plan.Masked() && !s.r.Target.rt.bypassMask
	format := "text"
	if s.binary && tb.textOnly == "" && (!masked || tb.mask.binary(s.r.Target)) {
		format = "binary"
	}
	src, cols := copySource(task, format)
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
		var w io.Writer = pipe
		var masker interface{ Close() error } // says whether a row was cut short
		switch {
		case masked && format == "binary":
			bw := mask.NewBinaryWriter(pipe, tb.mask.stream())
			w, masker = bw, bw
		case masked:
			tw := mask.NewWriter(pipe, tb.mask.stream())
			w, masker = tw, tw
		}
		_, err := prod.PgConn().CopyTo(ctx, rowCounter{w, &sent, &tb.streamed}, src)
		if masker != nil && err == nil {
			err = masker.Close()
		}
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

// copySource is the COPY that reads task from production (a table, an
// extension's configuration rows beyond its own, one range of pages; with
// sql rules' expressions in place of their columns), and the column list
// the shadow's COPY takes.
func copySource(task *copyTask, format string) (src, cols string) {
	tb := task.table
	if tb.columns != "" {
		cols = " (" + tb.columns + ")"
	}
	src = "COPY " + tb.name + cols + " TO STDOUT (FORMAT " + format + ")"
	sel := "*"
	if tb.columns != "" {
		sel = tb.columns
	}
	if tb.mask != nil {
		if list := tb.mask.selectList(); list != "" {
			sel = list
			src = "COPY (SELECT " + sel + " FROM ONLY " + tb.name + ") TO STDOUT (FORMAT " + format + ")"
		}
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
	return src, cols
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
	if final && s.maskNote != "" {
		p.Items += "; " + s.maskNote
	}
	if !final {
		p.ETA = runner.ETA(time.Since(s.start), p.Done, p.Total)
	}
	s.env.Progress(p)
}

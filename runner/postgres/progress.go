package postgres

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/stagebot/stagebot/runner"
)

// progressPoller watches the shadow database fill up and reports bytes and
// rows against production's totals (from its table statistics), tables and
// indexes done, and an ETA.
type progressPoller struct {
	t    *Target
	db   string
	env  *runner.Env
	mu   sync.Mutex
	last runner.Progress

	totalBytes, totalRows   int64
	totalTables, totalIndex int
	started                 time.Time

	fileN, fileTotal int64
}

func newProgressPoller(t *Target, db string, env *runner.Env) *progressPoller {
	return &progressPoller{t: t, db: db, env: env, started: time.Now()}
}

func (p *progressPoller) totalsFromProduction(ctx context.Context) error {
	c, err := p.t.production(ctx)
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	return c.QueryRow(ctx, `
		select coalesce(sum(pg_table_size(c.oid)) filter (where c.relkind in ('r','m')), 0)::bigint,
		       coalesce(sum(greatest(c.reltuples, 0)) filter (where c.relkind in ('r','m')), 0)::bigint,
		       count(*) filter (where c.relkind in ('r','m'))::int,
		       count(*) filter (where c.relkind = 'i')::int
		from pg_class c join pg_namespace n on n.oid = c.relnamespace
		where n.nspname not in ('pg_catalog','information_schema') and n.nspname not like 'pg\_toast%'`).
		Scan(&p.totalBytes, &p.totalRows, &p.totalTables, &p.totalIndex)
}

// fileRead records how much of a backup file has been read.
func (p *progressPoller) fileRead(n, total int64) {
	p.mu.Lock()
	p.fileN, p.fileTotal = n, total
	p.mu.Unlock()
}

// every calls fn at each interval, with a context that ends when stop is
// called; stop returns once fn is no longer running.
func every(ctx context.Context, interval time.Duration, fn func(context.Context)) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				fn(ctx)
			}
		}
	}()
	return func() { cancel(); <-done }
}

func (p *progressPoller) poll(ctx context.Context, final bool) {
	c, err := connect(ctx, p.t.StagingDSN, p.db, false)
	if err != nil {
		return
	}
	defer closeConn(ctx, c)
	var pr runner.Progress
	var tables, indexes int
	var bytes, rows, copying int64
	err = c.QueryRow(ctx, `
		select coalesce(sum(pg_table_size(c.oid)) filter (where c.relkind in ('r','m')), 0)::bigint,
		       count(*) filter (where c.relkind in ('r','m') and pg_table_size(c.oid) > 0)::int,
		       count(*) filter (where c.relkind = 'i')::int,
		       coalesce((select sum(n_tup_ins) from pg_stat_user_tables), 0)::bigint,
		       coalesce((select sum(tuples_processed) from pg_stat_progress_copy where datname = current_database()), 0)::bigint
		from pg_class c join pg_namespace n on n.oid = c.relnamespace
		where n.nspname not in ('pg_catalog','information_schema') and n.nspname not like 'pg\_toast%'`).
		Scan(&bytes, &tables, &indexes, &rows, &copying)
	if err != nil {
		return
	}
	p.mu.Lock()
	fileN, fileTotal := p.fileN, p.fileTotal
	p.mu.Unlock()
	if fileTotal > 0 {
		pr = runner.Progress{Done: fileN, Total: fileTotal, Unit: "bytes"}
	} else {
		pr = runner.Progress{Done: min(bytes, p.totalBytes), Total: p.totalBytes, Unit: "bytes"}
	}
	if final {
		// Sizes on the two servers differ a little, and an empty table
		// has no size: finished is 100%, every table and index in.
		pr.Done = pr.Total
		tables, indexes = max(tables, p.totalTables), max(indexes, p.totalIndex)
	}
	items := runner.Estimated(rows+copying, p.totalRows, "rows")
	if final {
		items = fmt.Sprintf("%d rows", rows+copying)
	}
	if p.totalTables > 0 {
		items += fmt.Sprintf(", %d/%d tables, %d/%d indexes", min(tables, p.totalTables), p.totalTables, min(indexes, p.totalIndex), p.totalIndex)
	}
	pr.Items = items
	if !final {
		pr.ETA = runner.ETA(time.Since(p.started), pr.Done, pr.Total)
	}
	p.mu.Lock()
	p.last = pr
	p.mu.Unlock()
	if p.env.Progress != nil {
		p.env.Progress(pr)
	}
}

// around polls while fn runs, with production's totals when live, and
// reports the finished state once fn succeeds.
func (p *progressPoller) around(ctx context.Context, live bool, fn func() error) error {
	if live {
		if err := p.totalsFromProduction(ctx); err != nil {
			fmt.Fprintf(p.env.Log, "no progress totals: %v\n", err)
		}
	}
	stop := every(ctx, time.Second, func(ctx context.Context) { p.poll(ctx, false) })
	err := fn()
	stop()
	if err == nil {
		p.poll(ctx, true)
	}
	return err
}

// logSize logs the shadow's size once it is complete.
func (p *progressPoller) logSize(ctx context.Context) {
	c, err := connect(ctx, p.t.StagingDSN, p.db, false)
	if err != nil {
		return
	}
	defer c.Close(ctx)
	var size int64
	if c.QueryRow(ctx, "select pg_database_size(current_database())").Scan(&size) == nil {
		fmt.Fprintf(p.env.Log, "%s is %s after the restore\n", p.db, runner.Bytes(size))
	}
}

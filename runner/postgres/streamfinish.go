package postgres

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
)

// finish does what must come once every table is in: the post-data
// entries left (in dump order: foreign keys between tables copied
// elsewhere, triggers, views' data…), the sequences' values, and the
// statistics of materialized views and of partitioned tables not analyzed
// already.
func (s *streamer) finish(ctx context.Context) error {
	c, err := s.shadowConn(ctx)
	if err != nil {
		return err
	}
	defer closeConn(ctx, c)
	for _, e := range s.plan.rest {
		if err := c.PgConn().Exec(ctx, e.sql).Close(); err != nil {
			return fmt.Errorf("%s %s: %w", e.kind.word(), e.name, err)
		}
	}
	restDone := time.Since(s.start)
	for _, sq := range s.plan.seqs {
		if _, err := c.Exec(ctx, "select pg_catalog.setval($1::regclass, $2, $3)", sq.name, sq.last, sq.called); err != nil {
			return fmt.Errorf("sequence %s: %w", sq.name, err)
		}
	}
	others, err := s.unanalyzed(ctx, c)
	if err != nil {
		return err
	}
	for _, name := range others {
		if _, err := c.Exec(ctx, "ANALYZE "+name); err != nil {
			return fmt.Errorf("analyze %s: %w", name, err)
		}
	}
	fmt.Fprintf(s.env.Log, "%d other objects in after %s; %d sequences set and %d views and partitioned tables analyzed after %s\n",
		len(s.plan.rest), restDone.Round(time.Millisecond), len(s.plan.seqs), len(others), time.Since(s.start).Round(time.Millisecond))
	return nil
}

// unanalyzed lists the shadow's materialized views and partitioned tables
// that have no statistics yet: tables were analyzed as they finished, and
// partitioned tables whose partitions were all copied beside them.
func (s *streamer) unanalyzed(ctx context.Context, c *pgx.Conn) ([]string, error) {
	rows, err := c.Query(ctx, `select format('%I.%I', n.nspname, c.relname) from pg_class c
		join pg_namespace n on n.oid = c.relnamespace where c.relkind in ('m', 'p')
		and n.nspname not in ('pg_catalog', 'information_schema')`)
	if err != nil {
		return nil, fmt.Errorf("shadow: %w", err)
	}
	others, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("shadow: %w", err)
	}
	early := map[string]bool{}
	for _, ps := range s.parents {
		for _, p := range ps {
			early[p.name] = true
		}
	}
	return slices.DeleteFunc(others, func(name string) bool { return early[name] }), nil
}

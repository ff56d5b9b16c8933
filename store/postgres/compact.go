package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stagebot/stagebot/store"
)

// Compact implements store.Store.
func (s *Store) Compact(ctx context.Context, k store.Retention) (int, error) {
	removed := 0
	err := s.write(ctx, func(tx pgx.Tx) error {
		var before *time.Time
		if !k.Before.IsZero() {
			before = &k.Before
		}
		keep := int64(k.Runs)
		if keep <= 0 {
			keep = -1
		}
		// Finished runs that ended too long ago go; of the others, the
		// newest the count allows stay.
		tag, err := tx.Exec(ctx, `with old as (
			select id from stagebot_runs where not active and $2::timestamptz is not null and coalesce(ended_at, '-infinity') < $2::timestamptz
		), kept as (
			select id from stagebot_runs where not active and id not in (select id from old) order by id desc limit case when $1::bigint < 0 then null else $1::bigint end
		)
		delete from stagebot_runs where not active and (id in (select id from old) or id not in (select id from kept))`, keep, before)
		if err != nil {
			return err
		}
		removed = int(tag.RowsAffected())
		if before == nil {
			return nil
		}
		if _, err = tx.Exec(ctx, "delete from stagebot_holds where not active and ended_at < $1", before); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, "delete from stagebot_events where (record->>'at')::timestamptz < $1", before)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("compact: %w", err)
	}
	return removed, nil
}

package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/stagebot/stagebot/runner"
)

// diskPlan estimates whether a refresh fits: the shadow needs about
// production's size (its indexes included, as they are built there too),
// beside what staging's server holds already (staging, the kept previous
// copy, the base). It says so against DiskBudget, the space staging's
// server may use, when one is configured; "" when it fits or nothing can
// be said.
func (t *Target) diskPlan(ctx context.Context) (string, error) {
	if t.DiskBudget <= 0 {
		return "", nil
	}
	p, err := t.production(ctx)
	if err != nil {
		return "", err
	}
	defer p.Close(ctx)
	var need int64
	if err := p.QueryRow(ctx, "select pg_database_size(current_database())").Scan(&need); err != nil {
		return "", fmt.Errorf("production: database size: %w", err)
	}
	used, kept, err := t.stagingUse(ctx)
	if err != nil {
		return "", err
	}
	if used+need <= t.DiskBudget {
		return "", nil
	}
	msg := fmt.Sprintf("warning: the copy needs about %s beside the %s staging's server holds, more than its disk_budget of %s", runner.Bytes(need), runner.Bytes(used), runner.Bytes(t.DiskBudget))
	if kept != "" {
		msg += "; " + kept
	}
	return msg, nil
}

// stagingUse is what staging's server holds, and a sentence naming the
// copies stagebot keeps there that could be dropped to make room.
func (t *Target) stagingUse(ctx context.Context) (used int64, kept string, err error) {
	c, err := connect(ctx, t.StagingDSN, "postgres", false)
	if err != nil {
		return 0, "", err
	}
	defer c.Close(ctx)
	if err := c.QueryRow(ctx, "select coalesce(sum(pg_database_size(oid)), 0)::bigint from pg_database where datallowconn or datname like '%__stagebot%'").Scan(&used); err != nil {
		return 0, "", fmt.Errorf("staging: database sizes: %w", err)
	}
	db, _, prev, err := t.names()
	if err != nil {
		return used, "", err
	}
	var parts []string
	for _, k := range []struct{ name, what, fix string }{
		{prev, "the previous copy kept for rollback", fmt.Sprintf("`forget %s previous` drops it; keep_previous: space_permitting drops it before each copy", t.Name)},
		{db + BaseSuffix, "the base kept for reset", fmt.Sprintf("`forget %s base` drops it; keep_base: false keeps none", t.Name)},
	} {
		var size int64
		if err := c.QueryRow(ctx, "select coalesce((select pg_database_size(oid) from pg_database where datname = $1), 0)::bigint", k.name).Scan(&size); err == nil && size > 0 {
			parts = append(parts, fmt.Sprintf("%s (%s) holds %s (%s)", k.name, k.what, runner.Bytes(size), k.fix))
		}
	}
	return used, strings.Join(parts, "; "), nil
}

// diskFull reports whether err is a server or tool running out of space.
func diskFull(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "53100" {
		return true
	}
	return err != nil && (strings.Contains(err.Error(), "No space left on device") || strings.Contains(err.Error(), "could not extend file"))
}

// explainDiskFull adds to a failure for lack of space what holds the
// space that stagebot could give back.
func (t *Target) explainDiskFull(ctx context.Context, err error) error {
	if !diskFull(err) {
		return err
	}
	actx, cancel := afterwards(ctx)
	defer cancel()
	used, kept, uerr := t.stagingUse(actx)
	if uerr != nil {
		return fmt.Errorf("%w (staging's server is out of disk space)", err)
	}
	msg := fmt.Sprintf("staging's server is out of disk space (its databases hold %s)", runner.Bytes(used))
	if kept != "" {
		msg += ": " + kept
	}
	return fmt.Errorf("%w; %s", err, msg)
}

package postgres

import (
	"context"
	"fmt"

	"github.com/stagebot/stagebot/runner"
)

// Copies Forget can drop.
const (
	ForgetPrevious = "previous"
	ForgetBase     = "base"
)

// Forget drops a copy stagebot keeps on staging's server, to give its
// space back: the previous copy (kept for rollback) or the base (kept for
// reset). It says what it dropped and what that costs; a copy that is not
// there is an error that says so.
func (t *Target) Forget(ctx context.Context, what string) (string, error) {
	db, _, prev, err := t.names()
	if err != nil {
		return "", err
	}
	name, lost := prev, "there is no copy to roll back to until the next refresh keeps one"
	switch what {
	case ForgetPrevious:
	case ForgetBase:
		name, lost = db+BaseSuffix, "reset needs a refresh from production first, which keeps a new base"
	default:
		return "", fmt.Errorf("there is no %q copy: give previous (kept for rollback) or base (kept for reset)", what)
	}
	if err := t.Guard(ctx); err != nil {
		return "", err
	}
	defer t.rt.exclusive()() // not while a swap or rollback moves the copies
	size, exists, err := t.copySize(ctx, name)
	if err != nil {
		return "", err
	}
	if !exists {
		return "", fmt.Errorf("%s keeps no %s copy (%s): there is nothing to forget", db, what, name)
	}
	c, err := t.maintenance(ctx)
	if err != nil {
		return "", err
	}
	defer closeConn(ctx, c)
	if err := dropDatabase(ctx, c, name); err != nil {
		return "", err
	}
	return fmt.Sprintf("dropped %s, the %s copy: %s of staging's server given back; %s", name, what, runner.Bytes(size), lost), nil
}

// copySize is the size of database name on staging's server, if it exists.
func (t *Target) copySize(ctx context.Context, name string) (size int64, exists bool, err error) {
	c, err := t.maintenance(ctx)
	if err != nil {
		return 0, false, err
	}
	defer closeConn(ctx, c)
	err = c.QueryRow(ctx, "select coalesce((select pg_database_size(oid) from pg_database where datname = $1), -1)::bigint", name).Scan(&size)
	if err != nil {
		return 0, false, fmt.Errorf("staging: size of %s: %w", name, err)
	}
	return max(size, 0), size >= 0, nil
}

// roomPlan says, for a plan, what makeRoom will do: "" when it does
// nothing.
func (t *Target) roomPlan(ctx context.Context) string {
	if !t.KeepPrevious || !t.SpacePermitting {
		return ""
	}
	_, _, prev, err := t.names()
	if err != nil {
		return ""
	}
	size, exists, err := t.copySize(ctx, prev)
	if err != nil || !exists {
		return ""
	}
	if t.DiskBudget > 0 {
		if warn, err := t.diskPlan(ctx); err == nil && warn == "" {
			return ""
		}
	}
	return fmt.Sprintf("the previous copy %s (%s) is dropped before the copy, to make room (keep_previous: space_permitting)", prev, runner.Bytes(size))
}

// makeRoom is keep_previous: space_permitting. Before a copy starts, the
// previous copy gives its space to the new one, unless disk_budget says
// both fit; either way the run's log and progress say which. The copy the
// refresh replaces is kept as the previous one, as with keep_previous.
func (t *Target) makeRoom(ctx context.Context, env *runner.Env) error {
	if !t.KeepPrevious || !t.SpacePermitting {
		return nil
	}
	_, _, prev, err := t.names()
	if err != nil {
		return err
	}
	size, exists, err := t.copySize(ctx, prev)
	if err != nil || !exists {
		return err
	}
	if t.DiskBudget > 0 {
		if warn, err := t.diskPlan(ctx); err == nil && warn == "" {
			fmt.Fprintf(env.Log, "the previous copy %s (%s) stays: the copy fits beside it within disk_budget\n", prev, runner.Bytes(size))
			return nil
		}
	}
	defer t.rt.exclusive()()
	c, err := t.maintenance(ctx)
	if err != nil {
		return err
	}
	defer closeConn(ctx, c)
	if err := dropDatabase(ctx, c, prev); err != nil {
		return err
	}
	fmt.Fprintf(env.Log, "dropped the previous copy %s (%s) to make room for the copy (keep_previous: space_permitting); until this refresh swaps in there is no copy to roll back to\n", prev, runner.Bytes(size))
	if env.Progress != nil {
		env.Progress(runner.Progress{Items: fmt.Sprintf("dropped the previous copy (%s) to make room", runner.Bytes(size))})
	}
	return nil
}

package postgres

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/stagebot/stagebot/runner"
)

// Recover repairs what a crash left: it drops the shadow and any replaced
// copy whose background drop did not finish, finishes a rollback that was
// cut short, puts the previous copy back if staging is missing, and lets
// connections into staging again. It returns what it did ("" when nothing
// was needed).
func (t *Target) Recover(ctx context.Context) (string, error) {
	defer t.rt.exclusive()()
	return t.recoverLocked(ctx)
}

func (t *Target) recoverLocked(ctx context.Context) (string, error) {
	db, next, prev, err := t.names()
	if err != nil {
		return "", err
	}
	c, err := t.maintenance(ctx)
	if err != nil {
		return "", err
	}
	defer closeConn(ctx, c)
	var did []string
	for _, gone := range []struct{ name, what string }{{next, "the unfinished copy"}, {db + OldSuffix, "the replaced copy"}} {
		if d, err := database(ctx, c, gone.name); err != nil {
			return "", err
		} else if d.exists {
			if err := dropDatabase(ctx, c, gone.name); err != nil {
				return "", err
			}
			did = append(did, "dropped "+gone.what+" "+gone.name)
		}
	}
	cur, err := database(ctx, c, db)
	if err != nil {
		return "", err
	}
	p, err := database(ctx, c, prev)
	if err != nil {
		return "", err
	}
	// A rollback renames staging to tmp and the previous copy into place
	// in one transaction, then tmp to the previous copy's name.
	tmp := db + swapSuffix
	if tm, err := database(ctx, c, tmp); err != nil {
		return "", err
	} else if tm.exists {
		to, what := prev, "kept the copy a rollback replaced as "+prev
		if !cur.exists {
			to, what = db, db+" was missing: put back the copy a rollback had moved aside"
		}
		if to == prev && p.exists {
			if err := dropDatabase(ctx, c, tmp); err != nil {
				return "", err
			}
			did = append(did, "dropped "+tmp+", left by a rollback")
		} else {
			if _, err := c.Exec(ctx, "alter database "+quoteIdent(tmp)+" rename to "+quoteIdent(to)); err != nil {
				return "", fmt.Errorf("rename %s to %s: %w", tmp, to, err)
			}
			did = append(did, what)
			if to == db {
				cur, err = database(ctx, c, db)
			} else {
				p, err = database(ctx, c, prev)
			}
			if err != nil {
				return "", err
			}
		}
	}
	if !cur.exists && p.exists {
		if _, err := c.Exec(ctx, "alter database "+quoteIdent(prev)+" rename to "+quoteIdent(db)); err != nil {
			return "", err
		}
		cur = p
		did = append(did, fmt.Sprintf("%s was missing: put the previous copy back", db))
	}
	managed := t.Adopt
	if cur.exists && !managed {
		if _, managed, err = t.madeBy(ctx, c, db); err != nil {
			return "", err
		}
	}
	if cur.exists && !cur.allowConn && managed {
		if _, err := c.Exec(ctx, "alter database "+quoteIdent(db)+" with allow_connections true"); err != nil {
			return "", err
		}
		did = append(did, "let connections into "+db+" again")
	}
	return strings.Join(did, "; "), nil
}

// MadeBy returns the run that made the copy staging holds now: 0 when
// staging does not exist or no record says which run made it.
func (t *Target) MadeBy(ctx context.Context) (uint64, error) {
	db, err := t.StagingDB()
	if err != nil {
		return 0, err
	}
	c, err := t.maintenance(ctx)
	if err != nil {
		return 0, err
	}
	defer closeConn(ctx, c)
	run, _, err := t.madeBy(ctx, c, db)
	return run, err
}

// Holding says which copy staging holds, as seen from run.
func (t *Target) Holding(ctx context.Context, run uint64) string {
	db, _ := t.StagingDB()
	made, err := t.MadeBy(ctx)
	switch {
	case err != nil:
		return fmt.Sprintf("which copy %s holds cannot be told now (%v)", db, err)
	case made == run && run != 0:
		return fmt.Sprintf("%s holds the new copy, made by run %d", db, run)
	case made != 0:
		return fmt.Sprintf("%s holds the copy it had before run %d (made by run %d)", db, run, made)
	}
	return fmt.Sprintf("%s holds the copy it had before run %d", db, run)
}

// repairLater keeps trying, in the background, to repair what run left
// when staging's server stopped answering (a shadow it could not drop, a
// swap cut short that left staging refusing connections). Once it has, it
// says what it did through Notify. The next run on the target, and Wait,
// end it.
func (t *Target) repairLater(run uint64, why error) {
	t.rt.repairMu.Lock()
	defer t.rt.repairMu.Unlock()
	if t.rt.repairCancel != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.rt.repairCancel, t.rt.repairDone = cancel, done
	t.logger().Warn("staging's server does not answer; repairing what the run left once it does", "target", t.Name, "run", run, "err", why)
	go func() {
		defer close(done)
		delay := t.rt.firstRetry()
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(delay):
			}
			did, err := t.Recover(ctx)
			if err != nil {
				delay = min(2*delay, 30*time.Second)
				continue
			}
			t.rt.repairMu.Lock()
			if ctx.Err() == nil {
				t.rt.repairCancel, t.rt.repairDone = nil, nil
			}
			t.rt.repairMu.Unlock()
			if did == "" {
				did = "nothing was left to repair"
			}
			msg := fmt.Sprintf("Staging's server for %s answers again after run %d: %s. %s.", t.Name, run, did, t.Holding(ctx, run))
			t.logger().Info("repaired what a run left", "target", t.Name, "run", run, "did", did)
			if t.Notify != nil {
				t.Notify(msg)
			}
			return
		}
	}()
}

// afterFailedSwap makes sure a swap that failed part-way (staging's server
// died, the connection broke) leaves staging usable: it repairs at once
// when the server answers, or as soon as it answers again. It returns the
// swap's error with what it found.
func (t *Target) afterFailedSwap(ctx context.Context, env *runner.Env, swapErr error) error {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	did, err := t.Recover(rctx)
	switch {
	case err != nil:
		t.repairLater(env.Run, err)
		return fmt.Errorf("%w; staging's server does not answer (%v): stagebot repairs staging as soon as it answers again, and says so", swapErr, err)
	case did != "":
		fmt.Fprintf(env.Log, "after the failed swap: %s\n", did)
	}
	return fmt.Errorf("%w; %s", swapErr, t.Holding(rctx, env.Run))
}

// stopRepair ends a pending background repair and reports whether there
// was one.
func (t *Target) stopRepair() bool {
	t.rt.repairMu.Lock()
	cancel, done := t.rt.repairCancel, t.rt.repairDone
	t.rt.repairCancel, t.rt.repairDone = nil, nil
	t.rt.repairMu.Unlock()
	if cancel == nil {
		return false
	}
	cancel()
	<-done
	return true
}

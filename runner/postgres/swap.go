package postgres

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5"
)

// BetweenRenames, when set, is called inside the swap's transaction just
// before its last rename. Nothing in stagebot sets it: tests do, to kill the
// process at exactly that point.
var BetweenRenames func()

// AfterSwap, when set, is called once the swap has committed, before it
// returns. Only tests set it.
var AfterSwap func()

// swapPlan is one exchange of databases on staging's server: in takes
// staging's place (db) and staging moves to out; retire, when given, moves
// to old in the same transaction, making room for out.
type swapPlan struct {
	db, in, out string
	retire, old string
}

// renames are the plan's renames, in the order they can be made.
func (p swapPlan) renames() [][2]string {
	r := [][2]string{{p.db, p.out}, {p.in, p.db}}
	if p.retire != "" {
		r = append([][2]string{{p.retire, p.old}}, r...)
	}
	return r
}

// exchange carries out p in one transaction. Staging refuses new
// connections and the sessions on the databases involved are ended first;
// whatever fails before the commit opens staging to connections again. It
// returns how long staging was unavailable.
func (t *Target) exchange(ctx context.Context, c *pgx.Conn, p swapPlan, log io.Writer) (time.Duration, error) {
	cur, err := database(ctx, c, p.db)
	if err != nil {
		return 0, err
	}
	if !cur.exists {
		if _, err := c.Exec(ctx, "alter database "+quoteIdent(p.in)+" rename to "+quoteIdent(p.db)); err != nil {
			return 0, fmt.Errorf("rename %s to %s: %w", p.in, p.db, err)
		}
		fmt.Fprintf(log, "%s did not exist; %s renamed into place\n", p.db, p.in)
		return 0, nil
	}
	start := time.Now()
	if _, err := c.Exec(ctx, "alter database "+quoteIdent(p.db)+" with allow_connections false"); err != nil {
		return 0, fmt.Errorf("block connections to %s: %w", p.db, err)
	}
	committed := false
	defer func() {
		if committed {
			return
		}
		actx, cancel := afterwards(ctx)
		defer cancel()
		if _, err := c.Exec(actx, "alter database "+quoteIdent(p.db)+" with allow_connections true"); err != nil {
			fmt.Fprintf(log, "could not allow connections to %s again: %v\n", p.db, err)
		}
	}()
	if p.retire != "" {
		if _, err := c.Exec(ctx, "alter database "+quoteIdent(p.retire)+" with allow_connections false"); err != nil {
			return 0, fmt.Errorf("block connections to %s: %w", p.retire, err)
		}
	}
	if err := t.endSessions(ctx, c, p, log); err != nil {
		return 0, err
	}
	if err := t.fence(swapBudget); err != nil {
		return 0, err
	}
	if err := p.commit(ctx, c); err != nil {
		return 0, err
	}
	committed = true
	if AfterSwap != nil {
		AfterSwap()
	}
	return time.Since(start), nil
}

// endSessions ends the sessions still open on staging and on the other
// databases of p, for at most 30 seconds.
func (t *Target) endSessions(ctx context.Context, c *pgx.Conn, p swapPlan, log io.Writer) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		var n int
		err := c.QueryRow(ctx, `select count(pg_terminate_backend(pid)) from pg_stat_activity where datname in ($1, $2, $3) and pid <> pg_backend_pid()`, p.db, p.in, p.retire).Scan(&n)
		if err != nil {
			return fmt.Errorf("end sessions on %s: %w", p.db, err)
		}
		if n == 0 {
			return nil
		}
		fmt.Fprintf(log, "ended %d session(s) on %s\n", n, p.db)
		if err := t.fence(swapBudget); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("sessions on %s would not end within 30s", p.db)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// commit makes p's renames and opens staging again, in one transaction
// bounded by swapBudget.
func (p swapPlan) commit(ctx context.Context, c *pgx.Conn) error {
	tx, err := c.Begin(ctx)
	if err != nil {
		return err
	}
	defer rollbackTx(ctx, tx) // nothing once committed
	bound := fmt.Sprintf("SET LOCAL lock_timeout = %d; SET LOCAL statement_timeout = %d", swapBudget.Milliseconds(), swapBudget.Milliseconds())
	if _, err := tx.Exec(ctx, bound); err != nil {
		return err
	}
	renames := p.renames()
	for i, rn := range renames {
		if i == len(renames)-1 && BetweenRenames != nil {
			BetweenRenames()
		}
		if _, err := tx.Exec(ctx, "alter database "+quoteIdent(rn[0])+" rename to "+quoteIdent(rn[1])); err != nil {
			return fmt.Errorf("rename %s to %s: %w", rn[0], rn[1], err)
		}
	}
	if _, err := tx.Exec(ctx, "alter database "+quoteIdent(p.db)+" with allow_connections true"); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit the swap: %w", err)
	}
	return nil
}

// Swap puts the shadow into staging's place. The replaced copy becomes the
// previous one (KeepPrevious), or goes; so does the previous copy it
// replaces. Dropping a database makes PostgreSQL write out everything the
// refresh wrote (a checkpoint), which can take seconds: that happens in
// the background once staging is back, and Wait waits for it. It returns
// how long staging was unavailable.
func (t *Target) Swap(ctx context.Context, log io.Writer) (time.Duration, error) {
	defer t.rt.exclusive()()
	db, next, prev, err := t.names()
	if err != nil {
		return 0, err
	}
	old := db + OldSuffix
	c, err := t.maintenance(ctx)
	if err != nil {
		return 0, err
	}
	defer closeConn(ctx, c)
	shadow, err := database(ctx, c, next)
	if err != nil {
		return 0, err
	}
	if !shadow.exists {
		return 0, fmt.Errorf("there is no %s to swap in: a pg_refresh step must run first", next)
	}
	// Left by a background drop the bot did not live to finish.
	if err := dropDatabase(ctx, c, old); err != nil {
		return 0, err
	}
	out, retire := old, ""
	if t.KeepPrevious {
		p, err := database(ctx, c, prev)
		if err != nil {
			return 0, err
		}
		out = prev
		if p.exists {
			retire = prev
		}
	} else if err := dropDatabase(ctx, c, prev); err != nil { // kept before keep_previous was turned off
		return 0, err
	}
	took, err := t.exchange(ctx, c, swapPlan{db: db, in: next, out: out, retire: retire, old: old}, log)
	if err != nil {
		return 0, err
	}
	if ex, err := database(ctx, c, old); err == nil && ex.exists {
		fmt.Fprintf(log, "the replaced copy (%s) is dropped in the background\n", old)
		t.dropLater(old)
	}
	return took, nil
}

// dropLater drops name in the background, after the swap that retired it.
// If it fails (or the bot stops first), the next swap or start drops it.
func (t *Target) dropLater(name string) {
	t.rt.inBackground(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
		defer cancel()
		start := time.Now()
		c, err := t.maintenance(ctx)
		if err == nil {
			err = dropDatabase(ctx, c, name)
			c.Close(ctx)
		}
		if err != nil {
			t.logger().Warn("could not drop a replaced staging copy; the next refresh drops it", "target", t.Name, "database", name, "err", err)
			return
		}
		t.logger().Info("dropped the replaced staging copy", "target", t.Name, "database", name, "took", time.Since(start).Round(time.Millisecond))
	})
}

// Wait waits for background drops of replaced copies to end, and gives up
// a background repair (the next start repairs what is left).
func (t *Target) Wait() {
	if t.stopRepair() {
		t.logger().Warn("stopping while staging's server does not answer; the next start repairs what the last run left", "target", t.Name)
	}
	if n := t.rt.dropping.Load(); n > 0 {
		t.logger().Info("waiting for a replaced staging copy to be dropped", "target", t.Name, "drops", n)
	}
	t.rt.settle()
}

// Rollback swaps the previous copy back into place; the copy it replaces
// becomes the previous one, so a second rollback undoes the first.
func (t *Target) Rollback(ctx context.Context, log io.Writer) (string, error) {
	defer t.rt.exclusive()()
	db, _, prev, err := t.names()
	if err != nil {
		return "", err
	}
	c, err := t.maintenance(ctx)
	if err != nil {
		return "", err
	}
	defer closeConn(ctx, c)
	p, err := database(ctx, c, prev)
	if err != nil {
		return "", err
	}
	if !p.exists {
		return "", fmt.Errorf("there is no previous copy (%s) to roll back to", prev)
	}
	tmp := db + swapSuffix
	if err := dropDatabase(ctx, c, tmp); err != nil {
		return "", err
	}
	if _, err := c.Exec(ctx, "alter database "+quoteIdent(prev)+" with allow_connections true"); err != nil {
		return "", err
	}
	took, err := t.exchange(ctx, c, swapPlan{db: db, in: prev, out: tmp}, log)
	if err != nil {
		return "", err
	}
	if _, err := c.Exec(ctx, "alter database "+quoteIdent(tmp)+" rename to "+quoteIdent(prev)); err != nil {
		return "", fmt.Errorf("keep the replaced copy as %s: %w", prev, err)
	}
	return fmt.Sprintf("%s is back to the copy the last refresh replaced (unavailable for %s); the replaced copy is kept as %s", db, took.Round(time.Millisecond), prev), nil
}

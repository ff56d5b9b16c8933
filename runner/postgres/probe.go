package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Probe implements runner.Prober: production (for a live refresh) and
// staging's server must each answer a new session's "select 1" within
// probeTimeout. The error names the one that did not.
func (r *Refresh) Probe(ctx context.Context) error {
	// At once, so that one silent server does not use up the other's time.
	errs := make([]error, 2)
	var wg sync.WaitGroup
	if r.live() {
		wg.Go(func() { errs[0] = probe(ctx, "production", r.Target.ProductionDSN, "") })
	}
	wg.Go(func() { errs[1] = probe(ctx, "staging's server", r.Target.StagingDSN, "postgres") })
	wg.Wait()
	return errors.Join(errs...)
}

// probeTimeout is how long a server may take to answer a probe.
const probeTimeout = 15 * time.Second

func probe(ctx context.Context, what, dsn, db string) error {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	c, err := connect(ctx, dsn, db, true)
	if err == nil {
		var one int
		err = c.QueryRow(ctx, "select 1").Scan(&one)
		c.Close(context.WithoutCancel(ctx))
	}
	if err != nil {
		return fmt.Errorf("%s (%s) does not answer: %w", what, Describe(dsn), err)
	}
	return nil
}

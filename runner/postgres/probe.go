package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/stagebot/stagebot/runner"
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
		closeConn(ctx, c)
	}
	if err != nil {
		return fmt.Errorf("%s (%s) does not answer: %w", what, Describe(dsn), err)
	}
	return nil
}

// probeOn probes the server a step's database is on.
func (t *Target) probeOn(ctx context.Context, on On) error {
	if on == OnProduction {
		return probe(ctx, "production", t.ProductionDSN, "")
	}
	return probe(ctx, "staging's server", t.StagingDSN, "postgres")
}

// Probe implements runner.Prober for every step that works on staging's
// server: a swap, a rollback, a reset or a drop that waits on a silent
// server fails instead of hanging.
func (s *Swap) Probe(ctx context.Context) error { return s.Target.probeOn(ctx, OnStaging) }

// Probe implements runner.Prober.
func (s *RollbackStep) Probe(ctx context.Context) error { return s.Target.probeOn(ctx, OnStaging) }

// Probe implements runner.Prober.
func (r *Reset) Probe(ctx context.Context) error { return r.Target.probeOn(ctx, OnStaging) }

// Probe implements runner.Prober.
func (s *Drop) Probe(ctx context.Context) error { return s.Target.probeOn(ctx, OnStaging) }

// Probe implements runner.Prober: a long statement on a server that still
// answers goes on; one on a silent server fails the step.
func (s *SQL) Probe(ctx context.Context) error { return s.Target.probeOn(ctx, s.On) }

// Probe implements runner.Prober: the servers of the query and of SameOn.
func (s *Check) Probe(ctx context.Context) error {
	err := s.Target.probeOn(ctx, s.On)
	if s.SameOn != "" && (s.SameOn == OnProduction) != (s.On == OnProduction) {
		err = errors.Join(err, s.Target.probeOn(ctx, s.SameOn))
	}
	return err
}

var (
	_ runner.Prober = (*Refresh)(nil)
	_ runner.Prober = (*Swap)(nil)
	_ runner.Prober = (*RollbackStep)(nil)
	_ runner.Prober = (*Reset)(nil)
	_ runner.Prober = (*Drop)(nil)
	_ runner.Prober = (*SQL)(nil)
	_ runner.Prober = (*Check)(nil)
)

package postgres

import (
	"context"
	"fmt"
	"strings"

	"github.com/stagebot/stagebot/runner"
)

// RollbackStep is the pg_rollback step of a target's rollback pipeline: it
// swaps the copy the last refresh replaced back into place, and the copy it
// replaces becomes the previous one (a second rollback undoes the first).
// The pipeline around it is the target's own, so the app is stopped and
// started as for a refresh, and the run is announced, held and approved
// like one.
type RollbackStep struct {
	StepName string
	Target   *Target
}

// Name implements runner.Step.
func (s *RollbackStep) Name() string { return s.StepName }

// Kind implements runner.Step.
func (s *RollbackStep) Kind() string { return "pg_rollback" }

// Plan implements runner.Step: it refuses when there is no previous copy.
func (s *RollbackStep) Plan(ctx context.Context) (string, error) {
	t := s.Target
	db, _, prev, err := t.names()
	if err != nil {
		return "roll staging back", err
	}
	desc := fmt.Sprintf("put %s back in place of %s on %s; the copy it replaces is kept as %s", prev, db, Describe(t.StagingDSN), prev)
	if err := t.Guard(ctx); err != nil {
		return desc, err
	}
	c, err := t.maintenance(ctx)
	if err != nil {
		return desc, err
	}
	defer c.Close(ctx)
	p, err := database(ctx, c, prev)
	if err != nil {
		return desc, err
	}
	if !p.exists {
		return desc, fmt.Errorf("there is no previous copy (%s) to roll back to: the last refresh kept none, or it was forgotten", prev)
	}
	return desc, nil
}

// Run implements runner.Step.
func (s *RollbackStep) Run(ctx context.Context, env *runner.Env) error {
	detail, err := s.Target.Rollback(ctx, env.Log)
	if err != nil {
		return err
	}
	fmt.Fprintln(env.Log, detail)
	if env.Progress != nil {
		if _, after, ok := strings.Cut(detail, "(unavailable for "); ok {
			env.Progress(runner.Progress{Items: "unavailable for " + strings.TrimSuffix(strings.SplitN(after, ")", 2)[0], ")")})
		}
	}
	// What a refresh wipes is counted from here: staging is this copy now.
	s.Target.recordBaseline(ctx, env.Run, func(f string, a ...any) { fmt.Fprintf(env.Log, f+"\n", a...) })
	return nil
}

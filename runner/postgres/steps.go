package postgres

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stagebot/stagebot/runner"
)

// On names the database a sql or check step works on.
type On string

// Databases a step can work on.
const (
	OnShadow     On = "shadow"     // the copy being prepared, before the swap
	OnStaging    On = "staging"    // the live staging database
	OnProduction On = "production" // read-only
)

func (t *Target) open(ctx context.Context, on On) (*pgx.Conn, string, error) {
	db, next, _, err := t.names()
	if err != nil {
		return nil, "", err
	}
	switch on {
	case OnShadow:
		c, err := connect(ctx, t.StagingDSN, next, false)
		if err != nil {
			return nil, "", fmt.Errorf("the shadow %s is not there (a pg_refresh step must come first): %w", next, err)
		}
		return c, next, nil
	case OnStaging:
		c, err := connect(ctx, t.StagingDSN, db, false)
		return c, db, err
	case OnProduction:
		c, err := t.production(ctx)
		return c, "production", err
	}
	return nil, "", fmt.Errorf("unknown database %q: use shadow, staging or production", on)
}

// SQL runs statements on the shadow or staging, in one transaction.
type SQL struct {
	StepName string
	Target   *Target
	On       On
	Script   string
}

// Name implements runner.Step.
func (s *SQL) Name() string { return s.StepName }

// Kind implements runner.Step.
func (s *SQL) Kind() string { return "sql" }

// Plan implements runner.Step.
func (s *SQL) Plan(ctx context.Context) (string, error) {
	desc := fmt.Sprintf("run SQL on %s: %s", s.On, firstLine(s.Script))
	if s.On == OnProduction {
		return desc, errors.New("sql steps never write to production: use on: shadow or staging")
	}
	if s.On == OnStaging {
		return desc, s.Target.Guard(ctx)
	}
	return desc, nil
}

// Run implements runner.Step.
func (s *SQL) Run(ctx context.Context, env *runner.Env) error {
	c, db, err := s.Target.open(ctx, s.On)
	if err != nil {
		return err
	}
	defer closeConn(ctx, c)
	err = pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, s.Script)
		if err == nil {
			fmt.Fprintf(env.Log, "%s: %s\n", db, tag)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("on %s: %w", db, err)
	}
	return nil
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i] + " …"
	}
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return s
}

// Check runs a query whose single value must be true, equal Expect, or equal
// the same query's value on SameOn.
type Check struct {
	StepName string
	Target   *Target
	On       On
	Query    string
	Expect   *string
	SameOn   On
}

// Name implements runner.Step.
func (s *Check) Name() string { return s.StepName }

// Kind implements runner.Step.
func (s *Check) Kind() string { return "check" }

// Plan implements runner.Step.
func (s *Check) Plan(ctx context.Context) (string, error) {
	switch {
	case s.SameOn != "":
		return fmt.Sprintf("check that %s gives the same on %s and %s", firstLine(s.Query), s.On, s.SameOn), nil
	case s.Expect != nil:
		return fmt.Sprintf("check that %s gives %q on %s", firstLine(s.Query), *s.Expect, s.On), nil
	}
	return fmt.Sprintf("check that %s is true on %s", firstLine(s.Query), s.On), nil
}

func (s *Check) value(ctx context.Context, on On) (string, error) {
	c, db, err := s.Target.open(ctx, on)
	if err != nil {
		return "", err
	}
	defer closeConn(ctx, c)
	var v any
	// Checks only read, wherever they run.
	err = pgx.BeginTxFunc(ctx, c, pgx.TxOptions{AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, s.Query).Scan(&v)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("the query returned no rows on %s", db)
	}
	if err != nil {
		return "", fmt.Errorf("on %s: %w", db, err)
	}
	if v == nil {
		return "NULL", nil
	}
	return fmt.Sprint(v), nil
}

// Run implements runner.Step.
func (s *Check) Run(ctx context.Context, env *runner.Env) error {
	got, err := s.value(ctx, s.On)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Log, "%s: %s\n", s.On, got)
	switch {
	case s.SameOn != "":
		other, err := s.value(ctx, s.SameOn)
		if err != nil {
			return err
		}
		fmt.Fprintf(env.Log, "%s: %s\n", s.SameOn, other)
		if got != other {
			return fmt.Errorf("%s and %s differ: %s has %q, %s has %q", s.On, s.SameOn, s.On, got, s.SameOn, other)
		}
	case s.Expect != nil:
		if got != *s.Expect {
			return fmt.Errorf("expected %q on %s, got %q", *s.Expect, s.On, got)
		}
	default:
		if got != "true" {
			return fmt.Errorf("the check is %s on %s, not true", got, s.On)
		}
	}
	return nil
}

// Swap is the pg_swap step: the shadow replaces staging.
type Swap struct {
	StepName string
	Target   *Target
}

// Name implements runner.Step.
func (s *Swap) Name() string { return s.StepName }

// Kind implements runner.Step.
func (s *Swap) Kind() string { return "pg_swap" }

// Plan implements runner.Step.
func (s *Swap) Plan(ctx context.Context) (string, error) {
	db, next, prev, err := s.Target.names()
	keep := "dropped"
	if s.Target.KeepPrevious {
		keep = "kept as " + prev + " for rollback"
	}
	return fmt.Sprintf("swap %s into place as %s; the replaced copy is %s", next, db, keep), err
}

// Run implements runner.Step.
func (s *Swap) Run(ctx context.Context, env *runner.Env) error {
	if s.Target.KeepBase && !s.Target.rt.fromBase.Load() {
		if err := s.Target.keepBase(ctx, env); err != nil {
			// The refresh stands; only a reset must wait for the next one.
			fmt.Fprintf(env.Log, "could not keep a base copy for reset (a reset needs the next refresh): %v\n", err)
		}
	}
	took, err := s.Target.Swap(ctx, env.Log)
	if err != nil {
		return s.Target.afterFailedSwap(ctx, env, err)
	}
	msg := "staging was unavailable for " + took.Round(time.Millisecond).String()
	if took == 0 {
		msg = "staging did not exist before: the copy was put in place"
	}
	fmt.Fprintln(env.Log, msg)
	if env.Progress != nil {
		env.Progress(runner.Progress{Items: strings.TrimPrefix(msg, "staging was ")})
	}
	s.Target.recordBaseline(ctx, env.Run, func(f string, a ...any) { fmt.Fprintf(env.Log, f+"\n", a...) })
	return nil
}

// Drop is the pg_drop step: it removes staging (and its shadow and previous
// copy), for teardown pipelines.
type Drop struct {
	StepName string
	Target   *Target
}

// Name implements runner.Step.
func (s *Drop) Name() string { return s.StepName }

// Kind implements runner.Step.
func (s *Drop) Kind() string { return "pg_drop" }

// Plan implements runner.Step.
func (s *Drop) Plan(ctx context.Context) (string, error) {
	db, _, _, err := s.Target.names()
	if err != nil {
		return "drop staging", err
	}
	return fmt.Sprintf("drop %s (and its shadow and previous copy) on %s", db, Describe(s.Target.StagingDSN)), s.Target.Guard(ctx)
}

// Run implements runner.Step.
func (s *Drop) Run(ctx context.Context, env *runner.Env) error {
	if err := s.Target.Guard(ctx); err != nil {
		return err
	}
	// Not while a swap, or the background drop of a replaced copy, is on.
	defer s.Target.rt.exclusive()()
	db, next, prev, _ := s.Target.names()
	c, err := s.Target.maintenance(ctx)
	if err != nil {
		return err
	}
	defer closeConn(ctx, c)
	for _, name := range []string{next, db, prev, db + OldSuffix} {
		if err := dropDatabase(ctx, c, name); err != nil {
			return err
		}
		fmt.Fprintf(env.Log, "dropped %s (if it existed)\n", name)
	}
	return nil
}

// HTTPCheck waits until a URL answers 2xx.
type HTTPCheck struct {
	StepName string
	URL      string
	// Timeout bounds the wait (default 2m); Interval is between tries
	// (default 2s).
	Timeout, Interval time.Duration
}

// Name implements runner.Step.
func (s *HTTPCheck) Name() string { return s.StepName }

// Kind implements runner.Step.
func (s *HTTPCheck) Kind() string { return "http_check" }

// Plan implements runner.Step.
func (s *HTTPCheck) Plan(ctx context.Context) (string, error) {
	desc := fmt.Sprintf("wait until %s answers 2xx", s.URL)
	if !strings.HasPrefix(s.URL, "http://") && !strings.HasPrefix(s.URL, "https://") {
		return desc, fmt.Errorf("%q is not an http(s) URL", s.URL)
	}
	return desc, nil
}

// Run implements runner.Step.
func (s *HTTPCheck) Run(ctx context.Context, env *runner.Env) error {
	timeout, interval := s.Timeout, s.Interval
	if timeout == 0 {
		timeout = 2 * time.Minute
	}
	if interval == 0 {
		interval = 2 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: 10 * time.Second}
	var last string
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode >= 200 && resp.StatusCode < 300 {
				fmt.Fprintf(env.Log, "%s answered %s\n", s.URL, resp.Status)
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("%s did not answer 2xx within %s (last: %s)", s.URL, timeout, last)
			}
			return ctx.Err()
		case <-time.After(interval):
		}
	}
}

// ClientEnv is the libpq environment (PGHOST, PGPORT, PGUSER, PGPASSWORD,
// PGDATABASE…) that points a command at the shadow or staging, so that a
// migration script run by an exec step works on the right database without
// its password showing in the config or a process list. STAGEBOT_DATABASE
// names the database too.
func (t *Target) ClientEnv(on On) ([]string, error) {
	db, next, _, err := t.names()
	if err != nil {
		return nil, err
	}
	switch on {
	case OnShadow:
		db = next
	case OnStaging:
	default:
		return nil, fmt.Errorf("commands work on shadow or staging, not %q", on)
	}
	cfg, err := pgx.ParseConfig(t.StagingDSN)
	if err != nil {
		return nil, fmt.Errorf("staging dsn: %w", err)
	}
	env := []string{
		"PGHOST=" + cfg.Host, "PGPORT=" + strconv.Itoa(int(cfg.Port)), "PGUSER=" + cfg.User,
		"PGDATABASE=" + db, "STAGEBOT_DATABASE=" + db,
	}
	if cfg.Password != "" {
		env = append(env, "PGPASSWORD="+cfg.Password)
	}
	if cfg.TLSConfig == nil {
		env = append(env, "PGSSLMODE=disable")
	}
	return env, nil
}

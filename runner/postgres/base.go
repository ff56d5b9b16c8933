package postgres

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/stagebot/stagebot/runner"
	"github.com/stagebot/stagebot/store"
)

// BaseSuffix names the copy of the last refresh kept, with keep_base, to
// put staging back to in seconds (Reset).
const BaseSuffix = "__stagebot_base"

// baseInfo is what the store keeps of the base copy.
type baseInfo struct {
	At    time.Time `json:"at"`
	Run   uint64    `json:"run"`
	Bytes int64     `json:"bytes"`
	// Props are the database-level properties (pg_dump --create) the
	// copy had: CREATE DATABASE … TEMPLATE does not carry them.
	Props []string `json:"props"`
}

func (t *Target) baseKey() string { return "base/" + t.Name }

// base reads what the store says of the base copy (ErrNotFound: none).
func (t *Target) base(ctx context.Context) (baseInfo, error) {
	var b baseInfo
	vals := t.values()
	if vals == nil {
		return b, fmt.Errorf("no store to keep the base copy's record in: %w", store.ErrNotFound)
	}
	data, err := vals.Value(ctx, t.baseKey())
	if err != nil {
		return b, err
	}
	return b, json.Unmarshal(data, &b)
}

// keepBase makes the finished shadow (sanitised, checked) the base copy:
// a template copy on staging's server that nobody connects to.
func (t *Target) keepBase(ctx context.Context, env *runner.Env) error {
	vals := t.values()
	if vals == nil {
		return errors.New("keep_base needs the bot's store")
	}
	db, next, _, err := t.names()
	if err != nil {
		return err
	}
	base := db + BaseSuffix
	start := time.Now()
	tl, err := t.tools()
	if err != nil {
		return err
	}
	// Its database-level properties, as they are now.
	sconn, senv, releaseStg, err := libpq(t.StagingDSN, next)
	if err != nil {
		return err
	}
	defer releaseStg()
	var out bytes.Buffer
	cmd := tool(ctx, env, senv, tl.dump, "--create", "--schema-only", "--exclude-schema=*", "--no-blobs", "--no-password", "-d", sconn)
	cmd.Stdout = &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("read %s's database properties: %w", next, cmdErrOf(ctx, err, cmd))
	}
	c, err := t.maintenance(ctx)
	if err != nil {
		return err
	}
	defer closeConn(ctx, c)
	if _, err := c.Exec(ctx, "select pg_terminate_backend(pid) from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()", next); err != nil {
		return err
	}
	if err := dropDatabase(ctx, c, base); err != nil {
		return err
	}
	create := "create database " + quoteIdent(base) + " template " + quoteIdent(next)
	if majorVersion(c) >= 15 {
		// Copies the files: no WAL for every page, as the default
		// strategy writes.
		create += " strategy file_copy"
	}
	if _, err := c.Exec(ctx, create); err != nil {
		return fmt.Errorf("keep a base copy: %w", err)
	}
	if _, err := c.Exec(ctx, "alter database "+quoteIdent(base)+" with allow_connections false"); err != nil {
		return err
	}
	if err := t.record(ctx, c, base, env.Run); err != nil {
		return err
	}
	info := baseInfo{At: time.Now(), Run: env.Run, Props: databaseProps(out.String())}
	if err := c.QueryRow(ctx, "select pg_database_size($1)", base).Scan(&info.Bytes); err != nil {
		return err
	}
	data, err := json.Marshal(info)
	if err != nil {
		return err
	}
	if err := vals.SetValue(ctx, t.baseKey(), data); err != nil {
		return err
	}
	fmt.Fprintf(env.Log, "kept %s (%s) as the base copy for reset, in %s\n", base, runner.Bytes(info.Bytes), time.Since(start).Round(time.Millisecond))
	return nil
}

// Reset is the pg_reset step: a new shadow from the base copy (no
// production read), which the swap then puts in place.
type Reset struct {
	StepName string
	Target   *Target
	// MaxAge, when set, refuses a base copy older than this.
	MaxAge time.Duration
}

// Name implements runner.Step.
func (r *Reset) Name() string { return r.StepName }

// Kind implements runner.Step.
func (r *Reset) Kind() string { return "pg_reset" }

// Plan implements runner.Step.
func (r *Reset) Plan(ctx context.Context) (string, error) {
	t := r.Target
	db, next, _, err := t.names()
	if err != nil {
		return "reset staging", err
	}
	desc := fmt.Sprintf("copy %s%s into %s on %s (no production read), then swap", db, BaseSuffix, next, Describe(t.StagingDSN))
	b, err := t.base(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return desc, fmt.Errorf("no base copy of %s is kept yet: the next refresh from production makes one (keep_base is on)", t.Name)
	}
	if err != nil {
		return desc, err
	}
	if age := time.Since(b.At); r.MaxAge > 0 && age > r.MaxAge {
		return desc, fmt.Errorf("the base copy (made by run %d) is %s old, older than max_age %s: refresh from production instead", b.Run, age.Round(time.Minute), r.MaxAge)
	}
	if err := t.Guard(ctx); err != nil {
		return desc, err
	}
	c, err := t.maintenance(ctx)
	if err != nil {
		return desc, err
	}
	defer c.Close(ctx)
	info, err := database(ctx, c, db+BaseSuffix)
	if err != nil {
		return desc, err
	}
	if !info.exists {
		return desc, fmt.Errorf("the base copy %s%s is gone from %s: the next refresh from production makes a new one", db, BaseSuffix, Describe(t.StagingDSN))
	}
	return fmt.Sprintf("%s; the base is run %d's data, %s old", desc, b.Run, time.Since(b.At).Round(time.Minute)), nil
}

// Run implements runner.Step.
func (r *Reset) Run(ctx context.Context, env *runner.Env) error {
	t := r.Target
	db, next, _, err := t.names()
	if err != nil {
		return err
	}
	b, err := t.base(ctx)
	if err != nil {
		return err
	}
	start := time.Now()
	c, err := t.maintenance(ctx)
	if err != nil {
		return err
	}
	defer closeConn(ctx, c)
	if err := dropDatabase(ctx, c, next); err != nil {
		return err
	}
	create := "create database " + quoteIdent(next) + " template " + quoteIdent(db+BaseSuffix)
	if majorVersion(c) >= 15 {
		create += " strategy file_copy"
	}
	if _, err := c.Exec(ctx, create); err != nil {
		return fmt.Errorf("copy the base: %w", err)
	}
	if err := t.record(ctx, c, next, env.Run); err != nil {
		return err
	}
	t.rt.fromBase.Store(true)
	fmt.Fprintf(env.Log, "copied %s%s (run %d's data, %s) into %s in %s\n", db, BaseSuffix, b.Run, runner.Bytes(b.Bytes), next, time.Since(start).Round(time.Millisecond))
	if err := t.applyProps(ctx, env, next, b.Props); err != nil {
		return err
	}
	if env.Progress != nil {
		env.Progress(runner.Progress{Done: b.Bytes, Total: b.Bytes, Unit: "bytes"})
	}
	return nil
}

// Finish implements runner.Finisher: a shadow left by a failed run goes.
func (r *Reset) Finish(ctx context.Context, env *runner.Env, runErr error) error {
	r.Target.rt.fromBase.Store(false)
	if err := r.Target.DropShadow(ctx); err != nil {
		r.Target.repairLater(env.Run, err)
		return fmt.Errorf("the unfinished copy could not be dropped (%w): stagebot drops it as soon as staging's server answers again", err)
	}
	return nil
}

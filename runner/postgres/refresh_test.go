package postgres_test

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stagebot/stagebot/internal/patience"
	"github.com/stagebot/stagebot/internal/pgtest"
	"github.com/stagebot/stagebot/runner"
	"github.com/stagebot/stagebot/runner/postgres"
)

func refreshSteps(tg *postgres.Target, extra ...runner.Step) []runner.Step {
	steps := []runner.Step{&postgres.Refresh{StepName: "refresh", Target: tg}}
	steps = append(steps, extra...)
	return append(steps, &postgres.Swap{StepName: "swap", Target: tg})
}

func TestRefresh_LiveCopiesEverythingAndRollsBack(t *testing.T) {
	f := newFixture(t)
	prodBefore := fingerprint(t, f.prod.DSN(f.prodDB))
	prodDBsBefore := databases(t, f.prod)
	// The fingerprint sees what it must compare.
	for k, want := range map[string]string{"table users": "3000 rows, ", "table orders": "8000 rows, ", "sequences": "invoice_no=4242", "settings": "work_mem=12MB", "views": "big_orders:", "functions": "order_total(uid bigint):", "indexes": "orders_placed_idx", "constraints": "orders_amount_check"} {
		if !strings.Contains(prodBefore[k], want) {
			t.Fatalf("fingerprint %s = %q, want it to contain %q", k, prodBefore[k], want)
		}
	}
	rep := &progressLog{}
	log, err := run(t, refreshSteps(f.target,
		&postgres.Check{StepName: "has users", Target: f.target, On: postgres.OnShadow, Query: "select count(*) > 1000 from users"},
	), rep)
	if err != nil {
		t.Fatalf("%v\n%s", err, log)
	}
	first := fingerprint(t, f.stg.DSN(f.stgDB))
	if d := diffPrints(prodBefore, first); d != "" {
		t.Fatalf("staging differs from production:\n%s", d)
	}
	if !strings.Contains(log, "staging did not exist before: the copy was put in place") {
		t.Errorf("log does not say staging was created:\n%s", log)
	}
	rep.mu.Lock()
	var sawProgress bool
	for _, p := range rep.ps {
		if p.Total > 0 && strings.Contains(p.Items, "tables") {
			sawProgress = true
		}
	}
	rep.mu.Unlock()
	if !sawProgress {
		t.Errorf("no progress with totals was reported: %+v", rep.ps)
	}

	// Production changes; the next refresh keeps the first copy as prev.
	pgtest.Exec(t, f.prod.DSN(f.prodDB), "insert into users (email) values ('late@example.org')")
	prodNow := fingerprint(t, f.prod.DSN(f.prodDB))
	if log, err = run(t, refreshSteps(f.target), nil); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log, "staging was unavailable for") {
		t.Errorf("log does not report unavailability:\n%s", log)
	}
	if d := diffPrints(prodNow, fingerprint(t, f.stg.DSN(f.stgDB))); d != "" {
		t.Fatalf("second refresh:\n%s", d)
	}
	dbs := databases(t, f.stg)
	if !has(dbs, f.stgDB+postgres.PrevSuffix) || has(dbs, f.stgDB+postgres.NextSuffix) {
		t.Fatalf("staging server databases: %v", dbs)
	}
	msg, err := f.target.Rollback(context.Background(), &strings.Builder{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(msg, "is back to the copy the last refresh replaced") {
		t.Errorf("rollback said %q", msg)
	}
	if d := diffPrints(first, fingerprint(t, f.stg.DSN(f.stgDB))); d != "" {
		t.Fatalf("after rollback staging is not the first copy:\n%s", d)
	}
	// Production was only read.
	if d := diffPrints(prodNow, fingerprint(t, f.prod.DSN(f.prodDB))); d != "" {
		t.Fatalf("production changed:\n%s", d)
	}
	if got := databases(t, f.prod); strings.Join(got, ",") != strings.Join(prodDBsBefore, ",") {
		t.Fatalf("databases on production changed: %v → %v", prodDBsBefore, got)
	}
}

func TestRefresh_FailureBeforeSwapLeavesStagingUntouched(t *testing.T) {
	f := newFixture(t)
	if _, err := run(t, refreshSteps(f.target), nil); err != nil {
		t.Fatal(err)
	}
	pgtest.Exec(t, f.stg.DSN(f.stgDB), "insert into audit values (now(), 'work in staging')")
	before := fingerprint(t, f.stg.DSN(f.stgDB))
	_, err := run(t, refreshSteps(f.target,
		&postgres.SQL{StepName: "sanitise", Target: f.target, On: postgres.OnShadow, Script: "update users set email = 'x'"}, // breaks the unique index
	), nil)
	if err == nil || !strings.Contains(err.Error(), `step "sanitise" failed`) || !strings.Contains(err.Error(), "users_email_key") {
		t.Fatalf("error = %v", err)
	}
	if d := diffPrints(before, fingerprint(t, f.stg.DSN(f.stgDB))); d != "" {
		t.Fatalf("staging changed by a failed run:\n%s", d)
	}
	if dbs := databases(t, f.stg); has(dbs, f.stgDB+postgres.NextSuffix) {
		t.Fatalf("shadow left behind: %v", dbs)
	}
}

func TestRefresh_SanitiseOnShadow(t *testing.T) {
	f := newFixture(t)
	_, err := run(t, refreshSteps(f.target,
		&postgres.SQL{StepName: "sanitise", Target: f.target, On: postgres.OnShadow, Script: "update users set email = 'user' || id || '@example.invalid'"},
		&postgres.Check{StepName: "sanitised", Target: f.target, On: postgres.OnShadow, Query: "select count(*) from users where email not like '%@example.invalid'", Expect: ptr("0")},
	), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c, _ := pgx.Connect(ctx, f.stg.DSN(f.stgDB))
	defer c.Close(ctx)
	var n int
	c.QueryRow(ctx, "select count(*) from users where email like '%@example.invalid'").Scan(&n)
	if n != 3000 {
		t.Fatalf("%d sanitised users in staging, want 3000", n)
	}
}

func ptr(s string) *string { return &s }

func TestRefresh_ClientKeepsWorkingUntilTheSwap(t *testing.T) {
	f := newFixture(t)
	if _, err := run(t, refreshSteps(f.target), nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, err := pgx.Connect(ctx, f.stg.DSN(f.stgDB))
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		at  time.Time
		err error
	}
	var mu sync.Mutex
	var results []result
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			var n int
			err := c.QueryRow(ctx, "select count(*) from orders").Scan(&n)
			mu.Lock()
			results = append(results, result{time.Now(), err})
			mu.Unlock()
			if err != nil {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	log, err := run(t, refreshSteps(f.target), nil)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	<-done
	var firstErr time.Time
	ok := 0
	for _, r := range results {
		if r.err != nil {
			firstErr = r.at
			break
		}
		ok++
	}
	if ok < 10 || firstErr.IsZero() {
		t.Fatalf("%d queries succeeded before the swap ended the session (first error at %v)", ok, firstErr)
	}
	// The reported unavailability is the swap, not the restore.
	i := strings.Index(log, "staging was unavailable for ")
	d, err := time.ParseDuration(strings.Fields(log[i+len("staging was unavailable for "):])[0])
	if err != nil || d > 5*time.Second {
		t.Fatalf("unavailable for %v (%v)", d, err)
	}
	// A new session works on the new copy.
	pgtest.Exec(t, f.stg.DSN(f.stgDB), "select 1")
}

func TestGuards(t *testing.T) {
	f := newFixture(t)
	before := fingerprint(t, f.prod.DSN(f.prodDB))
	prodPort := f.prod.Port
	tests := []struct {
		name, stagingDSN, want string
		servers                []string
	}{
		{name: "same database, spelled differently", stagingDSN: strings.Replace(f.prod.DSN(f.prodDB), "127.0.0.1", "localhost", 1), want: "is the source database itself"},
		{name: "same database, keyword form", stagingDSN: "host=" + f.prod.Dir + " port=" + itoa(prodPort) + " user=postgres dbname=" + f.prodDB, want: "is the source database itself"},
		{name: "another database on production", stagingDSN: f.prod.DSN("scratch"), want: "is a production server"},
		{name: "listed production server", stagingDSN: f.stg.DSN("other"), servers: []string{f.stg.DSN("postgres")}, want: "is a production server"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tg := &postgres.Target{ProductionDSN: f.target.ProductionDSN, StagingDSN: tt.stagingDSN, ProductionServers: tt.servers}
			_, err := run(t, refreshSteps(tg), nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want %q", err, tt.want)
			}
		})
	}
	// The bot's own store (store.dsn) is neither staging nor on production.
	t.Run("store on production's server", func(t *testing.T) {
		tg := &postgres.Target{ProductionDSN: f.target.ProductionDSN, StagingDSN: f.target.StagingDSN, StoreDSN: strings.Replace(f.prod.DSN("postgres"), "127.0.0.1", "localhost", 1)}
		_, err := run(t, refreshSteps(tg), nil)
		if err == nil || !strings.Contains(err.Error(), "the bot's store (store.dsn) is on production server") {
			t.Fatalf("error = %v", err)
		}
	})
	t.Run("store is staging's database", func(t *testing.T) {
		pgtest.Exec(t, f.stg.DSN("postgres"), "create database botstate")
		tg := &postgres.Target{ProductionDSN: f.target.ProductionDSN, StagingDSN: f.stg.DSN("botstate"), StoreDSN: f.stg.DSN("botstate"), Adopt: true}
		_, err := run(t, refreshSteps(tg), nil)
		if err == nil || !strings.Contains(err.Error(), "is the bot's own store") {
			t.Fatalf("error = %v", err)
		}
	})
	t.Run("database not made by stagebot", func(t *testing.T) {
		pgtest.Exec(t, f.stg.DSN("postgres"), "drop database if exists handmade", "create database handmade")
		pgtest.Exec(t, f.stg.DSN("handmade"), "create table precious (x int)")
		tg := &postgres.Target{ProductionDSN: f.target.ProductionDSN, StagingDSN: f.stg.DSN("handmade")}
		_, err := run(t, refreshSteps(tg), nil)
		if err == nil || !strings.Contains(err.Error(), "was not created by stagebot") || !strings.Contains(err.Error(), "set adopt: true") {
			t.Fatalf("error = %v", err)
		}
		tg.Adopt = true
		if _, err := run(t, refreshSteps(tg), nil); err != nil {
			t.Fatalf("adopt: %v", err)
		}
	})
	if d := diffPrints(before, fingerprint(t, f.prod.DSN(f.prodDB))); d != "" {
		t.Fatal(d)
	}
}

// TestGuards_MixedPrivileges logs in to production and staging as roles of
// different privilege: the server's identity must not depend on it.
func TestGuards_MixedPrivileges(t *testing.T) {
	f := newFixture(t)
	plain := "plain_" + f.prodDB
	pgtest.Exec(t, f.prod.DSN("postgres"), "create role "+plain+" login createdb", "alter database "+f.prodDB+" owner to "+plain)
	before := fingerprint(t, f.prod.DSN(f.prodDB))
	dbsBefore := databases(t, f.prod)
	super := f.prod.DSN(f.prodDB)
	asPlain := func(db string) string { return strings.Replace(f.prod.DSN(db), "://postgres@", "://"+plain+"@", 1) }
	if !strings.Contains(asPlain(f.prodDB), plain+"@") {
		t.Fatalf("cannot make a DSN for %s from %s", plain, super)
	}
	tests := []struct {
		name, production, staging, want string
	}{
		{name: "superuser production, plain staging, same database", production: super, staging: asPlain(f.prodDB), want: "is the source database itself"},
		{name: "plain production, superuser staging, same database", production: asPlain(f.prodDB), staging: super, want: "is the source database itself"},
		{name: "superuser production, plain staging, another database", production: super, staging: asPlain("other_" + f.prodDB), want: "is a production server"},
		{name: "plain production, superuser staging, another database", production: asPlain(f.prodDB), staging: f.prod.DSN("other_" + f.prodDB), want: "is a production server"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tg := &postgres.Target{ProductionDSN: tt.production, StagingDSN: tt.staging, Adopt: true, KeepPrevious: true}
			_, err := run(t, refreshSteps(tg), nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want %q", err, tt.want)
			}
			if got := databases(t, f.prod); strings.Join(got, ",") != strings.Join(dbsBefore, ",") {
				t.Fatalf("production's databases changed: %v, were %v", got, dbsBefore)
			}
			if d := diffPrints(before, fingerprint(t, f.prod.DSN(f.prodDB))); d != "" {
				t.Fatal(d)
			}
		})
	}
	t.Run("identity that cannot be read", func(t *testing.T) {
		pgtest.Exec(t, f.stg.DSN("postgres"), "revoke execute on function pg_catalog.pg_control_system() from public",
			"create role blind_"+f.prodDB+" login createdb")
		t.Cleanup(func() {
			pgtest.Exec(t, f.stg.DSN("postgres"), "grant execute on function pg_catalog.pg_control_system() to public")
		})
		stg := strings.Replace(f.stg.DSN("blind_"+f.prodDB), "://postgres@", "://blind_"+f.prodDB+"@", 1)
		tg := &postgres.Target{ProductionDSN: super, StagingDSN: stg}
		_, err := run(t, refreshSteps(tg), nil)
		if err == nil || !strings.Contains(err.Error(), "cannot tell which server") {
			t.Fatalf("error = %v, want a refusal", err)
		}
		if has(databases(t, f.stg), "blind_"+f.prodDB+postgres.NextSuffix) {
			t.Fatal("a shadow was created on a server that could not be identified")
		}
	})
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestMissingRoles(t *testing.T) {
	f := newFixture(t)
	role := "owner_" + f.prodDB
	pgtest.Exec(t, f.prod.DSN("postgres"), "create role "+role)
	pgtest.Exec(t, f.prod.DSN(f.prodDB), "alter table audit owner to "+role, "create role reader_"+f.prodDB, "grant select on users to reader_"+f.prodDB)
	_, err := run(t, refreshSteps(f.target), nil)
	if err == nil || !strings.Contains(err.Error(), "staging lacks roles production uses: "+role+" (owns objects), reader_"+f.prodDB+" (has privileges)") {
		t.Fatalf("error = %v", err)
	}
	f.target.NoOwner, f.target.NoACL = true, true
	if _, err := run(t, refreshSteps(f.target), nil); err != nil {
		t.Fatalf("with no_owner and no_acl: %v", err)
	}
	// Roles the database itself names: its owner, a grantee of CONNECT, a
	// role with settings in it (needed whatever no_owner and no_acl say).
	f.target.NoOwner, f.target.NoACL = false, false
	pgtest.Exec(t, f.prod.DSN(f.prodDB), "alter table audit owner to postgres", "revoke all on users from reader_"+f.prodDB)
	pgtest.Exec(t, f.prod.DSN("postgres"), "create role dbowner_"+f.prodDB, "create role dbconn_"+f.prodDB, "create role dbset_"+f.prodDB,
		"drop role reader_"+f.prodDB, "drop role "+role,
		"alter database "+f.prodDB+" owner to dbowner_"+f.prodDB, "grant connect on database "+f.prodDB+" to dbconn_"+f.prodDB,
		"alter role dbset_"+f.prodDB+" in database "+f.prodDB+" set work_mem = '5MB'")
	_, err = run(t, refreshSteps(f.target), nil)
	want := "staging lacks roles production uses: dbconn_" + f.prodDB + " (has privileges), dbowner_" + f.prodDB + " (owns objects), dbset_" + f.prodDB + " (has settings in the database)"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("error = %v, want %q", err, want)
	}
	f.target.NoOwner, f.target.NoACL = true, true
	if _, err = run(t, refreshSteps(f.target), nil); err == nil || !strings.Contains(err.Error(), "dbset_"+f.prodDB+" (has settings in the database)") || strings.Contains(err.Error(), "dbowner_") {
		t.Fatalf("with no_owner and no_acl: %v", err)
	}
}

func TestRecover(t *testing.T) {
	f := newFixture(t)
	if _, err := run(t, refreshSteps(f.target), nil); err != nil {
		t.Fatal(err)
	}
	// What a crash can leave: a half-restored shadow, and staging refusing
	// connections (blocked for a swap that never committed).
	pgtest.Exec(t, f.stg.DSN("postgres"), "create database "+f.stgDB+postgres.NextSuffix, "alter database "+f.stgDB+" with allow_connections false")
	did, err := f.target.Recover(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(did, "dropped the unfinished copy") || !strings.Contains(did, "let connections into "+f.stgDB+" again") {
		t.Fatalf("recover said %q", did)
	}
	pgtest.Exec(t, f.stg.DSN(f.stgDB), "select 1")
	// Staging missing but a previous copy there: it is put back.
	pgtest.Exec(t, f.stg.DSN("postgres"), "alter database "+f.stgDB+" rename to "+f.stgDB+postgres.PrevSuffix)
	if did, err = f.target.Recover(context.Background()); err != nil || !strings.Contains(did, "put the previous copy back") {
		t.Fatalf("recover: %q %v", did, err)
	}
	pgtest.Exec(t, f.stg.DSN(f.stgDB), "select count(*) from users")
	if did, _ := f.target.Recover(context.Background()); did != "" {
		t.Fatalf("recover of a healthy target did %q", did)
	}
	// A rollback cut short after its transaction: the copy it replaced is
	// still under the rollback's temporary name.
	if _, err := run(t, refreshSteps(f.target), nil); err != nil {
		t.Fatal(err)
	}
	pgtest.Exec(t, f.stg.DSN("postgres"), "alter database "+f.stgDB+postgres.PrevSuffix+" rename to "+f.stgDB+"__stagebot_swap")
	if did, err = f.target.Recover(context.Background()); err != nil || !strings.Contains(did, "kept the copy a rollback replaced as "+f.stgDB+postgres.PrevSuffix) {
		t.Fatalf("recover: %q %v", did, err)
	}
	dbs := databases(t, f.stg)
	if !has(dbs, f.stgDB+postgres.PrevSuffix) || has(dbs, f.stgDB+"__stagebot_swap") || !has(dbs, f.stgDB) {
		t.Fatalf("databases after recovery: %v", dbs)
	}
}

// killStep kills a server when it runs, as a lost host would.
type killStep struct{ srv *pgtest.Server }

func (k *killStep) Name() string                         { return "lose staging's server" }
func (k *killStep) Kind() string                         { return "exec" }
func (k *killStep) Plan(context.Context) (string, error) { return "kill the server", nil }
func (k *killStep) Run(context.Context, *runner.Env) error {
	return k.srv.Kill()
}

// TestOutage_RunningBotRepairsWhenStagingComesBack: staging's server dies
// in the middle of a swap, or after the copy with the shadow still there.
// The run fails saying so, and once the server is back the running target
// (not only the next start) repairs what was left and says which copy
// staging holds.
func TestOutage_RunningBotRepairsWhenStagingComesBack(t *testing.T) {
	prod, _ := pair(t)
	stg := pgtest.New(t)
	f := newFixture(t)
	notes := make(chan string, 4)
	tg := &postgres.Target{Name: "app", ProductionDSN: prod.DSN(f.prodDB), StagingDSN: stg.DSN("app"), KeepPrevious: true, Notify: func(m string) { notes <- m }}
	tg.SetRepairEvery(100 * time.Millisecond)
	if _, err := run(t, refreshSteps(tg), nil); err != nil {
		t.Fatal(err)
	}
	restart := func() {
		ctx, cancel := context.WithTimeout(context.Background(), patience.D(time.Minute))
		defer cancel()
		if err := stg.Restart(ctx); err != nil {
			t.Fatal(err)
		}
	}
	waitNote := func(t *testing.T, want ...string) {
		t.Helper()
		select {
		case m := <-notes:
			for _, w := range want {
				if !strings.Contains(m, w) {
					t.Fatalf("the note %q does not say %q", m, w)
				}
			}
		case <-patience.After(30 * time.Second):
			t.Fatal("no note that staging was repaired")
		}
	}

	t.Run("dies between the renames", func(t *testing.T) {
		postgres.BetweenRenames = func() {
			// What the swap committed so far (staging blocked) is on disk
			// before the crash, as it would be on a server with fsync on.
			pgtest.Exec(t, stg.DSN("postgres"), "checkpoint")
			stg.Kill()
		}
		defer func() { postgres.BetweenRenames = nil }()
		_, err := run(t, refreshSteps(tg), nil)
		if err == nil || !strings.Contains(err.Error(), "repairs staging as soon as it answers again") {
			t.Fatalf("error = %v", err)
		}
		postgres.BetweenRenames = nil
		restart()
		waitNote(t, "let connections into app again", "app holds the copy it had before run ")
		pgtest.Exec(t, stg.DSN("app"), "select count(*) from users")
		if dbs := databases(t, stg); has(dbs, "app"+postgres.NextSuffix) {
			t.Fatalf("the shadow is still there: %v", dbs)
		}
	})
	t.Run("dies with the shadow made", func(t *testing.T) {
		steps := refreshSteps(tg, &killStep{srv: stg})
		_, err := run(t, steps, nil)
		if err == nil || !strings.Contains(err.Error(), "could not be dropped") {
			t.Fatalf("error = %v", err)
		}
		restart()
		waitNote(t, "dropped the unfinished copy app"+postgres.NextSuffix, "app holds the copy it had before run ")
		if dbs := databases(t, stg); has(dbs, "app"+postgres.NextSuffix) || !has(dbs, "app") {
			t.Fatalf("databases after the repair: %v", dbs)
		}
		pgtest.Exec(t, stg.DSN("app"), "select count(*) from users")
	})
}

func TestSwap_ReplacedCopiesAreDroppedInTheBackground(t *testing.T) {
	f := newFixture(t)
	oid := func(name string) string {
		return pgtest.Value(t, f.stg.DSN("postgres"), "select coalesce((select oid::text from pg_database where datname = '"+name+"'), 'none')")
	}
	db, prev, old := f.stgDB, f.stgDB+postgres.PrevSuffix, f.stgDB+postgres.OldSuffix
	if _, err := run(t, refreshSteps(f.target), nil); err != nil {
		t.Fatal(err)
	}
	first := oid(db)
	if _, err := run(t, refreshSteps(f.target), nil); err != nil {
		t.Fatal(err)
	}
	f.target.Wait()
	if got := oid(prev); got != first {
		t.Fatalf("after the second refresh the previous copy is %s, want the first copy %s", got, first)
	}
	// The third refresh retires the first copy: it is renamed out of the
	// way in the swap and dropped once staging is back.
	var logged strings.Builder
	f.target.Logger = slog.New(slog.NewTextHandler(&logged, nil))
	second := oid(db)
	log, err := run(t, refreshSteps(f.target), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log, "the replaced copy ("+old+") is dropped in the background") {
		t.Errorf("the swap does not say it drops the replaced copy:\n%s", log)
	}
	f.target.Wait()
	if !strings.Contains(logged.String(), "dropped the replaced staging copy") || !strings.Contains(logged.String(), old) {
		t.Errorf("the background drop was not logged: %q", logged.String())
	}
	if got := oid(prev); got != second {
		t.Fatalf("the previous copy is %s, want the second copy %s", got, second)
	}
	if got := oid(old); got != "none" {
		t.Fatalf("%s is still there after Wait (oid %s)", old, got)
	}
	if d := diffPrints(fingerprint(t, f.prod.DSN(f.prodDB)), fingerprint(t, f.stg.DSN(db))); d != "" {
		t.Fatalf("staging differs from production:\n%s", d)
	}

	// Without keep_previous the replaced copy goes, and so does a previous
	// copy kept before.
	f.target.KeepPrevious = false
	third := oid(db)
	if _, err := run(t, refreshSteps(f.target), nil); err != nil {
		t.Fatal(err)
	}
	f.target.Wait()
	for _, name := range []string{prev, old} {
		if got := oid(name); got != "none" {
			t.Errorf("%s is still there (oid %s)", name, got)
		}
	}
	if oid(db) == third {
		t.Fatal("staging was not replaced")
	}

	// A replaced copy whose drop never finished (the bot stopped first) is
	// dropped on the next start, and by the next swap.
	pgtest.Exec(t, f.stg.DSN("postgres"), "create database "+old)
	did, err := f.target.Recover(context.Background())
	if err != nil || !strings.Contains(did, "dropped the replaced copy "+old) || oid(old) != "none" {
		t.Fatalf("recover: %q %v; %s oid %s", did, err, old, oid(old))
	}
	pgtest.Exec(t, f.stg.DSN("postgres"), "create database "+old)
	if _, err := run(t, refreshSteps(f.target), nil); err != nil {
		t.Fatal(err)
	}
	f.target.Wait()
	if got := oid(old); got != "none" {
		t.Fatalf("%s left over from before is still there after a swap (oid %s)", old, got)
	}
}

func TestTarget_RefusesStagingNamesTooLongForItsCopies(t *testing.T) {
	long := strings.Repeat("s", 49)
	tg := &postgres.Target{Name: "app", StagingDSN: "postgres://127.0.0.1/" + long}
	_, err := tg.StagingDB()
	if err == nil || !strings.Contains(err.Error(), "at most 48") || !strings.Contains(err.Error(), "use a shorter name") {
		t.Fatalf("error = %v", err)
	}
	tg.StagingDSN = "postgres://127.0.0.1/" + long[:48]
	if _, err := tg.StagingDB(); err != nil {
		t.Fatalf("a 48-byte name: %v", err)
	}
}

package main

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stagebot/stagebot/bot"
	"github.com/stagebot/stagebot/bot/bottest"
	"github.com/stagebot/stagebot/internal/patience"
	"github.com/stagebot/stagebot/internal/pgtest"
	"github.com/stagebot/stagebot/runner/postgres"
	"github.com/stagebot/stagebot/store"
)

// The examples run end to end against two real PostgreSQL servers, shared
// by these tests (each example has its own databases). What the examples do
// on other machines (ssh, kubectl, rsync, make…) is played by scripts put
// first on PATH that record their arguments.

var examplePG struct {
	once      sync.Once
	prod, stg *pgtest.Server
	err       error
}

func exampleServers(t *testing.T) (prod, stg *pgtest.Server) {
	t.Helper()
	examplePG.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), patience.D(2*time.Minute))
		defer cancel()
		if examplePG.prod, examplePG.err = pgtest.Start(ctx, pgtest.Options{}); examplePG.err != nil {
			return
		}
		examplePG.stg, examplePG.err = pgtest.Start(ctx, pgtest.Options{})
	})
	if examplePG.err != nil {
		t.Fatal(examplePG.err)
	}
	return examplePG.prod, examplePG.stg
}

func stopExampleServers() {
	for _, s := range []*pgtest.Server{examplePG.prod, examplePG.stg} {
		if s != nil {
			s.Stop()
		}
	}
}

type example struct {
	t         *testing.T
	prod, stg *pgtest.Server
	bin       string // the stand-ins for remote commands
	calls     string // where they record what they were asked
	a         *bottest.Adapter
	sc        *bottest.Scenario
	channel   string // where people type: the first control channel
}

// newExample prepares the servers and the stand-in commands; env is set
// before the example config is loaded.
func newExample(t *testing.T) *example {
	prod, stg := exampleServers(t)
	dir := t.TempDir()
	e := &example{t: t, prod: prod, stg: stg, bin: filepath.Join(dir, "bin"), calls: filepath.Join(dir, "calls")}
	if err := os.Mkdir(e.bin, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", e.bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	t.Setenv("STAGEBOT_CALLS", e.calls)
	return e
}

// fake installs a stand-in for a command: it records "name args…" and then
// runs script (sh), whose exit status is the command's.
func (e *example) fake(name, script string) {
	e.t.Helper()
	body := "#!/bin/sh\necho \"" + name + " $*\" >> '" + e.calls + "'\n" + script + "\n"
	if err := os.WriteFile(filepath.Join(e.bin, name), []byte(body), 0o755); err != nil {
		e.t.Fatal(err)
	}
}

// psql is the path of psql, for stand-ins that change a database.
func psql(t *testing.T) string {
	dir, err := postgres.FindBinDir()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "psql")
}

// start loads the example (which must pass check) and runs the bot on it
// with the clock at now.
func (e *example) start(file string, now time.Time) {
	e.t.Helper()
	cfg, err := LoadConfig(filepath.Join("..", "..", "examples", file))
	if err != nil {
		e.t.Fatal(err)
	}
	if err := check(io.Discard, cfg, now); err != nil {
		e.t.Fatal(err)
	}
	e.channel = cfg.Access.ControlChannels[0]
	o := cfg.botOptions(deps{})
	o.EditInterval = 10 * time.Millisecond
	e.a = bottest.NewAdapter()
	e.sc = bottest.StartBotWith(e.t, e.a, bottest.NewClock(now), o)
}

func (e *example) say(user, text string) {
	e.a.Type(context.Background(), e.channel, store.User{ID: user, Name: user}, text)
}

// expect waits until the bot has said something containing s.
func (e *example) expect(s string) bot.Message {
	e.t.Helper()
	deadline := time.Now().Add(patience.D(30 * time.Second))
	for time.Now().Before(deadline) {
		if m := e.a.Find(s); len(m) > 0 {
			return m[len(m)-1]
		}
		time.Sleep(10 * time.Millisecond)
	}
	e.t.Fatalf("the bot never said %q; it said:\n%s", s, e.transcript())
	return bot.Message{}
}

func (e *example) transcript() string {
	var out []string
	for _, p := range e.a.Posts() {
		out = append(out, p.Current().Text)
	}
	return strings.Join(out, "\n---\n")
}

// advance moves the clock by d, a minute at a time so that every tick on
// the way happens.
func (e *example) advance(d time.Duration) { e.advanceBy(d, time.Minute) }

// advanceBy moves the clock by d in steps (shorter than the gaps between
// announcements, or a slot would be missed).
func (e *example) advanceBy(d, step time.Duration) {
	for ; d > 0; d -= step {
		e.sc.Clock.Advance(min(step, d))
		time.Sleep(2 * time.Millisecond)
	}
}

// recorded is what the stand-ins were asked to do, one call per line.
func (e *example) recorded() []string {
	data, err := os.ReadFile(e.calls)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		e.t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(data)), "\n")
}

func (e *example) wantCalls(want ...string) {
	e.t.Helper()
	if got := e.recorded(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		e.t.Fatalf("calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// freshDB drops and creates database name on a server.
func freshDB(t *testing.T, s *pgtest.Server, name string) {
	t.Helper()
	pgtest.Exec(t, s.DSN("postgres"), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)", "CREATE DATABASE "+name)
}

func dropDB(t *testing.T, s *pgtest.Server, names ...string) {
	t.Helper()
	for _, n := range names {
		pgtest.Exec(t, s.DSN("postgres"), "DROP DATABASE IF EXISTS "+n+" WITH (FORCE)")
	}
}

func TestExample_FedoraFAS(t *testing.T) {
	e := newExample(t)
	freshDB(t, e.prod, "fas2")
	dropDB(t, e.stg, "fas2", "fas2__stagebot_next", "fas2__stagebot_prev")
	pgtest.Exec(t, e.prod.DSN("fas2"),
		`CREATE TABLE people (id int PRIMARY KEY, username text NOT NULL UNIQUE, email text UNIQUE, human_name text, password text,
			ssh_key text, ircnick varchar(32), created date)`,
		`INSERT INTO people SELECT g, 'user' || g, 'user' || g || '@fedoraproject.org', 'Real Person ' || g, md5(g::text),
			'ssh-ed25519 AAAAC3Nza' || g, 'nick' || g, date '2010-01-01' + g FROM generate_series(1, 500) g`,
		`CREATE TABLE sessions (id text PRIMARY KEY, person int REFERENCES people)`,
		`INSERT INTO sessions VALUES ('s1', 1), ('s2', 2)`)
	e.fake("ssh", "")
	t.Setenv("FAS2_MASK_KEY", "an-example-key-for-the-test-only")
	t.Setenv("FAS2_PRODUCTION_DSN", e.prod.DSN("fas2"))
	t.Setenv("FAS2_STAGING_DSN", e.stg.DSN("fas2"))
	// Sunday 06:00: the Monday 06:00 run is announced a day ahead.
	e.start("fedora-fas.yaml", time.Date(2026, 11, 22, 6, 0, 0, 0, time.UTC))
	e.expect("Run 1: refresh of fas2 (default pipeline) starts at Mon 2026-11-23 06:00 UTC (in 1d)")
	e.advance(23 * time.Hour)
	e.expect("Reminder: run 1 starts in 1h")
	// A developer is mid-work and holds staging.
	e.say("adamw", "!stage hold fas2 1h testing the new login page")
	e.expect("adamw holds fas2 until 06:00 UTC: testing the new login page")
	e.say("adamw", "!stage hold fas2 2h testing the new login page")
	e.expect("Your hold on fas2 now lasts until 07:00 UTC")
	e.advance(65 * time.Minute)
	e.expect("Run 1 of fas2 is due but waits: held by adamw")
	if len(e.recorded()) != 0 {
		t.Fatalf("something ran while staging was held: %v", e.recorded())
	}
	e.say("adamw", "!stage release fas2 done, thanks")
	e.expect("The holds on fas2 have ended, so the run has a new start")
	e.advance(time.Hour) // the notice
	e.sc.WaitRun(1, store.RunSucceeded)
	e.expect("✅ Run 1 of fas2/default succeeded")
	hosts := []string{"fas01.stg.iad2.fedoraproject.org", "fas02.stg.iad2.fedoraproject.org"}
	e.wantCalls(
		"ssh "+hosts[0]+" sudo systemctl stop httpd", "ssh "+hosts[1]+" sudo systemctl stop httpd",
		"ssh "+hosts[0]+" sudo systemctl start httpd", "ssh "+hosts[1]+" sudo systemctl start httpd")
	stg := e.stg.DSN("fas2")
	if got := pgtest.Value(t, stg, `SELECT count(*) FILTER (WHERE email LIKE '%@example.invalid' AND password IS NULL) || '/' || count(*) FROM people`); got != "500/500" {
		t.Fatalf("sanitised people on staging: %s", got)
	}
	if got := pgtest.Value(t, stg, `SELECT count(*) FROM people WHERE human_name LIKE 'Real Person%' OR ssh_key IS NOT NULL OR ircnick LIKE 'nick%' OR username <> 'user' || id`); got != "0" {
		t.Fatalf("%s people on staging unmasked (or their usernames changed)", got)
	}
	e.expect("0 production values found in 500 sampled rows")
	if got := pgtest.Value(t, stg, `SELECT count(*) FROM sessions`); got != "0" {
		t.Fatalf("sessions on staging: %s", got)
	}
	if got := pgtest.Value(t, e.prod.DSN("fas2"), `SELECT count(*) FROM people WHERE password IS NOT NULL`); got != "500" {
		t.Fatalf("production changed: %s people with passwords", got)
	}
}

func TestExample_FedoraFAS_RefusesStagingOnProduction(t *testing.T) {
	e := newExample(t)
	freshDB(t, e.prod, "fas2")
	pgtest.Exec(t, e.prod.DSN("fas2"), `CREATE TABLE people (id int PRIMARY KEY, email text, password text)`, `INSERT INTO people VALUES (1, 'a@fedoraproject.org', 'x')`)
	e.fake("ssh", "")
	t.Setenv("FAS2_PRODUCTION_DSN", e.prod.DSN("fas2"))
	// Copy-paste slips: staging is production itself, spelt differently;
	// or another database on the production server.
	t.Setenv("FAS2_STAGING_DSN", strings.Replace(e.prod.DSN("fas2"), "127.0.0.1", "localhost", 1))
	e.start("fedora-fas.yaml", time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC))
	e.say("kevin", "!stage resync fas2 now")
	e.expect("I can't run fas2/default: its plan has problems")
	e.expect("copy production: refused: the destination localhost:")
	e.expect("is the source database itself")
	t.Setenv("FAS2_STAGING_DSN", e.prod.DSN("fas2_staging"))
	e.start("fedora-fas.yaml", time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC))
	e.say("kevin", "!stage resync fas2 now")
	e.expect("is a production server (it is 127.0.0.1:")
	if calls := e.recorded(); len(calls) != 0 {
		t.Fatalf("commands ran: %v", calls)
	}
	if got := pgtest.Value(t, e.prod.DSN("fas2"), `SELECT email || password FROM people`); got != "a@fedoraproject.orgx" {
		t.Fatalf("production changed: %s", got)
	}
}

// pgDump writes a custom-format dump of a database.
func pgDump(t *testing.T, s *pgtest.Server, db, path string) {
	t.Helper()
	dir, err := postgres.FindBinDir()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(dir, "pg_dump"), "-Fc", "-f", path, "-d", s.DSN(db))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pg_dump: %v\n%s", err, out)
	}
}

func TestExample_Launchpad(t *testing.T) {
	e := newExample(t)
	freshDB(t, e.prod, "launchpad_prod")
	dropDB(t, e.stg, "lpmain_staging", "lpmain_staging__stagebot_next", "lpmain_staging__stagebot_prev",
		"lpmain_qastaging", "lpmain_qastaging__stagebot_next", "lpmain_qastaging__stagebot_prev")
	prod := e.prod.DSN("launchpad_prod")
	backups := filepath.Join(t.TempDir(), "backups")
	os.Mkdir(backups, 0o755)
	pgtest.Exec(t, prod, `CREATE TABLE person (id int PRIMARY KEY, name text)`, `INSERT INTO person SELECT g, 'p' || g FROM generate_series(1, 300) g`,
		`CREATE TABLE launchpaddatabaserevision (major int, minor int, patch int)`, `INSERT INTO launchpaddatabaserevision VALUES (2210, 1, 0)`)
	// Two nights of backups: the newest one has 301 people.
	pgDump(t, e.prod, "launchpad_prod", filepath.Join(backups, "launchpad_prod_20261121.dump"))
	pgtest.Exec(t, prod, `INSERT INTO person VALUES (301, 'newcomer')`)
	pgDump(t, e.prod, "launchpad_prod", filepath.Join(backups, "launchpad_prod_20261122.dump"))
	old := time.Now().Add(-24 * time.Hour)
	os.Chtimes(filepath.Join(backups, "launchpad_prod_20261121.dump"), old, old)
	os.WriteFile(filepath.Join(backups, "README"), []byte("not a backup"), 0o644)

	// The code trees' upgrade scripts, played by python3: upgrade.py
	// applies a schema patch to the database libpq points at, and waits
	// for the test's go-ahead file when there is one.
	tree, qaTree := t.TempDir(), t.TempDir()
	gate := filepath.Join(t.TempDir(), "go")
	e.fake("python3", `echo "$1 on $PGDATABASE" >> '`+e.calls+`'
case "$1" in
database/schema/upgrade.py)
  [ "$PWD" = "`+tree+`" ] && while [ ! -e `+gate+` ]; do sleep 0.02; done
  echo "Applying patch-2210-02-0.sql"
  `+psql(t)+` -v ON_ERROR_STOP=1 -q -c "ALTER TABLE person ADD COLUMN display_name text; INSERT INTO launchpaddatabaserevision VALUES (2210, 2, 0)" ;;
database/schema/security.py)
  echo "Granting privileges"
  `+psql(t)+` -v ON_ERROR_STOP=1 -q -c "GRANT SELECT ON person TO PUBLIC" ;;
*) exit 2 ;;
esac`)
	e.fake("ssh", "")
	t.Setenv("LP_PRODUCTION_DSN", prod)
	t.Setenv("LP_STAGING_DSN", e.stg.DSN("lpmain_staging"))
	t.Setenv("LP_QASTAGING_DSN", e.stg.DSN("lpmain_qastaging"))
	t.Setenv("LP_BACKUP_DIR", backups)
	t.Setenv("LP_TREE", tree)
	t.Setenv("LP_QA_TREE", qaTree)
	// Sunday 23:58 UTC: the 00:10 rebuild is announced at 00:00.
	e.start("launchpad.yaml", time.Date(2026, 11, 22, 23, 58, 0, 0, time.UTC))
	e.advance(2 * time.Minute)
	e.expect("Run 1: refresh of staging (rebuild pipeline) starts at 00:10 UTC (in 10m)")
	e.advance(10 * time.Minute)
	e.expect("While run 1 runs, all targets are held")
	// qastaging's 00:15 run comes due while the rebuild upgrades the schema.
	e.expect("Run 2: refresh of qastaging")
	e.advance(5 * time.Minute)
	e.expect("Run 2 of qastaging is due but waits: held by run 1 (staging/rebuild) while it runs")
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	e.sc.WaitRun(1, store.RunSucceeded)
	e.expect("✅ Run 1 of staging/rebuild succeeded")
	e.expect("Run 1 has ended, and with it its hold on all targets.")
	e.expect("The holds on qastaging have ended, so the run has a new start")
	e.advance(10 * time.Minute)
	e.sc.WaitRun(2, store.RunSucceeded)

	calls := strings.Join(e.recorded(), "\n")
	want := strings.Join([]string{
		"python3 database/schema/upgrade.py", "database/schema/upgrade.py on lpmain_staging__stagebot_next",
		"python3 database/schema/security.py", "database/schema/security.py on lpmain_staging__stagebot_next",
		"ssh gandwana.internal sudo systemctl stop launchpad", "ssh lp-staging-app1.internal sudo systemctl stop launchpad",
		"ssh gandwana.internal sudo systemctl start launchpad", "ssh lp-staging-app1.internal sudo systemctl start launchpad",
		"python3 database/schema/upgrade.py", "database/schema/upgrade.py on lpmain_qastaging__stagebot_next",
	}, "\n")
	if calls != want {
		t.Fatalf("calls:\n%s\nwant:\n%s", calls, want)
	}
	for _, db := range []string{"lpmain_staging", "lpmain_qastaging"} {
		dsn := e.stg.DSN(db)
		if got := pgtest.Value(t, dsn, `SELECT count(*) || ' ' || max(name) FILTER (WHERE id = 301) FROM person`); got != "301 newcomer" {
			t.Errorf("%s: people %q, want the newest backup's", db, got)
		}
		if got := pgtest.Value(t, dsn, `SELECT max(minor) FROM launchpaddatabaserevision`); got != "2" {
			t.Errorf("%s: schema revision minor %s, want the upgraded 2", db, got)
		}
	}
	// The run report is in the channel: every step, and the log on demand.
	status := e.expect("Run 1 of staging/rebuild: succeeded")
	for _, step := range []string{"✓ restore the newest backup", "✓ upgrade the schema", "✓ set the database permissions", "✓ swap it into place", "✓ start the app servers (finally)"} {
		if !strings.Contains(status.Text, step) {
			t.Errorf("status message lacks %q:\n%s", step, status.Text)
		}
	}
	e.say("wgrant", "!stage log 1 full")
	e.expect("Applying patch-2210-02-0.sql")
}

func TestExample_Fragalysis(t *testing.T) {
	e := newExample(t)
	freshDB(t, e.prod, "frag")
	freshDB(t, e.stg, "frag") // made by the stack's installer, not by stagebot
	dropDB(t, e.stg, "frag__stagebot_next", "frag__stagebot_prev")
	prod, stg := e.prod.DSN("frag"), e.stg.DSN("frag")
	pgtest.Exec(t, prod, `CREATE TABLE stack_settings (key text PRIMARY KEY, value text)`, `INSERT INTO stack_settings VALUES ('image_tag', '2.4.1')`,
		`CREATE TABLE target (id int PRIMARY KEY, title text)`, `INSERT INTO target SELECT g, 'Mpro-x' || g FROM generate_series(1, 200) g`)
	pgtest.Exec(t, stg, `CREATE TABLE stack_settings (key text PRIMARY KEY, value text)`, `INSERT INTO stack_settings VALUES ('image_tag', '2.4.0')`,
		`CREATE TABLE target (id int PRIMARY KEY, title text)`, `INSERT INTO target VALUES (1, 'someone''s experiment')`)
	root := t.TempDir()
	backups, mediaBackup, media := filepath.Join(root, "backups"), filepath.Join(root, "media-backup"), filepath.Join(root, "staging-media")
	for _, d := range []string{backups, filepath.Join(mediaBackup, "targets"), media} {
		os.MkdirAll(d, 0o755)
	}
	dir, _ := postgres.FindBinDir()
	if out, err := exec.Command("sh", "-c", filepath.Join(dir, "pg_dump")+" -d '"+prod+"' | gzip > "+filepath.Join(backups, "backup-2026-11-22.sql.gz")).CombinedOutput(); err != nil {
		t.Fatalf("backup: %v\n%s", err, out)
	}
	os.WriteFile(filepath.Join(mediaBackup, "targets", "Mpro.zip"), []byte("structures"), 0o644)
	os.WriteFile(filepath.Join(media, "stale.txt"), []byte("old"), 0o644)
	e.fake("kubectl", "")
	// rsync -a --delete SRC/ DST/: the copy without rsync's cleverness.
	e.fake("rsync", `rm -rf "$4" && mkdir -p "$4" && cp -a "$3". "$4"`)
	t.Setenv("FRAG_PRODUCTION_DSN", prod)
	t.Setenv("FRAG_STAGING_DSN", stg)
	t.Setenv("FRAG_BACKUP_DIR", backups)
	t.Setenv("FRAG_MEDIA_BACKUP", mediaBackup+"/")
	t.Setenv("FRAG_MEDIA_DIR", media+"/")
	e.start("fragalysis.yaml", time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC))
	scaleDown := "kubectl --context fragalysis-staging -n stack scale deployment/stack --replicas=0"
	scaleUp := "kubectl --context fragalysis-staging -n stack scale deployment/stack --replicas=1"

	// The image tags differ: the run stops before anything is touched.
	e.say("alan", "!stage resync fragalysis full now")
	e.expect("Run 1: refresh of fragalysis (full pipeline)")
	e.say("tim", "!stage approve 1")
	e.sc.WaitRun(1, store.RunFailed)
	e.expect(`Step "staging runs production's image" failed: staging and production differ: staging has "2.4.0", production has "2.4.1"`)
	e.wantCalls(scaleUp) // the finally step starts the stack regardless
	if got := pgtest.Value(t, stg, `SELECT title FROM target`); got != "someone's experiment" {
		t.Fatalf("staging changed: %s", got)
	}

	// Staging is upgraded to production's tag; now the full replica runs.
	pgtest.Exec(t, stg, `UPDATE stack_settings SET value = '2.4.1'`)
	os.Remove(e.calls)
	e.say("alan", "!stage resync fragalysis full now")
	e.say("tim", "!stage approve 2")
	e.sc.WaitRun(2, store.RunSucceeded)
	e.wantCalls(scaleDown, "rsync -a --delete "+mediaBackup+"/ "+media+"/", scaleUp)
	if got := pgtest.Value(t, stg, `SELECT count(*) FROM target`); got != "200" {
		t.Fatalf("staging has %s targets, want production's 200", got)
	}
	if data, err := os.ReadFile(filepath.Join(media, "targets", "Mpro.zip")); err != nil || string(data) != "structures" {
		t.Fatalf("media not recovered: %q, %v", data, err)
	}
	if _, err := os.Stat(filepath.Join(media, "stale.txt")); !os.IsNotExist(err) {
		t.Fatalf("stale media kept: %v", err)
	}

	// Just the database: no media sync.
	os.Remove(e.calls)
	e.say("alan", "!stage resync fragalysis db now")
	e.say("tim", "!stage approve 3")
	e.sc.WaitRun(3, store.RunSucceeded)
	e.wantCalls(scaleDown, scaleUp)

	// Wipe: stack down, database and media gone.
	os.Remove(e.calls)
	e.say("alan", "!stage resync fragalysis wipe now")
	e.say("tim", "!stage approve 4")
	e.sc.WaitRun(4, store.RunSucceeded)
	e.wantCalls(scaleDown)
	if got := pgtest.Value(t, e.stg.DSN("postgres"), `SELECT count(*) FROM pg_database WHERE datname LIKE 'frag%'`); got != "0" {
		t.Fatalf("%s staging database(s) left after wipe", got)
	}
	if _, err := os.Stat(media); !os.IsNotExist(err) {
		t.Fatalf("media directory left after wipe: %v", err)
	}
	if got := pgtest.Value(t, prod, `SELECT count(*) FROM target`); got != "200" {
		t.Fatalf("production changed: %s targets", got)
	}
}

func TestExample_Jimdo(t *testing.T) {
	e := newExample(t)
	freshDB(t, e.prod, "cms")
	dropDB(t, e.stg, "cms", "cms__stagebot_next", "cms__stagebot_prev")
	pgtest.Exec(t, e.prod.DSN("cms"), `CREATE TABLE websites (id int PRIMARY KEY, domain text, owner_email text)`,
		`INSERT INTO websites SELECT g, 'site' || g || '.jimdosite.com', 'owner' || g || '@gmail.com' FROM generate_series(1, 1000) g`)
	infra := t.TempDir()
	e.fake("make", "")
	t.Setenv("JIMDO_PRODUCTION_DSN", e.prod.DSN("cms"))
	t.Setenv("JIMDO_STAGING_DSN", e.stg.DSN("cms"))
	t.Setenv("JIMDO_INFRA", infra)
	berlin, _ := time.LoadLocation("Europe/Berlin")
	e.start("jimdo.yaml", time.Date(2026, 11, 23, 3, 0, 0, 0, berlin)) // a Monday, before the rebuild
	stagingDBs := func() string {
		return pgtest.Value(t, e.stg.DSN("postgres"), `SELECT count(*) FROM pg_database WHERE datname LIKE 'cms%'`)
	}
	build := []string{"make -C " + infra + " stage-network", "make -C " + infra + " stage-workers", "make -C " + infra + " stage-app"}
	teardown := []string{"make -C " + infra + " destroy-stage-app", "make -C " + infra + " destroy-stage-workers", "make -C " + infra + " destroy-stage-network"}

	// Monday 06:00: staging is built from scratch.
	e.advanceBy(3*time.Hour, 5*time.Minute)
	e.sc.WaitRun(1, store.RunSucceeded)
	e.wantCalls(build...)
	if got := pgtest.Value(t, e.stg.DSN("cms"), `SELECT count(*) FILTER (WHERE owner_email LIKE '%@example.invalid') FROM websites`); got != "1000" {
		t.Fatalf("sanitised websites on staging: %s", got)
	}
	// Friday 22:00: torn down in reverse order.
	os.Remove(e.calls)
	e.advanceBy(time.Date(2026, 11, 27, 22, 0, 0, 0, berlin).Sub(e.sc.Clock.Now()), 5*time.Minute)
	e.expect("Run 2: refresh of stage (destroy pipeline)")
	e.sc.WaitRun(2, store.RunSucceeded)
	e.wantCalls(teardown...)
	if got := stagingDBs(); got != "0" {
		t.Fatalf("%s staging database(s) left over the weekend", got)
	}
	// Monday 06:00 again: rebuilt.
	os.Remove(e.calls)
	e.advanceBy(time.Date(2026, 11, 30, 6, 0, 0, 0, berlin).Sub(e.sc.Clock.Now()), 5*time.Minute)
	e.sc.WaitRun(3, store.RunSucceeded)
	e.wantCalls(build...)
	if got := stagingDBs(); got != "1" {
		t.Fatalf("%s staging databases after the rebuild, want 1 (keep_previous is off)", got)
	}
	if r, err := e.sc.Store.Run(context.Background(), 3); err != nil || r.Pipeline != "rebuild" {
		t.Fatalf("run 3: %+v, %v", r, err)
	}
}

func TestExample_Blockerbugs(t *testing.T) {
	e := newExample(t)
	freshDB(t, e.prod, "blockerbugs")
	freshDB(t, e.stg, "blockerbugs")
	stg := e.stg.DSN("blockerbugs")
	pgtest.Exec(t, stg, `CREATE TABLE bug (id int PRIMARY KEY, summary text)`, `INSERT INTO bug VALUES (2240001, 'anaconda crashes')`,
		`CREATE TABLE alembic_version (version_num text)`, `INSERT INTO alembic_version VALUES ('3a1b')`)
	tree := t.TempDir()
	// alembic applies the tree's migration to the database libpq points at.
	e.fake("alembic", `echo "upgrading $PGDATABASE on $PGHOST:$PGPORT"
`+psql(t)+` -v ON_ERROR_STOP=1 -q -f migration.sql 2>&1`)
	e.fake("ssh", "")
	t.Setenv("BB_PRODUCTION_DSN", e.prod.DSN("blockerbugs"))
	t.Setenv("BB_STAGING_DSN", stg)
	t.Setenv("BB_TREE", tree)
	e.start("blockerbugs.yaml", time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC))
	nodes := []string{"blockerbugs01.stg.iad2.fedoraproject.org", "blockerbugs02.stg.iad2.fedoraproject.org"}
	on := func(cmd string) []string {
		return []string{"ssh " + nodes[0] + " " + cmd, "ssh " + nodes[1] + " " + cmd}
	}
	calls := func(parts ...[]string) []string {
		var out []string
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}

	// A migration that works.
	os.WriteFile(filepath.Join(tree, "migration.sql"), []byte(`ALTER TABLE bug ADD COLUMN proposed_fe boolean; UPDATE alembic_version SET version_num = '4c2d';`), 0o644)
	e.say("tflink", "!stage resync blockerbugs major now")
	e.say("lbrabec", "!stage approve 1")
	e.sc.WaitRun(1, store.RunSucceeded)
	e.wantCalls(calls(on("sudo systemctl stop httpd"), on("sudo dnf -y update blockerbugs"),
		[]string{"alembic -c alembic.ini upgrade head", "ssh " + nodes[0] + " sudo blockerbugs sync"}, on("sudo systemctl start httpd"))...)
	if got := pgtest.Value(t, stg, `SELECT version_num FROM alembic_version`); got != "4c2d" {
		t.Fatalf("staging schema version %s, want 4c2d", got)
	}

	// A migration that fails: no sync, httpd started on both nodes anyway,
	// and the report says which step failed and why.
	os.Remove(e.calls)
	os.WriteFile(filepath.Join(tree, "migration.sql"), []byte(`ALTER TABLE milestone ADD COLUMN current boolean;`), 0o644)
	e.say("tflink", "!stage resync blockerbugs major now")
	e.say("lbrabec", "!stage approve 2")
	e.sc.WaitRun(2, store.RunFailed)
	e.wantCalls(calls(on("sudo systemctl stop httpd"), on("sudo dnf -y update blockerbugs"),
		[]string{"alembic -c alembic.ini upgrade head"}, on("sudo systemctl start httpd"))...)
	// The failure is said once, in the run's thread; the report names the step.
	e.expect(`Step "upgrade_db" failed: exited with status 3: psql:migration.sql:1: ERROR:  relation "milestone" does not exist`)
	report := e.expect("❌ Run 2 of blockerbugs/major failed")
	if want := `at step "upgrade_db"`; !strings.Contains(report.Text, want) {
		t.Fatalf("report:\n%s\nwant it to contain:\n%s", report.Text, want)
	}
	status := e.expect("Run 2 of blockerbugs/major: failed")
	for _, line := range []string{"✓ stop httpd", "✓ update", "✗ upgrade_db", "sync", "✓ start httpd (finally)"} {
		if !strings.Contains(status.Text, line) {
			t.Errorf("status lacks %q:\n%s", line, status.Text)
		}
	}

	// The minor upgrade: update and restart.
	os.Remove(e.calls)
	e.say("tflink", "!stage resync blockerbugs now")
	e.say("lbrabec", "!stage approve 3")
	e.sc.WaitRun(3, store.RunSucceeded)
	e.wantCalls(calls(on("sudo dnf -y update blockerbugs"), on("sudo systemctl restart httpd"))...)
}

// Every example passes check with nothing set in the environment, as a
// reader would first try it.
func TestExamples_PassCheck(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "..", "examples", "*.yaml"))
	if err != nil || len(files) < 5 {
		t.Fatalf("examples: %v, %v", files, err)
	}
	for _, f := range files {
		switch filepath.Base(f) {
		case "prometheus-alerts.yaml":
			continue // Prometheus's rules, not a stagebot config (tested in bot/web)
		case "slack-manifest.yaml":
			continue // the Slack app's manifest (tested in bot/slack)
		}
		var out strings.Builder
		err := Main(context.Background(), []string{"check", "-c", f}, strings.NewReader(""), &out, &out)
		if err != nil || !strings.HasPrefix(out.String(), "Config is valid") {
			t.Errorf("stagebot check -c %s: %v\n%s", f, err, out.String())
		}
	}
}

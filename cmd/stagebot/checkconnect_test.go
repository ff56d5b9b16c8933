package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stagebot/stagebot/internal/patience"
	"github.com/stagebot/stagebot/internal/pgtest"
)

// TestCheck_ConnectSaysWhatStopsTheNextRefresh: check --connect reads
// production (read-only) and says, before any run, what the next refresh
// would stop at: a column no rule covers, a rule for a dropped column, a
// kept column of emails, a server that does not answer; with those fixed
// it passes, and the databases are as they were.
func TestCheck_ConnectSaysWhatStopsTheNextRefresh(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL servers; run without -short")
	}
	prod, stg := pgtest.New(t), pgtest.New(t)
	pgtest.Exec(t, prod.DSN("postgres"), "create database app")
	pgtest.Exec(t, prod.DSN("app"),
		"create table users (id int primary key, email text, note text)",
		"insert into users select g, 'p' || g || '@real.example', 'contact' || g || '@mail.example' from generate_series(1, 300) g",
		"create table sessions (token text)",
		"insert into sessions select md5(g::text) from generate_series(1, 10) g",
		"analyze")
	t.Setenv("APP_MASK_KEY", "a key of sixteen characters or more")
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "c.yaml")
	write := func(production, rules string) {
		t.Helper()
		err := os.WriteFile(cfgPath, []byte(`
store: {path: `+filepath.Join(dir, "s.db")+`}
targets:
  app:
    database:
      production: `+production+`
      staging: `+stg.DSN("app")+`
      masking:
        key_env: APP_MASK_KEY
        rules:
`+rules+`
    pipelines:
      default:
        steps: [{pg_refresh: {}}]
`), 0o600)
		if err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), patience.D(time.Minute))
	defer cancel()
	checkConnect := func() (string, error) {
		var out, errOut bytes.Buffer
		err := Main(ctx, []string{"check", "-c", cfgPath, "--connect"}, nil, &out, &errOut)
		return out.String(), err
	}
	write(prod.DSN("app"), `
          public.users.id: keep
          public.users.email: email
          public.users.note: keep
          public.users.phone: phone`)
	out, err := checkConnect()
	if err == nil || exitCode(err) != 1 || !strings.Contains(err.Error(), "the next refresh of app would stop before copying anything") {
		t.Fatalf("check --connect with gaps: %v\n%s", err, out)
	}
	for _, want := range []string{
		"✓ production and staging's server answer",
		`✗ masking: public.sessions.token: no rule covers this column (text): add "public.sessions.token":`,
		"✗ masking: public.users.phone",
		"✗ masking: kept, but looks personal: public.users.note: ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("check --connect does not say %q:\n%s", want, out)
		}
	}
	write(prod.DSN("app"), `
          public.users.id: keep
          public.users.email: email
          public.users.note: 'text: keep_length'
          public.sessions: truncate`)
	if out, err := checkConnect(); err != nil || !strings.Contains(out, "✓ masking: every column of production is classified: 2 masked, 1 kept, 1 table truncated") {
		t.Errorf("check --connect of a config that covers production: %v\n%s", err, out)
	}
	if n := pgtest.Value(t, stg.DSN("postgres"), "select count(*) from pg_database where datname like 'app%'"); n != "0" {
		t.Errorf("check --connect made %s databases on staging's server", n)
	}
	write(strings.Replace(prod.DSN("app"), fmt.Sprintf(":%d/", prod.Port), ":1/", 1), `
          public.users: truncate`)
	if out, err := checkConnect(); err == nil || !strings.Contains(out, "✗ cannot look at production and staging's server") {
		t.Errorf("check --connect with production down: %v\n%s", err, out)
	}
}

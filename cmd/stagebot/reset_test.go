package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stagebot/stagebot/internal/pgtest"
)

// TestReset_FromChat: with keep_base, `changes` says what people did on
// staging since the refresh, and `reset` puts the refresh's sanitised
// data back without production; before any refresh a reset is refused.
func TestReset_FromChat(t *testing.T) {
	prod, stg := pgtest.New(t), pgtest.New(t)
	pgtest.Exec(t, prod.DSN("postgres"), "create database app")
	pgtest.Exec(t, prod.DSN("app"),
		"create table customers (id int primary key, email text)",
		"insert into customers select g, 'person' || g || '@example.com' from generate_series(1, 2000) g",
		"create table items (id serial primary key, name text)",
		"insert into items (name) select 'item ' || g from generate_series(1, 300) g")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "stagebot.yaml")
	os.WriteFile(cfg, []byte(`
store: {path: `+filepath.Join(dir, "state.db")+`}
access: {control_channels: [infra], everyone: [stage]}
targets:
  app:
    max_age: 7d
    database:
      production: `+prod.DSN("app")+`
      staging: `+stg.DSN("app")+`
      keep_base: true
    pipelines:
      default:
        steps:
          - {name: copy production, pg_refresh: {}}
          - {name: sanitise, sql: "update customers set email = 'customer' || id || '@example.invalid'"}
`), 0o600)
	bot := startBot(t, cfg)
	bot.say(t, "!stage reset app now")
	waitUntil(t, "the reset refused", func() bool { return strings.Contains(bot.out.String(), "no base copy of app is kept yet") })
	bot.say(t, "!stage resync app now")
	waitUntil(t, "the refresh", func() bool { return strings.Contains(bot.out.String(), "✅ Run 1 of app/default succeeded") })
	base := appSum(t, stg.DSN("app"))
	// Someone works on staging.
	pgtest.Exec(t, stg.DSN("app"), "insert into items (name) select 'mine ' || g from generate_series(1, 5) g", "update customers set email = 'me@work' where id <= 3")
	waitUntil(t, "the counters", func() bool {
		bot.say(t, "!stage changes app")
		waitUntil(t, "an answer", func() bool { return strings.Count(bot.out.String(), "Changed on staging") > 0 })
		return strings.Contains(bot.out.String(), "• public.items: 5 inserted\n")
	})
	if !strings.Contains(bot.out.String(), "• public.customers: 3 updated") {
		t.Errorf("changes lack the updates:\n%s", bot.out.String())
	}
	bot.say(t, "!stage reset app now")
	waitUntil(t, "the reset", func() bool { return strings.Contains(bot.out.String(), "Run 2 of app/reset succeeded") })
	out := bot.finish(t)
	if !strings.Contains(out, "Run 2: refresh of app (reset pipeline)") || !strings.Contains(out, "What will be lost") {
		t.Errorf("the reset was not announced like a refresh:\n%s", out)
	}
	if got := appSum(t, stg.DSN("app")); got != base {
		t.Fatalf("after the reset staging is %s, want the base %s", got, base)
	}
}

// appSum is a checksum of the reset test's tables.
func appSum(t *testing.T, dsn string) string {
	t.Helper()
	v, err := query[string](t, dsn, `select (select count(*) || ':' || sum(hashtext(t::text)::bigint) from customers t) || '/' || (select count(*) || ':' || sum(hashtext(t::text)::bigint) from items t)`)
	if err != nil {
		t.Fatalf("checksum: %v", err)
	}
	return v
}

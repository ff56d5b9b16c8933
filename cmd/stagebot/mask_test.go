package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stagebot/stagebot/internal/patience"
	"github.com/stagebot/stagebot/internal/pgtest"
)

// TestMask_RulesThenAMaskedRefresh: stagebot mask-rules reads production
// and proposes rules for the columns without one; with them, a refresh
// from chat masks the rows, says what it proved, and the key is never
// shown.
func TestMask_RulesThenAMaskedRefresh(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL servers; run without -short")
	}
	prod, stg := pgtest.New(t), pgtest.New(t)
	pgtest.Exec(t, prod.DSN("postgres"), "create database people")
	pgtest.Exec(t, prod.DSN("people"),
		"create table users (id int primary key, email text unique, full_name text, note text)",
		"insert into users select g, 'p' || g || '@real.example', 'Real Name ' || g, 'note ' || g from generate_series(1, 500) g",
		"analyze")
	key := "k3y-never-shown-in-chat-0123456789"
	t.Setenv("PEOPLE_MASK_KEY", key)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "c.yaml")
	refresh := "{}"
	write := func(rules string) {
		os.WriteFile(cfgPath, []byte(`
store: {path: `+filepath.Join(dir, "s.db")+`}
access: {control_channels: [infra], everyone: [stage]}
targets:
  people:
    database:
      production: `+prod.DSN("people")+`
      staging: `+stg.DSN("people")+`
      masking:
        key_env: PEOPLE_MASK_KEY
        rules:
`+rules+`
    pipelines:
      default:
        steps:
          - {name: copy production, pg_refresh: `+refresh+`}
`), 0o600)
	}
	write(`          public.users.id: keep`)
	ctx, cancel := context.WithTimeout(context.Background(), patience.D(time.Minute))
	defer cancel()
	var out, errOut bytes.Buffer
	if err := Main(ctx, []string{"mask-rules", "-c", cfgPath, "people"}, nil, &out, &errOut); err != nil {
		t.Fatalf("mask-rules: %v\n%s", err, errOut.String())
	}
	for _, want := range []string{
		"# Masking of people: production has 4 columns in 1 table.",
		"# By the rules: 0 masked, 1 kept, 0 tables truncated; 3 without a rule.",
		"  key_env: PEOPLE_MASK_KEY",
		`    "public.users.id": keep`,
		`    "public.users.email": email # 200 of 200 sampled values look like email addresses`,
		`    "public.users.full_name": name # looks like a person's name`,
		`    "public.users.note": keep`,
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("mask-rules lacks %q:\n%s", want, out.String())
		}
	}
	// Its rules, pasted into the config, make a valid masking section.
	rules := out.String()[strings.Index(out.String(), "  rules:\n")+len("  rules:\n"):]
	write(strings.ReplaceAll(rules, "    ", "          "))
	out.Reset()
	pgtest.Exec(t, prod.DSN("people"), "alter table users add column phone text", "update users set phone = '+44 20 7946 ' || lpad(id::text, 4, '0')")
	in := strings.NewReader("!stage mask people\n!stage resync people now\n")
	if err := Main(ctx, []string{"run", "-c", cfgPath, "--as", "alice"}, in, &out, &errOut); err != nil {
		t.Fatalf("run: %v\n%s", err, errOut.String())
	}
	// The column production gained stops the refresh; !stage mask says so
	// before, with the rule to add.
	for _, want := range []string{
		"Masking of people (by 4 rules): 5 columns in 1 table; 2 masked, 2 kept, 0 tables truncated.",
		"⚠ The next refresh stops before copying anything until these are settled:",
		"• 1 column without a rule.",
		`"public.users.phone": phone # looks like a phone number`,
		"Masking: production's values are masked on their way in, by 4 rules",
		"masking stops the refresh before anything is copied: 1 problem",
		"❌ Run 1 of people/default failed",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the bot's messages lack %q:\n%s", want, out.String())
		}
	}
	if n := pgtest.Value(t, stg.DSN("postgres"), "select count(*) from pg_database where datname like 'people%'"); n != "0" {
		t.Errorf("%s databases left on staging's server after the refused refresh", n)
	}
	write(strings.ReplaceAll(rules, "    ", "          ") + `          public.users.phone: phone`)
	out.Reset()
	if err := Main(ctx, []string{"run", "-c", cfgPath, "--as", "alice"}, strings.NewReader("!stage resync people now\n"), &out, &errOut); err != nil {
		t.Fatalf("run: %v\n%s", err, errOut.String())
	}
	for _, want := range []string{"✅ Run 2 of people/default succeeded", "masked 3 columns in 1 table; 0 production values found in 500 sampled rows"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the run's messages lack %q:\n%s", want, out.String())
		}
	}
	// The same through pg_dump: its proof compares with production too,
	// and its line is in the run's thread.
	refresh = "{method: dump}"
	write(strings.ReplaceAll(rules, "    ", "          ") + `          public.users.phone: phone`)
	shown := out.String()
	out.Reset()
	if err := Main(ctx, []string{"run", "-c", cfgPath, "--as", "alice"}, strings.NewReader("!stage resync people now\n"), &out, &errOut); err != nil {
		t.Fatalf("run: %v\n%s", err, errOut.String())
	}
	for _, want := range []string{"✅ Run 3 of people/default succeeded", "masked 3 columns in 1 table; 0 production values found in 500 sampled rows"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the pg_dump run's messages lack %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(shown+out.String()+errOut.String(), key) {
		t.Error("the masking key was shown")
	}
	if n := pgtest.Value(t, stg.DSN("people"), "select count(*) from users where email like '%@real.example' or full_name like 'Real Name%'"); n != "0" {
		t.Errorf("%s production values in staging", n)
	}
	if n := pgtest.Value(t, stg.DSN("people"), "select count(*) from users where note = 'note ' || id"); n != "500" {
		t.Errorf("kept column: %s rows as in production, want 500", n)
	}
}

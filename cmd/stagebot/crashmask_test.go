package main

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stagebot/stagebot/internal/pgtest"
)

// TestCrash_KilledHalfwayThroughAMaskedRefresh: the bot killed while a
// masked refresh copies (in the stream, through pg_dump, and from a
// custom-format backup) leaves
// staging as it was, the next start repairs what it left, and staging's
// server holds no production value in its files or WAL, not even from the
// copy cut short.
func TestCrash_KilledHalfwayThroughAMaskedRefresh(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL servers and kills processes; run without -short")
	}
	for _, name := range []string{"stream", "dump", "backup"} {
		t.Run(name, func(t *testing.T) {
			prod, stg := pgtest.New(t), pgtest.New(t)
			pgtest.Exec(t, prod.DSN("postgres"), "create database app")
			pgtest.Exec(t, prod.DSN("app"),
				"create table people (id bigint primary key, email text not null, note text)",
				"insert into people select g, 'p' || g || '@real-secret.example', 'note ' || g from generate_series(1, 400000) g",
				"create table marks (version int)", "insert into marks values (1)", "analyze")
			dir := t.TempDir()
			source := map[string]string{"stream": "{}", "dump": "{method: dump}", "backup": "{from_file: " + filepath.Join(dir, "app.dump") + "}"}[name]
			if name == "backup" {
				pgDump(t, prod, "app", filepath.Join(dir, "app.dump"))
			}
			cfg := filepath.Join(dir, "stagebot.yaml")
			os.WriteFile(cfg, []byte(fmt.Sprintf(`
store: {path: %s}
log: {level: warn}
access: {control_channels: [infra], everyone: [stage]}
targets:
  app:
    database:
      production: %s
      staging: %s
      masking:
        key_env: APP_MASK_KEY
        default: keep
        rules: {public.people.email: email}
    pipelines:
      default:
        steps:
          - {name: copy production, pg_refresh: %s}
`, filepath.Join(dir, "state.db"), prod.DSN("app"), stg.DSN("app"), source)), 0o600)
			key := "APP_MASK_KEY=a key of sixteen characters or more"
			bot := startBot(t, cfg, key)
			bot.say(t, "!stage resync app now")
			if out := bot.finish(t); !strings.Contains(out, "✅ Run 1 of app/default succeeded") {
				t.Fatalf("first refresh:\n%s", out)
			}
			pgtest.Exec(t, prod.DSN("app"), "update marks set version = 2")
			if name == "backup" {
				pgDump(t, prod, "app", filepath.Join(dir, "app.dump"))
			}
			before := pgtest.Value(t, stg.DSN("app"), "select count(*) || ':' || sum(hashtext(p::text)::bigint) || '/' || (select version from marks) from people p")
			bot = startBot(t, cfg, key)
			bot.say(t, "!stage resync app now")
			waitUntil(t, "the masked copy to be under way", func() bool {
				n, err := query[int64](t, stg.DSN("postgres"), `select coalesce(sum(tuples_processed), 0) from pg_stat_progress_copy where datname = 'app__stagebot_next'`)
				return err == nil && n > 0
			})
			bot.kill(t)
			bot = startBot(t, cfg, key)
			bot.say(t, "!stage history")
			if out := bot.finish(t); !strings.Contains(out, "Run 2 of app was interrupted") || !strings.Contains(out, "dropped the unfinished copy app__stagebot_next") {
				t.Errorf("the next start does not repair and say so:\n%s", out)
			}
			if after := pgtest.Value(t, stg.DSN("app"), "select count(*) || ':' || sum(hashtext(p::text)::bigint) || '/' || (select version from marks) from people p"); after != before {
				t.Errorf("staging changed: %s → %s", before, after)
			}
			pgtest.Exec(t, stg.DSN("postgres"), "checkpoint")
			if files := filesWith(t, filepath.Join(stg.Dir, "data"), "@real-secret.example"); len(files) > 0 {
				t.Errorf("production's emails are in staging's files after the killed copy: %v", files)
			}
			if files := filesWith(t, filepath.Join(stg.Dir, "data"), "note 123"); len(files) == 0 {
				t.Error("the search found not even a kept value in staging's files: it proves nothing")
			}
		})
	}
}

// filesWith lists the files under dir that contain s.
func filesWith(t *testing.T, dir, s string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if data, err := os.ReadFile(path); err == nil && bytes.Contains(data, []byte(s)) {
			out = append(out, strings.TrimPrefix(path, dir))
		}
		return nil
	})
	return out
}

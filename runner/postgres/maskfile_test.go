package postgres_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stagebot/stagebot/internal/pgtest"
	"github.com/stagebot/stagebot/runner"
	"github.com/stagebot/stagebot/runner/postgres"
)

// TestMasking_InFlightFromEverySource: a masked target refreshed with
// method: dump or from a backup in every format (plain, compressed, made
// with -C, custom, compressed custom, directory) has its rows masked in the
// bot on their way in: staging's data files and WAL hold no production
// value afterwards, the masked columns hold masked values, and what the
// rules keep is there.
func TestMasking_InFlightFromEverySource(t *testing.T) {
	f := newMaskFixture(t)
	tg := f.target("k")
	dsn := tg.ProductionDSN
	dir := t.TempDir()
	plain := pgDump(t, dsn, "-Fp")
	custom := pgDump(t, dsn, "-Fc")
	files := map[string][]byte{
		"plain.sql":       plain,
		"plain.sql.xz":    compress(t, plain, "xz"),
		"create.sql.gz":   compress(t, pgDump(t, dsn, "-Fp", "-C"), "gzip"),
		"custom.dump":     custom,
		"custom.dump.zst": compress(t, custom, "zstd"),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	pgDump(t, dsn, "-Fd", "-f", filepath.Join(dir, "directory"))
	sources := map[string][]runner.Step{"method dump": {&postgres.Refresh{StepName: "refresh", Target: tg, Method: postgres.MethodDump}, &postgres.Swap{StepName: "swap", Target: tg}}}
	for name := range files {
		sources[name] = fileSteps(tg, filepath.Join(dir, name))
	}
	sources["directory"] = fileSteps(tg, filepath.Join(dir, "directory"))
	stg := f.stg.DSN("people")
	for name, steps := range sources {
		t.Run(name, func(t *testing.T) {
			out, err := run(t, steps, nil)
			if err != nil {
				t.Fatalf("masked refresh: %v\n%s", err, out)
			}
			if !strings.Contains(out, "masking: 4 tables masked on the way in, 1 truncated") {
				t.Errorf("the log does not say what was masked:\n%s", out)
			}
			// Each source's run is searched for right after it: earlier
			// runs were searched already.
			f.noSecretsOnStaging(t)
			for q, want := range map[string]string{
				"select count(*) from users where email like 'u%@example.invalid'":       "3000",
				"select count(*) from accounts a join users u on u.email = a.user_email": "3000",
				"select count(*) from users where kept = 'kept-marker-' || id":           "3000",
				"select count(*) from audit":                                             "0",
				"select count(*) from logins where email like '%@example.invalid'":       "300",
			} {
				if got := pgtest.Value(t, stg, q); got != want {
					t.Errorf("%s = %s, want %s", q, got, want)
				}
			}
		})
	}
}

// TestMasking_DamagedBackupsFailAndStagingStays: a masked refresh from a
// backup cut short (a plain file mid-COPY, a custom archive half-written,
// a compressed file whose end is missing) fails saying the backup is
// unreadable or incomplete, not with what followed from it, and staging
// stays as it was.
func TestMasking_DamagedBackupsFailAndStagingStays(t *testing.T) {
	f := newMaskFixture(t)
	tg := f.target("k")
	before := f.refreshed(t)
	plain := pgDump(t, tg.ProductionDSN, "-Fp")
	custom := pgDump(t, tg.ProductionDSN, "-Fc")
	cut := bytes.Index(plain, []byte("COPY public.users")) + 2000
	dir := t.TempDir()
	for name, data := range map[string][]byte{
		"plain-cut.sql":    plain[:cut],
		"custom-cut.dump":  custom[:len(custom)/2],
		"plain-cut.sql.xz": compress(t, plain, "xz")[:len(compress(t, plain, "xz"))*2/3],
	} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := run(t, fileSteps(tg, path), nil)
		if err == nil || !(strings.Contains(err.Error(), "unreadable") || strings.Contains(err.Error(), "incomplete")) {
			t.Errorf("%s: %v, want the backup named unreadable or incomplete\n%s", name, err, out)
		}
		if after := fingerprint(t, f.stg.DSN("people")); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Errorf("%s: staging changed", name)
		}
	}
}

// TestMasking_DumpProofReadsAtTheDumpsSnapshot: production changing while
// a masked pg_dump copy is made (every token replaced once the shadow
// exists) does not fail the proof: it compares the shadow with production
// at the dump's snapshot. Compared with production as it is by then, no
// sampled token would be in the shadow.
func TestMasking_DumpProofReadsAtTheDumpsSnapshot(t *testing.T) {
	f := newMaskFixture(t)
	tg := f.target("k")
	// A copy the change missed (it took a fraction of a second) is tried
	// again.
	for attempt := 1; ; attempt++ {
		stop, changed := make(chan struct{}), make(chan bool, 1)
		go func() {
			done := false
			defer func() { changed <- done }() // also when Exec fails the test
			for {
				select {
				case <-stop:
					return
				default:
				}
				if has(databases(t, f.stg), "people"+postgres.NextSuffix) {
					pgtest.Exec(t, tg.ProductionDSN, "delete from tokens", "insert into tokens select 'tok-new-' || g, g from generate_series(501, 1000) g")
					done = true
					return
				}
				time.Sleep(2 * time.Millisecond)
			}
		}()
		steps := refreshSteps(tg)
		steps[0].(*postgres.Refresh).Method = postgres.MethodDump
		rep := &progressLog{}
		out, err := run(t, steps, rep)
		close(stop)
		if !<-changed {
			if attempt == 5 {
				t.Fatal("production was never changed while the shadow existed")
			}
			continue
		}
		if err != nil {
			t.Fatalf("a masked pg_dump copy while production changed: %v\n%s", err, out)
		}
		if !strings.Contains(out, "0 production values found in") || strings.Contains(out, "tokens.token") {
			t.Errorf("the proof did not compare tokens:\n%s", out)
		}
		// Its line is the step's last report, for the run's thread.
		last := ""
		for i, pr := range rep.ps {
			if rep.steps[i] == 0 {
				last = pr.Items
			}
		}
		if !strings.Contains(last, "masked ") || !strings.Contains(last, "0 production values found in") {
			t.Errorf("the step's last report is %q, not the proof's line", last)
		}
		return
	}
}

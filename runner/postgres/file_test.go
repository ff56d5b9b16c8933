package postgres_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/stagebot/stagebot/internal/pgtest"
	"github.com/stagebot/stagebot/runner"
	"github.com/stagebot/stagebot/runner/postgres"
)

func pgDump(t *testing.T, dsn string, args ...string) []byte {
	t.Helper()
	bin, err := postgres.FindBinDir()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(filepath.Join(bin, "pg_dump"), append(args, "-d", dsn)...).Output()
	if err != nil {
		t.Fatalf("pg_dump %v: %v", args, err)
	}
	return out
}

func compress(t *testing.T, data []byte, how string) []byte {
	t.Helper()
	var buf bytes.Buffer
	var w interface {
		Write([]byte) (int, error)
		Close() error
	}
	var err error
	switch how {
	case "gzip":
		w = gzip.NewWriter(&buf)
	case "xz":
		w, err = xz.NewWriter(&buf)
	case "zstd":
		w, err = zstd.NewWriter(&buf)
	}
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data)
	w.Close()
	return buf.Bytes()
}

func fileSteps(tg *postgres.Target, path string) []runner.Step {
	return []runner.Step{&postgres.Refresh{StepName: "restore", Target: tg, Source: postgres.Source{File: path}}, &postgres.Swap{StepName: "swap", Target: tg}}
}

// dirSize is a file's size, or the total of a directory's files.
func dirSize(t *testing.T, path string) int64 {
	t.Helper()
	var n int64
	filepath.WalkDir(path, func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			info, _ := d.Info()
			n += info.Size()
		}
		return err
	})
	return n
}

func TestRefresh_BackupFiles(t *testing.T) {
	f := newFixture(t)
	dsn := f.prod.DSN(f.prodDB)
	want := fingerprint(t, dsn)
	delete(want, "settings") // files made without -C carry no database settings
	dir := t.TempDir()
	plain := pgDump(t, dsn, "-Fp")
	custom := pgDump(t, dsn, "-Fc")
	withCreate := pgDump(t, dsn, "-Fp", "-C")
	files := map[string][]byte{
		"plain.sql":       plain,
		"plain.sql.gz":    compress(t, plain, "gzip"),
		"plain.sql.xz":    compress(t, plain, "xz"),
		"plain.sql.zst":   compress(t, plain, "zstd"),
		"create.sql.xz":   compress(t, withCreate, "xz"), // pg_dump -C fas2 | xz, as Fedora does it
		"custom.dump":     custom,
		"custom.dump.zst": compress(t, custom, "zstd"),
		"custom.dump.gz":  compress(t, custom, "gzip"),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	pgDump(t, dsn, "-Fd", "-j", "2", "-f", filepath.Join(dir, "directory"))
	files["directory"] = nil
	for name := range files {
		t.Run(name, func(t *testing.T) {
			rep := &progressLog{}
			log, err := run(t, fileSteps(f.target, filepath.Join(dir, name)), rep)
			if err != nil {
				t.Fatalf("%v\n%s", err, log)
			}
			// Progress is bytes of the file read, in every format: the
			// last report of the restore is the whole file.
			size := dirSize(t, filepath.Join(dir, name))
			var last runner.Progress
			for i, p := range rep.ps {
				if rep.steps[i] == 0 {
					last = p
				}
			}
			if last.Unit != "bytes" || last.Total != size || last.Done != size {
				t.Errorf("the restore's last progress is %q (%d of %d %s), want the file's %d bytes", last, last.Done, last.Total, last.Unit, size)
			}
			got := fingerprint(t, f.stg.DSN(f.stgDB))
			if name == "create.sql.xz" {
				// A -C dump's database settings apply to the shadow.
				if !strings.Contains(got["settings"], "work_mem=12MB") {
					t.Errorf("settings from the -C dump not applied: %q", got["settings"])
				}
			}
			delete(got, "settings")
			if d := diffPrints(want, got); d != "" {
				t.Fatalf("restored data differs:\n%s", d)
			}
		})
	}
	// A backup chosen as the newest in a directory.
	t.Run("newest in directory", func(t *testing.T) {
		step := &postgres.Refresh{StepName: "restore", Target: f.target, Source: postgres.Source{Dir: dir, Pattern: "plain.sql.*"}}
		desc, err := step.Plan(context.Background())
		if err != nil || !strings.Contains(desc, "plain.sql.") {
			t.Fatalf("plan: %q %v", desc, err)
		}
	})
}

func TestRefresh_CorruptBackupsFailBeforeTheSwap(t *testing.T) {
	f := newFixture(t)
	dsn := f.prod.DSN(f.prodDB)
	// Big enough that damage past the first compressed blocks is only found
	// while restoring, not when the file is first looked at.
	pgtest.Exec(t, dsn, "insert into audit select now(), md5(g::text) || md5((g*7)::text) from generate_series(1, 60000) g")
	if _, err := run(t, refreshSteps(f.target), nil); err != nil {
		t.Fatal(err)
	}
	before := fingerprint(t, f.stg.DSN(f.stgDB))
	dir := t.TempDir()
	plain := pgDump(t, dsn, "-Fp")
	custom := pgDump(t, dsn, "-Fc")
	xzPlain := compress(t, plain, "xz")
	zst := compress(t, plain, "zstd")
	flipped := append([]byte(nil), zst...)
	for i := len(flipped) * 9 / 10; i < len(flipped)*9/10+64; i++ {
		flipped[i] ^= 0xff
	}
	cut := bytes.LastIndex(plain[:len(plain)/2], []byte("\n\\.\n")) + 4 // at a statement boundary
	cases := map[string]struct {
		data []byte
		want string
	}{
		"truncated.sql.xz":  {data: xzPlain[:len(xzPlain)/2], want: "is unreadable"},
		"truncated.sql":     {data: plain[:cut], want: `ends without pg_dump's "dump complete" line`},
		"truncated.dump":    {data: custom[:len(custom)*2/3], want: "pg_restore: exited with status"},
		"corrupt.sql.zst":   {data: flipped, want: "is unreadable"},
		"garbage.bin":       {data: bytes.Repeat([]byte{0x00, 0x01, 0xfe}, 1000), want: "neither a pg_dump archive nor plain SQL"},
		"empty.sql.gz":      {data: nil, want: "empty or unreadable"},
		"bad-statement.sql": {data: append(append([]byte(nil), plain...), []byte("SELECT no_such_function();\n")...), want: "psql: exited with status 3: ERROR:  function no_such_function() does not exist"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, name)
			os.WriteFile(path, c.data, 0o644)
			log, err := run(t, fileSteps(f.target, path), nil)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error = %v, want %q\n%s", err, c.want, log)
			}
			if d := diffPrints(before, fingerprint(t, f.stg.DSN(f.stgDB))); d != "" {
				t.Fatalf("staging changed:\n%s", d)
			}
			if has(databases(t, f.stg), f.stgDB+postgres.NextSuffix) {
				t.Fatal("shadow left behind")
			}
		})
	}
}

// A backup whose objects belong to or are granted to roles staging lacks is
// refused when the run is planned (before anything is stopped), for every
// archive format; plain SQL is caught by the restore itself.
func TestRefresh_BackupRolesCheckedAtPlan(t *testing.T) {
	f := newFixture(t)
	owner, reader := "owner_"+f.prodDB, `Reader "`+f.prodDB+`"`
	pgtest.Exec(t, f.prod.DSN("postgres"), "create role "+owner, `create role "Reader ""`+f.prodDB+`"""`)
	pgtest.Exec(t, f.prod.DSN(f.prodDB), "alter table audit owner to "+owner, `grant select on users to "Reader ""`+f.prodDB+`"""`)
	dsn := f.prod.DSN(f.prodDB)
	dir := t.TempDir()
	custom := pgDump(t, dsn, "-Fc")
	files := map[string][]byte{"custom.dump": custom, "custom.dump.xz": compress(t, custom, "xz")}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	pgDump(t, dsn, "-Fd", "-f", filepath.Join(dir, "backup.d"))
	for _, name := range []string{"custom.dump", "custom.dump.xz", "backup.d"} {
		t.Run(name, func(t *testing.T) {
			f.target.NoOwner, f.target.NoACL = false, false
			_, err := run(t, fileSteps(f.target, filepath.Join(dir, name)), nil)
			want := "plan: restore: staging lacks roles the backup uses: " + reader + " (has privileges), " + owner + " (owns objects)"
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("error = %v, want %q", err, want)
			}
			f.target.NoOwner = true
			if _, err := run(t, fileSteps(f.target, filepath.Join(dir, name)), nil); err == nil || strings.Contains(err.Error(), owner) || !strings.Contains(err.Error(), reader+" (has privileges)") {
				t.Fatalf("with no_owner: error = %v", err)
			}
			f.target.NoACL = true
			if log, err := run(t, fileSteps(f.target, filepath.Join(dir, name)), nil); err != nil {
				t.Fatalf("with no_owner and no_acl: %v\n%s", err, log)
			}
		})
	}
}

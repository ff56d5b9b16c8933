package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/stagebot/stagebot/internal/pgtest"
)

// perf script's output for seven samples: an index build growing its file,
// a COPY into staging, a COPY out of production, a parallel worker of a
// build, the bot, an idle core and
// a process whose name has a space; a blank line ends each.
const perfSamples = `postgres  4120 
	          2b87d0 copy_folio_from_iter_atomic
	          2b8b5f mdextend
	          2b8d2d smgrextend
	          29f062 btbuild
	          29f0aa index_build

postgres  4121 
	          5b5048 pg_mbstrlen_with_len
	          5b506b bpcharrecv
	          38367e NextCopyFrom
	          383700 CopyFrom
	          383800 DoCopy

postgres  4122 
	          111111 [unknown]
	          222222 DoCopyTo
	          333333 DoCopy

postgres  4123 
	          777777 [unknown]
	          888888 _bt_parallel_build_main
	          999999 ParallelWorkerMain

stagebot  9000 
	          444444 runtime.memmove

swapper     0 
	          555555 pv_native_safe_halt

Web Content  77 
	          666666 [unknown]
`

func TestProfile_SortsSamplesByWork(t *testing.T) {
	p, err := readPerfScript(strings.NewReader(perfSamples))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"index builds": 2, "COPY into staging": 1, "COPY out of production": 1, "the bot": 1, "idle": 1, "other processes": 1}
	if p.samples != 7 || len(p.by) != len(want) {
		t.Fatalf("%d samples in %v; want 7 in %v", p.samples, p.by, want)
	}
	for k, n := range want {
		if p.by[k] != n {
			t.Errorf("%s: %d samples, want %d (all: %v)", k, p.by[k], n, p.by)
		}
	}
	if p.grow != 1 {
		t.Errorf("%d samples growing a file, want 1 (the index build's mdextend)", p.grow)
	}
	var out bytes.Buffer
	p.print(&out, "stagebot stream")
	for _, s := range []string{"CPU of stagebot stream", "index builds 0.00s (28.6%)", "growing PostgreSQL's files (tables, indexes, sort files) a page at a time: 0.00s (14.3%)"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("the profile does not say %q:\n%s", s, out.String())
		}
	}
}

// A run perf saw nothing of is an error, not a profile of nothing.
func TestProfile_NoSamplesIsAnError(t *testing.T) {
	if _, err := readPerfScript(strings.NewReader("\n\n")); err == nil {
		t.Fatal("an empty perf script read as a profile")
	}
}

// A read that fails says so, and is not taken for a run without samples
// nor for a profile of what was read before it failed.
func TestProfile_AFailedReadIsNamed(t *testing.T) {
	for name, r := range map[string]io.Reader{
		"at once":        iotest.ErrReader(errors.New("disk gone")),
		"after a sample": io.MultiReader(strings.NewReader(perfSamples), iotest.ErrReader(errors.New("disk gone"))),
	} {
		p, err := readPerfScript(r)
		if err == nil || !strings.Contains(err.Error(), "disk gone") || p != nil {
			t.Errorf("%s: profile %v, error %v: want the read's error and no profile", name, p, err)
		}
	}
}

// When perf script fails, its own words are in the error: they say
// what is wrong with the recording.
func TestProfile_PerfScriptsFailureSaysWhy(t *testing.T) {
	bin := t.TempDir()
	fake := "#!/bin/sh\necho 'perf.data: file is truncated, run perf record again' >&2\nexit 1\n"
	if err := os.WriteFile(filepath.Join(bin, "perf"), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin)
	_, err := perfScript(context.Background(), filepath.Join(t.TempDir(), "perf.data"))
	if err == nil || !strings.Contains(err.Error(), "file is truncated") {
		t.Fatalf("perf script failing: %v", err)
	}
}

// perf itself, sampling a real server: a COPY into a table and an index
// built on it are named as such, from the functions on PostgreSQL's
// stacks (make test installs perf; it runs as root).
func TestProfile_RealPerfNamesACopyAndABuild(t *testing.T) {
	ctx := context.Background()
	if err := perfTools(ctx, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	s := pgtest.New(t)
	if err := sqlExec(ctx, s.DSN("postgres"), "create table t (v int)"); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	rec, err := record(ctx, filepath.Join(dir, "perf.data"))
	if err != nil {
		t.Fatal(err)
	}
	werr := sqlExec(ctx, s.DSN("postgres"),
		"copy t from program 'seq 1 1000000'",
		"create index on t (md5(v::text))")
	p, err := rec.stop(ctx)
	if werr != nil {
		t.Fatal(werr)
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"COPY into staging", "index builds"} {
		if p.by[w] < 5 {
			t.Errorf("%d samples of %s in %v", p.by[w], w, p.by)
		}
	}
	if p.samples < perfHz/2 {
		t.Errorf("%d samples in all: perf sampled less than a CPU for the 300 ms before the work", p.samples)
	}
}

// Without perf, -profile stops before anything starts and says what to
// install.
func TestProfile_WithoutPerfSaysWhatToInstall(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	err := perfTools(context.Background(), t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "linux-perf") {
		t.Fatalf("perfTools without perf on PATH: %v", err)
	}
}

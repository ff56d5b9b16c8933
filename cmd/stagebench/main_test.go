package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stagebot/stagebot/internal/pgtest"
)

// The bench itself, at the smallest scale: every method it runs produces
// production's data, and the table says so.
func TestBench_SmallScale(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "stagebot")
	// -race reuses what go test -race already compiled.
	if out, err := exec.Command("go", "build", "-race", "-o", bin, "../stagebot").CombinedOutput(); err != nil {
		t.Fatalf("build stagebot: %v\n%s", err, out)
	}
	var out, log strings.Builder
	err := bench(context.Background(), options{scale: scales{all: 1}, jobs: 2, runs: 1, stagebot: bin, methods: "stream,dump,psql,reset", out: &out, log: &log})
	if err != nil {
		t.Fatalf("%v\n%s\n%s", err, log.String(), out.String())
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`\| stagebot stream \| [0-9.]+m?s \| [0-9.]+m?s \| 1\.00× \| — \| [0-9.]+m?s \| [0-9.]+ MiB \| [0-9]+% \| identical \|`),
		regexp.MustCompile(`\| stagebot dump \| [0-9.]+m?s \| [0-9.]+m?s \| [0-9.]+× \| [01] of 1 rounds \| [0-9.]+m?s \| [0-9.]+ MiB \| [0-9]+% \| identical \|`),
		regexp.MustCompile(`\| stagebot reset \(from the base\) \| [0-9.]+m?s \| [0-9.]+m?s \| [0-9.]+× \| [01] of 1 rounds \| [0-9.]+m?s \| [0-9.]+ MiB \| [0-9]+% \| identical \|`),
		regexp.MustCompile(`\| pg_dump \\\| psql \| [0-9.]+m?s \| [0-9.]+m?s \| [0-9.]+× \| [01] of 1 rounds \| [0-9.]+m?s \| — \| [0-9]+% \| identical \|`),
		// A timeline for every method, with its phases.
		regexp.MustCompile(`(?s)Timeline of stagebot stream \([0-9.]+m?s, sampled every 100ms.*?\n  phases: [a-zA-Z]`),
		regexp.MustCompile(`(?s)Timeline of pg_dump \| psql \([0-9.]+m?s, sampled every 100ms.*?\n  phases: [a-zA-Z]`),
	} {
		if !want.MatchString(out.String()) {
			t.Errorf("output lacks %s:\n%s", want, out.String())
		}
	}
}

// The data check sees a single changed row.
func TestFingerprint_SeesOneChangedRow(t *testing.T) {
	s := pgtest.New(t)
	ctx := context.Background()
	dsn := s.DSN("postgres")
	if err := sqlExec(ctx, dsn, "create table t (id int primary key, v text)", "insert into t select g, 'v' || g from generate_series(1, 1000) g"); err != nil {
		t.Fatal(err)
	}
	before, err := fingerprint(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	if err := sqlExec(ctx, dsn, "update t set v = 'changed' where id = 500"); err != nil {
		t.Fatal(err)
	}
	after, err := fingerprint(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	if d := after.equal(before); d != "table public.t" {
		t.Errorf("differences = %q, want the changed table", d)
	}
	if d := before.equal(before); d != "" {
		t.Errorf("a database differs from itself: %q", d)
	}
}

// Bad flags stop the bench before it starts anything, saying what to give.
func TestBench_RefusesBadFlags(t *testing.T) {
	for _, tt := range []struct {
		o    options
		want string
	}{
		{options{scale: scales{all: 0}, jobs: 2, runs: 1}, "-scale 0: give a scale of 1 or more"},
		{options{scale: scales{all: 1}, jobs: 0, runs: 1}, "-jobs 0: give 1 or more"},
		{options{scale: scales{all: 1}, jobs: 2, runs: 0}, "-runs 0: give 1 or more"},
		{options{scale: scales{all: 1}, jobs: 2, runs: 1, methods: "stream,pgcopy"}, `-methods: no method "pgcopy"; pick from stream,masked,update,dump,reset,psql,dir,xz,pgcopydb`},
	} {
		err := bench(context.Background(), tt.o)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: error = %v, want %q", tt.o, err, tt.want)
		}
	}
}

// Every shape generates, and stagebot's streaming refresh copies it
// identically (row counts and hashes, indexes, constraints, sequences),
// and masked (a quarter of its columns) through the gate and the proof.
func TestBench_EveryShapeCopiesIdentically(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "stagebot")
	if out, err := exec.Command("go", "build", "-o", bin, "../stagebot").CombinedOutput(); err != nil {
		t.Fatalf("build stagebot: %v\n%s", err, out)
	}
	var out, log strings.Builder
	err := bench(context.Background(), options{scale: scales{all: 1}, jobs: 2, runs: 1, shape: "all", stagebot: bin, methods: "stream,masked", out: &out, log: &log})
	if err != nil {
		t.Fatalf("%v\n%s\n%s", err, log.String(), out.String())
	}
	for _, sh := range shapes {
		if !strings.Contains(out.String(), "Shape "+sh.name+". Production: "+sh.describe(1)) {
			t.Errorf("no table for shape %s", sh.name)
		}
	}
	if n := strings.Count(out.String(), "| identical |"); n != len(shapes) {
		t.Errorf("%d identical copies, want %d:\n%s", n, len(shapes), out.String())
	}
	// Every shape's masked refresh passes the gate and the proof.
	if n := strings.Count(out.String(), "| masked |"); n != len(shapes) {
		t.Errorf("%d masked copies, want %d:\n%s", n, len(shapes), out.String())
	}
}

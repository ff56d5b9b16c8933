package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stagebot/stagebot/internal/pgtest"
)

// The statements of stagebot, pg_dump's scripts, pg_restore and pgcopydb
// are named by kind and object, and the rest left out.
func TestClassify(t *testing.T) {
	for _, tt := range []struct{ q, kind, object, table string }{
		{`COPY public.events (id, kind) FROM STDIN WITH (FORMAT binary, FREEZE)`, "COPY", "events", "events"},
		{`copy "public"."Mixed ""Case"".x" from stdin`, "COPY", `Mixed "Case".x`, `Mixed "Case".x`},
		{`CREATE INDEX "a.b" ON "my schema".t (v)`, "INDEX", "a.b", "t"},
		{`CREATE UNIQUE INDEX events_pkey ON public.events USING btree (id)`, "INDEX", "events_pkey", "events"},
		{`CREATE INDEX IF NOT EXISTS events_kind_at_idx ON ONLY public.events USING btree (kind, at);`, "INDEX", "events_kind_at_idx", "events"},
		{"ALTER TABLE ONLY public.events\n    ADD CONSTRAINT events_pkey PRIMARY KEY (id);", "CONSTRAINT", "events_pkey", "events"},
		{"ALTER TABLE ONLY public.events\n    ADD CONSTRAINT events_account_id_fkey FOREIGN KEY (account_id) REFERENCES public.accounts(id);", "FOREIGN KEY", "events_account_id_fkey", "events"},
		{`ALTER TABLE public.events VALIDATE CONSTRAINT events_account_id_fkey`, "VALIDATE", "events_account_id_fkey", "events"},
		{`alter table t add constraint t_v_check check (v <> '')`, "CHECK", "t_v_check", "t"},
		{`ANALYZE public.events`, "ANALYZE", "events", "events"},
		{`VACUUM (ANALYZE) public.people`, "VACUUM", "people", "people"},
		{`ANALYZE`, "ANALYZE", "(database)", ""},
		{`SELECT pg_catalog.set_config('search_path', '', false);`, "", "", ""},
		{`CREATE TABLE public.events (id bigint)`, "", "", ""},
	} {
		kind, object, table := classify(tt.q)
		if kind != tt.kind || object != tt.object || table != tt.table {
			t.Errorf("classify(%q) = %q, %q, %q; want %q, %q, %q", tt.q, kind, object, table, tt.kind, tt.object, tt.table)
		}
	}
}

// A COPY that stays open for most of a second is on the timeline with
// its table and about its length, the phases show it, and the critical
// table is its table.
func TestTrace_SeesAStatementOnStaging(t *testing.T) {
	s := pgtest.New(t)
	ctx := context.Background()
	if err := sqlExec(ctx, s.DSN("postgres"), "create table slow (id int)"); err != nil {
		t.Fatal(err)
	}
	b := &env{stg: s}
	stop := b.trace(ctx)
	c, err := pgx.Connect(ctx, s.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	n, err := c.CopyFrom(ctx, pgx.Identifier{"slow"}, []string{"id"}, &slowRows{left: 3, pause: 300 * time.Millisecond})
	if err != nil || n != 3 {
		t.Fatalf("copy: %d rows, %v", n, err)
	}
	tl := stop()
	var copy *activity
	for _, a := range tl.acts {
		if a.kind == "COPY" && a.object == "slow" {
			copy = a
		}
	}
	if copy == nil {
		t.Fatalf("no COPY slow on the timeline: %+v", tl.acts)
	}
	if d := copy.to - copy.from; d < 500*time.Millisecond || d > 2*time.Second {
		t.Errorf("the COPY took %s on the timeline, want about 900ms", d)
	}
	if tl.critical() != "slow" {
		t.Errorf("critical table %q, want slow", tl.critical())
	}
	var out strings.Builder
	tl.print(&out, "a slow copy")
	for _, want := range []string{"Timeline of a slow copy", "phases: COPY ", "COPY slow "} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("printed timeline lacks %q:\n%s", want, out.String())
		}
	}
}

// slowRows is a COPY source that pauses before each row.
type slowRows struct {
	left  int
	pause time.Duration
}

func (r *slowRows) Next() bool {
	if r.left == 0 {
		return false
	}
	r.left--
	time.Sleep(r.pause)
	return true
}
func (r *slowRows) Values() ([]any, error) { return []any{int32(r.left)}, nil }
func (r *slowRows) Err() error             { return nil }

// -scale and -size: a scale for all, per shape, or by size; mistakes are
// named with what to give.
func TestScales(t *testing.T) {
	sc, err := parseScale("20,dominant=16")
	if err != nil {
		t.Fatal(err)
	}
	if got := sc.of(shapes[0]); got != 20 {
		t.Errorf("pgbench at %d, want 20", got)
	}
	dominant := shapes[1]
	if got := sc.of(dominant); got != 16 {
		t.Errorf("dominant at %d, want 16", got)
	}
	sc.byShape = map[string]int{}
	if sc.size, err = parseSize("1GB"); err != nil || sc.size != 1<<30 {
		t.Fatalf("parseSize(1GB) = %d, %v", sc.size, err)
	}
	for _, sh := range shapes {
		n := sc.of(sh)
		if got := sh.fixed + float64(n)*sh.perScale; got < 800 || got > 1250 {
			t.Errorf("shape %s at scale %d for 1GB: about %.0f MiB", sh.name, n, got)
		}
	}
	for in, want := range map[string]string{
		"0":              "-scale 0: give a scale of 1 or more",
		"dominant=x":     "-scale dominant=x: give a scale of 1 or more",
		"dominnat=3":     `-scale dominnat=3: no shape "dominnat"`,
		"10,,pgbench=-1": "-scale pgbench=-1: give a scale of 1 or more",
	} {
		if _, err := parseScale(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("parseScale(%q) = %v, want %q", in, err, want)
		}
	}
	for in, want := range map[string]int64{"600MB": 600 << 20, "1.5gb": 3 << 29, "2G": 2 << 30, "": 0} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"1000", "big", "-1GB", "0MB"} {
		if _, err := parseSize(in); err == nil || !strings.Contains(err.Error(), "give a size with its unit") {
			t.Errorf("parseSize(%q) = %v, want a refusal", in, err)
		}
	}
}

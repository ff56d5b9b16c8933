package postgres

import (
	"fmt"
	"testing"
)

func TestSplitParts(t *testing.T) {
	const mb = 1 << 20
	for _, tt := range []struct {
		size, total int64
		jobs        int
		want        int64
	}{
		{100 * mb, 100 * mb, 2, 1},   // small: whole
		{640 * mb, 980 * mb, 2, 1},   // big, but two workers share the work evenly enough
		{900 * mb, 1000 * mb, 4, 4},  // one table is nearly everything: 4 ranges for 4 workers
		{2000 * mb, 2100 * mb, 2, 4}, // at most two ranges per worker
		{300 * mb, 310 * mb, 8, 2},   // no more ranges than 256 MB pieces
	} {
		if got := splitParts(tt.size, tt.total, tt.jobs); got != tt.want {
			t.Errorf("splitParts(%d MB of %d MB, %d jobs) = %d, want %d", tt.size/mb, tt.total/mb, tt.jobs, got, tt.want)
		}
	}
}

// Builds that take no time go first (foreign keys wait for them), then the
// costliest, however big: a slow key on unsorted rows beats a bigger index
// on presorted integers.
func TestQueueOrder(t *testing.T) {
	const mb = 1 << 20
	s := &streamer{}
	s.queue(
		postEntry{name: "pkey", cost: buildCost(entryInfo{size: 100 * mb, sorted: true})},
		postEntry{name: "tiny pkey", cost: buildCost(entryInfo{size: 16 << 10, sorted: true})},
		postEntry{name: "status", cost: buildCost(entryInfo{size: 70 * mb, slow: true})},
		postEntry{name: "account", cost: buildCost(entryInfo{size: 70 * mb})},
	)
	s.queue(analyzeEntry(&streamTable{name: "empty"}), analyzeEntry(&streamTable{name: "big", size: 4000 * mb}))
	var got []string
	for _, e := range s.builds {
		got = append(got, e.name)
	}
	want := []string{"tiny pkey", "empty", "status", "account", "pkey", "big"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("order %v, want %v", got, want)
	}
}

func TestAfterConstraint(t *testing.T) {
	for _, tt := range []struct {
		sql, after string
		ok         bool
	}{
		{"ALTER TABLE ONLY public.t\n    ADD CONSTRAINT t_pkey PRIMARY KEY (id);", "", true},
		{"ALTER TABLE ONLY public.t\n    ADD CONSTRAINT t_pkey PRIMARY KEY (id);\n\n\nALTER TABLE public.t CLUSTER ON t_pkey;", "ALTER TABLE public.t CLUSTER ON t_pkey;", true},
		// A semicolon in a name: run pg_dump's entry as it is.
		{"ALTER TABLE ONLY public.t\n    ADD CONSTRAINT \"a;b\" UNIQUE (id);", "", false},
		{"ALTER TABLE ONLY public.t\n    ADD CONSTRAINT \"a;\nb\" UNIQUE (id);", "", false},
		{"ALTER TABLE public.t\n    ADD CONSTRAINT t_pkey PRIMARY KEY (id);", "", false},
		{"CREATE INDEX i ON public.t USING btree (id);", "", false},
	} {
		after, ok := afterConstraint(tt.sql)
		if after != tt.after || ok != tt.ok {
			t.Errorf("afterConstraint(%q) = %q, %v; want %q, %v", tt.sql, after, ok, tt.after, tt.ok)
		}
	}
}

func TestSortMemory(t *testing.T) {
	const mb = 1 << 20
	for _, tt := range []struct {
		bytes    int64
		parallel int
		want     int64 // in MB, rounded down
	}{
		{0, 0, 16},           // never below 16 MB
		{170 * mb, 0, 16},    // a 3 M-row index: its sort fits a cache-sized run
		{170 * mb, 2, 96},    // three participants at 32 MB each
		{10 << 30, 0, 101},   // 10 GB: one merge pass needs about 51 MB
		{1 << 50, 0, 1024},   // never above 1 GB
		{10 << 30, 40, 1024}, // nor for many workers
		{4 << 30, 1, 64},     // one worker: 64 MB beats the 51 MB merge needs
	} {
		if got := sortMemory(tt.bytes, tt.parallel) / mb; got != tt.want {
			t.Errorf("sortMemory(%d, %d) = %d MB, want %d", tt.bytes, tt.parallel, got, tt.want)
		}
	}
}

// TestRunnable: a builder takes the first queued build whose locks do
// not conflict with the builds in flight, so that it never waits on
// PostgreSQL's lock manager with a core idle.
func TestRunnable(t *testing.T) {
	a, b, c := &streamTable{name: "a"}, &streamTable{name: "b"}, &streamTable{name: "c"}
	index := func(tb *streamTable) postEntry { return postEntry{kind: "INDEX", name: "idx_" + tb.name, table: tb} }
	fk := func(tb, ref *streamTable) postEntry {
		return postEntry{kind: "FK CONSTRAINT", name: tb.name + "_" + ref.name + "_fkey", table: tb, ref: ref}
	}
	attach := func(tb *streamTable) postEntry { return postEntry{kind: "ATTACH", name: tb.name, table: tb} }
	parent := postEntry{kind: "ANALYZE", name: "parent", reads: []*streamTable{a, b}}
	for _, tt := range []struct {
		name     string
		inFlight []postEntry
		queued   []postEntry
		want     int
	}{
		{"nothing in flight", nil, []postEntry{fk(b, a), index(a)}, 0},
		{"index builds share their table", []postEntry{index(a)}, []postEntry{index(a)}, 0},
		{"a check on a chain waits for the check beside it", []postEntry{fk(b, a)}, []postEntry{fk(c, b), analyzeEntry(a), index(c)}, 2},
		{"ANALYZE waits for the index builds on its table", []postEntry{index(a)}, []postEntry{analyzeEntry(a), fk(c, b)}, 1},
		{"a check waits for the builds on either table", []postEntry{index(b)}, []postEntry{fk(c, b), fk(a, b)}, -1},
		{"a self-reference", []postEntry{fk(a, a)}, []postEntry{index(a), index(b)}, 1},
		{"a partitioned table's ANALYZE lets index builds, checks and ANALYZE run on its partitions", []postEntry{parent}, []postEntry{index(a), fk(b, a), analyzeEntry(b)}, 0},
		{"but not a constraint made of its index", []postEntry{parent}, []postEntry{attach(a), attach(b), index(c)}, 2},
		{"nor does it start beside one", []postEntry{attach(b)}, []postEntry{parent, index(a)}, 1},
		{"a constraint made of its index waits for the builds on its table", []postEntry{index(a)}, []postEntry{attach(a), attach(b)}, 1},
	} {
		s := &streamer{builds: tt.queued}
		for i := range tt.inFlight {
			s.lock(&tt.inFlight[i], 1)
		}
		if got := s.runnable(); got != tt.want {
			t.Errorf("%s: runnable() = %d, want %d", tt.name, got, tt.want)
		}
		for i := range tt.inFlight {
			s.lock(&tt.inFlight[i], -1)
		}
		if got := s.runnable(); len(tt.queued) > 0 && got != 0 {
			t.Errorf("%s: with nothing in flight runnable() = %d, want 0", tt.name, got)
		}
	}
}

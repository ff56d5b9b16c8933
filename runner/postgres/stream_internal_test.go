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

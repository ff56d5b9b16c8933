package postgres

import (
	"fmt"
	"testing"

	"github.com/stagebot/stagebot/runner/mask"
)

// TestProofShares: the proof's rows are shared out by size within its
// budget, every masked table gets its minimum, none more than its cap,
// and tables with nothing masked get none.
func TestProofShares(t *testing.T) {
	masked := func(name string, tuples int64) *streamTable {
		return &streamTable{name: name, tuples: tuples, mask: &tableMask{plan: &mask.TablePlan{Funcs: []mask.Func{{Kind: mask.Keep}, {Kind: mask.Email}}}}}
	}
	kept := &streamTable{name: "kept", tuples: 1e6, mask: &tableMask{plan: &mask.TablePlan{Funcs: []mask.Func{{Kind: mask.Keep}}}}}
	// 48 partitions of 42,000 rows: the budget, not 48 times the cap.
	var parts []*streamTable
	for i := range 48 {
		parts = append(parts, masked(fmt.Sprintf("p%d", i), 42000))
	}
	shares := proofShares(append(parts, kept))
	total := 0
	for _, n := range shares {
		total += n
	}
	if total > proofBudget || shares["p0"] < proofMinRows || shares["kept"] != 0 {
		t.Errorf("48 partitions: %d rows in all, %d for one, %d for a kept table", total, shares["p0"], shares["kept"])
	}
	// 2,000 small tables: an even share of the budget, not 2,000 times
	// the minimum.
	var many []*streamTable
	for i := range 2000 {
		many = append(many, masked(fmt.Sprintf("t%d", i), 5000))
	}
	shares = proofShares(many)
	total = 0
	for _, n := range shares {
		total += n
	}
	if total > 2000*proofLeastRows || shares["t0"] != proofLeastRows {
		t.Errorf("2,000 tables: %d rows in all, %d for one", total, shares["t0"])
	}
	// One big and one small table: the big one is capped, the small one
	// gets its minimum, a never-analyzed one (-1) too.
	shares = proofShares([]*streamTable{masked("big", 5e6), masked("small", 10), masked("new", -1)})
	if shares["big"] != proofRows || shares["small"] != proofMinRows || shares["new"] != proofMinRows {
		t.Errorf("shares = %v", shares)
	}
}

package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/stagebot/stagebot/runner/postgres"
)

// checkConnect connects to each target's production database (read-only)
// and staging's server, and says what would stop its next refresh before
// anything is copied: a server that does not answer, roles staging's
// server lacks, and for a masked target the columns no rule covers, rules
// that cover nothing, and kept columns whose values look personal (the
// proof would fail the refresh).
func checkConnect(ctx context.Context, w io.Writer, cfg *Config) error {
	var stopped []string
	for _, name := range slices.Sorted(maps.Keys(cfg.Targets)) {
		d := cfg.Targets[name].Database
		if d == nil || d.Production == "" {
			continue
		}
		pg := lookTarget(cfg, name)
		fmt.Fprintf(w, "\n%s, connected (production read-only):\n", name)
		if problems := connectTarget(ctx, w, pg); len(problems) > 0 {
			for _, p := range problems {
				fmt.Fprintf(w, "  ✗ %s\n", p)
			}
			stopped = append(stopped, name)
		}
	}
	if len(stopped) > 0 {
		return fmt.Errorf("the next refresh of %s would stop before copying anything: see above", strings.Join(stopped, ", "))
	}
	return nil
}

// connectTarget prints what went well for one target and returns what
// would stop its refresh.
func connectTarget(ctx context.Context, w io.Writer, pg *postgres.Target) []string {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	missing, err := pg.MissingRoles(ctx)
	if err != nil {
		return []string{fmt.Sprintf("cannot look at production and staging's server: %v", err)}
	}
	if len(missing) > 0 {
		return []string{fmt.Sprintf("staging's server lacks roles production's objects need: %s (create them, or set no_owner / no_acl)", strings.Join(missing, ", "))}
	}
	fmt.Fprintln(w, "  ✓ production and staging's server answer; staging's server has every role production's objects need")
	if pg.Masking == nil {
		return nil
	}
	r, err := pg.MaskReport(ctx)
	if err != nil {
		return []string{fmt.Sprintf("masking: cannot read production's columns: %v", err)}
	}
	var problems []string
	for _, p := range r.Problems {
		problems = append(problems, "masking: "+p.String())
	}
	for _, f := range r.Findings {
		problems = append(problems, fmt.Sprintf("masking: kept, but looks personal: %s (the proof would fail the refresh: mask it, or write keep: reviewed)", f))
	}
	if len(problems) == 0 {
		fmt.Fprintf(w, "  ✓ masking: every column of production is classified: %d masked, %d kept, %s truncated\n", r.Masked, r.Kept, count(len(r.Truncated), "table"))
	}
	return problems
}

package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/stagebot/stagebot/runner/mask"
	"github.com/stagebot/stagebot/runner/postgres"
)

// maskRules prints how production's columns fare under a target's
// masking (read-only), and a masking section to start from: the target's
// rules as they are, and a rule for each column that has none.
func maskRules(ctx context.Context, w io.Writer, cfg *Config, name string) error {
	tc := cfg.Targets[name]
	switch {
	case name == "":
		return fmt.Errorf("name the target to look at (stagebot mask-rules -c FILE TARGET): %s", strings.Join(slices.Sorted(maps.Keys(cfg.Targets)), ", "))
	case tc == nil:
		return fmt.Errorf("no target %q in the config (targets: %s)", name, strings.Join(slices.Sorted(maps.Keys(cfg.Targets)), ", "))
	case tc.Database == nil || tc.Database.Production == "":
		return fmt.Errorf("target %s has no production database to look at", name)
	}
	pg := lookTarget(cfg, name)
	keyEnv := "STAGEBOT_MASK_KEY_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
	var existing map[string]MaskSpec
	if m := tc.Database.Masking; m != nil {
		existing = m.Rules
		if m.KeyEnv != "" {
			keyEnv = m.KeyEnv
		}
	}
	r, err := pg.MaskReport(ctx)
	if err != nil {
		return err
	}
	writeMaskReport(w, name, r)
	fmt.Fprintf(w, "masking:\n  key_env: %s  # a key of 16 characters or more (openssl rand -hex 32), the same every refresh\n  rules:\n", keyEnv)
	for _, pattern := range slices.Sorted(maps.Keys(existing)) {
		fmt.Fprintf(w, "    %q: %s\n", pattern, yamlSpec(string(existing[pattern])))
	}
	for _, p := range r.Proposals {
		fmt.Fprintf(w, "    %s\n", p.YAML())
	}
	return nil
}

// lookTarget is target name's databases for a look that changes nothing
// (mask-rules, check --connect): no registry, no lease, no store.
func lookTarget(cfg *Config, name string) *postgres.Target {
	d := cfg.Targets[name].Database
	pg := &postgres.Target{Name: name, ProductionDSN: d.Production, StagingDSN: d.Staging, NoOwner: d.NoOwner, NoACL: d.NoACL, BinDir: cfg.PGBinDir}
	if d.Masking != nil {
		pg.Masking = d.Masking.parsed
	}
	return pg
}

// writeMaskReport is the report's summary, as YAML comments.
func writeMaskReport(w io.Writer, name string, r mask.Report) {
	fmt.Fprintf(w, "# Masking of %s: production has %s in %s.\n", name, count(r.Columns, "column"), count(r.Tables, "table"))
	fmt.Fprintf(w, "# By the rules: %d masked, %d kept, %s truncated; %d without a rule.\n", r.Masked, r.Kept, count(len(r.Truncated), "table"), len(r.Proposals))
	for _, p := range r.Problems {
		if !strings.HasPrefix(p.What, "no rule covers") {
			fmt.Fprintf(w, "# Problem: %s\n", p)
		}
	}
	for _, f := range r.Findings {
		fmt.Fprintf(w, "# Kept, but looks personal: %s\n", f)
	}
	if len(r.Proposals) > 0 {
		fmt.Fprintln(w, "# Rules proposed below for the columns without one (from their names and a sample of their values): check each.")
	}
}

// yamlSpec quotes a function for YAML when it needs it.
func yamlSpec(s string) string {
	if s == "" {
		return string(mask.Null) // YAML's null, as the config read it
	}
	if strings.Contains(s, ": ") {
		return "'" + strings.ReplaceAll(s, "'", "''") + "'"
	}
	return s
}

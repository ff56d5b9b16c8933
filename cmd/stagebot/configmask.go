package main

import (
	"fmt"
	"maps"
	"os"
	"path"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/stagebot/stagebot/runner/mask"
	"github.com/stagebot/stagebot/runner/postgres"
)

// MaskingConfig masks production's rows on their way into staging: every
// column of production gets a rule (or the default), and the keyed
// functions use the key in the environment variable key_env.
type MaskingConfig struct {
	// KeyEnv names the environment variable holding the key of the keyed
	// functions (hash, email, name, phone, uuid): 16 characters or more,
	// the same every refresh so joins and unique keys survive; a new key
	// changes every keyed value. Its value is redacted like every secret.
	KeyEnv string `yaml:"key_env"`
	// Default is the function for the columns no rule covers, such as keep.
	// None: such a column stops the refresh before anything is copied,
	// naming the rule to add.
	Default MaskSpec `yaml:"default"`
	// Rules map schema.table.column patterns (* matches any run of
	// characters) to a masking function: keep (or 'keep: reviewed' for a
	// column whose values look personal, kept on purpose), null, 'fixed:
	// VALUE', hash, email, name, phone, uuid, 'text: keep_length', 'date:
	// shift N' (days), 'number: noise P%' or 'sql: EXPR'; and schema.table
	// to truncate. The most specific pattern wins.
	Rules map[string]MaskSpec `yaml:"rules"`

	parsed *postgres.Masking // once validated
}

// MaskSpec is a masking function as a rule writes it: "email",
// 'fixed: VALUE' (quoted, for YAML), or a map of one entry {fixed: VALUE}.
type MaskSpec string

// UnmarshalYAML reads a string, or a map of one function to its argument.
func (m *MaskSpec) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.MappingNode && len(n.Content) == 2 {
		*m = MaskSpec(n.Content[0].Value + ": " + n.Content[1].Value)
		return nil
	}
	if n.Kind != yaml.ScalarNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d column %d: a masking rule is a function, as in email, 'fixed: VALUE' or {date: shift 30}", n.Line, n.Column)}}
	}
	*m = MaskSpec(n.Value)
	return nil
}

// validateMasking parses a target's masking rules, reads its key from the
// environment and refuses refresh sources that would not mask.
func (c *Config) validateMasking(f string, t *TargetConfig, v *validation) {
	m := t.Database.Masking
	c.checkMaskedSources(f, t, v)
	f += ".database.masking"
	out := &postgres.Masking{}
	keyed := false
	for _, pattern := range slices.Sorted(maps.Keys(m.Rules)) {
		spec := string(m.Rules[pattern])
		if spec == "" {
			// YAML's null (col: null, or col: with nothing) never reaches
			// UnmarshalYAML: it is the null function.
			spec = string(mask.Null)
		}
		fn, err := mask.Parse(spec)
		if err != nil {
			v.bad(fmt.Sprintf("%s.rules[%q]", f, pattern), "%v", err)
			continue
		}
		switch parts := strings.Split(pattern, "."); {
		case len(parts) == 2 && fn.Kind != mask.Truncate, len(parts) != 2 && len(parts) != 3, slices.Contains(parts, ""):
			v.bad(fmt.Sprintf("%s.rules[%q]", f, pattern), "write schema.table.column (each part may have * and ?), or schema.table: truncate")
			continue
		case slices.ContainsFunc(parts, badGlob):
			// It would match nothing, and the gate would call it unused.
			v.bad(fmt.Sprintf("%s.rules[%q]", f, pattern), "not a pattern: close its [ ] (a part may have *, ? and [abc])")
			continue
		}
		keyed = keyed || fn.Keyed()
		out.Rules = append(out.Rules, mask.Rule{Pattern: pattern, Func: fn})
	}
	if m.Default != "" {
		fn, err := mask.Parse(string(m.Default))
		if err != nil || fn.Kind == mask.Truncate || fn.Kind == mask.SQL {
			v.bad(f+".default", "give a function for the columns no rule covers, such as keep or null (%v)", err)
		} else {
			keyed = keyed || fn.Keyed()
			out.Default = &fn
		}
	}
	if len(m.Rules) == 0 && m.Default == "" {
		v.bad(f+".rules", "no rules: give each column of production a function (stagebot mask-rules prints a start)")
	}
	out.KeyEnv = m.KeyEnv
	switch key := os.Getenv(m.KeyEnv); {
	case !keyed:
	case m.KeyEnv == "":
		v.bad(f+".key_env", "the keyed functions (hash, email, name, phone, uuid, text, date, number) need a key: name the environment variable that holds it")
	case key == "":
		// Not set here (stagebot check on a laptop): the refresh refuses
		// to start until it is, and check says so.
	case len(key) < 16:
		v.bad(f+".key_env", "$%s holds %d characters: give a key of 16 or more (openssl rand -hex 32), the same every refresh", m.KeyEnv, len(key))
	default:
		out.Key = []byte(key)
	}
	m.parsed = out
}

func badGlob(part string) bool {
	_, err := path.Match(part, "")
	return err != nil
}

// checkMaskedSources: backups and method: dump are masked by stagebot,
// which cannot compute sql: rules (production's server does, for the
// streaming method).
func (c *Config) checkMaskedSources(f string, t *TargetConfig, v *validation) {
	var computed []string
	for _, pattern := range slices.Sorted(maps.Keys(t.Database.Masking.Rules)) {
		if strings.HasPrefix(strings.TrimSpace(string(t.Database.Masking.Rules[pattern])), "sql:") {
			computed = append(computed, pattern)
		}
	}
	if strings.HasPrefix(strings.TrimSpace(string(t.Database.Masking.Default)), "sql:") {
		computed = append(computed, "the default")
	}
	if len(computed) == 0 {
		return
	}
	for _, pn := range slices.Sorted(maps.Keys(t.Pipelines)) {
		p := t.Pipelines[pn]
		if p == nil {
			continue
		}
		for i, s := range p.Steps {
			if s.kind() != "pg_refresh" {
				continue
			}
			if r := s.refresh; r.Method == postgres.MethodDump || r.FromFile != "" || r.FromDir != "" {
				v.bad(fmt.Sprintf("%s.pipelines.%s.steps[%d].pg_refresh", f, pn, i),
					"the target is masked with sql: rules (%s), which production's server computes as the streaming method reads it; a backup or method: dump is masked by stagebot, which cannot: give them another function, or copy with the streaming method", strings.Join(computed, ", "))
			}
		}
	}
}

// maskingSummary says in a few words how a target is masked, for its
// cards: "by 14 rules" or "by 3 rules and a default (keep)".
func maskingSummary(m *MaskingConfig) string {
	s := "by " + count(len(m.Rules), "rule")
	if m.Default != "" {
		s += " and a default (" + string(m.Default) + ")"
	}
	return s
}

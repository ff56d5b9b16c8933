package main

import (
	"strings"
	"testing"
	"time"
)

const maskedTarget = `
targets:
  fas:
    database:
      production: postgres://ro@prod:5432/fas
      staging: postgres://rw@stg:5432/fas
      masking:
        key_env: FAS_MASK_KEY
        rules:
          public.people.email: email
          public.people.password: 'fixed: x'
          public.people.born: {date: shift 30}
          public.people.*: keep
          public.log: truncate
    pipelines:
      default:
        steps:
          - pg_refresh: {}
`

// TestConfig_Masking: rules are parsed into the runner's, in either way
// of writing a function; the key comes from the environment and is
// redacted like every secret.
func TestConfig_Masking(t *testing.T) {
	t.Setenv("FAS_MASK_KEY", "a-key-of-enough-length-0123456789")
	cfg, err := ParseConfig([]byte(maskedTarget), "c.yaml")
	if err != nil {
		t.Fatal(err)
	}
	opts := cfg.botOptions(deps{})
	steps := opts.Targets[0].Pipelines["default"].Steps
	m := cfg.Targets["fas"].Database.Masking.parsed
	if m == nil || string(m.Key) != "a-key-of-enough-length-0123456789" || len(m.Rules) != 5 {
		t.Fatalf("masking = %+v", m)
	}
	got := map[string]string{}
	for _, r := range m.Rules {
		got[r.Pattern] = r.Func.String()
	}
	for pattern, want := range map[string]string{"public.people.email": "email", "public.people.password": "fixed: x", "public.people.born": "date: shift 30", "public.log": "truncate"} {
		if got[pattern] != want {
			t.Errorf("rule %s = %q, want %q", pattern, got[pattern], want)
		}
	}
	if len(steps) == 0 {
		t.Fatal("no steps")
	}
	if r := opts.Redact("the key is a-key-of-enough-length-0123456789"); strings.Contains(r, "0123456789") {
		t.Errorf("the key is not redacted: %q", r)
	}
}

// TestConfig_MaskingErrors: each mistake is named by its field, with what
// to do.
func TestConfig_MaskingErrors(t *testing.T) {
	for _, tt := range []struct {
		env, from, to, want string
	}{
		{"a-key-of-enough-length", "public.people.email: email", "public.people.email: emial", `masking.rules["public.people.email"]: unknown masking function "emial": use one of keep`},
		{"a-key-of-enough-length", "public.log: truncate", "public.log: keep", `masking.rules["public.log"]: write schema.table.column`},
		{"a-key-of-enough-length", "public.people.*: keep", "people: keep", `masking.rules["people"]: write schema.table.column`},
		{"a-key-of-enough-length", "public.people.*: keep", "public.people.[a-z: keep", `masking.rules["public.people.[a-z"]: not a pattern: close its [ ]`},
		{"short", "", "", "masking.key_env: $FAS_MASK_KEY holds 5 characters: give a key of 16 or more"},
		{"", "key_env: FAS_MASK_KEY", "key_env: ''", "masking.key_env: the keyed functions (hash, email"},
	} {
		t.Setenv("FAS_MASK_KEY", tt.env)
		_, err := ParseConfig([]byte(strings.Replace(maskedTarget, tt.from, tt.to, 1)), "c.yaml")
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s → %s: error = %v\nwant %q", tt.from, tt.to, err, tt.want)
		}
	}
}

// TestConfig_MaskingKeyNotSetHere: a key missing from this environment
// (check on a laptop) is no config error; check says so, and a refresh
// would refuse to start. YAML's null is the null function.
func TestConfig_MaskingKeyNotSetHere(t *testing.T) {
	t.Setenv("FAS_MASK_KEY", "")
	cfg, err := ParseConfig([]byte(strings.Replace(maskedTarget, "public.people.password: 'fixed: x'", "public.people.password: null", 1)), "c.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m := cfg.Targets["fas"].Database.Masking.parsed
	if !m.NeedsKey() {
		t.Error("a masking without its key does not say it needs one")
	}
	for _, r := range m.Rules {
		if r.Pattern == "public.people.password" && r.Func.String() != "null" {
			t.Errorf("password: null parsed as %v", r.Func)
		}
	}
	var out strings.Builder
	if err := check(&out, cfg, time.Now()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "⚠ $FAS_MASK_KEY (the masking key) is not set here: a refresh of fas refuses to start until it is") {
		t.Errorf("check does not warn of the missing key:\n%s", out.String())
	}
}

// TestConfig_MaskedBackupsAndDumps: a masked target may refresh from a
// backup or with method: dump (stagebot masks the rows on their way in),
// but not with sql: rules, which only production's server computes.
func TestConfig_MaskedBackupsAndDumps(t *testing.T) {
	t.Setenv("FAS_MASK_KEY", "a-key-of-enough-length")
	for _, source := range []string{"{method: dump}", "{from_dir: /backups}", "{from_file: /backups/fas.dump}"} {
		cfg := strings.Replace(maskedTarget, "- pg_refresh: {}", "- pg_refresh: "+source, 1)
		if _, err := ParseConfig([]byte(cfg), "c.yaml"); err != nil {
			t.Errorf("a masked target refreshing from %s: %v", source, err)
		}
		withSQL := strings.Replace(cfg, "public.people.email: email", "public.people.email: 'sql: lower(email)'", 1)
		if _, err := ParseConfig([]byte(withSQL), "c.yaml"); err == nil || !strings.Contains(err.Error(), `targets.fas.pipelines.default.steps[0].pg_refresh: the target is masked with sql: rules (public.people.email), which production's server computes`) {
			t.Errorf("sql: rules with %s: %v", source, err)
		}
	}
}

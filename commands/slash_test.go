package commands

import (
	"strings"
	"testing"
)

// Every verb becomes a subcommand a platform accepts (Discord: at most 25
// subcommands, names of 1–32 lower-case characters, descriptions of 1–100),
// and a subcommand's options give back the command as typed.
func TestSlash_EveryVerbIsASubcommand(t *testing.T) {
	specs := Table()
	if len(specs) > 25 {
		t.Fatalf("%d verbs: Discord takes at most 25 subcommands of /stage", len(specs))
	}
	for _, s := range specs {
		if len(s.Name) > 32 || strings.ToLower(s.Name) != s.Name || s.Summary == "" || len([]rune(s.Summary)) > 100 {
			t.Errorf("%s: not a valid subcommand (summary %q)", s.Name, s.Summary)
		}
		seen := map[string]bool{}
		for _, o := range s.Slash() {
			if seen[o.Name] || o.Description == "" || len([]rune(o.Description)) > 100 {
				t.Errorf("%s: option %+v", s.Name, o)
			}
			seen[o.Name] = true
		}
	}
	for _, tt := range []struct {
		verb   string
		values map[string]string
		want   string
	}{
		{"resync", map[string]string{"target": "fas2", "pipeline": "full", "rest": "in 10m"}, "!stage resync fas2 full in 10m"},
		{"hold", map[string]string{"target": "all", "rest": "2h testing the login"}, "!stage hold all 2h testing the login"},
		{"approve", map[string]string{"run": "42"}, "!stage approve 42"},
		{"status", nil, "!stage status"},
		{"defer", map[string]string{"run": "7", "rest": "until 18:00"}, "!stage defer 7 until 18:00"},
	} {
		if got := Lookup(tt.verb).SlashText("!stage", tt.values); got != tt.want {
			t.Errorf("%s %v = %q, want %q", tt.verb, tt.values, got, tt.want)
		}
	}
	if o := Lookup("hold").Slash(); len(o) != 2 || o[0].Kind != "target" || !o[0].Required || o[1].Name != "rest" {
		t.Errorf("hold's options: %+v", o)
	}
	if o := Lookup("approve").Slash(); len(o) != 1 || o[0].Kind != "run" || !o[0].Required {
		t.Errorf("approve's options: %+v", o)
	}
}

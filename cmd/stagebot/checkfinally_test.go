package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCheck_WarnsOfAHostAStopStepLeavesStopped: a finally step that
// starts again on fewer hosts than a step stopped on (the slip a copied
// example made) is named by check, host by host; one that covers every
// host, or restarts instead, is not.
func TestCheck_WarnsOfAHostAStopStepLeavesStopped(t *testing.T) {
	const pipeline = `
targets:
  app:
    pipelines:
      default:
        steps:
          - name: stop httpd
            exec: [ssh, "{host}", sudo, systemctl, stop, httpd]
            hosts: [app01.stg, app02.stg]
          - exec: "systemctl  stop worker"
          - exec: [echo, refresh]
        finally:
%s
`
	for _, tt := range []struct {
		name, finally string
		warn          []string // in the output
		quiet         []string // not in it
	}{
		{"one host forgotten", `          - exec: [ssh, "{host}", sudo, systemctl, start, httpd]
            hosts: [app01.stg]
          - exec: systemctl start worker`,
			[]string{"targets.app.pipelines.default.steps[0] (stop httpd) stops something on app02.stg that no finally step starts again", `"ssh {host} sudo systemctl start httpd"`},
			[]string{"app01.stg that", "steps[1]"}},
		{"a local stop never undone", `          - exec: [ssh, "{host}", sudo, systemctl, restart, httpd]
            hosts: [app01.stg, app02.stg]`,
			[]string{"steps[1] (systemctl  stop worker) stops something where the bot runs"},
			[]string{"steps[0]"}},
		{"every host started again", `          - exec: [ssh, "{host}", sudo, systemctl, start, httpd]
            hosts: [app02.stg, app01.stg]
          - exec: systemctl start worker`,
			nil, []string{"⚠"}},
	} {
		cfg, err := ParseConfig([]byte(strings.Replace(pipeline, "%s", tt.finally, 1)), "c.yaml")
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		var out bytes.Buffer
		if err := check(&out, cfg, time.Now()); err != nil {
			t.Fatal(err)
		}
		for _, w := range tt.warn {
			if !strings.Contains(out.String(), w) {
				t.Errorf("%s: check does not say %q:\n%s", tt.name, w, out.String())
			}
		}
		for _, q := range tt.quiet {
			if strings.Contains(out.String(), q) {
				t.Errorf("%s: check says %q:\n%s", tt.name, q, out.String())
			}
		}
	}
}

// TestExamples_LeaveNothingStopped: no example config stops something a
// finally step does not start again.
func TestExamples_LeaveNothingStopped(t *testing.T) {
	files, _ := filepath.Glob("../../examples/*.yaml")
	files = append(files, "../../config.example.yaml")
	t.Setenv("FAS2_MASK_KEY", "a key of sixteen characters or more")
	n := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(data), "targets:") {
			continue // not a stagebot config (alert rules, the Slack manifest)
		}
		cfg, err := ParseConfig(data, f)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range unstartedHosts(cfg) {
			t.Errorf("%s: %s", filepath.Base(f), w)
		}
		n++
	}
	if n < 5 {
		t.Errorf("only %d example configs checked", n)
	}
}

package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCLI_HelpFlagsAndArguments: each command's help says what it does,
// lists its own flags only and exits cleanly; stray arguments and
// misspelt commands are refused with what to do.
func TestCLI_HelpFlagsAndArguments(t *testing.T) {
	ctx := context.Background()
	for _, tt := range []struct {
		args      []string
		want, not []string
	}{
		{[]string{"check", "--help"}, []string{"stagebot check -c FILE [--connect]: validate the config", "-c string", "Examples:\n  stagebot check -c config.yaml"}, []string{"-as", "-channel", "-from"}},
		{[]string{"help", "store"}, []string{"stagebot store copy --from FILE|DSN --to DSN|FILE: move the state"}, nil},
		{[]string{"store", "copy", "-h"}, []string{"-from string", "-to string"}, []string{"-as", "-c string"}},
		{[]string{"run", "--help"}, []string{"-as string", "-channel string", "SIGHUP reloads the config"}, []string{"-from"}},
		{[]string{"help", "mask-rules"}, []string{"stagebot mask-rules -c FILE TARGET", "read-only"}, nil},
		{[]string{"help"}, []string{"stagebot store copy --from FILE|DSN --to DSN|FILE", "stagebot help COMMAND"}, nil},
		{[]string{"--version"}, []string{"stagebot dev", "linux/"}, nil},
	} {
		var out, errOut bytes.Buffer
		err := Main(ctx, tt.args, nil, &out, &errOut)
		if err != nil {
			t.Errorf("%v: %v", tt.args, err)
		}
		for _, w := range tt.want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("%v lacks %q:\n%s", tt.args, w, out.String())
			}
		}
		for _, n := range tt.not {
			if strings.Contains(out.String(), n) {
				t.Errorf("%v lists %q, another command's flag:\n%s", tt.args, n, out.String())
			}
		}
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"check", "-c", "x.yaml", "extra"}, `stagebot check takes no arguments, not "extra": flags go before arguments`},
		{[]string{"mask-rules", "-c", "x.yaml", "a", "b"}, `stagebot mask-rules takes TARGET, not "b"`},
		{[]string{"check", "--as", "bob"}, "stagebot check: flag provided but not defined: -as (stagebot check --help lists its flags)"},
		{[]string{"chek"}, `unknown command "chek" (did you mean "check"?)`},
		{[]string{"store", "move"}, "the only subcommand is copy"},
	} {
		var out, errOut bytes.Buffer
		err := Main(ctx, tt.args, nil, &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: error = %v, want %q", tt.args, err, tt.want)
		} else if exitCode(err) != 2 {
			t.Errorf("%v: a command line stagebot cannot act on exits %d, not 2", tt.args, exitCode(err))
		}
	}
	// A command that ran and failed exits 1.
	var out, errOut bytes.Buffer
	err := Main(ctx, []string{"check", "-c", filepath.Join(t.TempDir(), "missing.yaml")}, nil, &out, &errOut)
	if err == nil || exitCode(err) != 1 {
		t.Errorf("check of a missing config: %v, exit %d, want 1", err, exitCode(err))
	}
}

// TestCLI_ConfigFromTheEnvironment: with no -c, $STAGEBOT_CONFIG names it.
func TestCLI_ConfigFromTheEnvironment(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(path, []byte("targets:\n  web:\n    pipelines:\n      default:\n        steps:\n          - exec: 'true'\n"), 0o600)
	t.Setenv("STAGEBOT_CONFIG", path)
	var out, errOut bytes.Buffer
	if err := Main(context.Background(), []string{"check"}, nil, &out, &errOut); err != nil || !strings.Contains(out.String(), "Config is valid: 1 target") {
		t.Errorf("check with $STAGEBOT_CONFIG: %v\n%s", err, out.String())
	}
}

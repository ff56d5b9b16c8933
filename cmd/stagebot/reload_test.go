package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestRun_ReloadsOnSIGHUP changes the config of a running bot: a valid
// change is applied without losing holds or the chat connection and said
// in the channel; a broken one is refused, saying why, and the old config
// stays.
func TestRun_ReloadsOnSIGHUP(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	write := func(extra string) {
		t.Helper()
		if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`
store: {path: %q}
access: {control_channels: [infra], everyone: [stage]}
targets:
  app:
    pipelines: {default: {steps: [{exec: "true"}]}}
%s`, filepath.Join(dir, "s.db"), extra)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("")
	bot := startBot(t, cfg)
	bot.say(t, "!stage hold app 1h testing the login")
	waitUntil(t, "the hold", func() bool { return strings.Contains(bot.out.String(), "alice holds app until") })

	write("  web2:\n    description: the second site\n    notice: 5m\n    pipelines: {default: {steps: [{exec: \"true\"}]}}\n")
	bot.cmd.Process.Signal(syscall.SIGHUP)
	waitUntil(t, "the reload to be announced", func() bool { return strings.Contains(bot.out.String(), "🔄 Config reloaded.") })
	bot.say(t, "!stage status")
	bot.say(t, "!stage holds")
	waitUntil(t, "the new target in status", func() bool { return strings.Contains(bot.out.String(), "*web2* — the second site") })

	write("  web2:\n    notice: soon\n    pipelines: {default: {steps: [{exec: \"true\"}]}}\n")
	bot.cmd.Process.Signal(syscall.SIGHUP)
	waitUntil(t, "the refusal", func() bool {
		return strings.Contains(bot.out.String(), "I could not reload my config, so I keep the one I have")
	})
	bot.say(t, "!stage resync web2 --dry-run")
	out := bot.finish(t)
	for _, want := range []string{
		"added target web2",
		"app held by alice", // the hold survived the reload
		`targets.web2.notice (line 8): "soon" is not a duration`,
		"Dry run of web2/default",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(out)
	}
}

package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stagebot/stagebot/internal/patience"
)

// TestRun_TellsSystemd runs the real binary as systemd would (Type=notify,
// WatchdogSec): it says READY=1 once its loop turns, pings the watchdog,
// and says STOPPING=1 on SIGTERM.
func TestRun_TellsSystemd(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	got := make(chan string, 32)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			got <- string(buf[:n])
		}
	}()
	cfg := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("store: {path: %q}\naccess: {everyone: [stage]}\ntargets:\n  app:\n    pipelines: {default: {steps: [{exec: \"true\"}]}}\n", filepath.Join(dir, "s.db"))), 0o600)
	bot := startBot(t, cfg, "NOTIFY_SOCKET="+sock, "WATCHDOG_USEC=200000")
	want := func(prefix string) {
		t.Helper()
		deadline := patience.After(20 * time.Second)
		for {
			select {
			case m := <-got:
				if strings.HasPrefix(m, prefix) {
					return
				}
			case <-deadline:
				t.Fatalf("systemd never heard %q:\n%s", prefix, bot.out.String())
			}
		}
	}
	want("READY=1")
	want("WATCHDOG=1")
	bot.cmd.Process.Signal(syscall.SIGTERM)
	want("STOPPING=1")
	bot.waitExit(t, 20*time.Second)
}

// TestSystemdUnit: the example unit runs the bot the way it expects:
// notify with a watchdog, the config checked first, time to stop cleanly.
// systemd-analyze checks its syntax where it is installed.
func TestSystemdUnit(t *testing.T) {
	unit, err := os.ReadFile("../../examples/systemd/stagebot.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Type=notify", "ExecStartPre=/usr/local/bin/stagebot check -c ", "ExecStart=/usr/local/bin/stagebot run -c ", "WatchdogSec=", "ExecReload=/bin/kill -HUP $MAINPID", "TimeoutStopSec=", "StateDirectory=stagebot", "Restart=on-failure"} {
		if !strings.Contains(string(unit), "\n"+want) {
			t.Errorf("the unit lacks %q", want)
		}
	}
	if _, err := exec.LookPath("systemd-analyze"); err == nil {
		path := filepath.Join(t.TempDir(), "stagebot.service")
		os.WriteFile(path, []byte(strings.ReplaceAll(string(unit), "/usr/local/bin/stagebot", "/bin/true")), 0o644)
		if out, err := exec.Command("systemd-analyze", "verify", path).CombinedOutput(); err != nil || len(out) > 0 {
			t.Errorf("systemd-analyze verify: %v\n%s", err, out)
		}
	}
}

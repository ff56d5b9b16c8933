package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stagebot/stagebot/internal/patience"
	"github.com/stagebot/stagebot/runner"
	"github.com/stagebot/stagebot/store"
	"github.com/stagebot/stagebot/store/bolt"
)

// stopEnv is a bot whose pipeline has a step that runs until it is stopped
// and a finally step that leaves a mark: the shape of "stop httpd … start
// httpd".
type stopEnv struct {
	cfg, dir string
}

func newStopEnv(t *testing.T, grace string) *stopEnv {
	e := &stopEnv{dir: t.TempDir()}
	e.cfg = filepath.Join(e.dir, "c.yaml")
	cfg := fmt.Sprintf(`
store: {path: %q}
defaults: {stop_grace: %s, notice: 1m}
access: {everyone: [stage]}
targets:
  app:
    pipelines:
      default:
        steps:
          - name: long
            exec: "echo $$ > %s/pgid; touch %s/started; exec sleep 300"
        finally:
          - name: start app
            exec: "echo started >> %s/finally"
`, filepath.Join(e.dir, "stagebot.db"), grace, e.dir, e.dir, e.dir)
	if err := os.WriteFile(e.cfg, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *stopEnv) exists(name string) bool {
	_, err := os.Stat(filepath.Join(e.dir, name))
	return err == nil
}

// stepGroup is the process group of the long step.
func (e *stopEnv) stepGroup(t *testing.T) int {
	b, err := os.ReadFile(filepath.Join(e.dir, "pgid"))
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func alive(pgid int) bool { return syscall.Kill(-pgid, 0) == nil }

func (p *botProcess) waitExit(t *testing.T, within time.Duration) string {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case <-done:
	case <-patience.After(within):
		t.Fatalf("the bot did not exit within %s:\n%s", within, p.out.String())
	}
	return p.out.String()
}

func TestStop_GraceThenAbortAndFinally(t *testing.T) {
	e := newStopEnv(t, "1s")
	bot := startBot(t, e.cfg)
	bot.say(t, "!stage resync app now")
	waitUntil(t, "the long step to start", func() bool { return e.exists("started") })
	pgid := e.stepGroup(t)
	bot.cmd.Process.Signal(syscall.SIGTERM)
	out := bot.waitExit(t, 30*time.Second)
	for _, want := range []string{
		`⏳ stagebot is stopping. Run 1 of app is in step "long": it has 1s to finish, then it is aborted and its finally steps run.`,
		"⏹ Run 1 of app was aborted: stagebot was stopping and the run did not finish within 1s",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if !e.exists("finally") {
		t.Error("the finally step did not run")
	}
	if alive(pgid) {
		t.Error("the step's processes outlived the bot")
	}
	if t.Failed() {
		t.Log(out)
	}
}

func TestStop_SecondSignalAbortsAtOnce(t *testing.T) {
	e := newStopEnv(t, "10m")
	bot := startBot(t, e.cfg)
	bot.say(t, "!stage resync app now")
	waitUntil(t, "the long step to start", func() bool { return e.exists("started") })
	bot.cmd.Process.Signal(syscall.SIGTERM)
	waitUntil(t, "the stop to be announced", func() bool { return strings.Contains(bot.out.String(), "stagebot is stopping") })
	start := time.Now()
	bot.cmd.Process.Signal(syscall.SIGTERM)
	out := bot.waitExit(t, 30*time.Second)
	if !strings.Contains(out, "⏹ Run 1 of app was aborted: stagebot was told twice to stop") || !e.exists("finally") {
		t.Fatalf("after a second signal:\n%s", out)
	}
	t.Logf("exited %s after the second signal", time.Since(start).Round(time.Millisecond))
}

// TestStop_KilledBotLeavesNothingRunning: after a SIGKILL the step's
// process group is still there; the next start ends it, runs the finally
// steps and says so.
func TestStop_KilledBotLeavesNothingRunning(t *testing.T) {
	e := newStopEnv(t, "1m")
	bot := startBot(t, e.cfg)
	bot.say(t, "!stage resync app now")
	waitUntil(t, "the long step to start", func() bool { return e.exists("started") })
	pgid := e.stepGroup(t)
	bot.kill(t)
	if !alive(pgid) {
		t.Fatal("the step died with the bot: the test shows nothing")
	}
	bot = startBot(t, e.cfg)
	bot.say(t, "!stage history")
	out := bot.finish(t)
	for _, want := range []string{
		"Run 1 of app was interrupted: stagebot stopped during step long. I repaired what it left: ended the processes its steps had left running (process group " + strconv.Itoa(pgid) + "). Its finally steps run now.",
		"I ran the finally steps of interrupted run 1 of app:",
		"✓ start app",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	waitUntil(t, "the leftover group to end", func() bool { return !alive(pgid) })
	if !e.exists("finally") {
		t.Error("the finally step did not run")
	}
}

// TestStop_LeftoverStartedJustBeforeTheCrashIsFound: a step's process
// started the instant before the bot died, too late to be recorded, is
// still found (by its run's token) and ended by the next start.
func TestStop_LeftoverStartedJustBeforeTheCrashIsFound(t *testing.T) {
	e := newStopEnv(t, "1m")
	s, err := bolt.Open(filepath.Join(e.dir, "stagebot.db"))
	if err != nil {
		t.Fatal(err)
	}
	r := &store.Run{Target: "app", Pipeline: "default", Requester: store.User{ID: "alice", Name: "alice"}, State: store.RunRunning, Channel: "infra",
		CreatedAt: time.Now(), StartAt: time.Now(), StartedAt: time.Now(), Token: "0123456789abcdef01234567",
		Steps: []store.StepResult{{Name: "long", Kind: "exec", State: store.StepRunning}, {Name: "start app", Kind: "exec", Finally: true, State: store.StepPending}}}
	if err := s.CreateRun(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	s.Close()
	cmd := exec.Command("sh", "-c", "sleep 300 & wait")
	cmd.Env = append(os.Environ(), runner.TokenVar+"="+r.Token)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go cmd.Wait()
	pgid := cmd.Process.Pid
	t.Cleanup(func() { syscall.Kill(-pgid, syscall.SIGKILL) })
	bot := startBot(t, e.cfg)
	out := bot.finish(t)
	if want := fmt.Sprintf("ended the processes its steps had left running (process group %d)", pgid); !strings.Contains(out, want) {
		t.Fatalf("output lacks %q:\n%s", want, out)
	}
	waitUntil(t, "the leftover group to end", func() bool { return !alive(pgid) })
}

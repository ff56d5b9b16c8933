package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stagebot/stagebot/bot/bottest"
	"github.com/stagebot/stagebot/bot/discord/discordtest"
	"github.com/stagebot/stagebot/bot/matrix/matrixtest"
	"github.com/stagebot/stagebot/bot/slack/slacktest"
	"github.com/stagebot/stagebot/internal/patience"
)

// syncBuffer is a bytes.Buffer safe for a writer and a reader at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// runFromConfig starts `stagebot run -c FILE` with chat set to the given
// YAML and stops it when the test ends; it returns the log.
func runFromConfig(t *testing.T, chat string, env map[string]string) *syncBuffer {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	dir := t.TempDir()
	cfg := "store:\n  path: " + filepath.Join(dir, "state.db") + "\n" + chat +
		"targets:\n  demo:\n    pipelines:\n      default:\n        steps:\n          - exec: \"true\"\n"
	path := filepath.Join(dir, "stagebot.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	startMain(t, path, logs)
	return logs
}

// startMain starts `stagebot run -c path`, logging to logs, until stop is
// called or the test ends; a run that ends with an error fails the test.
func startMain(t *testing.T, path string, logs *syncBuffer) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Main(ctx, []string{"run", "-c", path}, strings.NewReader(""), logs, logs) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("stagebot run: %v", err)
				}
			case <-patience.After(10 * time.Second):
				t.Error("stagebot run did not stop within 10s of its context ending")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func TestRun_Slack(t *testing.T) {
	fake := slacktest.New(t)
	fake.AddUser("U1", "alice")
	logs := runFromConfig(t, "chat:\n  platform: slack\n  slack:\n    app_token: ${APP}\n    bot_token: ${BOT}\n    api_url: "+fake.URL()+"\n",
		map[string]string{"APP": slacktest.AppToken, "BOT": slacktest.BotToken})
	if err := fake.WaitConnected(10 * time.Second); err != nil {
		t.Fatalf("%v; log:\n%s", err, logs)
	}
	if _, err := fake.Say("U1", "C1", "!stage status"); err != nil {
		t.Fatal(err)
	}
	bottest.Eventually(t, "an answer listing the target", func() bool {
		for _, m := range fake.Messages() {
			if strings.Contains(m.Current().AllText(), "demo") {
				return true
			}
		}
		return false
	})
	for _, secret := range []string{slacktest.AppToken, slacktest.BotToken} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("the log shows a token:\n%s", logs)
		}
	}
}

func TestRun_Discord(t *testing.T) {
	fake := discordtest.New(t)
	logs := runFromConfig(t, "chat:\n  platform: discord\n  discord:\n    token: ${DISCORD_TOKEN}\n    channels: [500]\n    api_url: "+fake.URL()+"\n",
		map[string]string{"DISCORD_TOKEN": strings.TrimPrefix(discordtest.Token, "Bot ")})
	if err := fake.WaitConnected(10 * time.Second); err != nil {
		t.Fatalf("%v; log:\n%s", err, logs)
	}
	if err := fake.Say("U1", "alice", "500", "!stage status"); err != nil {
		t.Fatal(err)
	}
	bottest.Eventually(t, "an answer listing the target", func() bool {
		for _, m := range fake.Messages() {
			if strings.Contains(m.Current().Content, "demo") {
				return true
			}
		}
		return false
	})
	if strings.Contains(logs.String(), "test-token") {
		t.Errorf("the log shows the token:\n%s", logs)
	}
}

// TestRun_Matrix: `stagebot run` with platform matrix against the fake
// homeserver, as a team would meet it: a typed command, a mention, a
// reaction refused to a stranger and taken from an approver, the card
// edited in place and replies in its thread, a rate-limited send, and a
// restart that answers what was typed while it was down, once.
func TestRun_Matrix(t *testing.T) {
	fake := matrixtest.New(t)
	const (
		alice   = "@alice:test.local"
		bob     = "@bob:test.local"
		mallory = "@mallory:test.local"
	)
	room := fake.CreateRoom("infra", alice, bob, mallory)
	t.Setenv("MATRIX_TOKEN", matrixtest.Token)
	dir := t.TempDir()
	cfg := "store:\n  path: " + filepath.Join(dir, "state.db") + "\n" +
		"chat:\n  platform: matrix\n  matrix:\n    homeserver: " + fake.URL() + "\n    access_token: ${MATRIX_TOKEN}\n    rooms: ['#infra:test.local']\n" +
		"access:\n  control_channels: ['" + room + "']\n  users:\n    '" + alice + "': [stage]\n    '" + bob + "': [stage.approve]\n" +
		"targets:\n  demo:\n    approvals:\n      manual:\n        count: 1\n    pipelines:\n      default:\n        steps:\n          - exec: \"true\"\n"
	path := filepath.Join(dir, "stagebot.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	start := func() (stop func()) {
		n := len(fake.Syncs())
		stop = startMain(t, path, logs)
		defer func() {
			if t.Failed() {
				t.Log(logs.String())
			}
		}()
		bottest.Eventually(t, "stagebot long-polling /sync", func() bool {
			s := fake.Syncs()
			return len(s) > n && s[len(s)-1] != ""
		})
		return stop
	}
	find := func(want string) matrixtest.Message {
		t.Helper()
		var found matrixtest.Message
		bottest.Eventually(t, "a message containing "+want, func() bool {
			for _, m := range fake.Messages(room) {
				if strings.Contains(m.Text(), want) {
					found = m
					return true
				}
			}
			return false
		})
		return found
	}
	count := func(want string) int {
		n := 0
		for _, m := range fake.Messages(room) {
			n += strings.Count(m.Text(), want)
		}
		return n
	}
	stop := start()
	fake.Say(alice, room, "!stage status")
	find("demo")
	fake.Mention(alice, room, "holds")
	find("No holds.")
	fake.Say(alice, room, "!stage resync demo in 1h")
	card := find("Run 1: refresh of demo")
	fake.React(mallory, room, card.ID, "✅")
	if refusal := find("mallory"); refusal.Thread() != card.ID {
		t.Errorf("the refusal is not in the card's thread")
	}
	fake.RateLimit(1, 300*time.Millisecond, true)
	fake.React(bob, room, card.ID, "✅")
	find("bob approved run 1 of demo (1 of 1)")
	if card = find("1 of 1 (bob)"); len(card.Edits) == 0 {
		t.Fatal("the card was not edited in place")
	}
	if fake.RateLimited() == 0 {
		t.Error("the rate limit was not met")
	}
	// The homeserver goes away and comes back: what was typed meanwhile
	// is answered.
	fake.SetDown(true)
	fake.Say(alice, room, "!stage history")
	dropped := fake.Dropped()
	waitUntil(t, "the bot to find the homeserver down", func() bool { return fake.Dropped() > dropped })
	fake.SetDown(false)
	find("#1 demo/default")
	stop()
	// Typed while the bot is down: answered once it is back, and what it
	// answered before is not answered again.
	fake.Say(alice, room, "!stage hold demo 2h typed while the bot was down")
	start()
	find("alice holds demo until")
	fake.Say(alice, room, "!stage status zz-barrier")
	find("zz-barrier") // everything typed before it was handled and answered
	for _, want := range []string{"bob approved run 1", "No holds.", "alice holds demo until", "#1 demo/default"} {
		if n := count(want); n != 1 {
			t.Errorf("%q said %d times, want once", want, n)
		}
	}
	if strings.Contains(logs.String(), matrixtest.Token) {
		t.Errorf("the log shows the access token:\n%s", logs)
	}
}

func TestCheck_MatrixSaysAnEncryptedRoom(t *testing.T) {
	fake := matrixtest.New(t)
	room := fake.CreateRoom("infra", matrixtest.BotID)
	t.Setenv("MATRIX_TOKEN", matrixtest.Token)
	dir := t.TempDir()
	path := filepath.Join(dir, "stagebot.yaml")
	cfg := "chat:\n  platform: matrix\n  matrix:\n    homeserver: " + fake.URL() + "\n    access_token: ${MATRIX_TOKEN}\n" +
		"access:\n  control_channels: ['" + room + "']\n" +
		"targets:\n  demo:\n    pipelines:\n      default:\n        steps:\n          - exec: \"true\"\n"
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := Main(context.Background(), []string{"check", "-c", path}, nil, &out, &out); err != nil || !strings.Contains(out.String(), "Matrix: logged in as "+matrixtest.BotID) {
		t.Fatalf("check of an unencrypted room: %v\n%s", err, out.String())
	}
	fake.Encrypt(room)
	out.Reset()
	err := Main(context.Background(), []string{"check", "-c", path}, nil, &out, &out)
	if err == nil || !strings.Contains(out.String(), "is end-to-end encrypted") || !strings.Contains(err.Error(), "unencrypted control room") {
		t.Fatalf("check of an encrypted room: %v\n%s", err, out.String())
	}
	// A room the bot is invited to but not in, on a homeserver that
	// answers a non-member's state request with another event (Dendrite):
	// unknown, not encrypted.
	other := fake.CreateRoom("other")
	fake.Invite(other, "@alice:test.local", matrixtest.BotID, false, false)
	fake.PagePastTo(true, 0)
	cfg2 := strings.Replace(cfg, "control_channels: ['"+room+"']", "control_channels: ['"+other+"']", 1)
	os.WriteFile(path, []byte(cfg2), 0o600)
	out.Reset()
	err = Main(context.Background(), []string{"check", "-c", path}, nil, &out, &out)
	if strings.Contains(out.String()+fmt.Sprint(err), "is end-to-end encrypted") || !strings.Contains(out.String()+fmt.Sprint(err), "is not in it yet") {
		t.Fatalf("check of a room the bot is invited to: %v\n%s", err, out.String())
	}
	fake.Revoke(matrixtest.Token)
	if err := Main(context.Background(), []string{"check", "-c", path}, nil, &out, &out); err == nil || !strings.Contains(err.Error(), "M_UNKNOWN_TOKEN") || strings.Contains(out.String()+err.Error(), matrixtest.Token) {
		t.Fatalf("check with a revoked token: %v", err)
	}
}

func TestRun_MatrixRevokedTokenStopsTheBot(t *testing.T) {
	fake := matrixtest.New(t)
	room := fake.CreateRoom("infra")
	t.Setenv("MATRIX_TOKEN", matrixtest.Token)
	dir := t.TempDir()
	path := filepath.Join(dir, "stagebot.yaml")
	cfg := "store:\n  path: " + filepath.Join(dir, "state.db") + "\nchat:\n  platform: matrix\n  matrix:\n    homeserver: " + fake.URL() + "\n    access_token: ${MATRIX_TOKEN}\n" +
		"access:\n  control_channels: ['" + room + "']\n" +
		"targets:\n  demo:\n    pipelines:\n      default:\n        steps:\n          - exec: \"true\"\n"
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- Main(context.Background(), []string{"run", "-c", path}, strings.NewReader(""), logs, logs)
	}()
	if err := fake.WaitSyncing(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	fake.Revoke(matrixtest.Token)
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "revoked or has expired") || strings.Contains(err.Error()+logs.String(), matrixtest.Token) {
			t.Fatalf("stagebot run ended with %v; log:\n%s", err, logs)
		}
	case <-patience.After(15 * time.Second):
		t.Fatal("stagebot run kept going with a revoked token")
	}
}

// TestRun_MatrixKilledWhileTheHomeserverMisbehaves runs the real process
// the way a team meets it: the homeserver rate-limits and answers 500
// after storing, the bot is SIGKILLed in the middle of a stream of
// commands, and a new process starts. Every command is answered once: the
// answers the killed process had queued are delivered by the next, and
// those it had posted are not posted again.
func TestRun_MatrixKilledWhileTheHomeserverMisbehaves(t *testing.T) {
	fake := matrixtest.New(t)
	const alice = "@alice:test.local"
	room := fake.CreateRoom("infra", alice)
	dir := t.TempDir()
	path := filepath.Join(dir, "stagebot.yaml")
	cfg := "store:\n  path: " + filepath.Join(dir, "state.db") + "\nchat:\n  platform: matrix\n  matrix:\n    homeserver: " + fake.URL() + "\n    access_token: ${MATRIX_TOKEN}\n" +
		"access:\n  control_channels: ['" + room + "']\n  users:\n    '" + alice + "': [stage]\n" +
		"targets:\n  demo:\n    pipelines:\n      default:\n        steps:\n          - exec: \"true\"\n"
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	start := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "run", "-c", path)
		cmd.Env = append(os.Environ(), "STAGEBOT_TEST_AS_MAIN=1", "MATRIX_TOKEN="+matrixtest.Token)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		n := len(fake.Syncs())
		bottest.Eventually(t, "the bot long-polling /sync", func() bool {
			s := fake.Syncs()
			return len(s) > n && s[len(s)-1] != ""
		})
		return cmd
	}
	answers := func(note string) int {
		n := 0
		for _, m := range fake.Messages(room) {
			n += strings.Count(m.Text(), note)
		}
		return n
	}
	first := start()
	fake.RateLimit(4, 200*time.Millisecond, false)
	fake.FailAfterStoring(4)
	for i := range 12 {
		fake.Say(alice, room, fmt.Sprintf("!stage hold demo 1h note-%02d", i))
	}
	bottest.Eventually(t, "some answers", func() bool { return answers("note-02") > 0 })
	first.Process.Kill()
	first.Wait()
	for i := 12; i < 16; i++ {
		fake.Say(alice, room, fmt.Sprintf("!stage hold demo 1h note-%02d", i))
	}
	start()
	bottest.Eventually(t, "the commands typed while no bot ran answered", func() bool { return answers("note-15") > 0 })
	fake.Say(alice, room, "!stage status zz-barrier")
	bottest.Eventually(t, "the barrier answered: everything typed before it was", func() bool { return answers("zz-barrier") > 0 })
	for i := range 16 {
		if n := answers(fmt.Sprintf("note-%02d", i)); n != 1 {
			t.Errorf("note-%02d answered %d times, want once", i, n)
		}
	}
}

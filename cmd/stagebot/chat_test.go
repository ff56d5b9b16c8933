package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stagebot/stagebot/bot/bottest"
	"github.com/stagebot/stagebot/bot/discord/discordtest"
	"github.com/stagebot/stagebot/bot/slack/slacktest"
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
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	logs := &syncBuffer{}
	go func() { done <- Main(ctx, []string{"run", "-c", path}, strings.NewReader(""), logs, logs) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("stagebot run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("stagebot run did not stop within 10s of its context ending")
		}
	})
	return logs
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

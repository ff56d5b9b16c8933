package console_test

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"

	"github.com/stagebot/stagebot/bot"
	"github.com/stagebot/stagebot/bot/bottest"
	"github.com/stagebot/stagebot/bot/console"
	"github.com/stagebot/stagebot/internal/patience"
	"github.com/stagebot/stagebot/runner"
	"github.com/stagebot/stagebot/store/bolt"
)

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

// A scripted session through the real console adapter and a real store.
func TestConsole_ScriptedSession(t *testing.T) {
	s, err := bolt.Open(filepath.Join(t.TempDir(), "stagebot.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	script := strings.Join([]string{
		"!stage hold demo 1h " + strings.Repeat("a very long line ", 100_000), // 1.7 MB
		"!stage hold demo 1h",
		"!stage hold demo 1h testing the login",
		"/as bob",
		"!stage resync demo now",
		"/as alice",
		"!stage release demo",
		"!stage history",
		"/channel random",
		"!stage cancel 1",
		"/quit",
		"!stage help",
	}, "\n")
	var out syncBuffer
	a := console.New(strings.NewReader(script), &out, "alice", "infra")
	b := bot.New(s, a, bot.Options{
		Access:       bot.Access{ControlChannels: []string{"infra"}, Everyone: []string{"stage"}},
		EditInterval: time.Millisecond,
		Targets: []*bot.Target{{
			Name: "demo", Channel: "infra", Notice: 10 * time.Minute,
			Pipelines:       map[string]*runner.Pipeline{"default": {Steps: []runner.Step{&runner.Exec{StepName: "copy", Shell: "echo hi"}}}},
			DefaultPipeline: "default",
		}},
	})
	ctx, cancel := context.WithTimeout(context.Background(), patience.D(10*time.Second))
	defer cancel()
	if err := b.Run(ctx); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, want := range []string{
		"(a line of 1700021 bytes was left out: a command may be at most 4000 characters)",
		"alice@#infra> !stage hold demo 1h\n",
		"Say why you hold it",
		"Usage: `!stage hold <target | all>",
		"alice holds demo until",
		"(you are now bob)",
		"[#6 edited] stagebot in #infra: ⏸ Run 1: refresh of demo (default pipeline) is waiting: held by alice",
		"[Defer 1h: !stage defer 1 1h]",
		"Hold on demo by alice ended: released.",
		"The holds on demo have ended, so the run has a new start.",
		"#1 demo/default 🗓 scheduled",
		"(you are now in #random)",
		"`cancel` changes state, so it is only accepted in #infra.",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("console output lacks %q", want)
		}
	}
	if strings.Contains(got, "alice@#random> !stage help") {
		t.Error("lines after /quit were read")
	}
	if t.Failed() {
		t.Log(got)
	}
}

func TestRender_EditAndThread(t *testing.T) {
	var out bytes.Buffer
	a := console.New(strings.NewReader(""), &out, "alice", "infra")
	ref, _ := a.Send(context.Background(), bot.Message{Channel: "infra", Text: "status"})
	a.Send(context.Background(), bot.Message{Channel: "infra", Thread: ref, Text: "detail"})
	a.Edit(context.Background(), ref, bot.Message{Channel: "infra", Text: "status 2"})
	want := "[#1] stagebot in #infra: status\n[#2 ↳ #1] stagebot in #infra: detail\n[#1 edited] stagebot in #infra: status 2\n"
	if out.String() != want {
		t.Fatalf("got:\n%s\nwant:\n%s", out.String(), want)
	}
}

// Text from people or a database reaches the terminal without anything a
// terminal acts on: no escape sequence, no other control character.
func TestConsole_HostileTextIsPrintedInert(t *testing.T) {
	var out syncBuffer
	a := console.New(strings.NewReader(""), &out, "alice", "infra")
	for _, h := range bottest.Hostile {
		if _, err := a.Send(context.Background(), bot.Message{Channel: "infra", Text: "reason: " + h, Fields: []bot.Field{{Label: "table", Value: h}}}); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range out.String() {
		if r != '\n' && (unicode.IsControl(r) || unicode.In(r, unicode.Bidi_Control)) {
			t.Fatalf("the console printed control character %U:\n%q", r, out.String())
		}
	}
	if !strings.Contains(out.String(), "reason: <!channel>") {
		t.Errorf("the text itself was lost:\n%s", out.String())
	}
}

package discord_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bwmarrin/discordgo"

	"github.com/stagebot/stagebot/bot"
	"github.com/stagebot/stagebot/bot/bottest"
	"github.com/stagebot/stagebot/bot/discord"
	"github.com/stagebot/stagebot/bot/discord/discordtest"
	"github.com/stagebot/stagebot/internal/patience"
	"github.com/stagebot/stagebot/runner"
	"github.com/stagebot/stagebot/store"
)

const infra = "500"

type env struct {
	t    *testing.T
	fake *discordtest.Server
	a    *discord.Adapter
	*bottest.Scenario
}

func newAdapter(t *testing.T, fake *discordtest.Server) *discord.Adapter {
	t.Helper()
	a, err := discord.New(discord.Options{Token: "test-token", APIURL: fake.URL(), Channels: []string{infra}, ReadyTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	a.Outbox().MaxBackoff = 50 * time.Millisecond
	return a
}

func newEnv(t *testing.T, steps ...runner.Step) *env {
	t.Helper()
	e := &env{t: t, fake: discordtest.New(t)}
	e.a = newAdapter(t, e.fake)
	e.Scenario = bottest.StartBot(t, e.a, infra, steps...)
	if err := e.fake.WaitConnected(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) waitMessage(want string) discordtest.Message {
	e.t.Helper()
	deadline := time.Now().Add(patience.D(10 * time.Second))
	for time.Now().Before(deadline) {
		for _, m := range e.fake.Messages() {
			if strings.Contains(m.Current().Content, want) {
				return m
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	var all []string
	for _, m := range e.fake.Messages() {
		all = append(all, m.Current().Content)
	}
	e.t.Fatalf("no message contains %q; messages:\n%s", want, strings.Join(all, "\n---\n"))
	return discordtest.Message{}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestDiscord_RequestApproveRunReport(t *testing.T) {
	e := newEnv(t)
	if _, _, intents := e.fake.Stats(); intents != int(discord.Intents) || intents&(1<<15) == 0 {
		t.Fatalf("IDENTIFY asked for intents %d, want %d (with message content)", intents, discord.Intents)
	}
	must(t, e.fake.Say("U1", "alice", infra, "!stage resync demo in 10m"))
	card := e.waitMessage("Run 1: refresh of demo")
	if b := card.Buttons(); b["Approve"] != "!stage approve 1" || b["Defer 1h"] != "!stage defer 1 1h" || b["Cancel"] != "!stage cancel 1" || b["Hold 2h"] == "" {
		t.Fatalf("announcement buttons = %v", b)
	}
	must(t, e.fake.Click("U1", "alice", card, "Approve"))
	refusal := e.waitMessage("someone else must approve it")
	if refusal.ReplyTo != card.ID {
		t.Errorf("refusal replies to %q, want the card %q", refusal.ReplyTo, card.ID)
	}
	must(t, e.fake.Click("U2", "bob", card, "Approve"))
	e.waitMessage("bob approved run 1 of demo (1 of 1)")
	card = e.waitMessage("1 of 1 (bob)")
	if len(card.Edits) == 0 {
		t.Fatal("the card was not edited")
	}
	// Every click was answered within Discord's 3 seconds (deferred update).
	for _, cb := range e.fake.Callbacks() {
		if cb["type"] != float64(6) {
			t.Errorf("interaction answered with %v, want type 6", cb)
		}
	}
	if n := len(e.fake.Callbacks()); n != 2 {
		t.Errorf("%d interaction answers, want 2", n)
	}
	e.Clock.Advance(10 * time.Minute)
	e.WaitRun(1, store.RunSucceeded)
	status := e.waitMessage("Run 1 of demo/default: succeeded")
	if len(status.Edits) < 2 || !strings.Contains(status.Current().Content, "✓ start app (finally)") {
		t.Fatalf("status message: %d edits, now %q", len(status.Edits), status.Current().Content)
	}
	if out := e.waitMessage("✅ Run 1 of demo/default succeeded"); out.ReplyTo != status.ID || !strings.Contains(out.Content, "<@U1>") {
		t.Fatalf("outcome: replies to %q (want %q), content %q", out.ReplyTo, status.ID, out.Content)
	}
}

func TestDiscord_IgnoresBotsAndOtherChannels(t *testing.T) {
	e := newEnv(t)
	must(t, e.fake.BotEcho(infra, "!stage resync demo now"))
	must(t, e.fake.Say("U1", "alice", "999", "!stage resync demo now"))
	must(t, e.fake.Say("U1", "alice", infra, "<@"+discordtest.BotUser+"> history"))
	e.waitMessage("No runs yet.")
}

func TestDiscord_DeliversEverythingAfterADroppedConnection(t *testing.T) {
	e := newEnv(t, &runner.Exec{StepName: "copy", Shell: "sleep 0.5; echo copied"}, &runner.Exec{StepName: "verify", Shell: "echo ok"})
	must(t, e.fake.Say("U1", "alice", infra, "!stage resync demo now"))
	must(t, e.fake.Click("U2", "bob", e.waitMessage("Run 1: refresh of demo"), "Approve"))
	status := e.waitMessage("Run 1 of demo/default: running")
	_, resumesBefore, _ := e.fake.Stats()
	if !e.a.Connected() {
		t.Fatal("the adapter says it is not connected")
	}
	e.fake.SetDown(true)
	bottest.Eventually(t, "the adapter to see it is disconnected", func() bool { return !e.a.Connected() })
	e.WaitRun(1, store.RunSucceeded)
	if e.a.Outbox().Pending() == 0 {
		t.Fatal("nothing waited while Discord was down")
	}
	e.fake.SetDown(false)
	bottest.Eventually(t, "the outbox to drain", func() bool { return e.a.Outbox().Pending() == 0 })
	bottest.Eventually(t, "the adapter to see it is connected again", e.a.Connected)
	final := e.waitMessage("Run 1 of demo/default: succeeded")
	if final.ID != status.ID {
		t.Fatalf("final state went to message %s, not the status message %s", final.ID, status.ID)
	}
	outcome := e.waitMessage("✅ Run 1 of demo/default succeeded")
	msgs := e.fake.Messages()
	if msgs[len(msgs)-1].ID != outcome.ID {
		t.Error("messages out of order: the outcome is not the last one")
	}
	// The gateway came back by resuming the session.
	bottest.Eventually(t, "the gateway to resume", func() bool {
		_, r, _ := e.fake.Stats()
		return r > resumesBefore && e.fake.Connected()
	})
	must(t, e.fake.Say("U1", "alice", infra, "!stage history"))
	e.waitMessage("#1 demo/default ✅ succeeded")
}

func TestDiscord_RateLimitsAreObeyed(t *testing.T) {
	e := newEnv(t)
	e.fake.RateLimit(2, 0.5)
	start := time.Now()
	must(t, e.fake.Say("U1", "alice", infra, "!stage holds"))
	e.waitMessage("No holds.")
	if d := time.Since(start); d < time.Second {
		t.Fatalf("answered after %s: two 429s with retry_after 0.5 were not waited out", d)
	}
}

func TestDiscord_StartupFailsClearly(t *testing.T) {
	tests := []struct {
		name string
		knob func(*discordtest.Server)
		want string
	}{
		{name: "token refused", knob: func(f *discordtest.Server) { f.CloseOnIdentify(4004) }, want: "discord refused the token (close 4004)"},
		{name: "no READY", knob: func(f *discordtest.Server) { f.NoReady(true) }, want: "did not answer READY within 2s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := discordtest.New(t)
			tt.knob(fake)
			a := newAdapter(t, fake)
			ctx, cancel := context.WithTimeout(context.Background(), patience.D(20*time.Second))
			defer cancel()
			start := time.Now()
			err := a.Run(ctx, func(context.Context, bot.Incoming) {})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want %q", err, tt.want)
			}
			if time.Since(start) > patience.D(10*time.Second) {
				t.Fatalf("took %s to fail", time.Since(start))
			}
		})
	}
}

// TestDiscord_AnswersClicksAtOnceWhileDiscordIsSlow: with every message call
// slow, rate-limited and failing, each click is answered well within
// Discord's 3 seconds, and a click the gateway replays is executed once.
func TestDiscord_AnswersClicksAtOnceWhileDiscordIsSlow(t *testing.T) {
	e := newEnv(t)
	must(t, e.fake.Say("U1", "alice", infra, "!stage resync demo in 10m"))
	card := e.waitMessage("Run 1: refresh of demo")
	e.fake.SlowPosts(300 * time.Millisecond)
	e.fake.RateLimit(4, 2)
	e.fake.FailNext(3)
	for range 3 {
		must(t, e.fake.Say("U1", "alice", infra, "!stage holds"))
		must(t, e.fake.Click("U1", "alice", card, "Hold 2h"))
	}
	must(t, e.fake.Click("U2", "bob", card, "Approve"))
	must(t, e.fake.Redeliver())
	bottest.Eventually(t, "every click answered", func() bool { return len(e.fake.CallbackTimes()) >= 4 })
	var worst time.Duration
	for i, d := range e.fake.CallbackTimes() {
		worst = max(worst, d)
		if d > patience.D(2*time.Second) { // Discord fails the click after 3s
			t.Errorf("click %d answered after %s, with Discord slow", i, d)
		}
	}
	t.Logf("slowest of %d click answers while Discord was slow, rate-limited and failing: %s", len(e.fake.CallbackTimes()), worst)
	e.fake.SlowPosts(0)
	e.waitMessage("bob approved run 1 of demo (1 of 1)")
	must(t, e.fake.Say("U1", "alice", infra, "!stage status zz-barrier"))
	e.waitMessage("zz-barrier") // everything before it was handled and answered
	approvals := 0
	for _, m := range e.fake.Messages() {
		approvals += strings.Count(m.Content, "bob approved run 1")
	}
	if approvals != 1 {
		t.Fatalf("the replayed click was executed again: %d approvals", approvals)
	}
}

// Text people type is posted back inert: whatever a hold's reason holds,
// Discord notifies nobody for the answer that repeats it (allowed_mentions
// by Discord's rules) and shows no masked link.
func TestDiscord_HostileTextIsPostedInert(t *testing.T) {
	e := newEnv(t)
	for i, h := range bottest.Hostile {
		n := len(e.fake.Messages())
		must(t, e.fake.Say("U1", "alice", infra, fmt.Sprintf("!stage hold demo %dm %s", 60+i, h)))
		var got discordtest.Message
		bottest.Eventually(t, "the answer to "+h, func() bool {
			ms := e.fake.Messages()
			if len(ms) <= n {
				return false
			}
			got = ms[len(ms)-1]
			return true
		})
		if p := got.Pings(); len(p) > 0 {
			t.Errorf("%q notified %v: %s", h, p, got.Content)
		}
		if strings.Contains(got.Content, "[approve](") {
			t.Errorf("%q came back as a masked link: %s", h, got.Content)
		}
	}
	// The bot's own mentions still notify: a watcher is pinged.
	must(t, e.fake.Say("U2", "bob", infra, "!stage watch demo"))
	e.waitMessage("bob")
	must(t, e.fake.Say("U1", "alice", infra, "!stage resync demo in 1h"))
	if card := e.waitMessage("Run 1: refresh of demo"); !slices.Contains(card.Pings(), "user:U2") {
		t.Errorf("the announcement did not notify its watcher: %q %+v", card.Content, card.AllowedMentions)
	}
}

// TestDiscord_WithoutTheMessageContentIntent: a bot whose message-content
// intent is not granted (Discord closes with 4014) connects again without
// it, says how to enable it or to use /stage, and takes /stage commands.
func TestDiscord_WithoutTheMessageContentIntent(t *testing.T) {
	fake := discordtest.New(t)
	fake.CloseOnIdentify(4014)
	var logged strings.Builder
	var mu sync.Mutex
	a, err := discord.New(discord.Options{Token: "test-token", APIURL: fake.URL(), Channels: []string{infra}, ReadyTimeout: 2 * time.Second,
		Logger: slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return logged.Write(p) }), nil))})
	must(t, err)
	bottest.StartBot(t, a, infra)
	must(t, fake.WaitConnected(patience.D(10*time.Second)))
	if ids, _, intents := fake.Stats(); ids != 2 || intents != int(discord.Intents&^discordgo.IntentMessageContent) {
		t.Fatalf("identified %d times, last with intents %d; want twice, the second without message content", ids, intents)
	}
	mu.Lock()
	if !strings.Contains(logged.String(), "use /stage") || !strings.Contains(logged.String(), "Message Content Intent") {
		t.Errorf("the log does not say how to go on: %s", logged.String())
	}
	mu.Unlock()
	_, err = fake.Slash("U1", "alice", infra, "holds")
	must(t, err)
	deadline := time.Now().Add(patience.D(10 * time.Second))
	for !slices.ContainsFunc(fake.Messages(), func(m discordtest.Message) bool { return strings.Contains(m.Content, "No holds.") }) {
		if time.Now().After(deadline) {
			t.Fatal("/stage holds was not answered")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

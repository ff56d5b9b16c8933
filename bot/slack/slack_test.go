package slack_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stagebot/stagebot/bot"
	"github.com/stagebot/stagebot/bot/bottest"
	"github.com/stagebot/stagebot/bot/slack"
	"github.com/stagebot/stagebot/bot/slack/slacktest"
	"github.com/stagebot/stagebot/internal/patience"
	"github.com/stagebot/stagebot/runner"
	"github.com/stagebot/stagebot/store"
)

const infra = "CINFRA"

type env struct {
	t    *testing.T
	fake *slacktest.Server
	a    *slack.Adapter
	*bottest.Scenario
}

func newEnv(t *testing.T, steps ...runner.Step) *env {
	t.Helper()
	e := &env{t: t, fake: slacktest.New(t)}
	e.fake.AddUser("U1", "alice")
	e.fake.AddUser("U2", "bob")
	a, err := slack.New(slack.Options{AppToken: slacktest.AppToken, BotToken: slacktest.BotToken, APIURL: e.fake.URL(), PingInterval: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	a.Outbox().MaxBackoff = 50 * time.Millisecond
	e.a = a
	e.Scenario = bottest.StartBot(t, a, infra, steps...)
	if err := e.fake.WaitConnected(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	return e
}

// waitMessage waits for a message whose current text (blocks included)
// contains want.
func (e *env) waitMessage(want string) slacktest.Message {
	e.t.Helper()
	deadline := time.Now().Add(patience.D(10 * time.Second))
	for time.Now().Before(deadline) {
		for _, m := range e.fake.Messages() {
			if strings.Contains(m.Current().AllText(), want) {
				return m
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	var all []string
	for _, m := range e.fake.Messages() {
		all = append(all, m.Current().AllText())
	}
	e.t.Fatalf("no message contains %q; messages:\n%s", want, strings.Join(all, "\n---\n"))
	return slacktest.Message{}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestSlack_RequestApproveRunReport(t *testing.T) {
	e := newEnv(t)
	_, err := e.fake.Say("U1", infra, "!stage resync demo in 10m")
	must(t, err)
	card := e.waitMessage("Run 1: refresh of demo")
	if b := card.Buttons(); b["Approve"] != "!stage approve 1" || b["Defer 1h"] != "!stage defer 1 1h" || b["Cancel"] != "!stage cancel 1" || b["Hold 2h"] == "" {
		t.Fatalf("announcement buttons = %v", b)
	}
	// The requester may not approve their own run.
	must(t, e.fake.Click("U1", "alice", card, "Approve"))
	refusal := e.waitMessage("someone else must approve it")
	if refusal.ThreadTS != card.TS {
		t.Errorf("refusal went to thread %q, want the card's thread %q", refusal.ThreadTS, card.TS)
	}
	// Another user's click approves it and the card shows who did.
	must(t, e.fake.Click("U2", "bob", card, "Approve"))
	e.waitMessage("bob approved run 1 of demo (1 of 1)")
	card = e.waitMessage("1 of 1 (bob)")
	if len(card.Edits) == 0 {
		t.Fatal("the card was not edited")
	}
	// At the start time the run goes; its status message is edited as the
	// steps finish and the thread gets the outcome.
	e.Clock.Advance(10 * time.Minute)
	e.WaitRun(1, store.RunSucceeded)
	status := e.waitMessage("Run 1 of demo/default: succeeded")
	if len(status.Edits) < 2 || !strings.Contains(status.Current().AllText(), "✓ start app (finally)") {
		t.Fatalf("status message edits: %d, now %q", len(status.Edits), status.Current().AllText())
	}
	if out := e.waitMessage("✅ Run 1 of demo/default succeeded"); out.ThreadTS != status.TS || !strings.Contains(out.Text, "<@U1>") {
		t.Fatalf("outcome message: thread %q (want %q), text %q", out.ThreadTS, status.TS, out.Text)
	}
}

func TestSlack_SlashCommandMentionAndEchoes(t *testing.T) {
	e := newEnv(t)
	ack, err := e.fake.Slash("U1", "alice", infra, "status")
	must(t, err)
	if !strings.Contains(string(ack), "On it: /stage status") {
		t.Fatalf("slash ack payload = %s", ack)
	}
	e.waitMessage("never refreshed by stagebot")
	must(t, e.fake.Mention("U1", infra, "holds"))
	e.waitMessage("No holds.")
	// The bot's own messages and other bots' are ignored.
	must(t, e.fake.BotEcho(infra, "!stage resync demo now"))
	_, err = e.fake.Say("U1", infra, "!stage history")
	must(t, err)
	e.waitMessage("No runs yet.")
	// Slack escapes & and sends smart quotes; both are undone.
	_, err = e.fake.Say("U1", infra, "!stage hold demo 1h \u201ctesting &amp; fixing\u201d")
	must(t, err)
	e.waitMessage("alice holds demo until 10:00 UTC: testing &amp; fixing")
}

func TestSlack_DeliversEverythingAfterAnOutage(t *testing.T) {
	e := newEnv(t, &runner.Exec{StepName: "copy", Shell: "sleep 0.5; echo copied"}, &runner.Exec{StepName: "verify", Shell: "echo ok"})
	_, err := e.fake.Say("U1", infra, "!stage resync demo now")
	must(t, err)
	must(t, e.fake.Click("U2", "bob", e.waitMessage("Run 1: refresh of demo"), "Approve"))
	status := e.waitMessage("Run 1 of demo/default: running")
	if !e.a.Connected() {
		t.Fatal("the adapter says it is not connected")
	}
	// Slack goes away mid-run: the socket drops and every call fails.
	e.fake.SetDown(true)
	bottest.Eventually(t, "the adapter to see it is disconnected", func() bool { return !e.a.Connected() })
	e.WaitRun(1, store.RunSucceeded)
	if e.a.Outbox().Pending() == 0 {
		t.Fatal("nothing was waiting while Slack was down")
	}
	if e.a.Outbox().Failures() == 0 {
		t.Error("no failed send was counted while Slack was down")
	}
	e.fake.SetDown(false)
	deadline := time.Now().Add(patience.D(10 * time.Second))
	for e.a.Outbox().Pending() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	final := e.waitMessage("Run 1 of demo/default: succeeded")
	if final.TS != status.TS {
		t.Fatalf("the final state went to a new message %s, not the status message %s", final.TS, status.TS)
	}
	outcome := e.waitMessage("✅ Run 1 of demo/default succeeded")
	msgs := e.fake.Messages()
	if msgs[len(msgs)-1].TS != outcome.TS {
		t.Errorf("messages out of order: the outcome is not the last message")
	}
	// The socket came back by itself.
	must(t, e.fake.WaitConnected(10*time.Second))
	bottest.Eventually(t, "the adapter to see it is connected again", e.a.Connected)
	_, err = e.fake.Say("U1", infra, "!stage history")
	must(t, err)
	e.waitMessage("#1 demo/default ✅ succeeded")
}

func TestSlack_RateLimitsAreObeyed(t *testing.T) {
	e := newEnv(t)
	e.fake.RateLimit(2, 1)
	start := time.Now()
	_, err := e.fake.Say("U1", infra, "!stage holds")
	must(t, err)
	e.waitMessage("No holds.")
	if d := time.Since(start); d < 2*time.Second {
		t.Fatalf("answered after %s: two 429s with Retry-After 1 were not waited out", d)
	}
}

func TestSlack_Reconnects(t *testing.T) {
	e := newEnv(t)
	n := e.fake.Connects()
	e.fake.Disconnect()
	bottest.Eventually(t, "a reconnect after a disconnect frame", func() bool { return e.fake.Connects() > n && e.fake.Connected() })
	n = e.fake.Connects()
	e.fake.DropSocket()
	bottest.Eventually(t, "a reconnect after a dropped socket", func() bool { return e.fake.Connects() > n && e.fake.Connected() })
	n = e.fake.Connects()
	e.fake.StopPings(true)
	bottest.Eventually(t, "a reconnect after missing pings", func() bool { return e.fake.Connects() > n })
	e.fake.StopPings(false)
	must(t, e.fake.WaitConnected(10*time.Second))
	_, err := e.fake.Say("U1", infra, "!stage holds")
	must(t, err)
	e.waitMessage("No holds.")
}

func TestNew_RejectsWrongTokens(t *testing.T) {
	if _, err := slack.New(slack.Options{AppToken: "xoxb-x", BotToken: "xoxb-y"}); err == nil || !strings.Contains(err.Error(), "xapp-") {
		t.Fatalf("error = %v", err)
	}
	if _, err := slack.New(slack.Options{AppToken: "xapp-x", BotToken: "bad"}); err == nil || !strings.Contains(err.Error(), "xoxb-") {
		t.Fatalf("error = %v", err)
	}
}

func TestRun_RefusedTokenFailsFast(t *testing.T) {
	fake := slacktest.New(t)
	a, err := slack.New(slack.Options{AppToken: slacktest.AppToken, BotToken: "xoxb-wrong", APIURL: fake.URL()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), patience.D(10*time.Second))
	defer cancel()
	err = a.Run(ctx, func(context.Context, bot.Incoming) {})
	if err == nil || !strings.Contains(err.Error(), "slack refused the bot token (invalid_auth)") {
		t.Fatalf("error = %v", err)
	}
}

// TestSlack_AcksAtOnceWhileSlackIsSlow: with every post slow, rate-limited
// and failing, messages, clicks and slash commands are still acknowledged
// well within Slack's 3 seconds, and a redelivered click or command is
// executed once.
func TestSlack_AcksAtOnceWhileSlackIsSlow(t *testing.T) {
	e := newEnv(t)
	_, err := e.fake.Say("U1", infra, "!stage resync demo in 10m")
	must(t, err)
	card := e.waitMessage("Run 1: refresh of demo")
	e.fake.SlowPosts(300 * time.Millisecond)
	e.fake.RateLimit(4, 2)
	e.fake.FailNext(3)
	before := len(e.fake.AckTimes())
	for i := range 3 {
		_, err := e.fake.Say("U1", infra, "!stage holds")
		must(t, err)
		_, err = e.fake.Slash("U1", "alice", infra, fmt.Sprintf("hold demo 1h test %d", i))
		must(t, err)
	}
	must(t, e.fake.Click("U2", "bob", card, "Approve"))
	_, err = e.fake.Redeliver() // Slack thought the click was not acked
	must(t, err)
	_, err = e.fake.Slash("U1", "alice", infra, "release demo")
	must(t, err)
	_, err = e.fake.Redeliver()
	must(t, err)
	acks := e.fake.AckTimes()[before:]
	if len(acks) != 10 {
		t.Fatalf("%d acks, want 10", len(acks))
	}
	var worst time.Duration
	for i, d := range acks {
		worst = max(worst, d)
		if d > patience.D(2*time.Second) { // Slack redelivers after 3s
			t.Errorf("envelope %d acknowledged after %s, with Slack slow", i, d)
		}
	}
	t.Logf("slowest of %d acks while Slack was slow, rate-limited and failing: %s", len(acks), worst)
	e.fake.SlowPosts(0)
	e.waitMessage("Hold on demo by alice ended: released")
	e.waitMessage("bob approved run 1 of demo (1 of 1)")
	// Executed once each: one approval, one release.
	if _, err := e.fake.Say("U1", infra, "!stage status zz-barrier"); err != nil {
		t.Fatal(err)
	}
	e.waitMessage("zz-barrier") // everything before it was handled and answered
	approvals, releases := 0, 0
	for _, m := range e.fake.Messages() {
		approvals += strings.Count(m.Text, "bob approved run 1")
		releases += strings.Count(m.Text, "Hold on demo by alice ended")
	}
	if approvals != 1 || releases != 1 {
		t.Fatalf("redelivered events executed again: %d approvals, %d releases", approvals, releases)
	}
}

// Text people type is posted back inert: whatever a hold's reason holds,
// the answer that repeats it has no live mention, channel or link, and
// only the bot's own mentions notify anyone.
func TestSlack_HostileTextIsPostedInert(t *testing.T) {
	e := newEnv(t)
	for i, h := range bottest.Hostile {
		// As Slack delivers typed text: &, < and > as entities.
		typed := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(h)
		for j, text := range []string{typed, h} {
			n := len(e.fake.Messages())
			_, err := e.fake.Say("U1", infra, fmt.Sprintf("!stage hold demo %dm %s", 60+2*i+j, text))
			must(t, err)
			var got string
			bottest.Eventually(t, "the answer to "+h, func() bool {
				ms := e.fake.Messages()
				if len(ms) <= n {
					return false
				}
				got = ms[len(ms)-1].Current().AllText()
				return true
			})
			for _, live := range []string{"<!", "<@", "<#", "<http", "<a ", "<script", "<img"} {
				if strings.Contains(got, live) {
					t.Errorf("%q (sent as %q) came back live (%q):\n%s", h, text, live, got)
				}
			}
		}
	}
}

// Someone who takes another's display name is shown with their own
// username beside it: mallory called "alice" is not alice.
func TestSlack_ASpoofedDisplayNameShowsTheHandle(t *testing.T) {
	e := newEnv(t)
	e.fake.AddUser("U9", "mallory")
	e.fake.SetDisplayName("U9", "alice")
	_, err := e.fake.Say("U9", infra, "!stage holds")
	must(t, err)
	e.waitMessage("No holds.")
	_, err = e.fake.Say("U9", infra, "!stage hold demo 1h testing")
	must(t, err)
	e.waitMessage("You (alice (@mallory)) are not allowed")
	_, err = e.fake.Say("U1", infra, "!stage hold demo 1h testing")
	must(t, err)
	e.waitMessage("alice holds demo until")
}

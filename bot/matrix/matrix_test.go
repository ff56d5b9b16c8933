package matrix_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stagebot/stagebot/bot"
	"github.com/stagebot/stagebot/bot/bottest"
	"github.com/stagebot/stagebot/bot/matrix"
	"github.com/stagebot/stagebot/bot/matrix/matrixtest"
	"github.com/stagebot/stagebot/internal/patience"
	"github.com/stagebot/stagebot/runner"
	"github.com/stagebot/stagebot/store"
	"github.com/stagebot/stagebot/store/bolt"
)

const (
	alice   = "@alice:test.local"
	bob     = "@bob:test.local"
	mallory = "@mallory:test.local"
)

type env struct {
	t    *testing.T
	fake *matrixtest.Server
	a    *matrix.Adapter
	room string
	// rooms are the configured rooms (default #infra).
	rooms []string
	*bottest.Scenario
	stop     func()
	barriers int
}

func options(room string, steps ...runner.Step) bot.Options {
	if len(steps) == 0 {
		steps = []runner.Step{&runner.Exec{StepName: "copy", Shell: "echo copying"}}
	}
	return bot.Options{
		EditInterval: 10 * time.Millisecond,
		Access:       bot.Access{ControlChannels: []string{room}, Users: map[string][]string{alice: {"stage"}, bob: {"stage.approve"}}},
		Targets: []*bot.Target{{
			Name: "demo", Channel: room, Notice: 10 * time.Minute, Ladder: []time.Duration{10 * time.Minute},
			Manual:          bot.ApprovalRule{Count: 1},
			Pipelines:       map[string]*runner.Pipeline{"default": {Name: "default", Steps: steps, Finally: []runner.Step{&runner.Exec{StepName: "start app", Shell: "echo started"}}}},
			DefaultPipeline: "default",
		}},
	}
}

func newAdapter(t *testing.T, fake *matrixtest.Server, rooms ...string) *matrix.Adapter {
	t.Helper()
	a, err := matrix.New(matrix.Options{Homeserver: fake.URL(), Token: matrixtest.Token, Rooms: rooms, SyncTimeout: 2 * time.Second,
		AcceptDirect: func(u string) bool { return u == alice || u == bob }})
	if err != nil {
		t.Fatal(err)
	}
	a.Outbox().MaxBackoff = 50 * time.Millisecond
	t.Cleanup(a.Close)
	return a
}

// newEnv starts a bot in a room #infra (joined by alias) on a fresh bolt
// file, and waits until it is syncing.
func newEnv(t *testing.T, steps ...runner.Step) *env {
	t.Helper()
	e := &env{t: t, fake: matrixtest.New(t)}
	t.Cleanup(func() {
		if n := e.fake.NonNotices(); len(n) > 0 {
			t.Errorf("the bot sent messages that are not m.notice: %q", n)
		}
	})
	e.room = e.fake.CreateRoom("infra", alice, bob, mallory)
	s, err := bolt.Open(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	e.start(s, steps...)
	return e
}

func (e *env) start(s store.Store, steps ...runner.Step) {
	e.t.Helper()
	rooms := e.rooms
	if rooms == nil {
		rooms = []string{"#infra:test.local"}
	}
	e.a = newAdapter(e.t, e.fake, rooms...)
	clock := bottest.NewClock(time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC))
	e.Scenario, e.stop = bottest.RunBot(e.t, s, e.a, clock, options(e.room, steps...))
	n := len(e.fake.Syncs())
	bottest.Eventually(e.t, "the bot long-polling /sync", func() bool {
		syncs := e.fake.Syncs()
		return len(syncs) > n && syncs[len(syncs)-1] != ""
	})
}

// waitMessage waits for a message of the bot whose current body contains
// want.
func (e *env) waitMessage(want string) matrixtest.Message {
	e.t.Helper()
	deadline := time.Now().Add(patience.D(10 * time.Second))
	for time.Now().Before(deadline) {
		for _, m := range e.fake.Messages(e.room) {
			if strings.Contains(m.Text(), want) {
				return m
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	var all []string
	for _, m := range e.fake.Messages(e.room) {
		all = append(all, m.Text())
	}
	e.t.Fatalf("no message contains %q; messages:\n%s", want, strings.Join(all, "\n---\n"))
	return matrixtest.Message{}
}

// barrier asks what only an answer can follow, and waits for that answer:
// everything sent before it has been handled, and answered, by then (the
// bot handles events in order and its outbox delivers in order).
func (e *env) barrier() {
	e.t.Helper()
	e.barriers++
	tag := fmt.Sprintf("zz-barrier-%d", e.barriers)
	e.fake.Say(alice, e.room, "!stage status "+tag)
	e.waitMessage(tag)
}

func (e *env) count(want string) int {
	n := 0
	for _, m := range e.fake.Messages(e.room) {
		if strings.Contains(m.Text(), want) {
			n++
		}
	}
	return n
}

func TestMatrix_RequestReactApproveRunReport(t *testing.T) {
	e := newEnv(t)
	if !e.fake.Joined(e.room, matrixtest.BotID) {
		t.Fatal("the bot did not join its configured room")
	}
	e.fake.Say(alice, e.room, "!stage resync demo in 10m")
	card := e.waitMessage("Run 1: refresh of demo")
	if card.Content["msgtype"] != "m.notice" || card.Content["format"] != "org.matrix.custom.html" || card.HTML() == "" {
		t.Fatalf("the card is not a notice with HTML: %v", card.Content)
	}
	for _, want := range []string{"✅ Approve (!stage approve 1)", "⏸️ Defer 1h (!stage defer 1 1h)", "❌ Cancel (!stage cancel 1)", "✋ Hold 2h"} {
		if !strings.Contains(card.Text(), want) {
			t.Errorf("the card does not offer %q:\n%s", want, card.Text())
		}
	}
	// A reaction is the command from whoever reacted, with the same
	// access check: mallory may do nothing, alice may not approve her own
	// run. Both are answered in the card's thread.
	e.fake.React(mallory, e.room, card.ID, "✅")
	refusal := e.waitMessage("mallory")
	if refusal.Thread() != card.ID {
		t.Errorf("the refusal went to thread %q, want the card %q", refusal.Thread(), card.ID)
	}
	e.fake.React(alice, e.room, card.ID, "✅")
	if own := e.waitMessage("someone else must approve it"); own.Thread() != card.ID {
		t.Errorf("the refusal went to thread %q, want the card %q", own.Thread(), card.ID)
	}
	// Element may send the key without the variation selector.
	e.fake.React(bob, e.room, card.ID, "✅\uFE0F")
	e.waitMessage("bob approved run 1 of demo (1 of 1)")
	card = e.waitMessage("1 of 1 (bob)")
	if len(card.Edits) == 0 {
		t.Fatal("the card was not edited")
	}
	for _, ed := range card.Edits {
		if rel, orig := ed.Relation(); rel != "m.replace" || orig != card.ID || !strings.HasPrefix(ed.Body(), "* ") {
			t.Fatalf("an edit is not an m.replace of the original with a \"* \" fallback: %v", ed.Content)
		}
	}
	e.Clock.Advance(10 * time.Minute)
	e.WaitRun(1, store.RunSucceeded)
	status := e.waitMessage("Run 1 of demo/default: succeeded")
	if len(status.Edits) < 2 || !strings.Contains(status.Text(), "✓ start app (finally)") {
		t.Fatalf("status message edits: %d, now %q", len(status.Edits), status.Text())
	}
	out := e.waitMessage("✅ Run 1 of demo/default succeeded")
	if out.Thread() != status.ID {
		t.Errorf("the outcome went to thread %q, want the status message %q", out.Thread(), status.ID)
	}
	mentions, _ := out.Content["m.mentions"].(map[string]any)
	if ids, _ := mentions["user_ids"].([]any); len(ids) != 1 || ids[0] != alice || !strings.Contains(out.HTML(), `href="https://matrix.to/#/@alice:test.local"`) {
		t.Errorf("the outcome does not mention alice with m.mentions and a pill: %v", out.Content)
	}
}

func TestMatrix_MentionThreadDirectAndWhatToIgnore(t *testing.T) {
	e := newEnv(t)
	e.fake.Mention(alice, e.room, "holds")
	e.waitMessage("No holds.")
	// People are called by their display name.
	e.fake.SetDisplayName(e.room, bob, "Bob B.")
	e.fake.Say(bob, e.room, "!stage hold demo 1h testing")
	e.waitMessage("Bob B.")
	// The bot's own messages, other bots' notices and edits of commands
	// are not commands.
	e.fake.Post(matrixtest.BotID, e.room, "m.room.message", map[string]any{"msgtype": "m.text", "body": "!stage resync demo now"})
	e.fake.Post("@otherbot:test.local", e.room, "m.room.message", map[string]any{"msgtype": "m.notice", "body": "!stage resync demo now"})
	typed := e.fake.Say(alice, e.room, "!stage history")
	e.waitMessage("No runs yet.")
	e.fake.EditMessage(alice, e.room, typed.ID, "!stage resync demo now")
	// What a user typed goes into HTML escaped.
	e.fake.Say(alice, e.room, "!stage hold demo 1h <b>testing</b> & <script>")
	hold := e.waitMessage("alice holds demo until 10:00 UTC")
	if strings.Contains(hold.HTML(), "<b>testing") || strings.Contains(hold.HTML(), "<script>") || !strings.Contains(hold.HTML(), "&lt;script&gt;") {
		t.Errorf("user text reached the HTML unescaped: %s", hold.HTML())
	}
	// A command typed in a thread is answered in that thread.
	root := e.fake.Say(alice, e.room, "about the login tests")
	e.fake.InThread(alice, e.room, root.ID, "!stage holds")
	bottest.Eventually(t, "an answer in the thread", func() bool {
		for _, m := range e.fake.Messages(e.room) {
			if m.Thread() == root.ID && strings.Contains(m.Text(), "demo") {
				return true
			}
		}
		return false
	})
	// A direct chat from a known person is joined and answered without
	// the prefix; an encrypted one and one from a stranger are declined.
	e.fake.Invite("!dm-alice:test.local", alice, matrixtest.BotID, true, false)
	e.fake.Invite("!dm-enc:test.local", alice, matrixtest.BotID, true, true)
	e.fake.Invite("!dm-mallory:test.local", mallory, matrixtest.BotID, true, false)
	e.fake.Invite("!random:test.local", alice, matrixtest.BotID, false, false)
	bottest.Eventually(t, "the direct chat joined and the others declined", func() bool {
		return e.fake.Joined("!dm-alice:test.local", matrixtest.BotID) &&
			e.fake.Membership("!dm-enc:test.local", matrixtest.BotID) == "leave" &&
			e.fake.Membership("!dm-mallory:test.local", matrixtest.BotID) == "leave" &&
			e.fake.Membership("!random:test.local", matrixtest.BotID) == "leave"
	})
	e.fake.Say(alice, "!dm-alice:test.local", "holds")
	bottest.Eventually(t, "an answer in the direct chat", func() bool {
		for _, m := range e.fake.Messages("!dm-alice:test.local") {
			if strings.Contains(m.Text(), "demo held by alice") {
				return true
			}
		}
		return false
	})
	e.barrier()
	if n, err := e.Store.Runs(context.Background(), store.RunFilter{}); err != nil || len(n) != 0 {
		t.Fatalf("an echo, a notice or an edit started a run: %v %v", n, err)
	}
	if n := e.count("otherbot"); n != 0 {
		t.Errorf("the bot answered another bot's notice")
	}
}

// TestMatrix_RetriedSendsPostOnce: a homeserver that stores a message and
// answers 500, and one that rate-limits, lose nothing, post nothing twice
// and keep the order.
func TestMatrix_RetriedSendsPostOnce(t *testing.T) {
	e := newEnv(t)
	e.fake.FailAfterStoring(3)
	for _, c := range []string{"!stage holds", "!stage history", "!stage hold demo 1h first"} {
		e.fake.Say(alice, e.room, c)
	}
	e.waitMessage("alice holds demo until")
	e.fake.RateLimit(2, 1500*time.Millisecond, false)
	start := time.Now()
	e.fake.Say(alice, e.room, "!stage release demo")
	e.waitMessage("Hold on demo by alice ended: released")
	if d := time.Since(start); d < 3*time.Second {
		t.Errorf("answered after %s: two 429s with retry_after_ms 1500 were not waited out", d)
	}
	if e.fake.RateLimited() != 2 {
		t.Errorf("%d requests were rate limited, want 2", e.fake.RateLimited())
	}
	var order []string
	for _, m := range e.fake.Messages(e.room) {
		order = append(order, m.Text())
	}
	for _, want := range []string{"No holds.", "No runs yet.", "alice holds demo until", "Hold on demo by alice ended"} {
		if n := e.count(want); n != 1 {
			t.Errorf("%q posted %d times, want once:\n%s", want, n, strings.Join(order, "\n---\n"))
		}
	}
	joined := strings.Join(order, "\n")
	if !(strings.Index(joined, "No holds.") < strings.Index(joined, "No runs yet.") && strings.Index(joined, "No runs yet.") < strings.Index(joined, "alice holds demo")) {
		t.Errorf("messages out of order:\n%s", joined)
	}
}

// TestMatrix_HomeserverGoesAwayAndComesBack: mid-run the homeserver drops
// every connection; the run's messages wait and go out in order, and
// commands typed meanwhile are answered when it is back.
func TestMatrix_HomeserverGoesAwayAndComesBack(t *testing.T) {
	e := newEnv(t, &runner.Exec{StepName: "copy", Shell: "sleep 0.5; echo copied"}, &runner.Exec{StepName: "verify", Shell: "echo ok"})
	e.fake.Say(alice, e.room, "!stage resync demo now")
	e.fake.React(bob, e.room, e.waitMessage("Run 1: refresh of demo").ID, "✅")
	status := e.waitMessage("Run 1 of demo/default: running")
	e.fake.SetDown(true)
	bottest.Eventually(t, "the adapter to see the homeserver is gone", func() bool { return !e.a.Connected() })
	e.WaitRun(1, store.RunSucceeded)
	if e.a.Outbox().Pending() == 0 {
		t.Fatal("nothing was waiting while the homeserver was down")
	}
	e.fake.SetDown(false)
	e.fake.Say(alice, e.room, "!stage history")
	e.waitMessage("#1 demo/default ✅ succeeded")
	if final := e.waitMessage("Run 1 of demo/default: succeeded"); final.ID != status.ID {
		t.Fatalf("the final state went to a new message %s, not the status message %s", final.ID, status.ID)
	}
	msgs := e.fake.Messages(e.room)
	outcome := e.waitMessage("✅ Run 1 of demo/default succeeded")
	history := e.waitMessage("#1 demo/default ✅ succeeded")
	idx := map[string]int{}
	for i, m := range msgs {
		idx[m.ID] = i
	}
	if idx[outcome.ID] > idx[history.ID] {
		t.Error("the run's outcome was posted after the answer to a later command")
	}
	bottest.Eventually(t, "connected again", e.a.Connected)
}

// TestMatrix_RestartNeitherReplaysNorMisses: commands typed while the bot
// is down are run once it is back; nothing it already answered runs again.
func TestMatrix_RestartNeitherReplaysNorMisses(t *testing.T) {
	fake := matrixtest.New(t)
	room := fake.CreateRoom("infra", alice, bob)
	// History from before stagebot ever ran is not run.
	fake.Say(alice, room, "!stage hold demo 1h from before the bot existed")
	path := filepath.Join(t.TempDir(), "s.db")
	s, err := bolt.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, fake: fake, room: room}
	e.start(s)
	e.fake.Say(alice, room, "!stage hold demo 1h first")
	e.waitMessage("alice holds demo until 10:00 UTC: first")
	dm := "!dm-alice:test.local"
	fake.Invite(dm, alice, matrixtest.BotID, true, false)
	bottest.Eventually(t, "the direct chat joined", func() bool { return fake.Joined(dm, matrixtest.BotID) })
	e.stop()
	e.a.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// A room the bot was joined to by hand, of more than two people, is
	// not a direct chat: what is typed there is not a command. A direct
	// chat accepted before the restart still is.
	random := fake.CreateRoom("random", alice, bob, matrixtest.BotID)
	// While the bot is down: more commands than one timeline holds, so
	// the next sync is limited and the bot must page back.
	for range 60 {
		fake.Say(bob, room, "chatter")
	}
	fake.Say(alice, room, "!stage release demo")
	for range 60 {
		fake.Say(bob, room, "chatter")
	}
	fake.Say(alice, room, "!stage hold demo 2h second")
	// A command typed and deleted meanwhile is not run.
	oops := fake.Say(alice, room, "!stage resync demo now")
	fake.Redact(alice, room, oops.ID)
	// A room added to the configuration has history: it is not run.
	ops := fake.CreateRoom("ops", alice)
	fake.Say(alice, ops, "!stage holds")
	e.rooms = []string{"#infra:test.local", "#ops:test.local"}
	s, err = bolt.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	e.start(s)
	e.waitMessage("alice holds demo until 11:00 UTC: second")
	e.waitMessage("Hold on demo by alice ended: released")
	e.barrier()
	if n := e.count("first"); n != 1 {
		t.Errorf("the first hold was answered %d times, want once (a restart replayed it)", n)
	}
	fake.Say(alice, random, "holds")
	fake.Say(alice, random, "!stage holds")
	fake.Say(alice, ops, "!stage holds")
	bottest.Eventually(t, "an answer in the new room", func() bool {
		for _, m := range fake.Messages(ops) {
			if strings.Contains(m.Text(), "demo held by alice") {
				return true
			}
		}
		return false
	})
	fake.Say(alice, dm, "holds")
	bottest.Eventually(t, "an answer in the direct chat after the restart", func() bool { return len(fake.Messages(dm)) > 0 })
	if m := fake.Messages(random); len(m) != 0 {
		t.Errorf("the bot answered in a room it is not configured for: %q", m[0].Text())
	}
	if n := len(fake.Messages(ops)); n != 1 {
		t.Errorf("%d answers in the new room, want 1: a command from its history was run", n)
	}
	if runs, err := e.Store.Runs(context.Background(), store.RunFilter{}); err != nil || len(runs) != 0 {
		t.Errorf("a deleted command started a run: %v %v", runs, err)
	}
	if n := e.count("before the bot existed"); n != 0 {
		t.Errorf("a command from before the bot ever ran was run")
	}
}

func TestMatrix_EncryptedRoomIsSaidAndNotWrittenTo(t *testing.T) {
	fake := matrixtest.New(t)
	room := fake.CreateRoom("infra", alice, matrixtest.BotID)
	fake.Encrypt(room)
	user, problems, err := matrix.Check(context.Background(), matrix.Options{Homeserver: fake.URL(), Token: matrixtest.Token, Rooms: []string{"#infra:test.local"}})
	if err != nil || user != matrixtest.BotID {
		t.Fatalf("check: %q %v", user, err)
	}
	if len(problems) != 1 || !strings.Contains(problems[0], "end-to-end encrypted") || !strings.Contains(problems[0], "unencrypted control room") {
		t.Fatalf("check did not say the room is encrypted: %q", problems)
	}
	// The bot joins it, says so, and sends nothing plain into it.
	fake.Post(alice, room, "m.room.encrypted", map[string]any{"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "…"})
	e := &env{t: t, fake: fake, room: room}
	s, err := bolt.Open(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	e.start(s)
	e.a.Send(context.Background(), bot.Message{Channel: room, Text: "hello"})
	patience.Until(t, "the outbox done with the send", 10*time.Second, func() bool { return e.a.Outbox().Pending() == 0 })
	if m := fake.Messages(room); len(m) != 0 {
		t.Fatalf("the bot sent plain messages into an encrypted room: %v", m[0].Content)
	}
}

func TestMatrix_RevokedTokenStopsWithAClearError(t *testing.T) {
	fake := matrixtest.New(t)
	fake.CreateRoom("infra", alice)
	a := newAdapter(t, fake, "#infra:test.local")
	errc := make(chan error, 1)
	go func() { errc <- a.Run(context.Background(), func(context.Context, bot.Incoming) {}) }()
	if err := fake.WaitSyncing(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	fake.Revoke(matrixtest.Token)
	select {
	case err := <-errc:
		if !errors.Is(err, matrix.ErrToken) || strings.Contains(err.Error(), matrixtest.Token) {
			t.Fatalf("error = %v", err)
		}
	case <-patience.After(10 * time.Second):
		t.Fatal("the adapter kept going with a revoked token")
	}
	// A token refused at start is the same error, at once.
	b := newAdapter(t, fake, "#infra:test.local")
	if err := b.Run(context.Background(), func(context.Context, bot.Incoming) {}); !errors.Is(err, matrix.ErrToken) {
		t.Fatalf("start with a revoked token: %v", err)
	}
}

func TestMatrix_UnknownRoomFailsAtStart(t *testing.T) {
	fake := matrixtest.New(t)
	a := newAdapter(t, fake, "#nowhere:test.local")
	ctx, cancel := context.WithTimeout(context.Background(), patience.D(10*time.Second))
	defer cancel()
	err := a.Run(ctx, func(context.Context, bot.Incoming) {})
	if err == nil || !strings.Contains(err.Error(), "#nowhere:test.local") || !strings.Contains(err.Error(), "chat.matrix.rooms") {
		t.Fatalf("error = %v", err)
	}
}

// TestMatrix_ReactionAnActionNoLongerOffered: a message edited to drop
// its actions answers a late reaction instead of running it; other
// reactions are left alone.
func TestMatrix_ReactionAnActionNoLongerOffered(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	ref, _ := e.a.Send(ctx, bot.Message{Channel: e.room, Text: "Your hold expires soon", Buttons: []bot.Button{{Label: "Release", Command: "!stage release demo"}}})
	msg := e.waitMessage("Your hold expires soon")
	if !strings.Contains(msg.Text(), "🔓 Release (!stage release demo)") {
		t.Fatalf("the action is not offered:\n%s", msg.Text())
	}
	for bot.IsPlaceholder(ref) {
		time.Sleep(10 * time.Millisecond)
		ref = store.MessageRef{Channel: e.room, ID: msg.ID}
	}
	e.a.Edit(ctx, ref, bot.Message{Channel: e.room, Text: "Your hold has expired"})
	e.waitMessage("Your hold has expired")
	e.fake.React(alice, e.room, msg.ID, "👍")
	e.fake.React(alice, e.room, msg.ID, "🔓")
	late := e.waitMessage("that message no longer offers 🔓")
	if late.Thread() != msg.ID {
		t.Errorf("the answer to a late reaction is not in the message's thread")
	}
	e.barrier()
	if n := e.count("alice"); n != 1 {
		t.Errorf("%d messages name alice, want only the answer to 🔓", n)
	}
}

func TestMatrix_LongMessagesAreCutAndSaySo(t *testing.T) {
	e := newEnv(t)
	long := strings.Repeat("step output <&> ", 5000) // 80,000 characters, more once escaped
	e.a.Send(context.Background(), bot.Message{Channel: e.room, Text: "log:\n" + long})
	m := e.waitMessage("log:")
	if !strings.Contains(m.Text(), "(cut: the message was too long for Matrix)") {
		t.Error("a cut message does not say it was cut")
	}
	if len(m.Text()) >= len(long) || !strings.Contains(m.HTML(), "&lt;&amp;&gt;") {
		t.Errorf("body %d bytes, html escaped: %v", len(m.Text()), strings.Contains(m.HTML(), "&lt;&amp;&gt;"))
	}
}

// TestMatrix_ABatchCutShortByACrashRunsNothingTwice: a process that
// handled part of a batch and died before moving the sync position on
// (or lost the lease) leaves the next one to run only the rest.
func TestMatrix_ABatchCutShortByACrashRunsNothingTwice(t *testing.T) {
	fake := matrixtest.New(t)
	room := fake.CreateRoom("infra", alice, bob)
	path := filepath.Join(t.TempDir(), "s.db")
	s, err := bolt.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	e := &env{t: t, fake: fake, room: room}
	e.start(s)
	e.stop()
	e.a.Close()
	// What the dead process left: the position before the batch, and the
	// first command of the batch noted as handled (its answer is posted
	// here by hand, as that process did).
	before := fake.Position()
	one := fake.Say(alice, room, "!stage hold demo 1h one")
	fake.Say(alice, room, "!stage hold demo 2h two")
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.SetValue(ctx, "matrix/since/"+matrixtest.BotID, []byte(before)))
	must(s.SetValue(ctx, "matrix/handled/"+matrixtest.BotID, []byte(`{"since":"`+before+`","ids":["`+one.ID+`"]}`)))
	e.start(s)
	e.waitMessage("alice holds demo until 11:00 UTC: two")
	e.barrier()
	if n := e.count(": one"); n != 0 {
		t.Errorf("a command the dead process had handled was run again")
	}
	// The journal names events, not batches: one it does not name runs.
	before = fake.Position()
	fake.Say(alice, room, "!stage holds")
	e.stop()
	e.a.Close()
	must(s.SetValue(ctx, "matrix/since/"+matrixtest.BotID, []byte(before)))
	must(s.SetValue(ctx, "matrix/handled/"+matrixtest.BotID, []byte(`{"since":"s1","ids":["$another:test.local"]}`)))
	e.start(s)
	e.waitMessage("demo held by alice")
}

// Text people type is posted back inert: whatever a hold's reason holds,
// the answer names nobody in m.mentions, does not mention the room, and
// its HTML has no element the text did not come from the bot.
func TestMatrix_HostileTextIsPostedInert(t *testing.T) {
	e := newEnv(t)
	for i, h := range bottest.Hostile {
		n := len(e.fake.Messages(e.room))
		e.fake.Say(alice, e.room, fmt.Sprintf("!stage hold demo %dm %s", 60+i, h))
		var got matrixtest.Message
		bottest.Eventually(t, "the answer to "+h, func() bool {
			ms := e.fake.Messages(e.room)
			if len(ms) <= n {
				return false
			}
			got = ms[len(ms)-1]
			return true
		})
		c := got.Current()
		mentions, _ := c["m.mentions"].(map[string]any)
		if ids, _ := mentions["user_ids"].([]any); len(ids) > 0 || mentions["room"] == true || mentions == nil {
			t.Errorf("%q: the answer's m.mentions is %v", h, c["m.mentions"])
		}
		if c["msgtype"] != "m.notice" {
			t.Errorf("%q: the answer is %v, not m.notice", h, c["msgtype"])
		}
		for _, tag := range []string{"<a", "<script", "<img", "<span"} {
			if strings.Contains(got.CurrentHTML(), tag) {
				t.Errorf("%q came back as HTML %s: %s", h, tag, got.CurrentHTML())
			}
		}
	}
}

// Someone who takes another's display name is shown with their user ID
// beside it: mallory called "alice" is not alice.
func TestMatrix_ASpoofedDisplayNameShowsTheUserID(t *testing.T) {
	e := newEnv(t)
	e.fake.SetDisplayName(e.room, mallory, "alice")
	e.fake.Say(mallory, e.room, "!stage hold demo 1h testing")
	e.waitMessage("You (alice (" + mallory + ")) are not allowed")
}

// After a long gap, a homeserver that pages past the stored position (as
// Dendrite does) and rate-limits the paging makes the bot run nothing
// twice: paging stops at the events it handled, by identity, and waits
// out each 429 instead of giving up.
func TestMatrix_RestartAfterAGapRunsNothingTwice(t *testing.T) {
	fake := matrixtest.New(t)
	room := fake.CreateRoom("infra", alice, bob)
	s, err := bolt.Open(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	e := &env{t: t, fake: fake, room: room}
	e.start(s)
	fake.Say(alice, room, "!stage hold demo 1h before the gap")
	e.waitMessage("alice holds demo until 10:00 UTC: before the gap")
	fake.Say(alice, room, "!stage release demo")
	e.waitMessage("ended: released")
	e.stop()
	e.a.Close()
	// More than a sync's timeline while the bot is down.
	fake.PagePastTo(true, 2)
	for i := range 70 {
		fake.Say(bob, room, fmt.Sprintf("chatter %d", i))
	}
	fake.Say(alice, room, "!stage hold demo 2h after the gap")
	e.start(s)
	e.waitMessage("after the gap")
	e.barrier()
	if n := e.count("before the gap"); n != 1 {
		t.Errorf("the command from before the gap was answered %d times, want once", n)
	}
	if n := e.count("ended: released"); n != 1 {
		t.Errorf("the release from before the gap was answered %d times, want once", n)
	}
	if fake.RateLimited() < 2 {
		t.Errorf("the paging was not rate-limited: %d", fake.RateLimited())
	}
}

// The bot's own account is not a person: a command typed from another of
// its devices is not run.
func TestMatrix_TheBotsOwnAccountIsIgnored(t *testing.T) {
	e := newEnv(t)
	e.fake.Say(matrixtest.BotID, e.room, "!stage hold demo 1h from another device")
	e.fake.Say(alice, e.room, "!stage holds")
	e.waitMessage("No holds.")
	if n := e.count("from another device"); n != 1 { // the command itself, as the fake keeps it
		t.Errorf("the bot's own command was answered: %d messages mention it", n)
	}
}

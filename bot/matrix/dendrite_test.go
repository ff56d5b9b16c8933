package matrix_test

import (
	"cmp"
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/stagebot/stagebot/bot"
	"github.com/stagebot/stagebot/bot/bottest"
	"github.com/stagebot/stagebot/bot/matrix"
	dt "github.com/stagebot/stagebot/bot/matrix/dendritetest"
	"github.com/stagebot/stagebot/internal/patience"
	"github.com/stagebot/stagebot/store"
	"github.com/stagebot/stagebot/store/bolt"
)

// real is the bot in a room of a real homeserver: Dendrite, with the
// accounts stagebot, alice (may do everything), bob (may approve) and
// mallory (may do nothing).
type real struct {
	t                         *testing.T
	srv                       *dt.Server
	botc, alice, bob, mallory *mautrix.Client
	room                      id.RoomID
	a                         *matrix.Adapter
	path                      string
	s                         store.Store
	// typed are events the bot's account sent from another device.
	typed map[id.EventID]bool
	*bottest.Scenario
	stop func()
}

func newReal(t *testing.T) *real {
	t.Helper()
	srv := dt.Start(t)
	r := &real{t: t, srv: srv, botc: srv.Register(t, "stagebot"), alice: srv.Register(t, "alice"),
		bob: srv.Register(t, "bob"), mallory: srv.Register(t, "mallory"), path: filepath.Join(t.TempDir(), "s.db"), typed: map[id.EventID]bool{}}
	r.room = dt.CreateRoom(t, r.alice, "infra", dt.RoomOptions{Joined: []*mautrix.Client{r.bob, r.mallory}, Invited: []*mautrix.Client{r.botc}})
	t.Cleanup(func() {
		if r.stop != nil {
			r.halt()
		}
		for _, m := range r.said() {
			if m.MsgType != "m.notice" {
				t.Errorf("the bot sent a %s, not an m.notice: %q", m.MsgType, m.Body)
			}
		}
	})
	return r
}

// start runs the bot on the store file, listening in #infra, and waits
// until it is in the room and syncing.
func (r *real) start(rooms ...string) {
	r.t.Helper()
	if len(rooms) == 0 {
		rooms = []string{dt.Alias("infra")}
	}
	s, err := bolt.Open(r.path)
	if err != nil {
		r.t.Fatal(err)
	}
	r.s = s
	a, err := matrix.New(matrix.Options{Homeserver: r.srv.URL, Token: r.botc.AccessToken, Rooms: rooms, SyncTimeout: 2 * time.Second})
	if err != nil {
		r.t.Fatal(err)
	}
	a.Outbox().MaxBackoff = 50 * time.Millisecond
	r.a = a
	o := options(r.room.String())
	o.Access.Users = map[string][]string{r.alice.UserID.String(): {"stage"}, r.bob.UserID.String(): {"stage.approve"}}
	clock := bottest.NewClock(time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC))
	r.Scenario, r.stop = bottest.RunBot(r.t, s, a, clock, o)
	patience.Until(r.t, "the bot in #infra and syncing", 20*time.Second, func() bool {
		return a.Connected() && dt.Joined(r.t, r.alice, r.room, r.botc.UserID)
	})
}

// halt stops the bot as a restart does: the process ends, the store is
// closed.
func (r *real) halt() {
	r.t.Helper()
	r.stop()
	r.a.Close()
	r.stop = nil
	if err := r.s.Close(); err != nil {
		r.t.Fatal(err)
	}
}

// audit is the store's audit log, oldest first.
func (r *real) audit() []store.Event {
	r.t.Helper()
	evs, err := r.Store.Events(context.Background(), store.EventFilter{})
	if err != nil {
		r.t.Fatal(err)
	}
	slices.SortFunc(evs, func(a, b store.Event) int { return cmp.Compare(a.ID, b.ID) })
	return evs
}

// said is what the bot has said in #infra.
func (r *real) said() []dt.Message {
	var out []dt.Message
	for _, m := range dt.From(dt.Messages(r.t, r.alice, r.room), r.botc.UserID) {
		if !r.typed[m.ID] {
			out = append(out, m)
		}
	}
	return out
}

// wait waits for a message of the bot containing want, and returns it.
func (r *real) wait(want string) dt.Message {
	r.t.Helper()
	var got dt.Message
	patience.Until(r.t, "the bot saying "+want, 20*time.Second, func() bool {
		for _, m := range r.said() {
			if strings.Contains(m.Body, want) {
				got = m
				return true
			}
		}
		return false
	}, func() string {
		var all []string
		for _, m := range r.said() {
			all = append(all, m.Body)
		}
		return strings.Join(all, "\n---\n")
	})
	return got
}

// barrier asks what only an answer can follow, and waits for that answer:
// everything sent before it has been handled, and answered, by then.
func (r *real) barrier(tag string) {
	r.t.Helper()
	tag = "zz-barrier-" + strings.ReplaceAll(tag, " ", "-")
	dt.Say(r.t, r.alice, r.room, "!stage status "+tag)
	r.wait(tag)
}

// TestDendrite_RestartAfterAGapRunsNothingTwice: on a real homeserver,
// after the bot was down while more happened than one sync's timeline
// holds, nothing from before the gap runs again (commands, reactions, the
// message that once crashed the bot), everything typed during the gap
// runs once, and a card from before the restart still takes reactions.
func TestDendrite_RestartAfterAGapRunsNothingTwice(t *testing.T) {
	r := newReal(t)
	r.start()
	dt.Say(t, r.alice, r.room, "!stage hold demo 1h before the gap")
	r.wait("alice holds demo until 10:00 UTC: before the gap")
	dt.Say(t, r.alice, r.room, "!stage release demo")
	r.wait("ended: released")
	dt.Say(t, r.alice, r.room, "!stage resync demo in 10m")
	card := r.wait("Run 1: refresh of demo")
	dt.React(t, r.alice, r.room, card.ID, "✅")
	r.wait("someone else must approve it")
	// Once a poison message: a pipeline in another case, by someone with
	// no scopes.
	dt.Say(t, r.mallory, r.room, "!stage resync demo DEFAULT --dry-run")
	r.wait("Dry run of demo/default")
	r.barrier("before the gap")
	before := r.audit()
	r.halt()

	for i := range 70 {
		dt.Say(t, r.bob, r.room, fmt.Sprintf("chatter %d", i))
	}
	dt.Say(t, r.alice, r.room, "!stage hold demo 2h after the gap")
	r.start()
	r.wait("alice holds demo until 11:00 UTC: after the gap")
	// A card from before the restart takes a reaction after it.
	dt.React(t, r.bob, r.room, card.ID, "✅")
	r.wait("bob approved run 1 of demo (1 of 1)")
	r.barrier("after the gap")

	said := r.said()
	for want, n := range map[string]int{
		"before the gap":                                  1,
		"ended: released":                                 1,
		"someone else must approve it":                    1,
		"Dry run of demo/default":                         1,
		"alice holds demo until 11:00 UTC: after the gap": 1,
		"bob approved run 1 of demo":                      1,
		"Run 2":                                           0,
		"hit an internal error":                           0,
		"alice holds demo until 10:00 UTC":                1,
	} {
		if got := dt.Count(said, want); got != n {
			t.Errorf("%q said %d times, want %d", want, got, n)
		}
	}
	// What the store recorded since the restart is the gap's hold and
	// bob's approval, nothing else: a command replayed whose answer the
	// homeserver folded into the first (same transaction) would show here.
	var since []string
	for _, e := range r.audit()[len(before):] {
		since = append(since, e.Action+" by "+e.Actor.ID)
	}
	want := []string{"hold by " + r.alice.UserID.String(), "approved by " + r.bob.UserID.String()}
	if !slices.Equal(since, want) {
		t.Errorf("audited since the restart: %q, want %q", since, want)
	}
	if runs, err := r.Store.Runs(context.Background(), store.RunFilter{}); err != nil || len(runs) != 1 {
		t.Errorf("runs after the restart: %d %v, want the one from before the gap", len(runs), err)
	}
}

// TestDendrite_TheBotsOwnAccountIsIgnored: a command typed by the bot's
// account from another device is not run.
func TestDendrite_TheBotsOwnAccountIsIgnored(t *testing.T) {
	r := newReal(t)
	r.start()
	other := r.srv.Login(t, "stagebot")
	if other.DeviceID == r.botc.DeviceID {
		t.Fatalf("the second login has the same device %s", other.DeviceID)
	}
	r.typed[dt.Say(t, other, r.room, "!stage hold demo 1h from another device")] = true
	dt.Say(t, r.alice, r.room, "!stage holds")
	r.wait("No holds.")
	if n := dt.Count(r.said(), "from another device"); n != 0 {
		t.Errorf("the bot answered its own account's command %d times", n)
	}
}

// TestDendrite_EncryptedAndInvitedRooms: `stagebot check` tells a room the
// bot is only invited to (whether it is encrypted is unknown until it
// joins) from an encrypted room it is in; the bot writes nothing plain
// into an encrypted room.
func TestDendrite_EncryptedAndInvitedRooms(t *testing.T) {
	r := newReal(t)
	secret := dt.CreateRoom(t, r.alice, "secret", dt.RoomOptions{Invited: []*mautrix.Client{r.botc}, Encrypted: true})
	dt.CreateRoom(t, r.alice, "ops", dt.RoomOptions{Invited: []*mautrix.Client{r.botc}})
	check := func() []string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), patience.D(20*time.Second))
		defer cancel()
		user, problems, err := matrix.Check(ctx, matrix.Options{Homeserver: r.srv.URL, Token: r.botc.AccessToken,
			Rooms: []string{dt.Alias("infra"), dt.Alias("ops"), dt.Alias("secret")}})
		if err != nil || user != r.botc.UserID.String() {
			t.Fatalf("check: %q %v", user, err)
		}
		return problems
	}
	// Invited, the bot sees the state an invitation carries: the
	// encrypted room says so; the others cannot be known until it joins.
	problems := check()
	if len(problems) != 3 {
		t.Fatalf("check before joining: %q, want one line per room (none joined)", problems)
	}
	for _, p := range problems {
		encrypted := strings.Contains(p, dt.Alias("secret"))
		if encrypted != strings.Contains(p, "is end-to-end encrypted") || !encrypted && !strings.Contains(p, "not in it yet") {
			t.Errorf("check, for a room the bot is only invited to: %q", p)
		}
	}
	r.start(dt.Alias("infra"), dt.Alias("secret"))
	patience.Until(t, "the bot in the encrypted room", 20*time.Second, func() bool { return dt.Joined(t, r.alice, secret, r.botc.UserID) })
	if _, err := r.a.Send(context.Background(), bot.Message{Channel: secret.String(), Text: "hello"}); err != nil {
		t.Logf("a send into the encrypted room: %v", err)
	}
	dt.Say(t, r.alice, secret, "!stage holds")
	r.barrier("after the encrypted room")
	if m := dt.From(dt.Messages(t, r.alice, secret), r.botc.UserID); len(m) != 0 {
		t.Errorf("the bot wrote plain text into an encrypted room: %q", m[0].Body)
	}
	problems = check()
	var enc, ops []string
	for _, p := range problems {
		switch {
		case strings.Contains(p, dt.Alias("secret")):
			enc = append(enc, p)
		case strings.Contains(p, dt.Alias("ops")):
			ops = append(ops, p)
		default:
			t.Errorf("check names a joined, unencrypted room: %q", p)
		}
	}
	if len(enc) != 1 || !strings.Contains(enc[0], "is end-to-end encrypted") {
		t.Errorf("check, once in the encrypted room: %q", enc)
	}
	if len(ops) != 1 || strings.Contains(ops[0], "is end-to-end encrypted") {
		t.Errorf("check, for the room still only invited to: %q", ops)
	}
}

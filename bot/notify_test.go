package bot_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stagebot/stagebot/bot/bottest"
)

// mentions says whether a message that says text mentions user's ID.
func mentions(ps []bottest.Posted, text, id string) bool {
	for _, p := range ps {
		if !strings.Contains(p.Msg.Text, text) {
			continue
		}
		for _, u := range p.Msg.Mentions {
			if u.ID == id {
				return true
			}
		}
	}
	return false
}

// TestNotify_OnceWhenTheLastHoldEnds: alice asks to be told when fas2 is
// free; the first of two holds ending says nothing, the second (by
// expiry) tells her, in the channel she asked in, once; !stage watches
// lists what she waits for until then.
func TestNotify_OnceWhenTheLastHoldEnds(t *testing.T) {
	e := newEnv(t)
	wantText(t, e.say(alice, "!stage notify fas2"), "fas2 is not held now: it is free")

	held := e.say(bob, "!stage hold fas2 1h testing the login")
	var button string
	for _, p := range held {
		for _, b := range p.Msg.Buttons {
			if b.Label == "Notify me when free" {
				button = b.Command
			}
		}
	}
	if button != "!stage notify fas2" {
		t.Fatalf("the hold's reply has no Notify button (got %q):\n%s", button, texts(held))
	}
	e.say(carol, "!stage hold fas2 2h trying the migration")
	// The button is what alice clicks; she is in another channel.
	wantText(t, e.sayIn("ops", alice, button), "I will tell you here when fas2 is free: held by bob until 10:00 UTC, carol until 11:00 UTC")
	wantText(t, e.sayIn("ops", alice, "!stage notify fas2"), "You will already be told when fas2 is free")
	wantText(t, e.say(alice, "!stage watches"), "fas2: you will be told once when it is free")

	// bob's hold ends; carol's still covers fas2.
	if out := e.say(bob, "!stage release fas2"); strings.Contains(texts(out), "is free") {
		t.Fatalf("told free while carol still holds it:\n%s", texts(out))
	}
	// carol's hold expires (after its warning): alice hears, in ops.
	var out []bottest.Posted
	for range 24 {
		out = append(out, e.advance(5*time.Minute)...)
	}
	if !mentions(out, "fas2 is free: no hold is on it now", alice.ID) {
		t.Fatalf("alice was not told fas2 is free:\n%s", texts(out))
	}
	for _, p := range out {
		if strings.Contains(p.Msg.Text, "fas2 is free") && p.Msg.Channel != "ops" {
			t.Errorf("told in #%s, not in #ops where she asked", p.Msg.Channel)
		}
	}
	// Once: a new hold and its end say nothing more to her.
	e.say(bob, "!stage hold fas2 1h again")
	if out := e.say(bob, "!stage release fas2"); mentions(out, "is free", alice.ID) {
		t.Errorf("told a second time:\n%s", texts(out))
	}
	wantText(t, e.say(alice, "!stage watches"), "You wait for nothing and watch nothing")
}

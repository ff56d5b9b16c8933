package slack_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stagebot/stagebot/bot/slack/slacktest"
	"github.com/stagebot/stagebot/internal/patience"
)

// waitHome waits until the App Home published for user contains want.
func (e *env) waitHome(user, want string) slacktest.Message {
	e.t.Helper()
	deadline := time.Now().Add(patience.D(10 * time.Second))
	var home slacktest.Message
	for time.Now().Before(deadline) {
		var ok bool
		if home, ok = e.fake.Home(user); ok && strings.Contains(home.AllText(), want) {
			return home
		}
		time.Sleep(10 * time.Millisecond)
	}
	e.t.Fatalf("the App Home of %s never showed %q; it shows:\n%s", user, want, home.AllText())
	return home
}

// TestHome_ShowsStateWithTheViewersButtons: opening the Home tab shows
// each target's data, holds and waiting runs, with Release and Extend on
// the viewer's own hold and Approve where the viewer may approve; a click
// there is the command typed in the control channel, and the home is
// shown again.
func TestHome_ShowsStateWithTheViewersButtons(t *testing.T) {
	e := newEnv(t)
	_, err := e.fake.Say("U1", infra, "!stage hold demo 1h testing the login")
	must(t, err)
	e.waitMessage("alice holds demo")
	_, err = e.fake.Say("U1", infra, "!stage resync demo in 10m")
	must(t, err)
	e.waitMessage("Run 1: refresh of demo")

	must(t, e.fake.OpenHome("U2"))
	home := e.waitHome("U2", "held by alice")
	for _, want := range []string{"*demo*: never refreshed by stagebot", "testing the login", "run 1 (default) scheduled, starts 09:10 UTC, asked by alice"} {
		if !strings.Contains(home.AllText(), want) {
			t.Errorf("bob's home lacks %q:\n%s", want, home.AllText())
		}
	}
	if b := home.Buttons(); b["Approve 1"] != "!stage approve 1" || b["Release demo"] != "" {
		t.Errorf("bob's buttons: %v (want Approve 1, and no Release of alice's hold)", b)
	}
	must(t, e.fake.OpenHome("U1"))
	e.waitHome("U1", "held by alice")
	// A change made elsewhere shows in an open home by itself.
	_, err = e.fake.Say("U1", infra, "!stage hold demo 3h testing the login")
	must(t, err)
	home = e.waitHome("U1", "held by alice until 12:00 UTC")
	if b := home.Buttons(); b["Release demo"] != "!stage release demo" || !strings.HasPrefix(b["Extend demo 2h"], "!stage hold demo 2h") || b["Approve 1"] != "" {
		t.Errorf("alice's buttons: %v (want Release and Extend on her hold, no Approve of her own run)", b)
	}

	publishes := e.fake.Calls("views.publish")
	must(t, e.fake.ClickHome("U2", "bob", "Approve 1"))
	if m := e.waitMessage("bob approved run 1 of demo"); m.Channel != infra {
		t.Errorf("the approval was answered in %s, not the control channel", m.Channel)
	}
	must(t, e.fake.ClickHome("U1", "alice", "Release demo"))
	e.waitMessage("Hold on demo by alice ended")
	e.waitHome("U1", "never refreshed")
	deadline := time.Now().Add(patience.D(10 * time.Second))
	for e.fake.Calls("views.publish") < publishes+2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := e.fake.Calls("views.publish"); n < publishes+2 {
		t.Errorf("the home was not shown again after the clicks (%d publishes, %d before)", n, publishes)
	}
	if home, _ := e.fake.Home("U1"); strings.Contains(home.AllText(), "held by alice") {
		t.Errorf("after the release alice's home still shows the hold:\n%s", home.AllText())
	}
}

// TestHoldModal_FromTheHomeAndAShortcut: the Hold modal opens from the Home
// tab's button and from the global shortcut, offers the targets and only
// hold lengths within the limits, and its submission holds the target as
// the person, answered in the control channel.
func TestHoldModal_FromTheHomeAndAShortcut(t *testing.T) {
	e := newEnv(t)
	must(t, e.fake.OpenHome("U1"))
	e.waitHome("U1", "demo")
	must(t, e.fake.ClickHome("U1", "alice", "Hold a target…"))
	must(t, e.fake.Shortcut("U1", "alice", "stagebot_hold"))
	deadline := time.Now().Add(patience.D(10 * time.Second))
	for len(e.fake.Modals()) < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	modals := e.fake.Modals()
	if len(modals) != 2 {
		t.Fatalf("%d modals opened, want 2 (the button and the shortcut)", len(modals))
	}
	text := jsonText(modals[0])
	for _, want := range []string{`"callback_id":"stagebot_hold"`, `"value":"demo"`, `"value":"2h"`} {
		if !strings.Contains(text, want) {
			t.Errorf("the modal lacks %s:\n%s", want, text)
		}
	}
	// bottest's bot allows holds of at most a week (the default).
	if !strings.Contains(text, `"value":"1w"`) || strings.Contains(text, `"value":"2w"`) {
		t.Errorf("the modal's lengths are not those up to a week:\n%s", text)
	}
	must(t, e.fake.Submit("U1", "alice", "stagebot_hold", map[string]string{"target": "demo", "length": "4h"}, map[string]string{"reason": `testing "the" login`}))
	if m := e.waitMessage(`alice holds demo until 13:00 UTC: testing "the" login`); m.Channel != infra {
		t.Errorf("the hold was answered in %s, not the control channel", m.Channel)
	}
	e.waitHome("U1", `held by alice until 13:00 UTC: testing "the" login`)
}

func jsonText(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

package slack_test

import (
	"os"
	"slices"
	"sort"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/stagebot/stagebot/store"
)

// methodScopes are the bot-token scopes of the Web API methods the adapter
// may call (Slack's method reference). A method the adapter calls that is
// not here fails the test: add it with its scope, and the scope to the
// manifest.
var methodScopes = map[string]string{
	"auth.test":             "",
	"users.info":            "users:read",
	"chat.postMessage":      "chat:write",
	"chat.update":           "chat:write",
	"apps.connections.open": "", // the app-level token's connections:write
	"views.publish":         "",
	"views.open":            "",
}

// eventScopes are the scopes each subscribed event needs.
var eventScopes = map[string]string{
	"app_mention":      "app_mentions:read",
	"message.channels": "channels:history",
	"message.groups":   "groups:history",
	"message.im":       "im:history",
	"app_home_opened":  "",
}

type manifest struct {
	Features struct {
		AppHome struct {
			HomeTab             bool `yaml:"home_tab_enabled"`
			MessagesTab         bool `yaml:"messages_tab_enabled"`
			MessagesTabReadOnly bool `yaml:"messages_tab_read_only_enabled"`
		} `yaml:"app_home"`
		Shortcuts []struct {
			Type       string `yaml:"type"`
			CallbackID string `yaml:"callback_id"`
		} `yaml:"shortcuts"`
		SlashCommands []struct {
			Command string `yaml:"command"`
		} `yaml:"slash_commands"`
	} `yaml:"features"`
	OAuth struct {
		Scopes struct {
			Bot []string `yaml:"bot"`
		} `yaml:"scopes"`
	} `yaml:"oauth_config"`
	Settings struct {
		Events struct {
			Bot []string `yaml:"bot_events"`
		} `yaml:"event_subscriptions"`
		Interactivity struct {
			Enabled bool `yaml:"is_enabled"`
		} `yaml:"interactivity"`
		SocketMode bool `yaml:"socket_mode_enabled"`
	} `yaml:"settings"`
}

// TestManifest_ScopesAreWhatTheAdapterUses drives the adapter through
// everything it does (a channel message, a direct message, a mention, a
// slash command, a button, a run whose status is edited), records every
// Web API method it called on the fake, and checks the shipped manifest
// asks for exactly the scopes those methods and the events need, with the
// messages tab on so that people can message the bot directly.
func TestManifest_ScopesAreWhatTheAdapterUses(t *testing.T) {
	data, err := os.ReadFile("../../examples/slack-manifest.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var m manifest
	if err := yaml.Unmarshal(data, &m); err != nil {
		t.Fatalf("examples/slack-manifest.yaml: %v", err)
	}
	if len(m.Features.Shortcuts) != 1 || m.Features.Shortcuts[0].Type != "global" || m.Features.Shortcuts[0].CallbackID != "stagebot_hold" {
		t.Errorf("the manifest needs the global shortcut stagebot_hold (the Hold modal): %+v", m.Features.Shortcuts)
	}
	if !m.Features.AppHome.HomeTab {
		t.Error("the manifest must turn the Home tab on: the adapter publishes one")
	}
	if !m.Features.AppHome.MessagesTab || m.Features.AppHome.MessagesTabReadOnly {
		t.Error("the manifest must turn the messages tab on and writable, or Slack refuses direct messages to the bot")
	}
	if !m.Settings.SocketMode || !m.Settings.Interactivity.Enabled || len(m.Features.SlashCommands) != 1 || m.Features.SlashCommands[0].Command != "/stage" {
		t.Errorf("the manifest needs socket mode, interactivity and /stage: %+v", m)
	}

	e := newEnv(t)
	_, err = e.fake.Say("U1", infra, "!stage resync demo in 10m")
	must(t, err)
	card := e.waitMessage("Run 1: refresh of demo")
	must(t, e.fake.Click("U2", "bob", card, "Approve"))
	e.waitMessage("bob approved run 1")
	_, err = e.fake.SayDirect("U1", "D1", "!stage holds")
	must(t, err)
	e.waitMessage("No holds.")
	must(t, e.fake.Mention("U2", infra, "history"))
	_, err = e.fake.Slash("U1", "alice", infra, "status")
	must(t, err)
	e.Clock.Advance(10 * time.Minute)
	e.WaitRun(1, store.RunSucceeded)
	e.waitMessage("Run 1 of demo/default: succeeded")
	must(t, e.fake.OpenHome("U1"))
	e.waitHome("U1", "demo")

	need := map[string]bool{"commands": true} // the slash command
	for _, method := range e.fake.Methods() {
		scope, ok := methodScopes[method]
		if !ok {
			t.Errorf("the adapter calls %s, which the test does not know: add its scope to methodScopes and to the manifest", method)
			continue
		}
		if scope != "" {
			need[scope] = true
		}
	}
	if !slices.Contains(e.fake.Methods(), "views.publish") {
		t.Error("opening the Home tab published no view")
	}
	for _, ev := range m.Settings.Events.Bot {
		scope, ok := eventScopes[ev]
		if !ok {
			t.Errorf("the manifest subscribes to %s, which the adapter does not handle", ev)
			continue
		}
		if scope != "" {
			need[scope] = true
		}
	}
	for _, ev := range []string{"app_mention", "message.channels", "message.groups", "message.im", "app_home_opened"} {
		if !slices.Contains(m.Settings.Events.Bot, ev) {
			t.Errorf("the manifest does not subscribe to %s, which the adapter handles", ev)
		}
	}
	var want []string
	for s := range need {
		want = append(want, s)
	}
	sort.Strings(want)
	got := slices.Clone(m.OAuth.Scopes.Bot)
	sort.Strings(got)
	if !slices.Equal(got, want) {
		t.Errorf("manifest bot scopes %v, want exactly %v (methods called: %v)", got, want, e.fake.Methods())
	}
}

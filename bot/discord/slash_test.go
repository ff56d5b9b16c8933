package discord_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stagebot/stagebot/bot/discord/discordtest"
	"github.com/stagebot/stagebot/commands"
	"github.com/stagebot/stagebot/internal/patience"
)

// TestSlash_RegisteredAnsweredAndCompleted: at start the bot registers
// /stage in its guild with a subcommand per verb of the command table; a
// /stage command is answered at once (Discord's 3 seconds) and run as the
// typed command, with the same access check; options are completed from
// the bot's state as people type.
func TestSlash_RegisteredAnsweredAndCompleted(t *testing.T) {
	e := newEnv(t)
	var cmds []map[string]any
	deadline := time.Now().Add(patience.D(10 * time.Second))
	for len(cmds) == 0 && time.Now().Before(deadline) {
		cmds = e.fake.Commands(discordtest.Guild)
		time.Sleep(10 * time.Millisecond)
	}
	if len(cmds) != 1 || cmds[0]["name"] != "stage" {
		t.Fatalf("registered commands: %v", cmds)
	}
	var stage struct {
		Options []struct {
			Name    string `json:"name"`
			Type    int    `json:"type"`
			Options []struct {
				Name         string `json:"name"`
				Type         int    `json:"type"`
				Required     bool   `json:"required"`
				Autocomplete bool   `json:"autocomplete"`
			} `json:"options"`
		} `json:"options"`
	}
	raw, _ := json.Marshal(cmds[0])
	if err := json.Unmarshal(raw, &stage); err != nil {
		t.Fatal(err)
	}
	var subs []string
	for _, o := range stage.Options {
		subs = append(subs, o.Name)
		if o.Name == "approve" && (len(o.Options) != 1 || o.Options[0].Type != 4 || !o.Options[0].Required || !o.Options[0].Autocomplete) {
			t.Errorf("approve's options: %+v", o.Options)
		}
	}
	var verbs []string
	for _, s := range commands.Table() {
		verbs = append(verbs, s.Name)
	}
	if !slices.Equal(subs, verbs) {
		t.Errorf("subcommands %v, want the command table's verbs %v", subs, verbs)
	}

	// /stage status: answered at once, privately; the reply follows.
	id, err := e.fake.Slash("U1", "alice", infra, "status")
	must(t, err)
	cb, err := e.fake.Callback(id, patience.D(3*time.Second))
	must(t, err)
	if d, _ := cb["data"].(map[string]any); cb["type"] != float64(4) || !strings.Contains(d["content"].(string), "On it: `/stage status`") || d["flags"] != float64(64) {
		t.Errorf("the answer to /stage status: %v", cb)
	}
	e.waitMessage("never refreshed by stagebot")
	// Typed options become the command.
	_, err = e.fake.Slash("U1", "alice", infra, "resync", discordtest.Option{Name: "target", Type: 3, Value: "demo"}, discordtest.Option{Name: "rest", Type: 3, Value: "in 10m"})
	must(t, err)
	e.waitMessage("Run 1: refresh of demo")
	// A person without the scope is refused as if they had typed it.
	_, err = e.fake.Slash("U9", "mallory", infra, "cancel", discordtest.Option{Name: "run", Type: 4, Value: 1})
	must(t, err)
	e.waitMessage("stage.cancel")

	// Completion: targets and runs from the bot's state.
	id, err = e.fake.Autocomplete("U1", "alice", infra, "hold", discordtest.Option{Name: "target", Type: 3, Value: "de", Focused: true})
	must(t, err)
	cb, err = e.fake.Callback(id, patience.D(3*time.Second))
	must(t, err)
	if cb["type"] != float64(8) || !strings.Contains(jsonText(cb), `"value":"demo"`) {
		t.Errorf("target choices: %v", cb)
	}
	id, err = e.fake.Autocomplete("U2", "bob", infra, "approve", discordtest.Option{Name: "run", Type: 4, Value: "", Focused: true})
	must(t, err)
	cb, err = e.fake.Callback(id, patience.D(3*time.Second))
	must(t, err)
	if !strings.Contains(jsonText(cb), `"name":"1: demo/default, scheduled","value":1`) {
		t.Errorf("run choices: %v", jsonText(cb))
	}
	id, err = e.fake.Autocomplete("U1", "alice", infra, "hold", discordtest.Option{Name: "target", Type: 3, Value: "zz", Focused: true})
	must(t, err)
	cb, err = e.fake.Callback(id, patience.D(3*time.Second))
	must(t, err)
	if cb["type"] != float64(8) || strings.Contains(jsonText(cb), `"value"`) {
		t.Errorf("choices for a prefix nothing has: %v", jsonText(cb))
	}
}

func jsonText(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

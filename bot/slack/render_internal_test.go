package slack

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/slack-go/slack"

	"github.com/stagebot/stagebot/bot/bottest"
)

// The Block Kit every kind of message becomes, as Slack receives it
// (testdata/render.golden; -update rewrites it).
func TestRender_Golden(t *testing.T) {
	var out bytes.Buffer
	for _, s := range bottest.Samples() {
		text, blocks := payload(s.Msg)
		j, err := json.MarshalIndent(slack.Blocks{BlockSet: blocks}, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&out, "== %s\ntext: %q\nblocks: %s\n\n", s.Name, text, j)
	}
	bottest.Golden(t, "render.golden", out.Bytes())
}

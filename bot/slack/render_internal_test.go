package slack

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/slack-go/slack"

	"github.com/stagebot/stagebot/bot"
	"github.com/stagebot/stagebot/bot/bottest"
)

// The Block Kit every kind of message becomes, as Slack receives it
// (testdata/render.golden; -update rewrites it).
func TestRender_Golden(t *testing.T) {
	bottest.GoldenRenders(t, func(m bot.Message) (string, error) {
		text, blocks := payload(m)
		j, err := json.MarshalIndent(slack.Blocks{BlockSet: blocks}, "", "  ")
		return fmt.Sprintf("text: %q\nblocks: %s", text, j), err
	})
}

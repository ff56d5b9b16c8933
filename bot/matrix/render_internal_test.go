package matrix

import (
	"encoding/json"
	"testing"

	"github.com/stagebot/stagebot/bot"
	"github.com/stagebot/stagebot/bot/bottest"
)

// The event content every kind of message becomes (testdata/render.golden;
// -update rewrites it).
func TestRender_Golden(t *testing.T) {
	bottest.GoldenRenders(t, func(m bot.Message) (string, error) {
		j, err := json.MarshalIndent(render(m, maxBody), "", "  ")
		return string(j), err
	})
}

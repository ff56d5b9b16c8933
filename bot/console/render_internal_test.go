package console

import (
	"fmt"
	"testing"

	"github.com/stagebot/stagebot/bot"
	"github.com/stagebot/stagebot/bot/bottest"
)

// What every kind of message looks like in the terminal, control
// characters shown escaped (testdata/render.golden; -update rewrites it).
func TestRender_Golden(t *testing.T) {
	bottest.GoldenRenders(t, func(m bot.Message) (string, error) {
		return fmt.Sprintf("%q", render("stagebot", m)), nil
	})
}

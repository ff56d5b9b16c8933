package discord

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/stagebot/stagebot/bot"
	"github.com/stagebot/stagebot/bot/bottest"
)

// The content, components and allowed mentions every kind of message
// becomes (testdata/render.golden; -update rewrites it).
func TestRender_Golden(t *testing.T) {
	a := &Adapter{buttons: map[string]string{}}
	bottest.GoldenRenders(t, func(m bot.Message) (string, error) {
		content, comps, allowed := a.render(m)
		j, err := json.MarshalIndent(map[string]any{"components": comps, "allowed_mentions": allowed}, "", "  ")
		return fmt.Sprintf("content: %q\n%s", content, j), err
	})
}

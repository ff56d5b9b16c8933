package discord

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/stagebot/stagebot/bot/bottest"
)

// The content, components and allowed mentions every kind of message
// becomes (testdata/render.golden; -update rewrites it).
func TestRender_Golden(t *testing.T) {
	a := &Adapter{buttons: map[string]string{}}
	var out bytes.Buffer
	for _, s := range bottest.Samples() {
		content, comps, allowed := a.render(s.Msg)
		j, err := json.MarshalIndent(map[string]any{"components": comps, "allowed_mentions": allowed}, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&out, "== %s\ncontent: %q\n%s\n\n", s.Name, content, j)
	}
	bottest.Golden(t, "render.golden", out.Bytes())
}

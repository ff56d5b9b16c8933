package console

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/stagebot/stagebot/bot/bottest"
)

// What every kind of message looks like in the terminal, control
// characters shown escaped (testdata/render.golden; -update rewrites it).
func TestRender_Golden(t *testing.T) {
	var out bytes.Buffer
	for _, s := range bottest.Samples() {
		fmt.Fprintf(&out, "== %s\n%q\n\n", s.Name, render("stagebot", s.Msg))
	}
	bottest.Golden(t, "render.golden", out.Bytes())
}

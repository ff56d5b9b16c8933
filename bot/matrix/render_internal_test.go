package matrix

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/stagebot/stagebot/bot/bottest"
)

// The event content every kind of message becomes (testdata/render.golden;
// -update rewrites it).
func TestRender_Golden(t *testing.T) {
	var out bytes.Buffer
	for _, s := range bottest.Samples() {
		j, err := json.MarshalIndent(render(s.Msg, maxBody), "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&out, "== %s\n%s\n\n", s.Name, j)
	}
	bottest.Golden(t, "render.golden", out.Bytes())
}

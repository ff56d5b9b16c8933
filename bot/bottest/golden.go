package bottest

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stagebot/stagebot/bot"
	"github.com/stagebot/stagebot/store"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/ with what the tests render now")

// Golden compares got with the file testdata/name, and rewrites the file
// instead when the test runs with -update. A difference fails the test
// with both, so a change of wording is seen and kept on purpose.
func Golden(t testing.TB, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run the test with -update to write it)", err)
	}
	if !bytes.Equal(want, got) {
		t.Errorf("%s differs from what is rendered now (go test -run %s -update rewrites it):\n--- want\n%s\n--- got\n%s", path, t.Name(), want, got)
	}
}

// Sample is a message every adapter renders for its golden file.
type Sample struct {
	Name string
	Msg  bot.Message
}

// Samples are the shapes of message the bot sends: a card with fields,
// buttons and mentions; a status with markup in it; an answer quoting what
// people typed (Hostile); a reply in a thread.
func Samples() []Sample {
	alice, bob := store.User{ID: "U1", Name: "alice"}, store.User{ID: "U2", Name: "bob", Handle: "@bob"}
	return []Sample{
		{"card", bot.Message{Channel: "infra",
			Text:   "🗓 Run 7: refresh of *fas2* (default pipeline) starts at 12:00 UTC (in 2h).\nWhat will be lost: the staging data of fas2 is replaced; save anything you need, or hold it.",
			Fields: []bot.Field{{Label: "Asked by", Value: "alice"}, {Label: "Approvals", Value: "0 of 1"}, {Label: "Held by", Value: "bob until 11:00 UTC (testing the login)"}},
			Buttons: []bot.Button{{Label: "Approve", Command: "!stage approve 7"}, {Label: "Defer 1h", Command: "!stage defer 7 1h"},
				{Label: "Cancel", Command: "!stage cancel 7", Danger: true}},
			Mentions: []store.User{alice, bob}}},
		{"status", bot.Message{Channel: "infra",
			Text: "▶ Run 7 of fas2/default: running for 2m\n✓ stop app (1s)\n▶ `pg_refresh` copy production: 42% (1.2 GiB of 2.9 GiB), 3/12 tables · ETA 3m\n· swap"}},
		{"hostile", bot.Message{Channel: "infra", Text: "alice holds fas2 until 12:00 UTC: " + strings.Join(Hostile, " ")}},
		{"thread reply", bot.Message{Channel: "infra", Thread: store.MessageRef{Channel: "infra", ID: "1700000000.000100"},
			Text: "✅ Run 7 of fas2/default succeeded in 3m12s.", Mentions: []store.User{alice}}},
	}
}

// GoldenRenders renders every Sample with render, an adapter's own, and
// compares what it makes with testdata/render.golden.
func GoldenRenders(t testing.TB, render func(bot.Message) (string, error)) {
	t.Helper()
	var out bytes.Buffer
	for _, s := range Samples() {
		r, err := render(s.Msg)
		if err != nil {
			t.Fatalf("%s: %v", s.Name, err)
		}
		fmt.Fprintf(&out, "== %s\n%s\n\n", s.Name, r)
	}
	Golden(t, "render.golden", out.Bytes())
}

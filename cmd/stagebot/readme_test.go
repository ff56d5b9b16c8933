package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stagebot/stagebot/internal/patience"
)

// TestReadme_TryBlockWorksAsWritten pipes the README's "Try these lines"
// block into `stagebot demo` and checks that every line does what the
// README says.
func TestReadme_TryBlockWorksAsWritten(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two PostgreSQL servers; run without -short")
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(readme)
	i := strings.Index(s, "Try these lines")
	if i < 0 {
		t.Fatal("README has no Try block")
	}
	start := strings.Index(s[i:], "```\n") + i + 4
	block := s[start : start+strings.Index(s[start:], "```")]
	ctx, cancel := context.WithTimeout(context.Background(), patience.D(5*time.Minute))
	defer cancel()
	var out bytes.Buffer
	if err := Main(ctx, []string{"demo", "--as", "alice"}, strings.NewReader(block), &out, &out); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	got := out.String()
	for _, bad := range []string{"I don't know the command", "There is no target", "Usage:", "a quote is not closed", "Something went wrong", "Console commands:"} {
		if strings.Contains(got, bad) {
			t.Errorf("a line of the Try block failed (%q)", bad)
		}
	}
	for _, want := range []string{
		"✅ Run 1 of demo/default succeeded",
		"*demo* — the demo shop's staging database",
		"alice holds demo until",
		"Run 2 of demo is due but waits: held by alice",
		"The holds on demo have ended, so the run has a new start.",
		"Run 2 of demo was cancelled by alice: not needed after all. Staging is unchanged.",
		"❌ Run 3 of demo/broken failed",
		"Staging is as it was: the run stopped before the swap.",
		"✅ Run 4 of demo/default succeeded",
		"✅ Run 5 of demo/rollback succeeded",
		"Run 3 of demo/broken: failed",
		// The demo serves the status page, and the log links to the run's.
		"/runs/3",
		"(you are now bob)",
		"No holds.",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(got)
	}
}

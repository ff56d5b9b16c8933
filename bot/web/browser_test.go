package web_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/stagebot/stagebot/bot/web"
	"github.com/stagebot/stagebot/internal/patience"
	"github.com/stagebot/stagebot/runner"
	"github.com/stagebot/stagebot/store"
)

// chromium finds Debian's headless browser; make test installs it.
func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no Chromium to test the status page in: run make test (it installs Debian's chromium package), or apt-get install chromium")
	return ""
}

// TestBrowser_StatusPageFollowsARun loads the status page in headless
// Chromium during a run and sees, without reloading, the hold, the run's
// steps as they change and its end. STAGEBOT_SCREENSHOT=FILE keeps a
// screenshot of the page mid-run.
func TestBrowser_StatusPageFollowsARun(t *testing.T) {
	exe := chromium(t)
	a, metrics, sc := pageBot(t, "fas2", "Fedora accounts staging",
		[]runner.Step{
			&runner.Exec{StepName: "stop httpd", Shell: "echo stopping"},
			&runner.Exec{StepName: "copy production", Shell: "echo copying; sleep 3"},
			&runner.Exec{StepName: "sanitise", Shell: "echo sanitising"},
		},
		[]runner.Step{&runner.Exec{StepName: "start httpd", Shell: "echo starting"}})
	base := serve(t, sc, metrics, web.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(1000, 900))...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()
	bctx, cancelTimeout := context.WithTimeout(bctx, patience.D(90*time.Second))
	defer cancelTimeout()

	a.Type(ctx, "infra", alice, "!stage hold fas2 1h testing the new login")
	a.Type(ctx, "infra", bob, "!stage resync fas2 now")
	if err := chromedp.Do(bctx, chromedp.Navigate(base+"/")); err != nil {
		t.Fatal(err)
	}
	text, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS("#live")))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"fas2", "alice until", "testing the new login", "Run 1 (default) waiting"} {
		if !strings.Contains(text, want) {
			t.Fatalf("the page lacks %q:\n%s", want, text)
		}
	}
	// The run starts once the hold ends; the page follows by itself.
	a.Type(ctx, "infra", alice, "!stage release fas2")
	waitText := func(what string, cond func(string) bool) {
		t.Helper()
		deadline := time.Now().Add(patience.D(30 * time.Second))
		for {
			sc.Clock.Advance(time.Minute)
			if text, err = chromedp.Run(bctx, chromedp.Text(chromedp.CSS("#live"))); err != nil {
				t.Fatal(err)
			}
			if cond(text) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the page never showed %s:\n%s", what, text)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	waitText("the copy under way", func(s string) bool {
		return strings.Contains(s, "▶ copy production") && strings.Contains(s, "✓ stop httpd")
	})
	if path := os.Getenv("STAGEBOT_SCREENSHOT"); path != "" {
		png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		os.MkdirAll(filepath.Dir(path), 0o755)
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	waitText("the run's end", func(s string) bool { return !strings.Contains(s, "Run 1") })
	sc.WaitRun(1, store.RunSucceeded)
	if err := chromedp.Do(bctx, chromedp.Reload()); err != nil {
		t.Fatal(err)
	}
	history, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS("table")))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(history, "#1") || !strings.Contains(history, "succeeded") {
		t.Fatalf("history after the run:\n%s", history)
	}
}

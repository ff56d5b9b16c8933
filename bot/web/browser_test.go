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

	"github.com/stagebot/stagebot/bot/bottest"
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

// TestBrowser_StatusPageFollowsARun loads the status page and a run's page
// in headless Chromium during a run and sees, without reloading, the hold,
// the run's steps as they change, its end on the run's page and in the
// history; then the same page on a phone's width fits without sideways
// scrolling. Screenshots of each are kept in the test's artifact
// directory (go test -artifacts keeps them).
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
	shots := t.ArtifactDir()
	screenshot := func(ctx context.Context, name string) {
		t.Helper()
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(shots, name), png, 0o644); err != nil {
			t.Fatal(err)
		}
		if path := os.Getenv("STAGEBOT_SCREENSHOT"); path != "" && name == "desktop-running.png" {
			os.MkdirAll(filepath.Dir(path), 0o755)
			os.WriteFile(path, png, 0o644)
		}
	}

	a.Type(ctx, "infra", alice, "!stage hold fas2 1h testing the new login")
	a.Type(ctx, "infra", bob, "!stage resync fas2 now")
	if err := chromedp.Do(bctx, chromedp.Navigate(base+"/")); err != nil {
		t.Fatal(err)
	}
	text, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS("#live")))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"fas2", "alice until", "testing the new login", "‖ held Run 1 (default), asked by bob: starts once the holds end", "No runs yet."} {
		if !strings.Contains(text, want) {
			t.Fatalf("the page lacks %q:\n%s", want, text)
		}
	}
	// Colour per state: the held badge is not the page's text colour.
	if colour, err := chromedp.Run(bctx, chromedp.Evaluate[string](`getComputedStyle(document.querySelector(".badge.s-held")).backgroundColor`)); err != nil || colour == "" || colour == "rgba(0, 0, 0, 0)" {
		t.Errorf("the held badge has no colour: %q, %v", colour, err)
	}
	// The run starts once the hold ends; the page follows by itself.
	a.Type(ctx, "infra", alice, "!stage release fas2")
	waitText := func(ctx context.Context, sel, what string, cond func(string) bool) {
		t.Helper()
		deadline := time.Now().Add(patience.D(30 * time.Second))
		for {
			sc.Clock.Advance(time.Minute)
			if text, err = chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel))); err != nil {
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
	waitText(bctx, "#live", "the copy under way", func(s string) bool {
		return strings.Contains(s, "▶ copy production") && strings.Contains(s, "✓ stop httpd")
	})
	screenshot(bctx, "desktop-running.png")

	// The run's own page, opened mid-run in a second tab, follows it to
	// its end.
	rctx, cancelRun := chromedp.NewContext(bctx)
	defer cancelRun()
	if err := chromedp.Do(rctx, chromedp.Navigate(base+"/runs/1")); err != nil {
		t.Fatal(err)
	}
	waitText(rctx, "#run", "the run's end on its page", func(s string) bool {
		return strings.Contains(s, "✓ succeeded") && strings.Contains(s, "✓ start httpd")
	})
	sc.WaitRun(1, store.RunSucceeded)
	// The history, without a reload.
	waitText(bctx, "#history", "the run in the history", func(s string) bool {
		return strings.Contains(s, "#1") && strings.Contains(s, "succeeded") && !strings.Contains(s, "No runs yet")
	})
	screenshot(bctx, "desktop-after.png")

	// A phone, 390 pixels wide: nothing scrolls sideways.
	a.Type(ctx, "infra", alice, "!stage hold fas2 2h a reason long enough to wrap: https://example.org/a/very/long/link/that/does/not/break/on/its/own/at/all")
	if err := chromedp.Do(bctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(3), chromedp.EmulateMobile)); err != nil {
		t.Fatal(err)
	}
	waitText(bctx, "#live", "the new hold", func(s string) bool { return strings.Contains(s, "a reason long enough") })
	// A phone's browser widens its layout to fit what overflows (and
	// zooms out), so innerWidth grows with the page: the width to fit
	// is the phone's own.
	widths, err := chromedp.Run(bctx, chromedp.Evaluate[[]int](`[document.documentElement.scrollWidth, window.innerWidth]`))
	if err != nil {
		t.Fatal(err)
	}
	if len(widths) != 2 || widths[0] > 390 || widths[1] > 390 {
		t.Errorf("on a phone 390 pixels wide the page is %v (scrollWidth, innerWidth) wide: it scrolls sideways", widths)
	}
	screenshot(bctx, "phone.png")
	t.Logf("screenshots in %s", shots)
}

// TestBrowser_ARunPageOpenedFromChatFollowsWithItsKey: with a token on the
// pages, a browser opened from a chat link has only the run's key; the
// page follows the run to its end with it.
func TestBrowser_ARunPageOpenedFromChatFollowsWithItsKey(t *testing.T) {
	exe := chromium(t)
	a, metrics, sc := pageBot(t, "fas2", "Fedora accounts staging",
		[]runner.Step{&runner.Exec{StepName: "copy production", Shell: "echo copying; sleep 3"}},
		[]runner.Step{&runner.Exec{StepName: "start httpd", Shell: "echo starting"}})
	const token = "s3cret-token"
	base := serve(t, sc, metrics, web.Options{Token: token})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.DisableGPU)...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()
	bctx, cancelTimeout := context.WithTimeout(bctx, patience.D(90*time.Second))
	defer cancelTimeout()

	a.Type(ctx, "infra", bob, "!stage resync fas2 now")
	bottest.Eventually(t, "run 1 under way", func() bool {
		sc.Clock.Advance(time.Minute)
		r, err := sc.Store.Run(ctx, 1)
		return err == nil && r.State == store.RunRunning
	})
	if err := chromedp.Do(bctx, chromedp.Navigate(base+"/runs/1?key="+web.RunKey(token, 1))); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(patience.D(30 * time.Second))
	for {
		text, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS("#run")))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(text, "✓ succeeded") && strings.Contains(text, "✓ start httpd") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the run's page, opened with its key, never followed the run to its end:\n%s", text)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

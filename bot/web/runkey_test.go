package web_test

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stagebot/stagebot/bot"
	"github.com/stagebot/stagebot/bot/bottest"
	"github.com/stagebot/stagebot/bot/web"
	"github.com/stagebot/stagebot/runner"
	"github.com/stagebot/stagebot/store"
)

// TestWeb_ALogLinkFromChatOpensThatRunOnly: with a token on the pages,
// the link `!stage log` posts carries a key a browser can use (it sends no
// Authorization header); that key opens that run's page, and its live
// part, and nothing else.
func TestWeb_ALogLinkFromChatOpensThatRunOnly(t *testing.T) {
	const token, page = "s3cret-token", "https://stagebot.example.org"
	a := bottest.NewAdapter()
	metrics := web.NewMetrics("console")
	clock := bottest.NewClock(time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC))
	sc := bottest.StartBotWith(t, a, clock, bot.Options{
		EditInterval: 10 * time.Millisecond, Observer: metrics, PageURL: page,
		RunLinkKey: func(id uint64) string { return web.RunKey(token, id) },
		Access:     bot.Access{ControlChannels: []string{"infra"}, Users: map[string][]string{"U1": {"stage"}}},
		Targets: []*bot.Target{{
			Name: "demo", Channel: "infra", Notice: 10 * time.Minute, DefaultPipeline: "default",
			Pipelines: map[string]*runner.Pipeline{"default": {Name: "default",
				Steps: []runner.Step{&runner.Exec{StepName: "copy", Shell: "echo copying the shop"}}}},
		}},
	})
	base := serve(t, sc, metrics, web.Options{Token: token, Platform: "console"})
	ctx := context.Background()
	for range 2 {
		a.Type(ctx, "infra", alice, "!stage resync demo now")
	}
	sc.WaitRun(1, store.RunSucceeded)
	sc.WaitRun(2, store.RunSucceeded)
	a.Type(ctx, "infra", alice, "!stage log 1")
	var link string
	bottest.Eventually(t, "the log's link in chat", func() bool {
		for _, m := range a.Find("The whole log") {
			link = regexp.MustCompile(regexp.QuoteMeta(page) + `/runs/1\?key=[0-9a-f]+`).FindString(m.Text)
		}
		return link != ""
	})
	run1 := base + strings.TrimPrefix(link, page)
	if code, body := get(t, run1, ""); code != http.StatusOK || !strings.Contains(body, "copying the shop") {
		t.Errorf("run 1's page by its chat link, without a token: %d\n%s", code, body)
	}
	if code, body := get(t, run1+"&part=live", ""); code != http.StatusOK || !strings.Contains(body, "copying the shop") {
		t.Errorf("run 1's live part with its key: %d\n%s", code, body)
	}
	key1 := link[strings.Index(link, "key=")+4:]
	for _, tt := range []struct{ what, url string }{
		{"run 2 with run 1's key", base + "/runs/2?key=" + key1},
		{"the status page with run 1's key", base + "/?key=" + key1},
		{"run 1 with a key made from another token", base + "/runs/1?key=" + web.RunKey("another-token", 1)},
		{"run 1 with no key", base + "/runs/1"},
	} {
		if code, _ := get(t, tt.url, ""); code != http.StatusUnauthorized {
			t.Errorf("%s: %d, want 401", tt.what, code)
		}
	}
	if code, _ := get(t, base+"/runs/2", token); code != http.StatusOK {
		t.Errorf("run 2 with the bearer token: %d", code)
	}
}

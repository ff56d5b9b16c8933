package web_test

import (
	"context"
	"io"
	"net/http"
	"os"
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

var (
	alice = store.User{ID: "U1", Name: "alice"}
	bob   = store.User{ID: "U2", Name: "bob"}
)

func get(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestWeb_HealthReadyAndMetricsAfterARun(t *testing.T) {
	a := bottest.NewAdapter()
	metrics := web.NewMetrics("console")
	clock := bottest.NewClock(time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC))
	sc := bottest.StartBotWith(t, a, clock, bot.Options{
		EditInterval: 10 * time.Millisecond,
		Observer:     metrics,
		Access:       bot.Access{ControlChannels: []string{"infra"}, Users: map[string][]string{"U1": {"stage"}, "U2": {"stage.approve"}}},
		Targets: []*bot.Target{{
			Name: "demo", Channel: "infra", Notice: 10 * time.Minute,
			Manual: bot.ApprovalRule{Count: 1},
			Pipelines: map[string]*runner.Pipeline{"default": {Name: "default",
				Steps:   []runner.Step{&runner.Exec{StepName: "copy", Shell: "echo copying"}},
				Finally: []runner.Step{&runner.Exec{StepName: "start app", Shell: "echo started"}}}},
			DefaultPipeline: "default",
		}},
	})
	metrics.SetSource(sc.Bot)
	srv := web.New(web.Options{Listen: "127.0.0.1:0", Token: "s3cret-token", Platform: "console"}, sc.Bot, metrics)
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go srv.Serve(ctx)
	base := "http://" + srv.Addr()

	bottest.Eventually(t, "a healthy bot", func() bool { code, _ := get(t, base+"/healthz", ""); return code == http.StatusOK })
	if code, body := get(t, base+"/readyz", ""); code != http.StatusUnauthorized || !strings.Contains(body, "Bearer") {
		t.Fatalf("/readyz without the token: %d %q", code, body)
	}
	if code, body := get(t, base+"/metrics", "wrong"); code != http.StatusUnauthorized {
		t.Fatalf("/metrics with a wrong token: %d %q", code, body)
	}
	if code, body := get(t, base+"/readyz", "s3cret-token"); code != http.StatusOK || strings.TrimSpace(body) != "ok" {
		t.Fatalf("/readyz: %d %q", code, body)
	}

	a.Type(ctx, "infra", alice, "!stage resync demo now")
	a.Type(ctx, "infra", bob, "!stage approve 1")
	sc.WaitRun(1, store.RunSucceeded)
	a.Type(ctx, "infra", alice, "!stage hold demo 1h testing the login")
	a.Type(ctx, "infra", alice, "!stage resync demo now")
	clock.Advance(time.Hour / 2)
	_, body := get(t, base+"/metrics", "s3cret-token")
	for _, want := range []string{
		`stagebot_runs_total{outcome="succeeded",pipeline="default",target="demo"} 1`,
		`stagebot_run_duration_seconds_count{outcome="succeeded",pipeline="default",target="demo"} 1`,
		`stagebot_step_duration_seconds_count{kind="exec",state="succeeded",target="demo"} 2`,
		`stagebot_data_age_seconds{target="demo"} 1800`,
		`stagebot_holds_active{target="demo"} 1`,
		`stagebot_runs_waiting{reason="hold"} 1`,
		`stagebot_runs_waiting{reason="approval"} 0`,
		`stagebot_runs_running 0`,
		`stagebot_chat_connected{platform="console"} 1`,
		`stagebot_outbox_queued{platform="console"} 0`,
		`stagebot_state_up 1`,
		"go_goroutines ",
		"process_resident_memory_bytes ",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(body, "testing the login") {
		t.Error("what people type reached a label")
	}
	// Every stagebot_ metric the example alerting rules use is served.
	rules, err := os.ReadFile("../../examples/prometheus-alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	used := regexp.MustCompile(`stagebot_[a-z_]+`).FindAllString(string(rules), -1)
	if len(used) < 5 {
		t.Fatalf("the rules use %d stagebot metrics", len(used))
	}
	for _, name := range used {
		if !strings.Contains(body, "\n"+name+"{") && !strings.Contains(body, "\n"+name+" ") {
			t.Errorf("the alerting rules use %s, which /metrics does not serve", name)
		}
	}
	if t.Failed() {
		t.Log(body)
	}
}

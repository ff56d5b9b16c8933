package web_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stagebot/stagebot/bot"
	"github.com/stagebot/stagebot/bot/bottest"
	"github.com/stagebot/stagebot/bot/web"
	"github.com/stagebot/stagebot/internal/patience"
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

// serve starts the HTTP side of the scenario's bot on a free port until
// the test ends, and returns its base URL.
func serve(t *testing.T, sc *bottest.Scenario, metrics *web.Metrics, o web.Options) string {
	t.Helper()
	metrics.SetSource(sc.Bot)
	o.Listen = "127.0.0.1:0"
	srv := web.New(o, sc.Bot, sc.Store, metrics)
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go srv.Serve(ctx)
	return "http://" + srv.Addr()
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
			Name: "demo", Channel: "infra", Notice: 10 * time.Minute, MaxAge: 7 * 24 * time.Hour,
			Manual: bot.ApprovalRule{Count: 1},
			Pipelines: map[string]*runner.Pipeline{"default": {Name: "default",
				Steps:   []runner.Step{&runner.Exec{StepName: "copy", Shell: "echo copying"}},
				Finally: []runner.Step{&runner.Exec{StepName: "start app", Shell: "echo started"}}}},
			DefaultPipeline: "default",
		}},
	})
	base := serve(t, sc, metrics, web.Options{Token: "s3cret-token", Platform: "console"})
	ctx := context.Background()

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
	// Typing is asynchronous: the metrics below count the second run, so
	// wait until the bot has stored it as waiting for the hold.
	bottest.Eventually(t, "run 2 waiting for the hold", func() bool {
		r, err := sc.Store.Run(ctx, 2)
		return err == nil && r.State == store.RunWaiting
	})
	clock.Advance(time.Hour / 2)
	first, err := sc.Store.Run(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	wantAge := clock.Now().Sub(first.EndedAt).Seconds()
	_, body := get(t, base+"/metrics", "s3cret-token")
	for _, want := range []string{
		`stagebot_runs_total{outcome="succeeded",pipeline="default",target="demo"} 1`,
		`stagebot_run_duration_seconds_count{outcome="succeeded",pipeline="default",target="demo"} 1`,
		`stagebot_step_duration_seconds_count{kind="exec",state="succeeded",target="demo"} 2`,
		`stagebot_holds_active{target="demo"} 1`,
		`stagebot_runs_waiting{reason="hold"} 1`,
		`stagebot_runs_waiting{reason="approval"} 0`,
		`stagebot_runs_running 0`,
		`stagebot_chat_connected{platform="console"} 1`,
		`stagebot_outbox_queued{platform="console"} 0`,
		`stagebot_outbox_send_failures_total{platform="console"} 0`,
		`stagebot_state_up 1`,
		"go_goroutines ",
		"process_resident_memory_bytes ",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// The clock moved on half an hour after the run ended.
	var age float64
	if !strings.Contains(body, "\nstagebot_data_max_age_seconds{target=\"demo\"} 604800\n") {
		t.Errorf("metrics lack the target's max_age:\n%s", body)
	}
	if m := regexp.MustCompile(`\nstagebot_data_age_seconds\{target="demo"\} ([0-9.e+]+)`).FindStringSubmatch(body); m == nil {
		t.Error("/metrics lacks the data age")
	} else if fmt.Sscan(m[1], &age); age != wantAge || age < 1800 {
		t.Errorf("data age %v, want %v (half an hour after run 1 ended)", age, wantAge)
	}
	if strings.Contains(body, "testing the login") {
		t.Error("what people type reached a label")
	}
	// Every stagebot_ metric the example alerting rules use is served.
	rules, err := os.ReadFile("../../examples/prometheus-alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if promtool, err := exec.LookPath("promtool"); err == nil {
		if out, err := exec.Command(promtool, "check", "rules", "../../examples/prometheus-alerts.yaml").CombinedOutput(); err != nil {
			t.Errorf("promtool check rules: %v\n%s", err, out)
		}
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

// pageBot runs a bot with one target that everyone may act on, counted by
// a fresh Metrics, for the status page's tests.
func pageBot(t *testing.T, name, desc string, steps, finally []runner.Step) (*bottest.Adapter, *web.Metrics, *bottest.Scenario) {
	a := bottest.NewAdapter()
	metrics := web.NewMetrics("console")
	sc := bottest.StartBotWith(t, a, bottest.NewClock(time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)), bot.Options{
		EditInterval: 10 * time.Millisecond, Observer: metrics,
		Access: bot.Access{ControlChannels: []string{"infra"}, Everyone: []string{"stage"}},
		Targets: []*bot.Target{{
			Name: name, Description: desc, Channel: "infra", Notice: 10 * time.Minute,
			Pipelines:       map[string]*runner.Pipeline{"default": {Name: "default", Steps: steps, Finally: finally}},
			DefaultPipeline: "default",
		}},
	})
	return a, metrics, sc
}

// TestWeb_StatusPage loads the page as a person would during a real run:
// holds (what people typed, escaped), the run under way with its steps as
// they change, then the history and the run's log.
func TestWeb_StatusPage(t *testing.T) {
	a, metrics, sc := pageBot(t, "demo", "the shop's staging",
		[]runner.Step{&runner.Exec{StepName: "copy", Shell: "echo copying; sleep 1"}, &runner.Exec{StepName: "verify", Shell: "echo verified"}}, nil)
	base := serve(t, sc, metrics, web.Options{})
	ctx := context.Background()

	a.Type(ctx, "infra", alice, `!stage hold demo 1h testing <script>alert(1)</script> the login`)
	a.Type(ctx, "infra", bob, "!stage resync demo now")
	code, page := get(t, base+"/", "")
	for _, want := range []string{"<h2>demo <span class=\"muted\">— the shop&#39;s staging</span>", "never refreshed by stagebot", "alice until", "testing &lt;script&gt;alert(1)&lt;/script&gt; the login", `‖ held</span> <a href="/runs/1">Run 1</a> (default), asked by bob: starts once the holds end`, "No runs yet."} {
		if code != http.StatusOK || !strings.Contains(page, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	if strings.Contains(page, "<script>alert(1)") {
		t.Fatal("what a person typed reached the page unescaped")
	}
	// The hold ends; the run starts after its notice and runs.
	a.Type(ctx, "infra", alice, "!stage release demo")
	var live string
	bottest.Eventually(t, "the live part to show the run's first step under way", func() bool {
		sc.Clock.Advance(time.Minute)
		_, live = get(t, base+"/?part=live", "")
		return strings.Contains(live, `▶ running</span> <a href="/runs/1">Run 1</a>`) && strings.Contains(live, `<span class="mark">▶</span> copy`)
	})
	if strings.Contains(live, "<html") {
		t.Fatal("the live part is a whole page")
	}
	bottest.Eventually(t, "the live part to show the first step done", func() bool {
		_, live = get(t, base+"/?part=live", "")
		return strings.Contains(live, `<span class="mark">✓</span> copy`) || !strings.Contains(live, "Run 1</a>")
	})
	sc.WaitRun(1, store.RunSucceeded)
	_, page = get(t, base+"/", "")
	if !strings.Contains(page, `<a href="/runs/1">#1</a>`) || !strings.Contains(page, "succeeded") || strings.Contains(page, "never refreshed by stagebot") {
		t.Errorf("after the run the page says:\n%s", page)
	}
	code, runPage := get(t, base+"/runs/1", "")
	if code != http.StatusOK || !strings.Contains(runPage, `Run 1: demo/default <span class="badge s-succeeded" data-done>✓ succeeded</span>`) || !strings.Contains(runPage, "copying") || !strings.Contains(runPage, `<span class="mark">✓</span> verify`) || strings.Contains(runPage, "<script>") {
		t.Errorf("/runs/1: %d\n%s", code, runPage)
	}
	if code, _ := get(t, base+"/runs/99", ""); code != http.StatusNotFound {
		t.Errorf("/runs/99: %d", code)
	}
}

// TestWeb_FollowerIsHealthyButNotReady: a bot that follows another (they
// share a store) is alive and serves its page, but only the leader is
// ready; once it leads, it answers as any bot does.
func TestWeb_FollowerIsHealthyButNotReady(t *testing.T) {
	sc := bottest.StartBotWith(t, bottest.NewAdapter(), bottest.NewClock(time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)), bot.Options{
		Targets: []*bot.Target{{Name: "demo", Channel: "infra", Pipelines: map[string]*runner.Pipeline{"default": {Name: "default"}}, DefaultPipeline: "default"}},
	})
	var leader atomic.Value
	leader.Store("db-2/4242/a1b2c3")
	base := serve(t, sc, web.NewMetrics("console"), web.Options{Follower: func() string { return leader.Load().(string) }})
	if code, body := get(t, base+"/readyz", ""); code != http.StatusServiceUnavailable || strings.TrimSpace(body) != "follower of db-2/4242/a1b2c3" {
		t.Fatalf("a follower's /readyz: %d %q", code, body)
	}
	if code, body := get(t, base+"/healthz", ""); code != http.StatusOK || !strings.Contains(body, "following db-2/4242/a1b2c3") {
		t.Fatalf("a follower's /healthz: %d %q", code, body)
	}
	if code, body := get(t, base+"/", ""); code != http.StatusOK || !strings.Contains(body, "demo") {
		t.Fatalf("a follower's status page: %d", code)
	}
	leader.Store("unknown (the store did not answer)")
	if code, _ := get(t, base+"/healthz", ""); code != http.StatusServiceUnavailable {
		t.Fatalf("a follower that cannot read the store: /healthz %d", code)
	}
	leader.Store("")
	waitFor(t, func() bool { code, _ := get(t, base+"/readyz", ""); return code == http.StatusOK })
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(patience.D(10 * time.Second))
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A request naming a host the page is not served for is refused (a page
// whose DNS name was rebound to 127.0.0.1 cannot read the status page
// from a browser on this machine); headers and bodies are bounded.
func TestWeb_HostHeaderAndLimits(t *testing.T) {
	sc := bottest.StartBot(t, bottest.NewAdapter(), "infra")
	base := serve(t, sc, web.NewMetrics("console"), web.Options{Hosts: []string{"stagebot.example.org"}})
	addr := strings.TrimPrefix(base, "http://")
	_, port, _ := net.SplitHostPort(addr)
	for host, want := range map[string]int{
		addr:                            http.StatusOK,
		"localhost:" + port:             http.StatusOK,
		"[::1]:" + port:                 http.StatusOK,
		"stagebot.example.org":          http.StatusOK,
		"STAGEBOT.example.org.:" + port: http.StatusOK,
		"rebound.attacker.example":      http.StatusMisdirectedRequest,
		"stagebot.example.org.evil":     http.StatusMisdirectedRequest,
	} {
		for _, path := range []string{"/", "/runs/1", "/metrics", "/readyz"} {
			req, _ := http.NewRequest(http.MethodGet, base+path, nil)
			req.Host = host
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := resp.StatusCode; (got == http.StatusMisdirectedRequest) != (want == http.StatusMisdirectedRequest) {
				t.Errorf("GET %s with Host %s: %d, want %d", path, host, got, want)
			}
		}
	}
	req, _ := http.NewRequest(http.MethodGet, base+"/", nil)
	req.Header.Set("X-Padding", strings.Repeat("x", 64<<10))
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("64 KiB of headers: %v %v", err, resp)
	}
	req, _ = http.NewRequest(http.MethodGet, base+"/", strings.NewReader(strings.Repeat("x", 1<<20)))
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("a 1 MiB body: %v %v", err, resp)
	}
}

package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var httpURL = regexp.MustCompile(`url=(http://127\.0\.0\.1:\d+)`)

// httpBase waits for the bot to log where it serves HTTP.
func httpBase(t *testing.T, bot *botProcess) string {
	t.Helper()
	var base string
	waitUntil(t, "the HTTP endpoint", func() bool {
		m := httpURL.FindStringSubmatch(bot.out.String())
		if m != nil {
			base = m[1]
		}
		return m != nil
	})
	return base
}

// TestRun_ServesHealthAndMetrics runs the real binary with http.listen and
// scrapes it before and after a run.
func TestRun_ServesHealthAndMetrics(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`
store: {path: %q}
http: {listen: "127.0.0.1:0", token: "${STAGEBOT_TEST_HTTP_TOKEN}"}
access: {everyone: [stage]}
targets:
  app:
    pipelines:
      default:
        steps: [{name: copy, exec: "echo copying"}]
`, filepath.Join(dir, "stagebot.db"))), 0o600)
	bot := startBot(t, cfg, "STAGEBOT_TEST_HTTP_TOKEN=tok-7f3a9c")
	base := httpBase(t, bot)
	scrape := func(path string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		req.Header.Set("Authorization", "Bearer tok-7f3a9c")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	waitUntil(t, "/healthz to answer ok", func() bool { code, _ := scrape("/healthz"); return code == http.StatusOK })
	if code, body := scrape("/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz: %d %s", code, body)
	}
	bot.say(t, "!stage resync app now")
	waitUntil(t, "the run to be counted", func() bool {
		_, body := scrape("/metrics")
		return strings.Contains(body, `stagebot_runs_total{outcome="succeeded",pipeline="default",target="app"} 1`)
	})
	_, body := scrape("/metrics")
	if !strings.Contains(body, `stagebot_data_age_seconds{target="app"}`) || !strings.Contains(body, `stagebot_chat_connected{platform="console"} 1`) {
		t.Fatalf("/metrics:\n%s", body)
	}
	out := bot.finish(t)
	if strings.Contains(out, "tok-7f3a9c") {
		t.Fatal("the token reached the log")
	}
}

func TestConfig_HTTPListen(t *testing.T) {
	base := "targets:\n  t:\n    pipelines:\n      default:\n        steps:\n          - exec: \"true\"\n"
	for yaml, want := range map[string]string{
		"http: {listen: 9187}\n":                                                          `http.listen: "9187" is not host:port`,
		"http: {listen: \"0.0.0.0:9187\"}\n":                                              "http.listen: 0.0.0.0:9187 is reachable from other machines: set http.token",
		"http: {listen: \"127.0.0.1:9187\", url: stagebot.example.org}\n":                 `http.url: "stagebot.example.org" is not the page's address: give it like https://stagebot.example.org`,
		"http: {listen: \"127.0.0.1:9187\", url: \"https://u:p@stagebot.example.org\"}\n": `http.url: "https://u:p@stagebot.example.org" is not the page's address`,
		"http: {url: \"https://stagebot.example.org\"}\n":                                 "http.url: is set but http.listen is not",
	} {
		if _, err := ParseConfig([]byte(yaml+base), "c.yaml"); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error = %v, want %q", strings.TrimSpace(yaml), err, want)
		}
	}
	if _, err := ParseConfig([]byte("http: {listen: \"0.0.0.0:9187\", token: t0ken-x}\n"+base), "c.yaml"); err != nil {
		t.Errorf("with a token: %v", err)
	}
}

// TestRun_MetricsDuringAndAfterARealRefresh scrapes /metrics while the bot
// refreshes a real staging database and after: the figures match what
// happened.
func TestRun_MetricsDuringAndAfterARealRefresh(t *testing.T) {
	e := newCrashEnv(t)
	data, err := os.ReadFile(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(cfg, []byte(strings.Replace(string(data), "log: {level: warn}", "log: {level: info}\nhttp: {listen: \"127.0.0.1:0\"}", 1)), 0o600)
	bot := startBot(t, cfg)
	base := httpBase(t, bot)
	scrape := func() string {
		resp, err := http.Get(base + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	bot.say(t, "!stage resync app now")
	waitUntil(t, "a scrape during the refresh", func() bool { return strings.Contains(scrape(), "stagebot_runs_running 1") })
	waitUntil(t, "the refresh to be counted", func() bool {
		return strings.Contains(scrape(), `stagebot_runs_total{outcome="succeeded",pipeline="default",target="app"} 1`)
	})
	body := scrape()
	for _, want := range []string{
		`stagebot_copied_total{target="app",unit="rows"} 800001`,
		`stagebot_copied_total{target="app",unit="bytes"}`,
		`stagebot_step_duration_seconds_count{kind="pg_refresh",state="succeeded",target="app"} 1`,
		`stagebot_step_duration_seconds_count{kind="pg_swap",state="succeeded",target="app"} 1`,
		`stagebot_swap_unavailable_seconds{target="app"}`,
		`stagebot_data_age_seconds{target="app"}`,
		"stagebot_runs_running 0",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(body)
	}
	bot.finish(t)
}

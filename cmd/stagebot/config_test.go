package main

import (
	"bytes"
	"context"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/stagebot/stagebot/internal/patience"
	"github.com/stagebot/stagebot/runner/postgres"
)

func TestConfigExample_LoadsAndValidates(t *testing.T) {
	cfg, err := LoadConfig("../../config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tg := cfg.Targets["fas2"]
	if len(tg.schedules) != 1 || tg.Notice.D() != 30*time.Minute || tg.Approvals.Manual.Group != "dba" {
		t.Fatalf("example not read as documented: %+v", tg)
	}
	o := cfg.botOptions(deps{})
	if len(o.Targets) != 1 || len(o.Targets[0].Pipelines["default"].Finally) != 2 || o.Targets[0].Pipelines["rollback"] == nil {
		t.Fatalf("options: %+v", o.Targets)
	}
	var kinds []string
	for _, s := range o.Targets[0].Pipelines["default"].Steps {
		kinds = append(kinds, s.Kind())
	}
	if got := strings.Join(kinds, ","); got != "exec,pg_refresh,sql,check,exec,pg_swap" { // the migration on the shadow comes before the swap
		t.Fatalf("default pipeline kinds = %s", got)
	}
}

func TestConfig_ReportsEveryProblemByField(t *testing.T) {
	_, err := ParseConfig([]byte(`
timezone: Mars/Olympus
targets:
  fas2:
    schedule: "10 0 * *"
    approvals:
      manual: {count: 1, group: dbas}
    pipelines:
      default:
        steps:
          - name: stop
            exec: systemctl stop httpd
`), "bad.yaml")
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("error = %v, want a ConfigError", err)
	}
	want := []string{
		`timezone: unknown time zone "Mars/Olympus"`,
		"targets.fas2.schedule: expected 5 fields (minute hour day-of-month month day-of-week), got 4",
		`targets.fas2.approvals.manual.group: there is no group "dbas" in access.groups`,
	}
	if len(ce.Problems) != len(want) {
		t.Fatalf("problems:\n%s", strings.Join(ce.Problems, "\n"))
	}
	for i, w := range want {
		if !strings.HasPrefix(ce.Problems[i], w) {
			t.Errorf("problem %d = %q, want %q", i, ce.Problems[i], w)
		}
	}
	if !strings.Contains(err.Error(), "bad.yaml has 3 problems") {
		t.Errorf("error text: %s", err)
	}
}

func TestConfig_Errors(t *testing.T) {
	base := "targets:\n  t:\n    pipelines:\n      default:\n        steps:\n          - exec: \"true\"\n"
	tests := []struct {
		name, yaml, want string
	}{
		{name: "unknown field", yaml: "timezon: UTC\n" + base, want: `timezon (line 1): unknown field timezon (did you mean "timezone"?)`},
		{name: "unknown field, nothing close", yaml: "frobnicate: 3\n" + base, want: `frobnicate (line 1): unknown field frobnicate (check its spelling`},
		{name: "misspelt field in a target", yaml: "targets:\n  t:\n    schedual: '0 1 * * *'\n    pipelines:\n      default:\n        steps:\n          - exec: \"true\"\n", want: `unknown field schedual (did you mean "schedule"?)`},
		{name: "a tab in the indentation", yaml: "targets:\n  t:\n\tpipelines:\n", want: "line 3 is indented with a tab: YAML indents with spaces only"},
		{name: "a section indented too little", yaml: "targets:\n  t:\n    pipelines:\n    default:\n      steps:\n        - exec: \"true\"\n", want: "unknown field default (the line above opens pipelines: with nothing in it: indent this line by two more spaces"},
		{name: "a list item out of line", yaml: "targets:\n  t:\n    pipelines:\n      default:\n        steps:\n          - exec: \"true\"\n         - exec: \"false\"\n", want: "line 7: this list item is indented by 9 spaces, the one above it (line 6) by 10: line them up"},
		{name: "cron hour out of range", yaml: "targets:\n  t:\n    schedule: \"0 25 * * *\"\n    pipelines:\n      default:\n        steps:\n          - exec: \"true\"\n", want: `targets.t.schedule: "25" is not a valid hour (the second field): use 0–23`},
		{name: "bad duration", yaml: "defaults:\n  notice: soon\n" + base, want: `"soon" is not a duration`},
		{name: "no targets", yaml: "prefix: '!stage'\n", want: "targets: no targets"},
		{name: "step without kind", yaml: "targets:\n  t:\n    pipelines:\n      default:\n        steps:\n          - name: x\n", want: "targets.t.pipelines.default.steps[0]: the step has no kind"},
		{name: "env unset", yaml: "store:\n  path: ${STAGEBOT_TEST_SURELY_UNSET}/x.db\n" + base, want: "store.path: environment variable STAGEBOT_TEST_SURELY_UNSET is not set"},
		{name: "bad scope", yaml: "access:\n  users:\n    bob: [resync]\n" + base, want: `access.users.bob[0]: "resync" is not a scope`},
		{name: "scope for unknown target", yaml: "access:\n  everyone: [stage.hold.nope]\n" + base, want: `names target "nope", which is not configured`},
		{name: "two pipelines no default", yaml: "targets:\n  t:\n    pipelines:\n      a: {steps: [{exec: x}]}\n      b: {steps: [{exec: y}]}\n", want: "targets.t.default_pipeline: the target has several pipelines"},
		{name: "target named all", yaml: "targets:\n  all:\n    pipelines:\n      default:\n        steps:\n          - exec: \"true\"\n", want: `"all" is not a usable target name`},
		{name: "exec mapping", yaml: "targets:\n  t:\n    pipelines:\n      default:\n        steps:\n          - exec: {a: b}\n", want: "exec must be a shell command string or a list"},
		{name: "hash in channel", yaml: "access:\n  control_channels: ['#infra']\n" + base, want: `write "#infra" without the #`},
		{name: "web host with a port", yaml: "http:\n  listen: 127.0.0.1:9187\n  hosts: [stagebot.example.org, 'stagebot.example.org:443']\n" + base, want: `http.hosts[1]: "stagebot.example.org:443" has a port`},
		{name: "web host as a URL", yaml: "http:\n  listen: 127.0.0.1:9187\n  hosts: ['https://stagebot.example.org']\n" + base, want: `http.hosts[0]: "https://stagebot.example.org" has a scheme`},
		{name: "web host with a path", yaml: "http:\n  listen: 127.0.0.1:9187\n  hosts: ['stagebot.example.org/status']\n" + base, want: `http.hosts[0]: "stagebot.example.org/status" is not a host name`},
		{name: "bad cron", yaml: "targets:\n  t:\n    schedule: \"61 0 * * *\"\n    pipelines:\n      default:\n        steps:\n          - exec: \"true\"\n", want: "targets.t.schedule:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tt.yaml), "c.yaml")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v\nwant it to contain %q", err, tt.want)
			}
		})
	}
}

// TestConfig_EveryProblemAtOnce: bad durations do not hide the other
// problems, and each problem names its field.
func TestConfig_EveryProblemAtOnce(t *testing.T) {
	_, err := ParseConfig([]byte(`
defaults:
  notice: 5 minutes
  hold: {max: forever}
targets:
  t:
    ladder: [1h, soon]
    schedule: "61 0 * * *"
    pipelines:
      default:
        steps:
          - exec: "true"
            timeout: a while
access:
  users:
    bob: [resync]
`), "c.yaml")
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		`defaults.notice (line 3): "5 minutes" is not a duration`,
		`defaults.hold.max (line 4): "forever" is not a duration`,
		`targets.t.ladder[1] (line 7): "soon" is not a duration`,
		`targets.t.pipelines.default.steps[0].timeout (line 13): "a while" is not a duration`,
		"targets.t.schedule:",
		`access.users.bob[0]: "resync" is not a scope`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

// TestConfig_RunTimeVariablesAndLiterals: ${STAGEBOT_RUN} and the other
// variables the bot sets when a step runs are left for the step's shell;
// $${…} is a literal ${…}.
func TestConfig_RunTimeVariablesAndLiterals(t *testing.T) {
	cfg, err := ParseConfig([]byte(`
targets:
  t:
    pipelines:
      default:
        steps:
          - exec: "echo run ${STAGEBOT_RUN} of ${STAGEBOT_TARGET} costs $${PRICE}"
            env: {LABEL: "run-${STAGEBOT_RUN}"}
`), "c.yaml")
	if err != nil {
		t.Fatal(err)
	}
	step := cfg.Targets["t"].Pipelines["default"].Steps[0]
	if step.Exec.Shell != "echo run ${STAGEBOT_RUN} of ${STAGEBOT_TARGET} costs ${PRICE}" || step.Env["LABEL"] != "run-${STAGEBOT_RUN}" {
		t.Fatalf("shell = %q, env = %q", step.Exec.Shell, step.Env["LABEL"])
	}
	_, err = ParseConfig([]byte(`
store: {path: "/tmp/${STAGEBOT_RUN}.db"}
targets:
  t:
    pipelines: {default: {steps: [{exec: "true"}]}}
`), "c.yaml")
	if err == nil || !strings.Contains(err.Error(), "store.path: ${STAGEBOT_RUN} is set only for exec steps") {
		t.Fatalf("a run-time variable outside a step: %v", err)
	}
}

func TestConfig_EnvExpansionAndRedaction(t *testing.T) {
	t.Setenv("FAS_DB_PASSWORD", "s3cr3t-pw")
	t.Setenv("STAGE_DIR", "/srv/stage")
	cfg, err := ParseConfig([]byte(`
store: {path: "${STAGE_DIR}/bot.db"}
targets:
  t:
    pipelines:
      default:
        steps:
          - exec: "psql"
            env: {PGPASSWORD: "${FAS_DB_PASSWORD}"}
            dir: ${MISSING_DIR:-/tmp}
`), "c.yaml")
	if err != nil {
		t.Fatal(err)
	}
	step := cfg.Targets["t"].Pipelines["default"].Steps[0]
	if cfg.Store.Path != "/srv/stage/bot.db" || step.Env["PGPASSWORD"] != "s3cr3t-pw" || step.Dir != "/tmp" {
		t.Fatalf("expansion: %q %q %q", cfg.Store.Path, step.Env["PGPASSWORD"], step.Dir)
	}
	redact := cfg.botOptions(deps{}).Redact
	if got := redact("password is s3cr3t-pw, dir /srv/stage"); got != "password is ***, dir /srv/stage" {
		t.Fatalf("redacted: %q", got)
	}
}

// TestConfig_RedactsEveryFormOfASecret: a password as a DSN carries it
// (URL-encoded), as a libpq connection string or JSON quotes it, and the
// values of secret-looking variables a step gets, are all removed.
func TestConfig_RedactsEveryFormOfASecret(t *testing.T) {
	pw := `Pr0d-p@ss/w'o"rd %x`
	t.Setenv("CRM_API_TOKEN", "crm-token-98765")
	t.Setenv("PLAIN_VALUE", "nothing-secret")
	dsn := (&url.URL{Scheme: "postgres", User: url.UserPassword("app", pw), Host: "prod.example:5432", Path: "/fas2"}).String()
	t.Setenv("PROD_DSN", dsn)
	cfg, err := ParseConfig([]byte(`
targets:
  t:
    database: {production: "${PROD_DSN}", staging: "postgres://bot@stg.example/fas2_stg"}
    pipelines:
      default:
        steps:
          - pg_refresh: {}
          - exec: "env"
            inherit_env: [CRM_API_TOKEN, PLAIN_VALUE]
            env: {WEBHOOK_SECRET: "hook-secret-555"}
`), "c.yaml")
	if err != nil {
		t.Fatal(err)
	}
	redact := cfg.botOptions(deps{}).Redact
	for _, form := range []string{
		pw,
		url.QueryEscape(pw),
		url.PathEscape(pw),
		dsn,
		`password='Pr0d-p@ss/w\'o"rd %x'`,
		`{"password":"Pr0d-p@ss/w'o\"rd %x"}`,
		"CRM_API_TOKEN=crm-token-98765",
		"WEBHOOK_SECRET=hook-secret-555",
	} {
		got := redact("seen: " + form)
		for _, piece := range []string{"Pr0d", "p%40ss", "crm-token-98765", "hook-secret-555"} {
			if strings.Contains(got, piece) {
				t.Errorf("redact(%q) = %q: %q is still there", form, got, piece)
			}
		}
	}
	if got := redact("PLAIN_VALUE=nothing-secret"); got != "PLAIN_VALUE=nothing-secret" {
		t.Errorf("a value that is no secret was redacted: %q", got)
	}
}

func TestCheck_PrintsNextRunsAndAnnouncements(t *testing.T) {
	cfg, err := LoadConfig("../../config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC) // a Sunday
	if err := check(&out, cfg, now); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Config is valid: 1 target, times in Europe/Berlin.",
		"Note: chat.platform is console, for trying stagebot in a terminal; as a service, set it to slack, discord or matrix.",
		"fas2: pipelines default (6 steps, 2 finally), from-backup (2 steps), rollback (2 steps, 2 finally), wipe (1 step); a request that names none runs default",
		`schedule "CRON_TZ=UTC 10 0 * * 1" runs default`,
		"next run Mon 2026-11-23 01:10 CET (default), announced Sun 01:10, Mon 00:10, Mon 00:55",
		"next run Mon 2026-11-30 01:10 CET (default)",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("check output lacks %q:\n%s", want, out.String())
		}
	}
	for _, bad := range []string{"1 steps", "(s)", "["} {
		if strings.Contains(out.String(), bad) {
			t.Errorf("check output says %q:\n%s", bad, out.String())
		}
	}
}

func TestMain_RunScriptedConsole(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfgPath, []byte(`
store: {path: `+filepath.Join(dir, "s.db")+`}
access: {control_channels: [infra], everyone: [stage]}
targets:
  web:
    pipelines:
      default:
        steps:
          - {name: copy, exec: "echo copied"}
`), 0o600)
	in := strings.NewReader("!stage resync web now\n!stage history\n")
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), patience.D(20*time.Second))
	defer cancel()
	if err := Main(ctx, []string{"run", "-c", cfgPath, "--as", "alice"}, in, &out, &errOut); err != nil {
		t.Fatalf("%v\n%s", err, errOut.String())
	}
	for _, want := range []string{"alice@#infra> !stage resync web now", "✅ Run 1 of web/default succeeded"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	// The state is in the store for the next start.
	out.Reset()
	if err := Main(ctx, []string{"run", "-c", cfgPath, "--as", "bob"}, strings.NewReader("!stage log 1 full\n"), &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "[copy] copied") {
		t.Errorf("log after restart:\n%s", out.String())
	}
}

func TestMain_Errors(t *testing.T) {
	var out, errOut bytes.Buffer
	ctx := context.Background()
	if err := Main(ctx, []string{"check"}, nil, &out, &errOut); err == nil || !strings.Contains(err.Error(), "give the config file with -c FILE") {
		t.Errorf("check without -c: %v", err)
	}
	if err := Main(ctx, []string{"frobnicate"}, nil, &out, &errOut); err == nil || !strings.Contains(err.Error(), `unknown command "frobnicate"`) {
		t.Errorf("unknown command: %v", err)
	}
	if err := Main(ctx, []string{"version"}, nil, &out, &errOut); err != nil || !strings.Contains(out.String(), "stagebot dev") {
		t.Errorf("version: %v %q", err, out.String())
	}
}

func TestDemoConfigIsValid(t *testing.T) {
	t.Setenv("STAGEBOT_DEMO_PRODUCTION", "postgres://postgres@127.0.0.1:1/shop")
	t.Setenv("STAGEBOT_DEMO_STAGING", "postgres://postgres@127.0.0.1:2/shop")
	cfg, err := ParseConfig(demoConfig, "demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// The sanitising SQL and the check run on the shadow, and a swap follows.
	var kinds []string
	for _, s := range cfg.botOptions(deps{}).Targets[0].Pipelines["default"].Steps {
		kinds = append(kinds, s.Kind())
	}
	if got := strings.Join(kinds, ","); got != "exec,pg_refresh,sql,check,pg_swap" {
		t.Fatalf("demo pipeline kinds = %s", got)
	}
}

func TestConfig_DatabaseSteps(t *testing.T) {
	db := "    database:\n      production: postgres://ro@prod:5432/app\n      staging: postgres://rw:hunter22@stg:5432/app\n"
	tests := []struct {
		name, steps, want string
		noDB              bool
	}{
		{name: "refresh without database", steps: "          - pg_refresh: {}\n", noDB: true, want: "needs the target's database section"},
		{name: "two kinds", steps: "          - {exec: x, sql: y}\n", want: "the step has several kinds (exec, sql)"},
		{name: "sql on production", steps: "          - {sql: 'delete from x', on: production}\n", want: "sql steps never write to production"},
		{name: "bad on", steps: "          - {check: {query: select true}, on: prod}\n", want: `"prod": use shadow, staging or production`},
		{name: "on for http_check", steps: "          - {http_check: {url: 'http://x'}, on: shadow}\n", want: "only sql, check and exec steps take on"},
		{name: "exec on shadow before refresh", steps: "          - {exec: x, on: shadow}\n          - pg_refresh: {}\n", want: "steps[0].on: there is no shadow here"},
		{name: "sql on shadow after the swap", steps: "          - pg_refresh: {}\n          - exec: restart\n          - {sql: 'select 1', on: shadow}\n", want: "steps[2].on: there is no shadow here"},
		{name: "exec on production", steps: "          - {exec: x, on: production}\n", want: "commands never get production's connection"},
		{name: "shadow in finally", steps: "          - pg_refresh: {}\n        finally:\n          - {exec: x, on: shadow}\n", want: "finally[0].on: finally steps run after the swap"},
		{name: "hosts without placeholder", steps: "          - {exec: [ssh, node1, reboot], hosts: [a, b]}\n", want: "the command does not say where: put {host} in it"},
		{name: "hosts on sql", steps: "          - {sql: 'select 1', hosts: [a]}\n", want: "only exec steps run on hosts"},
		{name: "file and dir", steps: "          - pg_refresh: {from_file: a, from_dir: b}\n", want: "give from_file or from_dir, not both"},
		{name: "unknown refresh field", steps: "          - pg_refresh: {from: x}\n", want: "targets.app.pipelines.default.steps[0].pg_refresh: unknown field from"},
		{name: "refresh in finally", steps: "          - exec: x\n        finally:\n          - pg_refresh: {}\n", want: "a pg_refresh step cannot be a finally step"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			y := "targets:\n  app:\n"
			if !tt.noDB {
				y += db
			}
			y += "    pipelines:\n      default:\n        steps:\n" + tt.steps
			_, err := ParseConfig([]byte(y), "c.yaml")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "hunter22") {
				t.Fatalf("the password is in the error: %v", err)
			}
		})
	}
	t.Run("keep_previous", func(t *testing.T) {
		for v, want := range map[string]string{"true": "kept", "false": "dropped", "space_permitting": "dropped before the copy", "Space_Permitting": "dropped before the copy", "sometimes": "error"} {
			y := "targets:\n  app:\n" + db + "      keep_previous: " + v + "\n    pipelines:\n      default:\n        steps:\n          - pg_refresh: {}\n"
			cfg, err := ParseConfig([]byte(y), "c.yaml")
			if want == "error" {
				if err == nil || !strings.Contains(err.Error(), `keep_previous is "sometimes": write true`) || !strings.Contains(err.Error(), "space_permitting") {
					t.Errorf("keep_previous: %s: %v", v, err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("keep_previous: %s: %v", v, err)
			}
			pg := cfg.botOptions(deps{}).Targets[0]
			_, rollback := pg.Pipelines["rollback"]
			if rollback != (want != "dropped") {
				t.Errorf("keep_previous: %s: a rollback pipeline is %v", v, rollback)
			}
			if want == "dropped before the copy" && *cfg.Targets["app"].Database.KeepPrevious != KeepSpacePermitting {
				t.Errorf("keep_previous: %s read as %v", v, *cfg.Targets["app"].Database.KeepPrevious)
			}
		}
	})
	t.Run("staging name too long for its copies", func(t *testing.T) {
		_, err := ParseConfig([]byte("targets:\n  app:\n    database:\n      staging: postgres://stg:5432/"+strings.Repeat("x", 60)+"\n    pipelines:\n      default:\n        steps:\n          - pg_refresh: {from_file: /x}\n"), "c.yaml")
		if err == nil || !strings.Contains(err.Error(), "targets.app.database.staging: the staging database's name") || !strings.Contains(err.Error(), "use a shorter name") {
			t.Fatalf("error = %v", err)
		}
	})
	t.Run("staging must name a database", func(t *testing.T) {
		_, err := ParseConfig([]byte("targets:\n  app:\n    database:\n      staging: postgres://rw:hunter22@stg:5432/postgres\n    pipelines:\n      default:\n        steps:\n          - pg_refresh: {from_file: /x}\n"), "c.yaml")
		if err == nil || !strings.Contains(err.Error(), "targets.app.database.staging: the staging DSN must name the staging database") || strings.Contains(err.Error(), "hunter22") {
			t.Fatalf("error = %v", err)
		}
	})
	t.Run("password is redacted", func(t *testing.T) {
		cfg, err := ParseConfig([]byte("targets:\n  app:\n"+db+"    pipelines:\n      default:\n        steps:\n          - pg_refresh: {}\n          - sql: select 1\n          - {sql: select 2, on: staging}\n"), "c.yaml")
		if err != nil {
			t.Fatal(err)
		}
		o := cfg.botOptions(deps{})
		if got := o.Redact("connect to postgres://rw:hunter22@stg"); strings.Contains(got, "hunter22") {
			t.Fatalf("not redacted: %s", got)
		}
		var got []string
		for _, s := range o.Targets[0].Pipelines["default"].Steps {
			got = append(got, s.Kind())
		}
		if strings.Join(got, ",") != "pg_refresh,sql,pg_swap,sql" {
			t.Fatalf("steps = %v: the swap belongs after the shadow sql and before the staging sql", got)
		}
	})
}

func TestConfig_Slack(t *testing.T) {
	base := "targets:\n  t:\n    pipelines:\n      default:\n        steps:\n          - exec: \"true\"\n"
	_, err := ParseConfig([]byte("chat:\n  platform: slack\n"+base), "c.yaml")
	if err == nil || !strings.Contains(err.Error(), "chat.slack.app_token: give the app-level token") || !strings.Contains(err.Error(), "chat.slack.bot_token: give the bot token") {
		t.Fatalf("error = %v", err)
	}
	cfg, err := ParseConfig([]byte("chat:\n  platform: slack\n  slack:\n    app_token: xapp-1-secret\n    bot_token: xoxb-2-secret\n"+base), "c.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.botOptions(deps{}).Redact("tokens xapp-1-secret and xoxb-2-secret"); got != "tokens *** and ***" {
		t.Fatalf("tokens not redacted: %q", got)
	}
	if _, err := ParseConfig([]byte("chat:\n  platform: teams\n"+base), "c.yaml"); err == nil || !strings.Contains(err.Error(), `"teams" is not a chat platform`) {
		t.Fatalf("error = %v", err)
	}
}

func TestConfig_Discord(t *testing.T) {
	base := "targets:\n  t:\n    pipelines:\n      default:\n        steps:\n          - exec: \"true\"\n"
	_, err := ParseConfig([]byte("chat:\n  platform: discord\n  discord:\n    channels: [general]\n    api_url: discord.example\n"+base), "c.yaml")
	for _, want := range []string{"chat.discord.token: give the bot token", `chat.discord.channels[0]: "general" is not a channel ID`, `chat.discord.api_url: "discord.example" is not an http(s) URL`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("error = %v, want it to contain %q", err, want)
		}
	}
	// Unquoted IDs are numbers to YAML; they must arrive digit for digit.
	cfg, err := ParseConfig([]byte("chat:\n  platform: discord\n  discord:\n    token: Bot MTIz.secret-part\n    channels: [1234567890123456789]\n"+base), "c.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Chat.Discord.Channels; len(got) != 1 || got[0] != "1234567890123456789" {
		t.Fatalf("channels = %q", got)
	}
	if got := cfg.botOptions(deps{}).Redact("token MTIz.secret-part"); got != "token ***" {
		t.Fatalf("token not redacted: %q", got)
	}
}

func TestConfig_Matrix(t *testing.T) {
	base := "targets:\n  t:\n    channel: '#ops:example.org'\n    pipelines:\n      default:\n        steps:\n          - exec: \"true\"\n"
	_, err := ParseConfig([]byte("chat:\n  platform: matrix\n  matrix:\n    homeserver: example.org\n    rooms: ['infra', '#infra:example.org']\naccess:\n  control_channels: ['#infra:example.org']\n"+base), "c.yaml")
	for _, want := range []string{
		"chat.matrix.homeserver: give the homeserver's client API URL",
		"chat.matrix.access_token: give the bot account's access token",
		`chat.matrix.rooms[0]: "infra" is not a room ID`,
		`access.control_channels[0]: "#infra:example.org" is not a Matrix room ID`,
		`targets.t.channel: "#ops:example.org" is not a Matrix room ID`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("error = %v, want it to contain %q", err, want)
		}
	}
	// Without a room, announcements would go nowhere.
	if _, err := ParseConfig([]byte("chat:\n  platform: matrix\n  matrix:\n    homeserver: https://m.example.org\n    access_token: t0ken-value\n"+
		"targets:\n  t:\n    pipelines:\n      default:\n        steps:\n          - exec: \"true\"\n"), "c.yaml"); err == nil || !strings.Contains(err.Error(), "targets.t.channel: no room to announce in") {
		t.Errorf("a target without a room: %v", err)
	}
	if strings.Contains(err.Error(), "rooms[1]") {
		t.Errorf("an alias in chat.matrix.rooms was refused: %v", err)
	}
	cfg, err := ParseConfig([]byte("chat:\n  platform: matrix\n  matrix:\n    homeserver: https://matrix.example.org\n    access_token: syt_secret_token\n"+
		"access:\n  control_channels: ['!infra:example.org']\n  users:\n    '@alice:example.org': [stage]\n  groups:\n    dba:\n      members: ['@bob:example.org']\n      scopes: [stage]\n"+
		"targets:\n  t:\n    channel: '!ops:example.org'\n    pipelines:\n      default:\n        steps:\n          - exec: \"true\"\n"), "c.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.matrixRooms(); strings.Join(got, " ") != "!infra:example.org !ops:example.org" {
		t.Errorf("rooms by default = %q, want the control room and the target's", got)
	}
	if !cfg.knownUser("@alice:example.org") || !cfg.knownUser("@bob:example.org") || cfg.knownUser("@mallory:example.org") {
		t.Error("direct chats are accepted from the wrong people")
	}
	if got := cfg.botOptions(deps{}).Redact("token syt_secret_token"); got != "token ***" {
		t.Fatalf("token not redacted: %q", got)
	}
}

func TestConfig_SeveralSchedules(t *testing.T) {
	pipelines := "    pipelines:\n      destroy:\n        steps:\n          - exec: \"true\"\n      rebuild:\n        steps:\n          - exec: \"true\"\n"
	cfg, err := ParseConfig([]byte("timezone: UTC\ntargets:\n  stage:\n    default_pipeline: rebuild\n    ladder: [1h]\n    schedules:\n      - cron: \"0 22 * * 5\"\n        pipeline: destroy\n      - cron: \"0 6 * * 1\"\n"+pipelines), "c.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := check(&out, cfg, time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)); err != nil { // a Wednesday
		t.Fatal(err)
	}
	want := `  schedule "0 22 * * 5" runs destroy
  schedule "0 6 * * 1" runs rebuild
  next run Fri 2026-11-27 22:00 UTC (destroy), announced Fri 21:00
  next run Mon 2026-11-30 06:00 UTC (rebuild), announced Mon 05:00
  next run Fri 2026-12-04 22:00 UTC (destroy), announced Fri 21:00
`
	if !strings.Contains(out.String(), want) {
		t.Fatalf("check output:\n%s\nwant it to contain:\n%s", out.String(), want)
	}
	for _, tt := range []struct{ yaml, want string }{
		{"    schedule: \"0 1 * * *\"\n    schedules:\n      - cron: \"0 2 * * *\"\n", "targets.stage.schedules: give either schedule (one) or schedules (several), not both"},
		{"    schedules:\n      - pipeline: destroy\n", "targets.stage.schedules[0].cron: missing"},
		{"    schedules:\n      - cron: \"0 2 * * *\"\n        pipeline: nuke\n", `targets.stage.schedules[0].pipeline: there is no pipeline "nuke"`},
		{"    schedules:\n      - cron: \"0 2 * *\"\n", "targets.stage.schedules[0].cron: expected 5 fields"},
		{"    schedule: \"@every 10s\"\n", `targets.stage.schedule: "@every 10s" comes round more often than once a minute`},
		{"    schedule: \"@every 1m\"\n    schedule_pipeline: rebuild\n", ""},
	} {
		if tt.want == "" {
			if _, err := ParseConfig([]byte("targets:\n  stage:\n    default_pipeline: rebuild\n"+tt.yaml+pipelines), "c.yaml"); err != nil {
				t.Errorf("%q: %v", tt.yaml, err)
			}
			continue
		}
		_, err := ParseConfig([]byte("targets:\n  stage:\n    default_pipeline: rebuild\n"+tt.yaml+pipelines), "c.yaml")
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("error = %v, want %q", err, tt.want)
		}
	}
}

func TestConfig_RefreshMethod(t *testing.T) {
	base := "targets:\n  app:\n    database:\n      production: postgres://ro@prod:5432/app\n      staging: postgres://rw@stg:5432/app\n    pipelines:\n      default:\n        steps:\n"
	for _, tt := range []struct{ step, want string }{
		{"          - pg_refresh: {method: rsync}\n", `pg_refresh.method: "rsync": use stream`},
		{"          - pg_refresh: {method: dump, from_file: /x.dump}\n", "pg_refresh.method: a method is for copying a live database"},
	} {
		if _, err := ParseConfig([]byte(base+tt.step), "c.yaml"); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("error = %v, want %q", err, tt.want)
		}
	}
	cfg, err := ParseConfig([]byte(base+"          - pg_refresh: {method: dump}\n"), "c.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := cfg.botOptions(deps{}).Targets[0].Pipelines["default"].Steps[0].(*postgres.Refresh); !ok || r.Method != postgres.MethodDump {
		t.Fatalf("step = %#v", cfg.botOptions(deps{}).Targets[0].Pipelines["default"].Steps[0])
	}
}

func TestSize_ReadsUnitsOf1024(t *testing.T) {
	for in, want := range map[string]Size{"40GB": 40 << 30, "512MiB": 512 << 20, "2T": 2 << 40, "1.5G": 3 << 29, "100": 100, "8kb": 8 << 10} {
		var s Size
		if err := yaml.Unmarshal([]byte(in), &s); err != nil || s != want {
			t.Errorf("%s: %d (%v), want %d", in, s, err, want)
		}
	}
	var s Size
	if err := yaml.Unmarshal([]byte("lots"), &s); err == nil || !strings.Contains(err.Error(), "is not a size: write it like 40GB") {
		t.Errorf("a bad size: %v", err)
	}
}

// The console with nothing to read (a service's stdin is /dev/null) is
// refused with what to do, not read to its end and left with exit 0: a
// service that exits 0 at once is never restarted and sits dead.
func TestMain_ConsoleWithoutATerminalIsRefused(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(cfgPath, []byte("store: {path: "+filepath.Join(dir, "s.db")+"}\ntargets:\n  web:\n    pipelines:\n      default:\n        steps:\n          - exec: \"true\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	var out, errOut bytes.Buffer
	err = Main(context.Background(), []string{"run", "-c", cfgPath}, null, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "there is no terminal to read") || !strings.Contains(err.Error(), "set chat.platform to slack, discord or matrix") {
		t.Fatalf("run with /dev/null as stdin: %v", err)
	}
	// A pipe is a way to drive it, and stays one.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	w.WriteString("!stage holds\n")
	w.Close()
	defer r.Close()
	if err := Main(context.Background(), []string{"run", "-c", cfgPath}, r, &out, &errOut); err != nil {
		t.Fatalf("run with a pipe as stdin: %v\n%s", err, errOut.String())
	}
}

// TestConfig_UnsetVariableInADSNIsOneProblem: the variable is the problem,
// not the DSN it leaves unusable.
func TestConfig_UnsetVariableInADSNIsOneProblem(t *testing.T) {
	_, err := ParseConfig([]byte("store: {type: postgres, dsn: '${NOT_SET_STORE_DSN}'}\ntargets:\n  app:\n    database:\n      production: ${NOT_SET_PROD_DSN}\n      staging: postgres://rw@stg:5432/app\n    pipelines:\n      default:\n        steps:\n          - pg_refresh: {}\n"), "c.yaml")
	if err == nil || !strings.Contains(err.Error(), "2 problems") || !strings.Contains(err.Error(), "targets.app.database.production: environment variable NOT_SET_PROD_DSN is not set") || !strings.Contains(err.Error(), "store.dsn: environment variable NOT_SET_STORE_DSN is not set") {
		t.Errorf("error = %v, want the one problem of each unset variable", err)
	}
}

// TestConfig_ProblemsNameTheirLine: a problem found after decoding (a cron
// hour of 25) names its field, what the field of the cron line is, and the
// config's line.
func TestConfig_ProblemsNameTheirLine(t *testing.T) {
	_, err := ParseConfig([]byte("targets:\n  app:\n    schedule: \"0 25 * * *\"\n    pipelines:\n      default:\n        steps: [{exec: echo}]\n"), "c.yaml")
	if err == nil || !strings.Contains(err.Error(), `targets.app.schedule: "25" is not a valid hour (the second field)`) || !strings.Contains(err.Error(), "(line 3)") {
		t.Errorf("error = %v, want the field, the cron field and line 3", err)
	}
}

// TestConfig_YAMLSyntaxErrorsNameTheRealLine: yaml.v3 counts its parser's
// lines from 0 and names a missing '-' at the item before; the error says
// the line a person would look at.
func TestConfig_YAMLSyntaxErrorsNameTheRealLine(t *testing.T) {
	for doc, want := range map[string]string{
		"timezone: UTC\nstore:\n  path: a\n type: bolt\n": "line 4: did not find expected key",
		"timezone: UTC\nstore: {path: /tmp/a{}b}\n":       "line 2: did not find expected ',' or '}'",
		"access:\n  everyone:\n    - stage\n    x: 1\n":   "line 4: did not find expected '-' indicator after the list item on line 3",
		"timezone: UTC\nstore:\n\tpath: a\n":              "line 3: found character that cannot start any token (line 3 is indented with a tab",
	} {
		_, err := ParseConfig([]byte(doc), "c.yaml")
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error = %v, want %q", doc, err, want)
		}
	}
}

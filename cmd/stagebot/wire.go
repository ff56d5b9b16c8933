package main

import (
	"io"
	"log/slog"
	"sort"
	"strings"

	"github.com/stagebot/stagebot/bot"
	"github.com/stagebot/stagebot/runner"
)

// botOptions turns a validated config into the bot's typed options.
func (c *Config) botOptions() bot.Options {
	o := bot.Options{
		Prefix:   c.Prefix,
		Location: c.location,
		Access: bot.Access{
			ControlChannels: c.Access.ControlChannels,
			Everyone:        c.Access.Everyone,
			Users:           c.Access.Users,
			Groups:          map[string]bot.Group{},
		},
		Holds: bot.HoldOptions{
			Default:    c.Defaults.Hold.Default.D(),
			Max:        c.Defaults.Hold.Max.D(),
			WarnBefore: c.Defaults.Hold.WarnBefore.D(),
		},
		EditInterval: c.Defaults.EditInterval.D(),
		Redact:       newRedactor(c.secrets),
	}
	for name, g := range c.Access.Groups {
		o.Access.Groups[name] = bot.Group{Members: g.Members, Scopes: g.Scopes}
	}
	for _, name := range sortedKeys(c.Targets) {
		o.Targets = append(o.Targets, c.target(name))
	}
	return o
}

func (c *Config) target(name string) *bot.Target {
	tc := c.Targets[name]
	t := &bot.Target{
		Name: name, Description: tc.Description, Channel: tc.Channel,
		Schedule: tc.schedule, ScheduleSpec: tc.Schedule, SchedulePipeline: tc.SchedulePipeline,
		Notice:          tc.Notice.D(),
		Manual:          bot.ApprovalRule{Count: tc.Approvals.Manual.Count, Group: tc.Approvals.Manual.Group, AllowSelf: tc.Approvals.Manual.AllowSelf},
		Scheduled:       bot.ApprovalRule{Count: tc.Approvals.Scheduled.Count, Group: tc.Approvals.Scheduled.Group, AllowSelf: tc.Approvals.Scheduled.AllowSelf},
		Pipelines:       map[string]*runner.Pipeline{},
		DefaultPipeline: tc.DefaultPipeline,
	}
	for _, d := range tc.Ladder {
		t.Ladder = append(t.Ladder, d.D())
	}
	for pn, pc := range tc.Pipelines {
		p := &runner.Pipeline{Name: pn}
		for i := range pc.Steps {
			p.Steps = append(p.Steps, buildStep(&pc.Steps[i]))
		}
		for i := range pc.Finally {
			p.Finally = append(p.Finally, buildStep(&pc.Finally[i]))
		}
		t.Pipelines[pn] = p
	}
	return t
}

func buildStep(s *StepConfig) runner.Step {
	return &runner.Exec{StepName: s.Name, Shell: s.Exec.Shell, Argv: s.Exec.Argv, Timeout: s.Timeout.D(), Env: s.Env, Dir: s.Dir}
}

// newRedactor replaces every secret with ***, longest first so that a secret
// containing another is removed whole.
func newRedactor(secrets []string) func(string) string {
	if len(secrets) == 0 {
		return func(s string) string { return s }
	}
	s := append([]string(nil), secrets...)
	sort.Slice(s, func(i, j int) bool { return len(s[i]) > len(s[j]) })
	var pairs []string
	for _, x := range s {
		pairs = append(pairs, x, "***")
	}
	r := strings.NewReplacer(pairs...)
	return r.Replace
}

// newLogger builds the operator's log.
func newLogger(c *Config, w io.Writer) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.Log.Level)); err != nil {
		level = slog.LevelInfo
	}
	ho := &slog.HandlerOptions{Level: level}
	if c.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, ho))
	}
	return slog.New(slog.NewTextHandler(w, ho))
}

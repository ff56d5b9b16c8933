package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"maps"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/stagebot/stagebot/bot"
	"github.com/stagebot/stagebot/bot/web"
	"github.com/stagebot/stagebot/commands"
	"github.com/stagebot/stagebot/runner"
	"github.com/stagebot/stagebot/runner/postgres"
	"github.com/stagebot/stagebot/store"
)

// deps are what the bot's options are wired to; zero values are fine for
// checking a config.
type deps struct {
	logger *slog.Logger             // the bot's and its targets' (nil: discarded)
	reg    postgres.Registry        // remembers the databases the targets made (nil: memory)
	tell   func(target, msg string) // says something in a target's channel
	hurry  <-chan struct{}          // closes on a second stop signal
	// fence says whether this process may still act (it holds the lease
	// of a shared store); nil with a bolt store, where it always may.
	fence func(need time.Duration) error
	// servers is what the targets learned of the production servers,
	// kept across reloads (nil: each target its own).
	servers *postgres.Servers
}

// botOptions turns a validated config into the bot's typed options.
// matrixRooms are the rooms the Matrix adapter joins: those configured,
// else the control channels and the targets' channels.
func (c *Config) matrixRooms() []string {
	if len(c.Chat.Matrix.Rooms) > 0 {
		return c.Chat.Matrix.Rooms
	}
	var rooms []string
	add := func(r string) {
		if r != "" && !slices.Contains(rooms, r) {
			rooms = append(rooms, r)
		}
	}
	for _, r := range c.Access.ControlChannels {
		add(r)
	}
	for _, name := range slices.Sorted(maps.Keys(c.Targets)) {
		if t := c.Targets[name]; t != nil {
			add(t.Channel)
		}
	}
	return rooms
}

// knownUser reports whether the access config names a person (in users
// or a group): the Matrix adapter accepts direct chats from them only.
func (c *Config) knownUser(id string) bool {
	if _, ok := c.Access.Users[id]; ok {
		return true
	}
	for _, g := range c.Access.Groups {
		if slices.Contains(g.Members, id) {
			return true
		}
	}
	return false
}

func (c *Config) botOptions(dp deps) bot.Options {
	logger := dp.logger
	o := bot.Options{
		Logger:   logger,
		Prefix:   c.Prefix,
		Location: c.location,
		Access: bot.Access{
			ControlChannels: c.Access.ControlChannels,
			Everyone:        c.Access.Everyone,
			Users:           c.Access.Users,
			Groups:          map[string]bot.Group{},
			ScopedReads:     c.Access.ScopedReads,
		},
		Holds: bot.HoldOptions{
			Default:    c.Defaults.Hold.Default.D(),
			Max:        c.Defaults.Hold.Max.D(),
			WarnBefore: c.Defaults.Hold.WarnBefore.D(),
		},
		EditInterval: c.Defaults.EditInterval.D(),
		PageURL:      strings.TrimSuffix(c.HTTP.URL, "/"),
		RunLinkKey:   runLinkKey(c.HTTP.Token),
		Redact:       newRedactor(c.secrets),
		StopGrace:    c.Defaults.StopGrace.D(),
		Hurry:        dp.hurry,
		Fence:        dp.fence,
	}
	if k := c.Store.Keep; k.Runs != nil && k.Days != nil {
		o.KeepRuns, o.KeepAge = *k.Runs, time.Duration(*k.Days)*24*time.Hour
	}
	for name, g := range c.Access.Groups {
		o.Access.Groups[name] = bot.Group{Members: g.Members, Scopes: g.Scopes}
	}
	for role, id := range c.Access.DatabaseRoles {
		if o.Access.DatabaseRoles == nil {
			o.Access.DatabaseRoles = map[string]store.User{}
		}
		o.Access.DatabaseRoles[role] = store.User{ID: id}
	}
	for _, name := range slices.Sorted(maps.Keys(c.Targets)) {
		o.Targets = append(o.Targets, c.target(name, dp))
	}
	return o
}

func (c *Config) target(name string, dp deps) *bot.Target {
	logger, reg := dp.logger, dp.reg
	tc := c.Targets[name]
	t := &bot.Target{
		Name: name, Description: tc.Description, Channel: tc.Channel,
		Schedules:       tc.schedules,
		Notice:          tc.Notice.D(),
		Manual:          bot.ApprovalRule{Count: tc.Approvals.Manual.Count, Group: tc.Approvals.Manual.Group, AllowSelf: tc.Approvals.Manual.AllowSelf},
		Scheduled:       bot.ApprovalRule{Count: tc.Approvals.Scheduled.Count, Group: tc.Approvals.Scheduled.Group, AllowSelf: tc.Approvals.Scheduled.AllowSelf},
		Pipelines:       map[string]*runner.Pipeline{},
		DefaultPipeline: tc.DefaultPipeline,
	}
	for _, d := range tc.Ladder {
		t.Ladder = append(t.Ladder, d.D())
	}
	t.MaxAge = tc.MaxAge.D()
	var pg *postgres.Target
	if d := tc.Database; d != nil {
		pg = &postgres.Target{
			Name: name, ProductionDSN: d.Production, StagingDSN: d.Staging,
			ProductionServers: c.productionServers(), Adopt: d.Adopt, NoOwner: d.NoOwner, NoACL: d.NoACL,
			KeepPrevious: d.KeepPrevious.Keeps(), SpacePermitting: *d.KeepPrevious == KeepSpacePermitting, Jobs: d.Jobs, WorkDir: d.WorkDir, BinDir: c.PGBinDir,
			Logger: logger, Registry: reg, Fence: dp.fence, Servers: dp.servers, KeepBase: d.KeepBase, DiskBudget: int64(d.DiskBudget),
		}
		if c.Store.Type == "postgres" {
			pg.StoreDSN = c.Store.DSN
		}
		if d.Masking != nil {
			pg.Masking = d.Masking.parsed
			t.Masking = maskingSummary(d.Masking)
		}
		if d.Production != "" {
			t.MaskReport = pg.MaskReport
		}
		t.Recover = pg.Recover
		t.Wait = pg.Wait
		t.Holding = pg.Holding
		t.Changes = pg.Changes
		t.Forget = pg.Forget
		if dp.tell != nil {
			pg.Notify = func(msg string) { dp.tell(name, msg) }
		}
	}
	for pn, pc := range tc.Pipelines {
		p := &runner.Pipeline{Name: pn, HoldAll: pc.HoldAll}
		for _, st := range withSwap(pc.Steps) {
			p.Steps = append(p.Steps, buildStep(st, pg, false))
		}
		for i := range pc.Finally {
			p.Finally = append(p.Finally, buildStep(pc.Finally[i], pg, true))
		}
		t.Pipelines[pn] = p
	}
	if pg != nil && pg.KeepBase {
		t.Pipelines[commands.ResetPipeline] = resetPipeline(tc.Pipelines[tc.DefaultPipeline], pg, tc.MaxAge.D())
	}
	if pg != nil && pg.KeepPrevious {
		if dp := tc.Pipelines[tc.DefaultPipeline]; dp != nil && slices.ContainsFunc(dp.Steps, func(s StepConfig) bool { return s.kind() == "pg_refresh" }) {
			t.Pipelines[commands.RollbackPipeline] = rollbackPipeline(dp, pg)
		}
	}
	for _, p := range t.Pipelines {
		p.StallTimeout = tc.StallTimeout.D()
	}
	return t
}

// rollbackPipeline is the default pipeline with its refresh and swap
// replaced by putting the previous copy back, and without the steps on the
// shadow (there is none): its stop and start steps, checks on staging and
// finally steps stay, so a rollback stops and starts the app as a refresh
// does.
func rollbackPipeline(pc *PipelineConfig, pg *postgres.Target) *runner.Pipeline {
	p := &runner.Pipeline{Name: commands.RollbackPipeline, HoldAll: pc.HoldAll}
	for _, st := range withSwap(pc.Steps) {
		switch {
		case st.kind() == "pg_refresh":
			p.Steps = append(p.Steps, &postgres.RollbackStep{StepName: "put the previous copy back", Target: pg})
		case st.kind() == "pg_swap", st.On == "shadow":
		default:
			p.Steps = append(p.Steps, buildStep(st, pg, false))
		}
	}
	for i := range pc.Finally {
		p.Finally = append(p.Finally, buildStep(pc.Finally[i], pg, true))
	}
	return p
}

// resetPipeline is the default pipeline with its refresh from production
// replaced by a copy of the base, and without the sql steps on the shadow
// (the base is sanitised already); its checks, exec steps and finally
// steps stay.
func resetPipeline(pc *PipelineConfig, pg *postgres.Target, maxAge time.Duration) *runner.Pipeline {
	p := &runner.Pipeline{Name: commands.ResetPipeline, HoldAll: pc.HoldAll}
	for _, st := range withSwap(pc.Steps) {
		switch {
		case st.kind() == "pg_refresh":
			p.Steps = append(p.Steps, &postgres.Reset{StepName: "copy the base", Target: pg, MaxAge: maxAge})
		case st.kind() == "sql" && st.On == "shadow":
		default:
			p.Steps = append(p.Steps, buildStep(st, pg, false))
		}
	}
	for i := range pc.Finally {
		p.Finally = append(p.Finally, buildStep(pc.Finally[i], pg, true))
	}
	return p
}

// productionServers lists every production DSN: each target's source and
// the extra ones configured.
func (c *Config) productionServers() []string {
	out := append([]string(nil), c.ProductionServers...)
	for _, name := range slices.Sorted(maps.Keys(c.Targets)) {
		if d := c.Targets[name].Database; d != nil && d.Production != "" {
			out = append(out, d.Production)
		}
	}
	return out
}

// withSwap returns the steps with their database decided: sql and check
// steps right after a pg_refresh work on the shadow unless they say
// otherwise, and a pg_swap follows them when the pipeline has none.
func withSwap(steps []StepConfig) []StepConfig {
	out := make([]StepConfig, 0, len(steps)+1)
	refresh, explicitSwap := -1, false
	for i, s := range steps {
		switch s.kind() {
		case "pg_refresh":
			if refresh < 0 {
				refresh = i
			}
		case "pg_swap":
			explicitSwap = true
		}
	}
	inShadow := false
	for i, s := range steps {
		kind := s.kind()
		if inShadow && !explicitSwap && !s.continuesShadow() {
			out = append(out, StepConfig{Name: "swap it into place", PGSwap: yaml.Node{Kind: yaml.MappingNode}})
			inShadow = false
		}
		if kind == "pg_swap" {
			inShadow = false
		}
		if (kind == "sql" || kind == "check") && s.On == "" {
			s.On = "staging"
			if inShadow {
				s.On = "shadow"
			}
		}
		out = append(out, s)
		if i == refresh {
			inShadow = true
		}
	}
	if inShadow && !explicitSwap {
		out = append(out, StepConfig{Name: "swap it into place", PGSwap: yaml.Node{Kind: yaml.MappingNode}})
	}
	return out
}

// buildStep makes the runner's step, as its kind's table entry says.
func buildStep(s StepConfig, pg *postgres.Target, finally bool) runner.Step {
	return kindNamed(s.kind()).build(s, pg, finally)
}

// buildExec makes a command step. Exec steps of a database target get the
// libpq environment of the database they work on (staging, or the shadow
// with on: shadow); in finally, a multi-host exec step tries every host.
func buildExec(s StepConfig, pg *postgres.Target, finally bool) runner.Step {
	e := &runner.Exec{StepName: s.Name, Shell: s.Exec.Shell, Argv: s.Exec.Argv, Timeout: s.Timeout.D(), Env: s.Env, Inherit: s.InheritEnv, Dir: s.Dir, Hosts: s.Hosts, KeepGoing: finally}
	if pg != nil {
		on := postgres.OnStaging
		if s.On != "" {
			on = postgres.On(s.On)
		}
		e.ExtraEnv = func(context.Context) ([]string, error) { return pg.ClientEnv(on) }
		e.Check = pg.Guard
	}
	return e
}

// newRedactor replaces every secret with ***, in every form it takes in
// text (as it is, URL-encoded as in a DSN, quoted as in a libpq connection
// string or in JSON), longest first so that a secret containing another is
// removed whole.
func newRedactor(secrets []string) func(string) string {
	if len(secrets) == 0 {
		return func(s string) string { return s }
	}
	seen := map[string]bool{}
	var s []string
	for _, x := range secrets {
		j, _ := json.Marshal(x)
		for _, form := range []string{x, url.QueryEscape(x), url.PathEscape(x), (&url.URL{User: url.UserPassword("u", x)}).User.String()[2:],
			strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(x), strings.ReplaceAll(x, "'", "''"), string(j[1 : len(j)-1])} {
			if form != "" && !seen[form] {
				seen[form] = true
				s = append(s, form)
			}
		}
	}
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

// runLinkKey makes the keys of links to run pages when the pages need a
// token (nil when they do not).
func runLinkKey(token string) func(uint64) string {
	if token == "" {
		return nil
	}
	return func(id uint64) string { return web.RunKey(token, id) }
}

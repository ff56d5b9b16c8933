package main

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/robfig/cron/v3"
	"go.yaml.in/yaml/v3"

	"github.com/stagebot/stagebot/bot"
	"github.com/stagebot/stagebot/runner"
	"github.com/stagebot/stagebot/runner/postgres"
)

func (c *Config) validateTarget(name string, t *TargetConfig, v *validation) {
	f := "targets." + name
	if t == nil {
		v.bad(f, "the target is empty: give it pipelines")
		return
	}
	if !nameRe.MatchString(name) || name == "all" {
		v.bad(f, "%q is not a usable target name: use lower-case letters, digits, - and _, starting with a letter (and not \"all\")", name)
	}
	if t.Channel == "" && len(c.Access.ControlChannels) > 0 {
		t.Channel = c.Access.ControlChannels[0]
	}
	switch {
	case c.Chat.Platform == "matrix":
		if t.Channel != "" && (!strings.HasPrefix(t.Channel, "!") || !strings.Contains(t.Channel, ":")) {
			v.bad(f+".channel", "%q is not a Matrix room ID: give the room ID (!abc:example.org; Element: Room settings → Advanced), not its alias", t.Channel)
		}
	case strings.HasPrefix(t.Channel, "#"):
		v.bad(f+".channel", "write %q without the #", t.Channel)
	}
	if t.Notice == nil {
		n := c.Defaults.Notice
		t.Notice = &n
	}
	if t.Ladder == nil {
		t.Ladder = c.Defaults.Ladder
	}
	sort.Slice(t.Ladder, func(i, j int) bool { return t.Ladder[i] > t.Ladder[j] })
	if t.Database != nil {
		c.validateDatabase(f+".database", t.Database, v)
	}
	if t.MaxAge < 0 {
		v.bad(f+".max_age", "must not be negative")
	}
	if t.StallTimeout < 0 || (t.StallTimeout > 0 && t.StallTimeout < Duration(10*time.Second)) {
		v.bad(f+".stall_timeout", "%s is too short for a busy server to show progress: give 10s or more (default 5m)", time.Duration(t.StallTimeout))
	}
	if _, ok := t.Pipelines["rollback"]; ok && t.Database != nil {
		v.bad(f+".pipelines.rollback", "a target with a database gets its rollback pipeline from its default one: give yours another name")
	}
	if t.Database != nil && t.Database.KeepBase {
		if _, ok := t.Pipelines["reset"]; ok {
			v.bad(f+".pipelines.reset", "keep_base makes the target's reset pipeline itself: give yours another name")
		}
		if dp := t.Pipelines[t.DefaultPipeline]; dp != nil && !slices.ContainsFunc(dp.Steps, func(s StepConfig) bool { return s.kind() == "pg_refresh" }) {
			v.bad(f+".database.keep_base", "the default pipeline (%s) has no pg_refresh step for a reset to stand in for", t.DefaultPipeline)
		}
	}
	c.validatePipelines(f, t, v)
	if t.Database != nil && t.Database.Masking != nil {
		c.validateMasking(f, t, v)
	}
	c.validateSchedules(f, t, v)
	c.validateApprovals(f, t, v)
}

// validatePipelines: each pipeline's steps, and which one is the default.
func (c *Config) validatePipelines(f string, t *TargetConfig, v *validation) {
	if len(t.Pipelines) == 0 {
		v.bad(f+".pipelines", "no pipelines: give the target at least one")
	}
	for _, pn := range slices.Sorted(maps.Keys(t.Pipelines)) {
		pf := f + ".pipelines." + pn
		if !nameRe.MatchString(pn) {
			v.bad(pf, "%q is not a usable pipeline name: use lower-case letters, digits, - and _", pn)
		}
		p := t.Pipelines[pn]
		if p == nil || len(p.Steps) == 0 {
			v.bad(pf+".steps", "the pipeline has no steps")
			continue
		}
		for i := range p.Steps {
			validateStep(fmt.Sprintf("%s.steps[%d]", pf, i), &p.Steps[i], t, false, v)
		}
		for i := range p.Finally {
			validateStep(fmt.Sprintf("%s.finally[%d]", pf, i), &p.Finally[i], t, true, v)
			if p.Finally[i].On == "shadow" {
				v.bad(fmt.Sprintf("%s.finally[%d].on", pf, i), "finally steps run after the swap or a failure, when there is no shadow: use staging")
			}
		}
		checkShadowSteps(pf, p.Steps, v)
	}
	switch {
	case t.DefaultPipeline != "":
		if t.Pipelines[t.DefaultPipeline] == nil {
			v.bad(f+".default_pipeline", "there is no pipeline %q", t.DefaultPipeline)
		}
	case t.Pipelines["default"] != nil:
		t.DefaultPipeline = "default"
	case len(t.Pipelines) == 1:
		t.DefaultPipeline = slices.Sorted(maps.Keys(t.Pipelines))[0]
	case len(t.Pipelines) > 1:
		v.bad(f+".default_pipeline", "the target has several pipelines and none is called default: name the one to use")
	}
}

// validateSchedules: a schedule or several, each a cron line of five
// fields in the configured zone (unless it names its own), at most once a
// minute, with a pipeline of the target.
func (c *Config) validateSchedules(f string, t *TargetConfig, v *validation) {
	parseCron := func(field, spec string) cron.Schedule {
		if !strings.HasPrefix(spec, "CRON_TZ=") && !strings.HasPrefix(spec, "TZ=") {
			spec = "CRON_TZ=" + c.Timezone + " " + spec
		}
		body := spec[strings.IndexByte(spec, ' ')+1:]
		if n := len(strings.Fields(body)); !strings.HasPrefix(body, "@") && n != 5 {
			v.bad(field, "expected 5 fields (minute hour day-of-month month day-of-week), got %d", n)
		} else if s, err := cronParser.Parse(spec); err != nil {
			v.bad(field, "%s", cronProblem(body, err))
		} else if n := s.Next(time.Now()); n.IsZero() {
			v.bad(field, "%q never comes round", body)
		} else if s.Next(n).Sub(n) < time.Minute {
			// Runs are announced and held to the minute.
			v.bad(field, "%q comes round more often than once a minute; the shortest schedule is every minute (* * * * *)", body)
		} else {
			return s
		}
		return nil
	}
	switch {
	case t.Schedule != "" && len(t.Schedules) > 0:
		v.bad(f+".schedules", "give either schedule (one) or schedules (several), not both")
	case t.Schedule != "":
		if t.SchedulePipeline == "" {
			t.SchedulePipeline = t.DefaultPipeline
		}
		if t.SchedulePipeline != "" && t.Pipelines[t.SchedulePipeline] == nil {
			v.bad(f+".schedule_pipeline", "there is no pipeline %q", t.SchedulePipeline)
		}
		if s := parseCron(f+".schedule", t.Schedule); s != nil {
			t.schedules = append(t.schedules, bot.Schedule{Spec: t.Schedule, Cron: s, Pipeline: t.SchedulePipeline})
		}
	case t.SchedulePipeline != "":
		v.bad(f+".schedule_pipeline", "set, but the target has no schedule")
	}
	for i, sc := range t.Schedules {
		sf := fmt.Sprintf("%s.schedules[%d]", f, i)
		if sc.Cron == "" {
			v.bad(sf+".cron", "missing: give five cron fields, e.g. cron: \"0 22 * * 5\"")
			continue
		}
		if sc.Pipeline == "" {
			sc.Pipeline = t.DefaultPipeline
		}
		if t.Pipelines[sc.Pipeline] == nil {
			v.bad(sf+".pipeline", "there is no pipeline %q", sc.Pipeline)
		}
		if s := parseCron(sf+".cron", sc.Cron); s != nil {
			t.schedules = append(t.schedules, bot.Schedule{Spec: sc.Cron, Cron: s, Pipeline: sc.Pipeline})
		}
	}
}

// validateApprovals: how many approvals manual and scheduled runs need,
// and from which group.
func (c *Config) validateApprovals(f string, t *TargetConfig, v *validation) {
	for _, r := range []struct {
		field string
		rule  ApprovalConfig
	}{{"manual", t.Approvals.Manual}, {"scheduled", t.Approvals.Scheduled}} {
		af := f + ".approvals." + r.field
		if r.rule.Count < 0 || r.rule.Count > 10 {
			v.bad(af+".count", "%d is not a sensible number of approvals: use 0 to 10", r.rule.Count)
		}
		if r.rule.Group != "" {
			if _, ok := c.Access.Groups[r.rule.Group]; !ok {
				v.bad(af+".group", "there is no group %q in access.groups", r.rule.Group)
			}
		}
	}
}

func (c *Config) validateDatabase(f string, d *DatabaseConfig, v *validation) {
	check := func(field, dsn string, required bool) {
		if c.unset[f+"."+field] {
			return // its unset variable is its problem
		}
		if dsn == "" {
			if required {
				v.bad(f+"."+field, "give the %s database's DSN, e.g. postgres://user@host:5432/dbname", field)
			}
			return
		}
		if _, err := pgx.ParseConfig(dsn); err != nil {
			v.bad(f+"."+field, "not a usable DSN (%s)", redactDSNError(err, dsn))
			return
		}
		if field == "staging" {
			if _, err := (&postgres.Target{StagingDSN: dsn}).StagingDB(); err != nil {
				v.bad(f+".staging", "%s", err)
			}
		}
	}
	check("production", d.Production, false)
	check("staging", d.Staging, true)
	if d.Jobs < 0 || d.Jobs > 64 {
		v.bad(f+".jobs", "%d: use 1 to 64", d.Jobs)
	}
	if d.KeepPrevious == nil {
		keep := KeepAlways
		d.KeepPrevious = &keep
	}
}

func validateStep(f string, s *StepConfig, t *TargetConfig, finally bool, v *validation) {
	kinds := s.kinds()
	switch len(kinds) {
	case 0:
		v.bad(f, "the step has no kind: give it one of %s", strings.Join(kindNames(), ", "))
		return
	case 1:
	default:
		v.bad(f, "the step has several kinds (%s): give it one", strings.Join(kinds, ", "))
		return
	}
	kind := kinds[0]
	k := kindNamed(kind)
	if s.Name == "" {
		s.Name = k.defaultName(s)
	}
	if s.Timeout < 0 {
		v.bad(f+".timeout", "must not be negative")
	}
	if k.database && t.Database == nil {
		v.bad(f+"."+kind, "a %s step needs the target's database section (production and staging DSNs)", kind)
	}
	if finally && !k.finally {
		v.bad(f+"."+kind, "a %s step cannot be a finally step", kind)
	}
	if k.check != nil {
		k.check(f, s, t, v)
	}
	if s.On != "" {
		switch {
		case !k.on:
			v.bad(f+".on", "only sql, check and exec steps take on")
		case !validOn(s.On):
			v.bad(f+".on", "%q: use shadow, staging or production", s.On)
		case s.On == "production" && k.production != "":
			v.bad(f+".on", "%s", k.production)
		case kind == "exec" && t.Database == nil:
			v.bad(f+".on", "on needs the target's database section")
		}
	}
	checkHosts(f, s, kind, v)
}

func checkExec(f string, s *StepConfig, _ *TargetConfig, v *validation) {
	if s.Exec.Shell == "" && len(s.Exec.Argv) == 0 {
		v.bad(f+".exec", "empty command")
	}
	for i, name := range s.InheritEnv {
		if !envName.MatchString(name) {
			v.bad(fmt.Sprintf("%s.inherit_env[%d]", f, i), "%q is not a variable name (letters, digits and _)", name)
		}
	}
}

func checkHTTPCheck(f string, s *StepConfig, _ *TargetConfig, v *validation) {
	if !strings.HasPrefix(s.HTTPCheck.URL, "http://") && !strings.HasPrefix(s.HTTPCheck.URL, "https://") {
		v.bad(f+".http_check.url", "%q is not an http(s) URL", s.HTTPCheck.URL)
	}
}

func checkRefresh(f string, s *StepConfig, t *TargetConfig, v *validation) {
	if s.PGRefresh.Kind == yaml.MappingNode {
		if err := strictDecode(&s.PGRefresh, &s.refresh); err != nil {
			v.bad(f+".pg_refresh", "%s", err)
		}
	}
	if s.refresh.FromFile != "" && s.refresh.FromDir != "" {
		v.bad(f+".pg_refresh", "give from_file or from_dir, not both")
	}
	switch m := s.refresh.Method; {
	case m != "" && m != "stream" && m != "dump":
		v.bad(f+".pg_refresh.method", "%q: use stream (server to server, the default) or dump (pg_dump/pg_restore)", m)
	case m != "" && (s.refresh.FromFile != "" || s.refresh.FromDir != ""):
		v.bad(f+".pg_refresh.method", "a method is for copying a live database, not a backup file")
	}
	if s.refresh.FromFile == "" && s.refresh.FromDir == "" && t.Database != nil && t.Database.Production == "" {
		v.bad(f+".pg_refresh", "refreshing from a live database needs database.production; or give from_file or from_dir")
	}
}

func checkSQL(f string, s *StepConfig, _ *TargetConfig, v *validation) {
	if strings.TrimSpace(*s.SQL) == "" {
		v.bad(f+".sql", "empty SQL")
	}
}

func checkCheck(f string, s *StepConfig, _ *TargetConfig, v *validation) {
	if strings.TrimSpace(s.Check.Query) == "" {
		v.bad(f+".check.query", "empty query")
	}
	if s.Check.SameOn != "" && !validOn(s.Check.SameOn) {
		v.bad(f+".check.same_on", "%q: use shadow, staging or production", s.Check.SameOn)
	}
}

// checkHosts: only exec steps run on hosts, and their command says where.
func checkHosts(f string, s *StepConfig, kind string, v *validation) {
	if len(s.Hosts) == 0 {
		return
	}
	if kind != "exec" {
		v.bad(f+".hosts", "only exec steps run on hosts")
	} else if !strings.Contains(s.Exec.Shell+strings.Join(s.Exec.Argv, " "), runner.HostPlaceholder) {
		v.bad(f+".hosts", "the command does not say where: put {host} in it, e.g. exec: [ssh, \"{host}\", sudo, systemctl, stop, httpd]")
	}
	for i, h := range s.Hosts {
		if strings.TrimSpace(h) == "" {
			v.bad(fmt.Sprintf("%s.hosts[%d]", f, i), "empty host")
		}
	}
}

// checkShadowSteps refuses on: shadow where no shadow exists: before the
// pg_refresh that makes it, or after the swap.
func checkShadowSteps(pf string, steps []StepConfig, v *validation) {
	explicitSwap := slices.ContainsFunc(steps, func(s StepConfig) bool { return s.kind() == "pg_swap" })
	inShadow := false
	for i, s := range steps {
		kind := s.kind()
		if inShadow && !explicitSwap && !s.continuesShadow() || kind == "pg_swap" {
			inShadow = false
		}
		if (s.On == "shadow" || kind == "check" && s.Check.SameOn == "shadow") && !inShadow {
			v.bad(fmt.Sprintf("%s.steps[%d].on", pf, i), "there is no shadow here: it exists from a pg_refresh step until the swap, and only steps on the shadow may come between them")
		}
		if kind == "pg_refresh" {
			inShadow = true
		}
	}
}

func validOn(s string) bool { return s == "shadow" || s == "staging" || s == "production" }

// cronFields name the five fields of a cron line and their ranges.
var cronFields = []struct{ name, ranges string }{
	{"minute", "0–59"}, {"hour", "0–23"}, {"day-of-month", "1–31"}, {"month", "1–12 or JAN–DEC"}, {"day-of-week", "0–6 (Sunday is 0) or SUN–SAT"},
}

// cronProblem says which field of a cron line is wrong and what it may
// be, with the parser's own words after.
func cronProblem(body string, err error) string {
	fs := strings.Fields(body)
	if len(fs) != len(cronFields) {
		return err.Error()
	}
	for i, f := range fs {
		probe := []string{"*", "*", "*", "*", "*"}
		probe[i] = f
		if _, perr := cronParser.Parse(strings.Join(probe, " ")); perr != nil {
			return fmt.Sprintf("%q is not a valid %s (the %s field): use %s (%v)", f, cronFields[i].name, ordinals[i], cronFields[i].ranges, perr)
		}
	}
	return err.Error()
}

var ordinals = []string{"first", "second", "third", "fourth", "fifth"}

package main

import (
	"strings"

	"github.com/stagebot/stagebot/runner"
	"github.com/stagebot/stagebot/runner/postgres"
)

// stepKind is everything stagebot knows of one kind of step: which field
// of a step gives it, what it needs and where it may run (validation),
// the name it gets when the config gives none (defaults), and how the
// runner's step is made (wiring). Adding a kind adds a row here.
type stepKind struct {
	name    string
	present func(*StepConfig) bool // the step is of this kind
	// database: needs the target's database section; finally: may be a
	// finally step; on: takes on: shadow, staging or production.
	database, finally, on bool
	// production says why on: production is refused ("" when it is not).
	production string
	// check checks the kind's own fields.
	check func(f string, s *StepConfig, t *TargetConfig, v *validation)
	// named is the step's name when the config gives none.
	named func(*StepConfig) string
	build func(s StepConfig, pg *postgres.Target, finally bool) runner.Step
}

// stepKinds, in the order errors list them.
var stepKinds = []stepKind{
	{name: "exec", present: func(s *StepConfig) bool { return s.Exec != nil },
		finally: true, on: true, production: "commands never get production's connection: use shadow or staging", check: checkExec,
		named: func(s *StepConfig) string {
			if s.Exec.Shell != "" {
				return s.Exec.Shell
			}
			return strings.Join(s.Exec.Argv, " ")
		},
		build: buildExec},
	{name: "pg_refresh", present: func(s *StepConfig) bool { return s.PGRefresh.Kind != 0 },
		database: true, check: checkRefresh, named: fixedName("refresh the database"),
		build: func(s StepConfig, pg *postgres.Target, _ bool) runner.Step {
			return &postgres.Refresh{StepName: s.Name, Target: pg, Source: postgres.Source{File: s.refresh.FromFile, Dir: s.refresh.FromDir, Pattern: s.refresh.Pattern}, Method: s.refresh.Method}
		}},
	{name: "sql", present: func(s *StepConfig) bool { return s.SQL != nil },
		database: true, finally: true, on: true, production: "sql steps never write to production: use shadow or staging", check: checkSQL,
		named: func(s *StepConfig) string { return "sql: " + strings.TrimSpace(*s.SQL) },
		build: func(s StepConfig, pg *postgres.Target, _ bool) runner.Step {
			return &postgres.SQL{StepName: s.Name, Target: pg, On: postgres.On(s.On), Script: *s.SQL}
		}},
	{name: "check", present: func(s *StepConfig) bool { return s.Check != nil },
		database: true, finally: true, on: true, check: checkCheck,
		named: func(s *StepConfig) string { return "check: " + strings.TrimSpace(s.Check.Query) },
		build: func(s StepConfig, pg *postgres.Target, _ bool) runner.Step {
			return &postgres.Check{StepName: s.Name, Target: pg, On: postgres.On(s.On), Query: s.Check.Query, Expect: s.Check.Expect, SameOn: postgres.On(s.Check.SameOn)}
		}},
	{name: "http_check", present: func(s *StepConfig) bool { return s.HTTPCheck != nil },
		finally: true, check: checkHTTPCheck,
		named: func(s *StepConfig) string { return "wait for " + s.HTTPCheck.URL },
		build: func(s StepConfig, _ *postgres.Target, _ bool) runner.Step {
			return &postgres.HTTPCheck{StepName: s.Name, URL: s.HTTPCheck.URL, Timeout: s.Timeout.D(), Interval: s.HTTPCheck.Interval.D()}
		}},
	{name: "pg_swap", present: func(s *StepConfig) bool { return s.PGSwap.Kind != 0 },
		database: true, named: fixedName("swap it into place"),
		build: func(s StepConfig, pg *postgres.Target, _ bool) runner.Step {
			return &postgres.Swap{StepName: s.Name, Target: pg}
		}},
	{name: "pg_drop", present: func(s *StepConfig) bool { return s.PGDrop.Kind != 0 },
		database: true, named: fixedName("drop the database"),
		build: func(s StepConfig, pg *postgres.Target, _ bool) runner.Step {
			return &postgres.Drop{StepName: s.Name, Target: pg}
		}},
}

func fixedName(name string) func(*StepConfig) string {
	return func(*StepConfig) string { return name }
}

// kindNamed is the kind called name; only validated steps are looked up.
func kindNamed(name string) stepKind {
	for _, k := range stepKinds {
		if k.name == name {
			return k
		}
	}
	panic("stagebot: no step kind " + name)
}

func kindNames() []string {
	var names []string
	for _, k := range stepKinds {
		names = append(names, k.name)
	}
	return names
}

// kinds are the kinds the step gives (one, once valid).
func (s *StepConfig) kinds() []string {
	var k []string
	for _, kind := range stepKinds {
		if kind.present(s) {
			k = append(k, kind.name)
		}
	}
	return k
}

func (s *StepConfig) kind() string {
	if k := s.kinds(); len(k) == 1 {
		return k[0]
	}
	return ""
}

// continuesShadow: the step works on the shadow when it comes after a
// pg_refresh (sql and check steps unless they name another database, exec
// steps when they say on: shadow), so no swap comes before it.
func (s *StepConfig) continuesShadow() bool {
	switch s.kind() {
	case "sql", "check":
		return s.On == "" || s.On == "shadow"
	case "exec":
		return s.On == "shadow"
	}
	return false
}

// defaultName is the step's name when the config gives none: its kind's,
// on one line and within 40 characters.
func (k stepKind) defaultName(s *StepConfig) string {
	name := k.named(s)
	if i := strings.IndexByte(name, '\n'); i >= 0 {
		name = name[:i]
	}
	if len(name) > 40 {
		name = name[:40] + "…"
	}
	return name
}

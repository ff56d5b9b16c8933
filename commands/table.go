package commands

import (
	"context"
	"fmt"
	"strings"
)

// Service is what the command handlers drive: the bot implements it. Each
// method receives the parsed call and answers the caller itself.
type Service interface {
	Help(ctx context.Context, c *Call) error
	Status(ctx context.Context, c *Call) error
	Resync(ctx context.Context, c *Call) error
	Approve(ctx context.Context, c *Call) error
	Defer(ctx context.Context, c *Call) error
	Cancel(ctx context.Context, c *Call) error
	Abort(ctx context.Context, c *Call) error
	Hold(ctx context.Context, c *Call) error
	Release(ctx context.Context, c *Call) error
	Holds(ctx context.Context, c *Call) error
	Changes(ctx context.Context, c *Call) error
	Extend(ctx context.Context, c *Call) error
	Schedule(ctx context.Context, c *Call) error
	History(ctx context.Context, c *Call) error
	Log(ctx context.Context, c *Call) error
	Watch(ctx context.Context, c *Call) error
	Unwatch(ctx context.Context, c *Call) error
	Notify(ctx context.Context, c *Call) error
	Watches(ctx context.Context, c *Call) error
	Forget(ctx context.Context, c *Call) error
	Mask(ctx context.Context, c *Call) error
}

// Handler carries out a parsed call: a method expression on Service
// (Service.Hold), so that a verb's table entry names the method that
// carries it out and nothing forwards by hand.
type Handler func(s Service, ctx context.Context, c *Call) error

// Spec defines one verb. The table of Specs is the only place a verb is
// declared: help, parsing and access checks all come from it.
type Spec struct {
	Name        string
	Args        string // the usage after the verb, e.g. "<run>"
	Summary     string // one line for the command list
	Description string
	Examples    []string
	// Mutates marks verbs that change state: they are accepted only in
	// control channels.
	Mutates bool
	// RunArg marks verbs whose first argument is a run number: the
	// dispatcher looks the run up and fills Call.Target before the access
	// check.
	RunArg bool
	// Scopes returns the scopes the caller needs for c (none: anyone).
	Scopes  func(c *Call) []string
	parse   func(p *argParser, c *Call) error
	Handler Handler
}

// Usage returns the verb's usage line with the given prefix.
func (s *Spec) Usage(prefix string) string {
	u := prefix + " " + s.Name
	if s.Args != "" {
		u += " " + s.Args
	}
	return u
}

func scope(parts ...string) []string { return []string{strings.Join(parts, ".")} }

// resyncScopes: stage.resync.<target>.<pipeline> (which stage.resync.<target>
// covers, so a grant can be as narrow as one pipeline), and stage.now.<target>
// to skip the notice. A start sooner than the notice given with in or at is
// checked by the bot, which knows the notice.
func resyncScopes(c *Call) []string {
	s := scope(ScopeRoot, "resync", c.Target)
	if c.Pipeline != "" {
		s = scope(ScopeRoot, "resync", c.Target, c.Pipeline)
	}
	if c.When.Kind == WhenNow {
		s = append(s, scope(ScopeRoot, "now", c.Target)...)
	}
	return s
}

// Scope names. A granted scope covers every scope below it: "stage" covers
// everything, "stage.resync" covers "stage.resync.fas2".
const (
	ScopeRoot  = "stage"
	ScopeAdmin = "stage.admin"
	// ScopeRead covers what reads production's or staging's details:
	// status, changes, history, log and dry runs.
	ScopeRead = "stage.read"
)

// readScope is stage.read, or stage.read.<target> for one target.
func readScope(c *Call) []string {
	if c.Target == "" || c.Target == "all" {
		return []string{ScopeRead}
	}
	return scope(ScopeRead, c.Target)
}

// table is filled in init: its parsers look verbs up in it.
var table []*Spec

func init() {
	table = []*Spec{
		{
			Name: "help", Args: "[command]",
			Summary:     "list the commands, or explain one",
			Description: "Without an argument, lists every command. With one, shows its usage, what it does and examples.",
			Examples:    []string{"help", "help hold"},
			parse:       parseHelp,
			Handler:     Service.Help,
		},
		{
			Name: "status", Args: "[target]",
			Summary:     "targets, data age, holds, waiting and running runs",
			Description: "Shows each target (or one) with the age of its data, its holds, the runs waiting or running, and the next scheduled run.",
			Examples:    []string{"status", "status fas2"},
			Scopes:      readScope,
			parse:       parseOptionalTarget,
			Handler:     Service.Status,
		},
		{
			Name: "resync", Args: "<target> [pipeline] [in <duration> | at <time> | now] [--dry-run]",
			Summary: "ask for a refresh of a target",
			Description: "Schedules a run of the target's pipeline (its default one unless named). It starts after the notice period " +
				"unless you give a time; \"now\" skips the notice and needs the stage.now scope. The run is announced, waits for " +
				"holds and approvals, then runs. --dry-run prints the plan and the checks and changes nothing.",
			Examples: []string{"resync fas2", "resync fas2 in 30m", "resync fas2 db at 18:00", "resync fas2 at 2026-12-01 00:10", "resync fas2 now", "resync fas2 --dry-run"},
			Mutates:  true,
			Scopes: func(c *Call) []string {
				if c.DryRun {
					return readScope(c)
				}
				return resyncScopes(c)
			},
			parse:   parseResync,
			Handler: Service.Resync,
		},
		{
			Name: "reset", Args: "<target> [in <duration> | at <time> | now] [--dry-run]",
			Summary: "put staging back to the last refresh, in seconds, without reading production",
			Description: "For targets with keep_base: a run of their reset pipeline copies the base kept by the last refresh (sanitised " +
				"and checked) into a shadow and swaps it in. It wipes what was changed on staging, as a refresh does, and is announced, " +
				"held and approved like one. It is refused when no base is kept or the base is older than max_age.",
			Examples: []string{"reset fas2", "reset fas2 now", "reset fas2 in 10m"},
			Mutates:  true,
			Scopes: func(c *Call) []string {
				if c.DryRun {
					return readScope(c)
				}
				return resyncScopes(c)
			},
			parse:   parseReset,
			Handler: Service.Resync,
		},
		{
			Name: "approve", Args: "<run>",
			Summary:     "approve a waiting run",
			Description: "Counts your approval towards the run's rule. Approvals stay with the run when it is deferred. Whether the requester may approve their own run is set per target.",
			Examples:    []string{"approve 42"},
			Mutates:     true, RunArg: true,
			Scopes:  func(c *Call) []string { return scope(ScopeRoot, "approve", c.Target) },
			parse:   parseRunOnly,
			Handler: Service.Approve,
		},
		{
			Name: "defer", Args: "<run> <duration> | <run> until <time>",
			Summary:     "move a waiting run later",
			Description: "Moves the run's start by the duration, or to the time given. Its approvals stay with it; it is announced again.",
			Examples:    []string{"defer 42 1h", "defer 42 1d", "defer 42 until 18:00"},
			Mutates:     true, RunArg: true,
			Scopes:  func(c *Call) []string { return scope(ScopeRoot, "defer", c.Target) },
			parse:   parseDefer,
			Handler: Service.Defer,
		},
		{
			Name: "extend", Args: "<run> <duration> <reason> | <run> until <time> <reason>",
			Summary: "let holds keep a scheduled run waiting past its target's max_age",
			Description: "A target's max_age bounds how long holds can keep its scheduled refresh waiting: once staging's data is that old, " +
				"the holders get a last call and the run starts despite them. An admin can give that run more time, with a reason " +
				"everyone sees.",
			Examples: []string{"extend 42 1d release testing ends tomorrow", "extend 42 until 18:00 demo for the board"},
			Mutates:  true, RunArg: true,
			Scopes:  func(c *Call) []string { return []string{ScopeAdmin} },
			parse:   parseExtend,
			Handler: Service.Extend,
		},
		{
			Name: "cancel", Args: "<run> [reason]",
			Summary:     "cancel a run that has not started",
			Description: "Ends a scheduled or waiting run. A running run is stopped with abort instead.",
			Examples:    []string{"cancel 42", "cancel 42 not needed after all"},
			Mutates:     true, RunArg: true,
			Scopes:  func(c *Call) []string { return scope(ScopeRoot, "cancel", c.Target) },
			parse:   parseRunReason,
			Handler: Service.Cancel,
		},
		{
			Name: "abort", Args: "<run> [reason]",
			Summary:     "stop a running run",
			Description: "Stops the step under way (its whole process group), runs the finally steps, and leaves the target as it was before the run.",
			Examples:    []string{"abort 42", "abort 42 wrong pipeline"},
			Mutates:     true, RunArg: true,
			Scopes:  func(c *Call) []string { return scope(ScopeRoot, "abort", c.Target) },
			parse:   parseRunReason,
			Handler: Service.Abort,
		},
		{
			Name: "hold", Args: "<target | all> [<duration> | until <time>] <reason>",
			Summary: "keep a target (or all) from being refreshed while you work",
			Description: "Runs of the target wait until the hold ends. The reason is required. The length defaults to the configured " +
				"hold length and may not pass the maximum. Holding a target you already hold extends your hold. You are warned " +
				"before it expires.",
			Examples: []string{"hold fas2 testing the new login", "hold fas2 2h testing the new login", "hold all until 18:00 schema upgrade"},
			Mutates:  true,
			Scopes:   func(c *Call) []string { return scope(ScopeRoot, "hold", c.Target) },
			parse:    parseHold,
			Handler:  Service.Hold,
		},
		{
			Name: "release", Args: "<target | all> [reason]",
			Summary:     "end your hold",
			Description: "Ends your hold on the target. Ending someone else's hold needs the stage.admin scope and a reason; the holder is told.",
			Examples:    []string{"release fas2", "release fas2 alice is away, the test is done"},
			Mutates:     true,
			Scopes:      func(c *Call) []string { return scope(ScopeRoot, "hold", c.Target) },
			parse:       parseRelease,
			Handler:     Service.Release,
		},
		{
			Name: "holds", Summary: "list the active holds",
			Description: "Lists every active hold with its holder, reason and expiry.",
			Examples:    []string{"holds"},
			Scopes:      readScope,
			parse:       parseNothing,
			Handler:     Service.Holds,
		},
		{
			Name: "changes", Args: "<target>",
			Summary: "what a refresh would wipe on staging now",
			Description: "Lists the tables written on staging since the last refresh (rows inserted, updated, deleted; the busiest " +
				"first), tables added or dropped, who is connected now, and whether the copy a refresh replaces is kept. Where the " +
				"counters cannot be trusted (statistics reset, server restarted) it says unknown.",
			Examples: []string{"changes fas2"},
			Scopes:   readScope,
			parse:    parseTarget,
			Handler:  Service.Changes,
		},
		{
			Name: "mask", Args: "<target>",
			Summary: "how production's columns are masked on their way to staging, and what is not classified yet",
			Description: "Reads production (read-only): how the target's masking rules classify its columns (masked, kept, " +
				"truncated), the columns no rule covers yet (the next refresh stops until each has one) with a rule to add, and " +
				"kept columns whose sampled values look personal (email addresses, card numbers, IBANs, tokens, IP addresses).",
			Examples: []string{"mask fas2"},
			Scopes:   readScope,
			parse:    parseTarget,
			Handler:  Service.Mask,
		},
		{
			Name: "schedule", Args: "[target]",
			Summary:     "the next scheduled runs and their announcements",
			Description: "Lists the next scheduled runs of every target (or one) with the times they will be announced.",
			Examples:    []string{"schedule", "schedule fas2"},
			Scopes:      readScope,
			parse:       parseOptionalTarget,
			Handler:     Service.Schedule,
		},
		{
			Name: "history", Args: "[target] [n]",
			Summary:     "past runs",
			Description: "Lists the last n runs (default 10) of every target, or of one.",
			Examples:    []string{"history", "history fas2", "history fas2 20"},
			Scopes:      readScope,
			parse:       parseHistory,
			Handler:     Service.History,
		},
		{
			Name: "log", Args: "<run> [full]",
			Summary: "one run's steps and their outcome",
			Description: "Shows each step of the run with its result and time, the last lines of a failed run's output, and where the whole " +
				"log is (the status page's run page, when the page has an address); full shows the log's last lines here.",
			Examples: []string{"log 42", "log 42 full"},
			RunArg:   true,
			Scopes:   readScope,
			parse:    parseLog,
			Handler:  Service.Log,
		},
		{
			Name: "rollback", Args: "<target> [in <duration> | at <time> | now] [--dry-run]",
			Summary: "put back the staging copy the last refresh replaced",
			Description: "A run of the target's rollback pipeline: its own steps (stop the app, start it) around putting the previous copy " +
				"back in place; the copy it replaces becomes the previous one, so a second rollback undoes the first. It wipes what " +
				"was changed on staging, as a refresh does, and is announced, held and approved like one.",
			Examples: []string{"rollback fas2", "rollback fas2 now"},
			Mutates:  true,
			Scopes: func(c *Call) []string {
				if c.DryRun {
					return readScope(c)
				}
				s := scope(ScopeRoot, "rollback", c.Target)
				if c.When.Kind == WhenNow {
					s = append(s, scope(ScopeRoot, "now", c.Target)...)
				}
				return s
			},
			parse:   parseRollback,
			Handler: Service.Resync,
		},
		{
			Name: "forget", Args: "<target> previous|base",
			Summary: "drop the copy kept for rollback (or for reset), to give its space back",
			Description: "Drops the previous copy a refresh kept for rollback (previous) or the base kept for reset (base) from " +
				"staging's server, when its disk is too tight for the next copy. Rollback (or reset) is unavailable until a " +
				"refresh keeps a new one. Not while a run of the target is running.",
			Examples: []string{"forget fas2 previous", "forget fas2 base"},
			Mutates:  true,
			Scopes:   func(c *Call) []string { return scope(ScopeRoot, "forget", c.Target) },
			parse:    parseForget,
			Handler:  Service.Forget,
		},

		{
			Name: "watch", Args: "<target>",
			Summary:     "be mentioned in a target's announcements",
			Description: "Mentions you in every announcement of the target's runs. Works in any channel.",
			Examples:    []string{"watch fas2"},
			parse:       parseTarget,
			Handler:     Service.Watch,
		},
		{
			Name: "unwatch", Args: "<target>",
			Summary:     "stop being mentioned",
			Description: "Stops mentioning you in the target's announcements.",
			Examples:    []string{"unwatch fas2"},
			parse:       parseTarget,
			Handler:     Service.Unwatch,
		},
		{
			Name: "notify", Args: "<target>",
			Summary:     "be told once when a held target is free",
			Description: "Tells you, once, in the channel you asked in, when the last hold on the target ends or expires.",
			Examples:    []string{"notify fas2"},
			Scopes:      readScope,
			parse:       parseTarget,
			Handler:     Service.Notify,
		},
		{
			Name: "watches", Summary: "what you wait for and watch",
			Description: "Lists the targets you asked to be told about (notify) and those whose announcements mention you (watch).",
			Examples:    []string{"watches"},
			parse:       parseNothing,
			Handler:     Service.Watches,
		},
	}
	byName = make(map[string]*Spec, len(table))
	for _, s := range table {
		byName[s.Name] = s
	}
}

var byName map[string]*Spec

// Table returns every verb's Spec in the order help lists them.
func Table() []*Spec { return append([]*Spec(nil), table...) }

// Lookup returns the Spec of a verb, or nil.
func Lookup(name string) *Spec { return byName[strings.ToLower(name)] }

// HelpText renders the command list (topic "") or one command's help.
func HelpText(prefix, topic string) (string, error) {
	if topic == "" {
		var b strings.Builder
		fmt.Fprintf(&b, "Commands (type `%s help <command>` for details):\n", prefix)
		for _, s := range table {
			fmt.Fprintf(&b, "• `%s` — %s\n", s.Usage(prefix), s.Summary)
		}
		return strings.TrimRight(b.String(), "\n"), nil
	}
	s := Lookup(topic)
	if s == nil {
		return "", fmt.Errorf("there is no command %q%s; type `%s help` for the list", topic, suggest(topic, names()), prefix)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "`%s`\n%s\n", s.Usage(prefix), s.Description)
	if len(s.Examples) > 0 {
		b.WriteString("Examples:\n")
		for _, e := range s.Examples {
			fmt.Fprintf(&b, "  %s %s\n", prefix, e)
		}
	}
	switch {
	case s.Mutates:
		b.WriteString("Changes state: accepted only in the control channels.")
	default:
		b.WriteString("Read-only: works in any channel.")
	}
	return b.String(), nil
}

func names() []string {
	out := make([]string, len(table))
	for i, s := range table {
		out[i] = s.Name
	}
	return out
}

package main

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/xhit/go-str2duration/v2"
	"go.yaml.in/yaml/v3"

	"github.com/stagebot/stagebot/bot"
)

// Config is the YAML configuration file. docs/configuration.md, generated
// from these types and their comments, describes every field;
// config.example.yaml shows them in use.
type Config struct {
	// Timezone is the zone of times people type ("18:00") and the bot
	// shows, and of schedules without CRON_TZ=: an IANA name such as
	// Europe/Berlin. Default: `UTC`.
	Timezone string `yaml:"timezone"`
	// Prefix is what commands start with; messages that mention the bot
	// work without it. Default: `!stage`.
	Prefix string `yaml:"prefix"`
	// Store is where runs, holds, approvals and the audit log are kept.
	Store StoreConfig `yaml:"store"`
	// Log is the operator's log, on stderr.
	Log LogConfig `yaml:"log"`
	// Chat is where the bot talks.
	Chat ChatConfig `yaml:"chat"`
	// Access is who may do what, and where. A scope covers everything
	// below it: `stage` is everything, `stage.hold` any hold,
	// `stage.hold.fas2` only fas2's. The scopes are
	// `stage.<verb>[.<target>]` for now (a start sooner than the notice),
	// approve, defer, cancel, abort, hold (and release), rollback, forget
	// and read; `stage.resync[.<target>[.<pipeline>]]`; and
	// `stage.admin` (others' holds, extend, moves past max_age).
	Access AccessConfig `yaml:"access"`
	// Defaults are the notice, reminders and hold limits of every target
	// that sets none of its own.
	Defaults DefaultsConfig `yaml:"defaults"`
	// HTTP is the status page, the calendar, health checks and metrics.
	HTTP HTTPConfig `yaml:"http"`
	// Targets are the staging things the bot refreshes, by the name people
	// type: lower-case letters, digits, - and _.
	Targets map[string]*TargetConfig `yaml:"targets"`
	// ProductionServers are servers (DSNs) no target's staging database may
	// be on, besides every target's own production server, which is on the
	// list already.
	ProductionServers []string `yaml:"production_servers"`
	// PGBinDir holds pg_dump, pg_restore and psql. Default: `$PG_BINDIR`,
	// else the newest /usr/lib/postgresql/*/bin, else `$PATH`.
	PGBinDir string `yaml:"pg_bindir"`

	location *time.Location
	// path is the file the config was read from ("" when given as bytes).
	path string
	// secrets are values that came from secret-looking environment
	// variables; they are removed from everything the bot says or logs.
	secrets []string
	// unset are the fields that refer to an environment variable that is
	// not set: that is their one problem, and they are not checked further.
	unset map[string]bool
}

// StoreConfig says where state is kept.
type StoreConfig struct {
	// Type is `bolt` (a file, one bot) or `postgres` (a database two or
	// three bots on different hosts share, one of them leading at a time).
	// Default: `bolt`.
	Type string `yaml:"type"`
	// Path is the bolt file. One process at a time may use it; an empty or
	// damaged file is refused, never replaced. The packaged config keeps it
	// in /var/lib/stagebot. Default: `stagebot.db`.
	Path string `yaml:"path"`
	// DSN is the postgres store's database: not on production's server, not
	// a staging database. Its password comes from the environment.
	DSN string `yaml:"dsn"`
	// Lease is how long a leader of bots sharing a postgres store may go
	// unheard before another takes over: 3s or more. Default: `15s`.
	Lease Duration `yaml:"lease"`
	// Keep is what is kept of finished runs; compacted at start and once a
	// day.
	Keep KeepConfig `yaml:"keep"`
}

// KeepConfig is the retention policy: finished runs and their logs beyond
// Runs, or older than Days, are removed (0: no limit).
type KeepConfig struct {
	// Runs is how many finished runs (the newest), with their logs, are
	// kept; 0 keeps all. Default: `2000`.
	Runs *int `yaml:"runs"`
	// Days is how old a finished run, or a hold that ended, may get before
	// it is removed; 0 keeps all. Default: `365`.
	Days *int `yaml:"days"`
}

// HTTPConfig is the HTTP endpoint: the status page, /runs/N,
// /calendar.ics, /healthz, /readyz and /metrics, all read-only.
type HTTPConfig struct {
	// Listen is host:port, such as 127.0.0.1:9187; empty turns HTTP off. An
	// address other machines can reach needs a token.
	Listen string `yaml:"listen"`
	// Token, when set, is required as `Authorization: Bearer <token>` on
	// every path but /healthz (the calendar also takes a key derived from
	// it in its subscription link). Keep it in the environment.
	Token string `yaml:"token"`
	// Hosts are the host names people (or a proxy) reach the page by,
	// besides localhost and IP addresses; requests naming any other host
	// are refused (421), so a page whose DNS name was rebound to this
	// address cannot read it from a browser.
	Hosts []string `yaml:"hosts"`
	// URL is the address people open the status page at (behind a proxy:
	// the proxy's), for links in chat: the calendar, a run's page.
	URL string `yaml:"url"`
}

// LogConfig sets up the operator's log.
type LogConfig struct {
	// Format is `text` or `json`. Default: `text`.
	Format string `yaml:"format"`
	// Level is `debug`, `info`, `warn` or `error`. Default: `info`.
	Level string `yaml:"level"`
}

// ChatConfig picks the chat platform.
type ChatConfig struct {
	// Platform is `console` (a terminal), `slack`, `discord` or `matrix`.
	// Users under access are then that platform's user IDs, and channels
	// its channel or room IDs.
	// Default: `console`.
	Platform string `yaml:"platform"`
	// Slack is for platform slack (Socket Mode; README, "Slack").
	Slack SlackConfig `yaml:"slack"`
	// Discord is for platform discord (README, "Discord").
	Discord DiscordConfig `yaml:"discord"`
	// Matrix is for platform matrix (README, "Matrix").
	Matrix MatrixConfig `yaml:"matrix"`
}

// MatrixConfig connects to a Matrix homeserver as a bot account.
type MatrixConfig struct {
	// Homeserver is the URL of the homeserver's client API (not the server
	// name), such as https://matrix.example.org.
	Homeserver string `yaml:"homeserver"`
	// AccessToken is the bot account's access token, from the environment.
	AccessToken string `yaml:"access_token"`
	// Rooms are room IDs or aliases to join; none may be encrypted. Empty
	// means the control channels and the targets' channels.
	Rooms []string `yaml:"rooms"`
}

// DiscordConfig connects to Discord's gateway.
type DiscordConfig struct {
	// Token is the bot token (Developer Portal → Bot → Reset Token), without
	// "Bot ", from the environment.
	Token string `yaml:"token"`
	// Channels are the channel IDs the bot listens in (quoted, so YAML keeps
	// them as text); direct messages always work. Empty means every channel
	// it can see.
	Channels []string `yaml:"channels"`
	// APIURL is the REST base URL. Default: `https://discord.com`.
	APIURL string `yaml:"api_url"`
}

// SlackConfig connects to Slack through Socket Mode.
type SlackConfig struct {
	// AppToken is the app-level token (xapp-…, scope connections:write) for
	// Socket Mode, from the environment.
	AppToken string `yaml:"app_token"`
	// BotToken is the bot token (xoxb-…), from the environment.
	BotToken string `yaml:"bot_token"`
	// APIURL is the Web API base URL. Default: `https://slack.com/api/`.
	APIURL string `yaml:"api_url"`
}

// AccessConfig says who may do what.
type AccessConfig struct {
	// ControlChannels are the channels (without #) where state may change:
	// resync, hold, approve… Empty allows every channel. The first is where
	// targets without a channel are announced.
	ControlChannels []string `yaml:"control_channels"`
	// Everyone are the scopes every user has.
	Everyone []string `yaml:"everyone"`
	// Users are scopes per user, by the user's stable chat ID (in the
	// console, the name given with --as).
	Users map[string][]string `yaml:"users"`
	// Groups are named sets of users with scopes; approval rules may
	// require one.
	Groups map[string]GroupConfig `yaml:"groups"`
	// DatabaseRoles maps a database role to the chat user ID of the person
	// who logs in with it, so that people connected to staging are
	// mentioned when a refresh would cut them off.
	DatabaseRoles map[string]string `yaml:"database_roles"`
	// ScopedReads makes status, holds, changes, schedule, history, log and
	// dry runs need the stage.read scope everywhere; by default anyone may
	// read in the control channels and the targets' channels.
	ScopedReads bool `yaml:"scoped_reads"`
}

// GroupConfig is a named set of users with scopes.
type GroupConfig struct {
	// Members are the group's users, by chat ID.
	Members []string `yaml:"members"`
	// Scopes are what the group's members may do.
	Scopes []string `yaml:"scopes"`
}

// DefaultsConfig applies to every target unless it says otherwise.
type DefaultsConfig struct {
	// Notice is how long after a request a run starts, unless the request
	// says when. Default: `10m`.
	Notice Duration `yaml:"notice"`
	// Ladder is when reminders go out before a start. Default: `[1d, 1h, 10m]`.
	Ladder []Duration `yaml:"ladder"`
	// Hold bounds holds.
	Hold HoldConfig `yaml:"hold"`
	// EditInterval is how often a run's status message may be edited.
	// Default: `2s`.
	EditInterval Duration `yaml:"edit_interval"`
	// StopGrace is how long runs under way may go on when the bot is told
	// to stop (SIGTERM, Ctrl-C), before they are aborted and their finally
	// steps run; a second signal aborts at once. Keep it under systemd's
	// TimeoutStopSec. Default: `1m`.
	StopGrace Duration `yaml:"stop_grace"`
}

// HoldConfig bounds holds.
type HoldConfig struct {
	// Default is the length of a hold that names none. Default: `2h`.
	Default Duration `yaml:"default"`
	// Max is the longest hold allowed. Default: `7d`.
	Max Duration `yaml:"max"`
	// WarnBefore is when the holder is warned before the hold expires (with
	// Extend and Release buttons); a hold never expires before the warning
	// went out. Default: `15m`.
	WarnBefore Duration `yaml:"warn_before"`
}

// TargetConfig is one target.
type TargetConfig struct {
	// Description is shown in status and announcements.
	Description string `yaml:"description"`
	// Channel is where the target's runs are announced. Default: the first
	// control channel.
	Channel string `yaml:"channel"`
	// Schedule is when scheduled runs happen: five cron fields (minute hour
	// day-of-month month day-of-week) or @daily/@weekly, optionally after
	// `CRON_TZ=<zone>` (without it, the timezone). None: runs only on
	// request.
	Schedule string `yaml:"schedule"`
	// SchedulePipeline is the pipeline scheduled runs use. Default: the
	// default pipeline.
	SchedulePipeline string `yaml:"schedule_pipeline"`
	// Schedules are several schedules, each with its pipeline, instead of
	// schedule and schedule_pipeline.
	Schedules []ScheduleConfig `yaml:"schedules"`
	// DefaultPipeline is the pipeline used when a request names none: the
	// one called "default", or the only one. Default: `default`.
	DefaultPipeline string `yaml:"default_pipeline"`
	// Notice is the target's own notice. Default: `defaults.notice`.
	Notice *Duration `yaml:"notice"`
	// Ladder is the target's own reminders. Default: `defaults.ladder`.
	Ladder []Duration `yaml:"ladder"`
	// Approvals are how many approvals runs need, and from whom.
	Approvals ApprovalsConfig `yaml:"approvals"`
	// Pipelines are the target's named pipelines.
	Pipelines map[string]*PipelineConfig `yaml:"pipelines"`
	// Database is the PostgreSQL source and destination of a target with
	// pg_refresh, sql, check, pg_swap or pg_drop steps.
	Database *DatabaseConfig `yaml:"database"`
	// MaxAge is how old staging's data may get: holds keep a scheduled run
	// waiting only until then (a last call, then it runs; !stage extend
	// gives it more time), and a reset refuses a base copy older than this.
	// None: no limit.
	MaxAge Duration `yaml:"max_age"`
	// StallTimeout is how long a refresh may move no rows or bytes before
	// production and staging's server are probed; one that does not answer
	// fails the run, and staging stays as it was. Default: `5m`.
	StallTimeout Duration `yaml:"stall_timeout"`

	schedules []bot.Schedule
}

// ScheduleConfig is one of several schedules of a target.
type ScheduleConfig struct {
	// Cron is the schedule, written as for schedule.
	Cron string `yaml:"cron"`
	// Pipeline is the pipeline its runs use.
	Pipeline string `yaml:"pipeline"`
}

// DatabaseConfig is a target's PostgreSQL source and destination.
type DatabaseConfig struct {
	// Production is the DSN of the database copied from; it is only read,
	// in read-only sessions.
	Production string `yaml:"production"`
	// Staging is the DSN of the staging database a refresh replaces. Its
	// user needs CREATEDB and must own the staging database (or be
	// superuser).
	Staging string `yaml:"staging"`
	// Adopt lets a refresh replace a staging database stagebot did not
	// create; without it stagebot refuses databases it has not marked.
	Adopt bool `yaml:"adopt"`
	// NoOwner restores without ownership, for a staging server that lacks
	// production's roles; without it missing roles stop the run at plan
	// time, with their names.
	NoOwner bool `yaml:"no_owner"`
	// NoACL restores without privileges (grants), likewise.
	NoACL bool `yaml:"no_acl"`
	// KeepPrevious is `true` (the copy a refresh replaces is kept, as
	// `<db>__stagebot_prev`, for rollback), `false` (it is dropped), or
	// `space_permitting` (kept, but dropped before the next copy starts
	// unless disk_budget says both fit). Default: `true`.
	KeepPrevious *KeepMode `yaml:"keep_previous"`
	// KeepBase keeps each refresh's finished copy (sanitised, checked) as
	// `<db>__stagebot_base` for !stage reset, which puts staging back to it
	// in seconds without production; one more copy of staging's size.
	KeepBase bool `yaml:"keep_base"`
	// Jobs is the number of parallel COPY streams, and of index builds
	// beside them (or pg_dump and pg_restore jobs): about the staging
	// server's cores, 1 to 64. Default: `2`.
	Jobs int `yaml:"jobs"`
	// WorkDir is where method dump writes its temporary dump. Default: the
	// temp directory.
	WorkDir string `yaml:"work_dir"`
	// DiskBudget is how much the databases on staging's server may take:
	// a refresh that would not fit beside them is warned of when asked for,
	// naming the kept copies that could make room. None: no warning.
	DiskBudget Size `yaml:"disk_budget"`
	// Masking masks production's rows on their way into staging (README,
	// "Masking").
	Masking *MaskingConfig `yaml:"masking"`
}

// ApprovalsConfig has one rule for requested runs and one for scheduled ones.
type ApprovalsConfig struct {
	// Manual is the rule for runs people ask for.
	Manual ApprovalConfig `yaml:"manual"`
	// Scheduled is the rule for runs the schedule creates.
	Scheduled ApprovalConfig `yaml:"scheduled"`
}

// ApprovalConfig is one approval rule.
type ApprovalConfig struct {
	// Count is how many approvals a run needs; 0 needs none.
	Count int `yaml:"count"`
	// Group is the group approvers must be in. None: anyone with the
	// approve scope.
	Group string `yaml:"group"`
	// AllowSelf lets the person who asked for a run approve it.
	AllowSelf bool `yaml:"allow_self"`
}

// PipelineConfig is a list of steps and the finally steps that always run.
type PipelineConfig struct {
	// Steps run in order until one fails. Each sets exactly one kind:
	// exec, pg_refresh, sql, check, http_check, pg_swap or pg_drop. After a
	// database refresh and the shadow steps that follow it, a pg_swap is
	// added unless one is written.
	Steps []StepConfig `yaml:"steps"`
	// Finally are steps that always run after the steps, after a failure
	// or an abort too; every one is tried.
	Finally []StepConfig `yaml:"finally"`
	// HoldAll holds every target while this pipeline runs, so that no other
	// run starts meanwhile.
	HoldAll bool `yaml:"hold_all"`
}

// StepConfig is one step. Exactly one kind key is set: exec, pg_refresh,
// sql, check, http_check, pg_swap or pg_drop.
//
// The pg_* keys are yaml.Node values, not pointers: with KnownFields,
// yaml.v3 decodes a *yaml.Node as if Node were a struct and rejects its
// keys.
type StepConfig struct {
	// Name is what the channel and the log call the step. Default: made
	// from its kind and command.
	Name string `yaml:"name"`
	// Exec runs a command. It gets STAGEBOT_RUN, STAGEBOT_TARGET and
	// STAGEBOT_PIPELINE; in a target with a database, PGHOST, PGPORT,
	// PGUSER, PGPASSWORD and PGDATABASE for staging (or the shadow with on:
	// shadow); and of the bot's environment only PATH, HOME, USER, LOGNAME,
	// the locale, TZ, TMPDIR, SSH_AUTH_SOCK and inherit_env.
	Exec *ExecConfig `yaml:"exec"`
	// PGRefresh copies production (`{}`), one backup file or the newest
	// file in a directory into a shadow database beside staging; staging is
	// untouched until the swap.
	PGRefresh yaml.Node `yaml:"pg_refresh"`
	// SQL is statements run in one transaction, on the shadow right after
	// a refresh and on staging elsewhere (or as on says).
	SQL *string `yaml:"sql"`
	// Check is a query whose one value must be true, equal expect, or equal
	// the same query's value on same_on.
	Check *CheckConfig `yaml:"check"`
	// HTTPCheck waits until a URL answers 2xx. Its timeout defaults to 2m.
	HTTPCheck *HTTPCheckConfig `yaml:"http_check"`
	// PGSwap puts the shadow in staging's place: staging refuses new
	// connections, its sessions end, and the two trade names in one
	// transaction. Written `pg_swap: {}` only to put it elsewhere.
	PGSwap yaml.Node `yaml:"pg_swap"`
	// PGDrop drops staging, its shadow and its kept copies: `pg_drop: {}`.
	PGDrop yaml.Node `yaml:"pg_drop"`
	// On is the database a step works on: `shadow`, `staging`, or `production`
	// (check only, read-only). Default: the shadow right after a refresh,
	// staging elsewhere.
	On string `yaml:"on"`
	// Timeout ends a step that runs longer. None: no limit (http_check:
	// 2m).
	Timeout Duration `yaml:"timeout"`
	// Env are variables an exec step gets; secret-looking values are
	// removed from its output.
	Env map[string]string `yaml:"env"`
	// InheritEnv names variables of the bot's environment an exec step
	// gets besides the base ones (PATH, HOME…); nothing else of it reaches
	// the step.
	InheritEnv []string `yaml:"inherit_env"`
	// Dir is the working directory of an exec step.
	Dir string `yaml:"dir"`
	// Hosts runs an exec step once per host, {host} replaced by each, in
	// order: it stops at the first host that fails, except in finally,
	// where every host is tried. stagebot check warns of a step that stops
	// something (a command with the word stop) on a host where no finally
	// step runs the same command with start or restart.
	Hosts []string `yaml:"hosts"`

	refresh refreshConfig
}

// refreshConfig is what a pg_refresh step copies from.
type refreshConfig struct {
	// Method is `stream` (server to server in parallel COPY streams on one
	// snapshot, no temporary files) or `dump` (pg_dump -Fd -j into
	// work_dir, then pg_restore -j). Default: `stream`.
	Method string `yaml:"method"`
	// FromFile is one backup file to restore instead of production: custom,
	// directory or plain SQL format, optionally gzip, xz or zstd
	// compressed, streamed and never unpacked to disk.
	FromFile string `yaml:"from_file"`
	// FromDir is a directory whose newest file matching pattern is
	// restored.
	FromDir string `yaml:"from_dir"`
	// Pattern is the glob from_dir's files must match, such as
	// "fas2-*.dump.xz". Default: every file.
	Pattern string `yaml:"pattern"`
}

// CheckConfig is a query whose value must be true, equal expect, or equal
// the same query's value on same_on.
type CheckConfig struct {
	// Query returns one value.
	Query string `yaml:"query"`
	// Expect is the value the query must return, as text.
	Expect *string `yaml:"expect"`
	// SameOn is the database (`shadow`, `staging` or `production`) whose value of
	// the same query the value must equal.
	SameOn string `yaml:"same_on"`
}

// HTTPCheckConfig waits for a URL to answer 2xx.
type HTTPCheckConfig struct {
	// URL is the address that must answer 2xx.
	URL string `yaml:"url"`
	// Interval is the wait between tries. Default: `2s`.
	Interval Duration `yaml:"interval"`
}

// kinds lists the kind keys a step sets.
// ExecConfig is a command: a string is run by /bin/sh -c, a list is an argv.
type ExecConfig struct {
	Shell string
	Argv  []string
}

// UnmarshalYAML reads a string or a list.
func (e *ExecConfig) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		e.Shell = n.Value
		return nil
	case yaml.SequenceNode:
		return n.Decode(&e.Argv)
	}
	return fmt.Errorf("line %d: exec must be a shell command string or a list of arguments", n.Line)
}

// Duration is a time.Duration written like 90m, 2h, 1d or 1w.
type Duration time.Duration

// UnmarshalYAML reads a duration string. A bad one is a TypeError, which
// the decoder collects and goes on: every other problem is still found.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := str2duration.ParseDuration(strings.TrimSpace(n.Value))
	if err != nil || v < 0 || n.Kind != yaml.ScalarNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d column %d: %q is not a duration: write it like 30m, 2h or 1d", n.Line, n.Column, n.Value)}}
	}
	*d = Duration(v)
	return nil
}

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// KeepMode is keep_previous's value.
type KeepMode string

// The values of keep_previous.
const (
	KeepAlways          KeepMode = "true"
	KeepNever           KeepMode = "false"
	KeepSpacePermitting KeepMode = "space_permitting"
)

// Keeps reports whether a previous copy is kept at all.
func (k KeepMode) Keeps() bool { return k != KeepNever }

// UnmarshalYAML reads true, false or space_permitting; anything else is a
// TypeError, as for Duration.
func (k *KeepMode) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		var b bool
		switch {
		case n.Decode(&b) == nil && b:
			*k = KeepAlways
			return nil
		case n.Decode(&b) == nil:
			*k = KeepNever
			return nil
		case strings.EqualFold(strings.TrimSpace(n.Value), string(KeepSpacePermitting)):
			*k = KeepSpacePermitting
			return nil
		}
	}
	return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d column %d: keep_previous is %q: write true (keep the replaced copy for rollback), false, or space_permitting (keep it, but drop it before the next copy when space is short)", n.Line, n.Column, n.Value)}}
}

// Size is a number of bytes written like 40GB, 512MiB or 2T (units of
// 1024).
type Size int64

var sizeRe = regexp.MustCompile(`^(\d+(?:\.\d+)?)\s*([KMGTP]?)(?:I?B)?$`)

// UnmarshalYAML reads a size; a bad one is a TypeError, as for Duration.
func (sz *Size) UnmarshalYAML(n *yaml.Node) error {
	m := sizeRe.FindStringSubmatch(strings.ToUpper(strings.TrimSpace(n.Value)))
	if m == nil || n.Kind != yaml.ScalarNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d column %d: %q is not a size: write it like 40GB or 512MB", n.Line, n.Column, n.Value)}}
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	exp := 0
	if m[2] != "" {
		exp = strings.Index("KMGTP", m[2]) + 1
	}
	*sz = Size(v * float64(int64(1)<<(10*exp)))
	return nil
}

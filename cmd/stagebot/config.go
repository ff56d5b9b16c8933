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

// Config is the YAML configuration file. config.example.yaml documents
// every field.
type Config struct {
	Timezone string                   `yaml:"timezone"`
	Prefix   string                   `yaml:"prefix"`
	Store    StoreConfig              `yaml:"store"`
	Log      LogConfig                `yaml:"log"`
	Chat     ChatConfig               `yaml:"chat"`
	Access   AccessConfig             `yaml:"access"`
	Defaults DefaultsConfig           `yaml:"defaults"`
	HTTP     HTTPConfig               `yaml:"http"`
	Targets  map[string]*TargetConfig `yaml:"targets"`
	// ProductionServers are servers (DSNs) no target's staging may be on,
	// besides every target's own production server.
	ProductionServers []string `yaml:"production_servers"`
	// PGBinDir holds pg_dump, pg_restore and psql (default: found).
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
	// Type is bolt (one file, one bot) or postgres (a database several
	// bots share, one of them acting at a time).
	Type string `yaml:"type"`
	Path string `yaml:"path"`
	// DSN is the postgres store's database; Lease how long a leader may
	// go unheard before another bot takes over (default 15s).
	DSN   string     `yaml:"dsn"`
	Lease Duration   `yaml:"lease"`
	Keep  KeepConfig `yaml:"keep"`
}

// KeepConfig is the retention policy: finished runs and their logs beyond
// Runs, or older than Days, are removed (0: no limit).
type KeepConfig struct {
	Runs *int `yaml:"runs"`
	Days *int `yaml:"days"`
}

// HTTPConfig is the HTTP endpoint: /healthz, /readyz and /metrics.
type HTTPConfig struct {
	// Listen is host:port; empty turns HTTP off.
	Listen string `yaml:"listen"`
	// Token, when set, is required as a bearer token on every path but
	// /healthz.
	Token string `yaml:"token"`
	// Hosts are the host names people (or a proxy) reach the page by,
	// besides localhost and IP addresses; requests naming any other host
	// are refused.
	Hosts []string `yaml:"hosts"`
	// URL is the address people open the status page at (behind a proxy:
	// the proxy's), for links in chat: the calendar, a run's page.
	URL string `yaml:"url"`
}

// LogConfig sets up the operator's log.
type LogConfig struct {
	Format string `yaml:"format"`
	Level  string `yaml:"level"`
}

// ChatConfig picks the chat platform.
type ChatConfig struct {
	Platform string        `yaml:"platform"`
	Slack    SlackConfig   `yaml:"slack"`
	Discord  DiscordConfig `yaml:"discord"`
	Matrix   MatrixConfig  `yaml:"matrix"`
}

// MatrixConfig connects to a Matrix homeserver as a bot account.
type MatrixConfig struct {
	Homeserver  string `yaml:"homeserver"`
	AccessToken string `yaml:"access_token"`
	// Rooms are room IDs or aliases to join; empty means the control
	// channels and the targets' channels.
	Rooms []string `yaml:"rooms"`
}

// DiscordConfig connects to Discord's gateway.
type DiscordConfig struct {
	Token    string   `yaml:"token"`
	Channels []string `yaml:"channels"`
	APIURL   string   `yaml:"api_url"`
}

// SlackConfig connects to Slack through Socket Mode.
type SlackConfig struct {
	AppToken string `yaml:"app_token"`
	BotToken string `yaml:"bot_token"`
	APIURL   string `yaml:"api_url"`
}

// AccessConfig says who may do what.
type AccessConfig struct {
	ControlChannels []string               `yaml:"control_channels"`
	Everyone        []string               `yaml:"everyone"`
	Users           map[string][]string    `yaml:"users"`
	Groups          map[string]GroupConfig `yaml:"groups"`
	// DatabaseRoles maps a database role to the chat user ID of the person
	// who logs in with it, so that people connected to staging are
	// mentioned when a refresh would cut them off.
	DatabaseRoles map[string]string `yaml:"database_roles"`
	// ScopedReads makes status, changes, history, log and dry runs need
	// the stage.read scope everywhere; by default anyone may read in the
	// control channels and the targets' channels.
	ScopedReads bool `yaml:"scoped_reads"`
}

// GroupConfig is a named set of users with scopes.
type GroupConfig struct {
	Members []string `yaml:"members"`
	Scopes  []string `yaml:"scopes"`
}

// DefaultsConfig applies to every target unless it says otherwise.
type DefaultsConfig struct {
	Notice       Duration   `yaml:"notice"`
	Ladder       []Duration `yaml:"ladder"`
	Hold         HoldConfig `yaml:"hold"`
	EditInterval Duration   `yaml:"edit_interval"`
	// StopGrace is how long runs under way may go on when the bot is told
	// to stop, before they are aborted and their finally steps run.
	StopGrace Duration `yaml:"stop_grace"`
}

// HoldConfig bounds holds.
type HoldConfig struct {
	Default    Duration `yaml:"default"`
	Max        Duration `yaml:"max"`
	WarnBefore Duration `yaml:"warn_before"`
}

// TargetConfig is one target.
type TargetConfig struct {
	Description      string                     `yaml:"description"`
	Channel          string                     `yaml:"channel"`
	Schedule         string                     `yaml:"schedule"`
	SchedulePipeline string                     `yaml:"schedule_pipeline"`
	Schedules        []ScheduleConfig           `yaml:"schedules"`
	DefaultPipeline  string                     `yaml:"default_pipeline"`
	Notice           *Duration                  `yaml:"notice"`
	Ladder           []Duration                 `yaml:"ladder"`
	Approvals        ApprovalsConfig            `yaml:"approvals"`
	Pipelines        map[string]*PipelineConfig `yaml:"pipelines"`
	Database         *DatabaseConfig            `yaml:"database"`
	// MaxAge is how old staging's data may get; a reset refuses a base
	// copy older than this.
	MaxAge Duration `yaml:"max_age"`
	// StallTimeout is how long a refresh may move no rows or bytes before
	// its servers are probed; one that does not answer fails the run.
	// Default 5m.
	StallTimeout Duration `yaml:"stall_timeout"`

	schedules []bot.Schedule
}

// ScheduleConfig is one of several schedules of a target.
type ScheduleConfig struct {
	Cron     string `yaml:"cron"`
	Pipeline string `yaml:"pipeline"`
}

// DatabaseConfig is a target's PostgreSQL source and destination.
type DatabaseConfig struct {
	// Production is the DSN of the database copied from; it is only read.
	Production string `yaml:"production"`
	// Staging is the DSN of the staging database replaced by a refresh.
	Staging string `yaml:"staging"`
	Adopt   bool   `yaml:"adopt"`
	NoOwner bool   `yaml:"no_owner"`
	NoACL   bool   `yaml:"no_acl"`
	// KeepPrevious is true (the default: the copy a refresh replaces is
	// kept for rollback), false, or space_permitting (kept, but dropped
	// before the next copy starts unless disk_budget says both fit).
	KeepPrevious *KeepMode `yaml:"keep_previous"`
	// KeepBase keeps a template copy of each refresh, after its sanitising
	// and checks, for !stage reset (one more copy of staging's size).
	KeepBase bool   `yaml:"keep_base"`
	Jobs     int    `yaml:"jobs"`
	WorkDir  string `yaml:"work_dir"`
	// DiskBudget is how much the databases on staging's server may take:
	// a refresh that would not fit beside them is warned of when asked for.
	DiskBudget Size `yaml:"disk_budget"`
	// Masking masks production's rows on their way into staging.
	Masking *MaskingConfig `yaml:"masking"`
}

// ApprovalsConfig has one rule for requested runs and one for scheduled ones.
type ApprovalsConfig struct {
	Manual    ApprovalConfig `yaml:"manual"`
	Scheduled ApprovalConfig `yaml:"scheduled"`
}

// ApprovalConfig is one approval rule.
type ApprovalConfig struct {
	Count     int    `yaml:"count"`
	Group     string `yaml:"group"`
	AllowSelf bool   `yaml:"allow_self"`
}

// PipelineConfig is a list of steps and the finally steps that always run.
type PipelineConfig struct {
	Steps   []StepConfig `yaml:"steps"`
	Finally []StepConfig `yaml:"finally"`
	HoldAll bool         `yaml:"hold_all"`
}

// StepConfig is one step. Exactly one kind key is set: exec, pg_refresh,
// sql, check, http_check, pg_swap or pg_drop. (The pg_* keys are yaml.Node
// values, not pointers: with KnownFields, yaml.v3 decodes a *yaml.Node as if
// Node were a struct and rejects its keys.)
type StepConfig struct {
	Name      string            `yaml:"name"`
	Exec      *ExecConfig       `yaml:"exec"`
	PGRefresh yaml.Node         `yaml:"pg_refresh"`
	SQL       *string           `yaml:"sql"`
	Check     *CheckConfig      `yaml:"check"`
	HTTPCheck *HTTPCheckConfig  `yaml:"http_check"`
	PGSwap    yaml.Node         `yaml:"pg_swap"`
	PGDrop    yaml.Node         `yaml:"pg_drop"`
	On        string            `yaml:"on"`
	Timeout   Duration          `yaml:"timeout"`
	Env       map[string]string `yaml:"env"`
	// InheritEnv names variables of the bot's environment an exec step
	// gets besides runner.BaseEnv; nothing else of it reaches the step.
	InheritEnv []string `yaml:"inherit_env"`
	Dir        string   `yaml:"dir"`
	Hosts      []string `yaml:"hosts"`

	refresh refreshConfig
}

// refreshConfig is what a pg_refresh step copies from.
type refreshConfig struct {
	Method   string `yaml:"method"`
	FromFile string `yaml:"from_file"`
	FromDir  string `yaml:"from_dir"`
	Pattern  string `yaml:"pattern"`
}

// CheckConfig is a query whose value must be true, equal expect, or equal
// the same query's value on same_on.
type CheckConfig struct {
	Query  string  `yaml:"query"`
	Expect *string `yaml:"expect"`
	SameOn string  `yaml:"same_on"`
}

// HTTPCheckConfig waits for a URL to answer 2xx.
type HTTPCheckConfig struct {
	URL      string   `yaml:"url"`
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

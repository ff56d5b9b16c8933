package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/robfig/cron/v3"

	"github.com/xhit/go-str2duration/v2"
	"go.yaml.in/yaml/v3"

	"github.com/stagebot/stagebot/bot"
	"github.com/stagebot/stagebot/bot/slack"
	"github.com/stagebot/stagebot/runner"
	"github.com/stagebot/stagebot/runner/postgres"
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
func (s *StepConfig) kinds() []string {
	var k []string
	add := func(set bool, name string) {
		if set {
			k = append(k, name)
		}
	}
	add(s.Exec != nil, "exec")
	add(s.PGRefresh.Kind != 0, "pg_refresh")
	add(s.SQL != nil, "sql")
	add(s.Check != nil, "check")
	add(s.HTTPCheck != nil, "http_check")
	add(s.PGSwap.Kind != 0, "pg_swap")
	add(s.PGDrop.Kind != 0, "pg_drop")
	return k
}

func (s *StepConfig) kind() string {
	if k := s.kinds(); len(k) == 1 {
		return k[0]
	}
	return ""
}

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

// LoadConfig reads, expands and validates a config file. The error lists
// every problem found, each naming its field.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	cfg, err := ParseConfig(data, path)
	if cfg != nil {
		cfg.path = path
	}
	return cfg, err
}

// ConfigError lists every problem of a config file.
type ConfigError struct {
	File     string
	Problems []string
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("%s has %d problem(s):\n  %s", e.File, len(e.Problems), strings.Join(e.Problems, "\n  "))
}

var unknownField = regexp.MustCompile(`field (\S+) not found in type \S+`)

// linePos finds the position yaml puts at the head of an error.
var linePos = regexp.MustCompile(`^line (\d+)(?: column (\d+))?: `)

// fieldsAt maps the position of every value in a YAML document ("line:col",
// and "line" for the first value on a line) to its field's path.
func fieldsAt(data []byte) map[string]string {
	var root yaml.Node
	out := map[string]string{}
	if yaml.Unmarshal(data, &root) != nil {
		return out
	}
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		if path != "" {
			out[fmt.Sprintf("%d:%d", n.Line, n.Column)] = path
			if _, ok := out[fmt.Sprint(n.Line)]; !ok {
				out[fmt.Sprint(n.Line)] = path
			}
		}
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, path)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				walk(n.Content[i+1], join(path, n.Content[i].Value))
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				walk(c, fmt.Sprintf("%s[%d]", path, i))
			}
		}
	}
	walk(&root, "")
	return out
}

// ParseConfig is LoadConfig for bytes already read; name is used in errors.
func ParseConfig(data []byte, name string) (*Config, error) {
	cfg := &Config{}
	errs := &ConfigError{File: name}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			fields := fieldsAt(data)
			for _, e := range te.Errors {
				e = strings.TrimPrefix(e, "yaml: ")
				// Name the field, not only the line.
				if m := linePos.FindStringSubmatch(e); m != nil {
					f, ok := fields[m[1]+":"+m[2]]
					if !ok && m[2] == "" {
						f, ok = fields[m[1]]
					}
					if ok {
						e = fmt.Sprintf("%s (line %s): %s", f, m[1], e[len(m[0]):])
					}
				}
				errs.Problems = append(errs.Problems, unknownField.ReplaceAllString(e, `unknown field $1 (check its spelling; config.example.yaml lists every field)`))
			}
		} else {
			errs.Problems = append(errs.Problems, strings.TrimPrefix(err.Error(), "yaml: "))
			return nil, errs
		}
	}
	cfg.expandEnv(errs)
	cfg.validate(errs)
	if len(errs.Problems) > 0 {
		return nil, errs
	}
	return cfg, nil
}

// runtimeVars are set by the bot for a step when it runs; a reference to
// one is left for the step's shell.
var runtimeVars = map[string]bool{"STAGEBOT_RUN": true, "STAGEBOT_TARGET": true, "STAGEBOT_PIPELINE": true, "STAGEBOT_HOST": true, "STAGEBOT_DATABASE": true}

// expandRefs replaces each ${…} reference in s by what fn says; $${…} is a
// literal ${…}.
func expandRefs(s string, fn func(ref string) string) string {
	if !strings.Contains(s, "${") {
		return s
	}
	var out strings.Builder
	for i := 0; i < len(s); {
		switch {
		case strings.HasPrefix(s[i:], "$${"):
			out.WriteString("${")
			i += 3
		case strings.HasPrefix(s[i:], "${"):
			if loc := envRef.FindStringIndex(s[i:]); loc != nil && loc[0] == 0 {
				out.WriteString(fn(s[i : i+loc[1]]))
				i += loc[1]
				continue
			}
			out.WriteString("${")
			i += 2
		default:
			out.WriteByte(s[i])
			i++
		}
	}
	return out.String()
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}`)
var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
var secretName = regexp.MustCompile(`(?i)(TOKEN|PASS|SECRET|KEY|DSN|CREDENTIAL)`)

// expandEnv replaces ${VAR} (or ${VAR:-default}) in every string of the
// config. A variable that is not set is a problem, named by field.
func (c *Config) expandEnv(errs *ConfigError) {
	var walk func(v reflect.Value, path string)
	expand := func(s, path string) string {
		return expandRefs(s, func(ref string) string {
			m := envRef.FindStringSubmatch(ref)
			if runtimeVars[m[1]] {
				// Set by the bot when a step runs: the step's shell reads it.
				if !strings.Contains(path, ".exec") && !strings.Contains(path, ".env.") {
					errs.Problems = append(errs.Problems, fmt.Sprintf("%s: ${%s} is set only for exec steps, when they run (their shell reads it)", path, m[1]))
				}
				return ref
			}
			val, ok := os.LookupEnv(m[1])
			if !ok && m[2] != "" {
				val, ok = m[3], true
			}
			if !ok {
				errs.Problems = append(errs.Problems, fmt.Sprintf("%s: environment variable %s is not set: export it, or write ${%s:-default}", path, m[1], m[1]))
				return ref
			}
			if secretName.MatchString(m[1]) && len(val) >= 4 {
				c.secrets = append(c.secrets, val)
			}
			return val
		})
	}
	walk = func(v reflect.Value, path string) {
		switch v.Kind() {
		case reflect.Pointer:
			if !v.IsNil() {
				walk(v.Elem(), path)
			}
		case reflect.String:
			if v.CanSet() {
				v.SetString(expand(v.String(), path))
			}
		case reflect.Struct:
			t := v.Type()
			for i := 0; i < t.NumField(); i++ {
				f := t.Field(i)
				if !f.IsExported() {
					continue
				}
				name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
				if name == "" {
					name = strings.ToLower(f.Name)
				}
				walk(v.Field(i), join(path, name))
			}
		case reflect.Slice:
			for i := 0; i < v.Len(); i++ {
				walk(v.Index(i), fmt.Sprintf("%s[%d]", path, i))
			}
		case reflect.Map:
			for _, k := range v.MapKeys() {
				e := v.MapIndex(k)
				p := join(path, fmt.Sprint(k.Interface()))
				if e.Kind() == reflect.String {
					v.SetMapIndex(k, reflect.ValueOf(expand(e.String(), p)))
					continue
				}
				if e.Kind() == reflect.Slice && e.Type().Elem().Kind() == reflect.String {
					for i := 0; i < e.Len(); i++ {
						e.Index(i).SetString(expand(e.Index(i).String(), fmt.Sprintf("%s[%d]", p, i)))
					}
					continue
				}
				walk(e, p)
			}
		}
	}
	walk(reflect.ValueOf(c).Elem(), "")
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

var (
	nameRe  = regexp.MustCompile(`^[a-z][a-z0-9_-]*$`)
	scopeRe = regexp.MustCompile(`^stage(\.[a-z0-9_*-]+)*$`)
)

// cronParser reads five-field specs and descriptors like @daily.
var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// validate fills defaults and records every problem.
func (c *Config) validate(errs *ConfigError) {
	bad := func(field, format string, args ...any) {
		errs.Problems = append(errs.Problems, field+": "+fmt.Sprintf(format, args...))
	}
	if c.Timezone == "" {
		c.Timezone = "UTC"
	}
	loc, err := time.LoadLocation(c.Timezone)
	if err != nil {
		bad("timezone", "unknown time zone %q: use an IANA name such as UTC or Europe/Berlin", c.Timezone)
		loc = time.UTC
	}
	c.location = loc
	if c.Prefix == "" {
		c.Prefix = "!stage"
	}
	if strings.ContainsAny(c.Prefix, " \t\n") {
		bad("prefix", "%q contains white space: use one word such as !stage", c.Prefix)
	}
	switch c.Store.Type {
	case "", "bolt":
		c.Store.Type = "bolt"
		if c.Store.Path == "" {
			c.Store.Path = "stagebot.db"
		}
		if c.Store.DSN != "" {
			bad("store.dsn", "is for store.type postgres; a bolt store is a file (store.path)")
		}
	case "postgres":
		switch cfg, err := pgconn.ParseConfig(c.Store.DSN); {
		case c.Store.DSN == "":
			bad("store.dsn", "give the database the bots share, e.g. dsn: ${STAGEBOT_STORE_DSN}")
		case err != nil:
			bad("store.dsn", "not a usable DSN (%s)", redactDSNError(err, c.Store.DSN))
		case cfg.Password != "":
			c.secrets = append(c.secrets, cfg.Password)
		}
		if c.Store.Path != "" {
			bad("store.path", "is for store.type bolt; a postgres store is a database (store.dsn)")
		}
		switch {
		case c.Store.Lease == 0:
			c.Store.Lease = Duration(15 * time.Second)
		case c.Store.Lease < Duration(3*time.Second):
			bad("store.lease", "%s is too short for a leader to renew it through a slow moment: give 3s or more (15s is usual)", time.Duration(c.Store.Lease))
		}
	default:
		bad("store.type", "unknown store %q: use bolt (one bot, a file) or postgres (bots on several hosts sharing a database)", c.Store.Type)
	}
	if c.HTTP.Listen != "" {
		if host, port, err := net.SplitHostPort(c.HTTP.Listen); err != nil || port == "" {
			bad("http.listen", "%q is not host:port: write it like 127.0.0.1:9187", c.HTTP.Listen)
		} else if ip := net.ParseIP(host); c.HTTP.Token == "" && host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			bad("http.listen", "%s is reachable from other machines: set http.token (from the environment) to guard it, or listen on 127.0.0.1", c.HTTP.Listen)
		}
	}
	if c.HTTP.Token != "" {
		c.secrets = append(c.secrets, c.HTTP.Token)
	}
	for i, h := range c.HTTP.Hosts {
		if msg := badWebHost(h); msg != "" {
			bad(fmt.Sprintf("http.hosts[%d]", i), "%q %s", h, msg)
		}
	}
	for _, k := range []struct {
		field string
		v     **int
		def   int
	}{{"store.keep.runs", &c.Store.Keep.Runs, 2000}, {"store.keep.days", &c.Store.Keep.Days, 365}} {
		switch {
		case *k.v == nil:
			d := k.def
			*k.v = &d
		case **k.v < 0:
			bad(k.field, "%d is negative: give a count, or 0 to keep everything", **k.v)
		}
	}
	switch c.Log.Format {
	case "":
		c.Log.Format = "text"
	case "text", "json":
	default:
		bad("log.format", "%q is not a log format: use text or json", c.Log.Format)
	}
	switch c.Log.Level {
	case "":
		c.Log.Level = "info"
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "%q is not a log level: use debug, info, warn or error", c.Log.Level)
	}
	switch c.Chat.Platform {
	case "":
		c.Chat.Platform = "console"
	case "console":
	case "slack":
		sc := &c.Chat.Slack
		app, bot := slack.TokenProblems(sc.AppToken, sc.BotToken)
		if app != "" {
			bad("chat.slack.app_token", "%s, e.g. app_token: ${SLACK_APP_TOKEN}", app)
		}
		if bot != "" {
			bad("chat.slack.bot_token", "%s, e.g. bot_token: ${SLACK_BOT_TOKEN}", bot)
		}
		if sc.APIURL != "" && !strings.HasPrefix(sc.APIURL, "http://") && !strings.HasPrefix(sc.APIURL, "https://") {
			bad("chat.slack.api_url", "%q is not an http(s) URL", sc.APIURL)
		}
		c.secrets = append(c.secrets, sc.AppToken, sc.BotToken)
	case "discord":
		dc := &c.Chat.Discord
		dc.Token = strings.TrimSpace(strings.TrimPrefix(dc.Token, "Bot "))
		if dc.Token == "" {
			bad("chat.discord.token", "give the bot token (Developer Portal → your app → Bot → Reset Token), e.g. token: ${DISCORD_TOKEN}")
		}
		for i, ch := range dc.Channels {
			if !isSnowflake(ch) {
				bad(fmt.Sprintf("chat.discord.channels[%d]", i), "%q is not a channel ID: turn on Developer Mode, right-click the channel, Copy Channel ID", ch)
			}
		}
		if dc.APIURL != "" && !strings.HasPrefix(dc.APIURL, "http://") && !strings.HasPrefix(dc.APIURL, "https://") {
			bad("chat.discord.api_url", "%q is not an http(s) URL", dc.APIURL)
		}
		c.secrets = append(c.secrets, dc.Token)
	case "matrix":
		mc := &c.Chat.Matrix
		if u, err := url.Parse(mc.Homeserver); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("chat.matrix.homeserver", "give the homeserver's client API URL, e.g. homeserver: https://matrix.example.org (not the server name, not a room)")
		}
		if strings.TrimSpace(mc.AccessToken) == "" {
			bad("chat.matrix.access_token", "give the bot account's access token from the environment, e.g. access_token: ${MATRIX_TOKEN} (README: Run it in Matrix)")
		}
		for i, r := range mc.Rooms {
			if !matrixRoomRe.MatchString(r) {
				bad(fmt.Sprintf("chat.matrix.rooms[%d]", i), "%q is not a room ID (!abc:example.org) or alias (#infra:example.org)", r)
			}
		}
		for i, ch := range c.Access.ControlChannels {
			if !strings.HasPrefix(ch, "!") || !strings.Contains(ch, ":") {
				bad(fmt.Sprintf("access.control_channels[%d]", i), "%q is not a Matrix room ID: give the room ID (!abc:example.org; Element: Room settings → Advanced), not its alias", ch)
			}
		}
		c.secrets = append(c.secrets, mc.AccessToken)
	default:
		bad("chat.platform", "%q is not a chat platform this stagebot knows: use console, slack, discord or matrix", c.Chat.Platform)
	}

	d := &c.Defaults
	if d.Notice == 0 {
		d.Notice = Duration(10 * time.Minute)
	}
	if d.Ladder == nil {
		d.Ladder = []Duration{Duration(24 * time.Hour), Duration(time.Hour), Duration(10 * time.Minute)}
	}
	if d.Hold.Default == 0 {
		d.Hold.Default = Duration(2 * time.Hour)
	}
	if d.Hold.Max == 0 {
		d.Hold.Max = Duration(7 * 24 * time.Hour)
	}
	if d.Hold.WarnBefore == 0 {
		d.Hold.WarnBefore = Duration(15 * time.Minute)
	}
	if d.EditInterval == 0 {
		d.EditInterval = Duration(2 * time.Second)
	}
	if d.StopGrace == 0 {
		d.StopGrace = Duration(time.Minute)
	}
	if d.StopGrace < 0 {
		bad("defaults.stop_grace", "must not be negative")
	}
	if d.Hold.Default > d.Hold.Max {
		bad("defaults.hold.default", "%s is longer than defaults.hold.max (%s)", d.Hold.Default.D(), d.Hold.Max.D())
	}

	for _, ch := range c.Access.ControlChannels {
		if strings.HasPrefix(ch, "#") && c.Chat.Platform != "matrix" {
			bad("access.control_channels", "write %q without the #", ch)
		}
	}
	checkScopes := func(field string, scopes []string) {
		for i, s := range scopes {
			if !scopeRe.MatchString(s) {
				bad(fmt.Sprintf("%s[%d]", field, i), "%q is not a scope: scopes look like stage, stage.hold or stage.resync.fas2", s)
				continue
			}
			if parts := strings.Split(s, "."); len(parts) >= 3 && parts[2] != "all" && c.Targets[parts[2]] == nil {
				bad(fmt.Sprintf("%s[%d]", field, i), "scope %q names target %q, which is not configured", s, parts[2])
			}
		}
	}
	checkScopes("access.everyone", c.Access.Everyone)
	for _, u := range slices.Sorted(maps.Keys(c.Access.Users)) {
		checkScopes("access.users."+u, c.Access.Users[u])
	}
	for _, g := range slices.Sorted(maps.Keys(c.Access.Groups)) {
		checkScopes("access.groups."+g+".scopes", c.Access.Groups[g].Scopes)
		if len(c.Access.Groups[g].Members) == 0 {
			bad("access.groups."+g+".members", "the group has no members")
		}
	}

	for i, dsn := range c.ProductionServers {
		if cfg, err := pgx.ParseConfig(dsn); err != nil {
			bad(fmt.Sprintf("production_servers[%d]", i), "not a usable DSN (%s)", redactDSNError(err, dsn))
		} else if cfg.Password != "" {
			c.secrets = append(c.secrets, cfg.Password)
		}
	}
	if len(c.Targets) == 0 {
		bad("targets", "no targets: configure at least one (see config.example.yaml)")
	}
	for _, name := range slices.Sorted(maps.Keys(c.Targets)) {
		c.validateTarget(name, c.Targets[name], bad)
	}
	if c.Chat.Platform == "matrix" {
		for _, name := range slices.Sorted(maps.Keys(c.Targets)) {
			if t := c.Targets[name]; t != nil && t.Channel == "" {
				bad("targets."+name+".channel", "no room to announce in: give the target a channel, or access.control_channels a room ID (!abc:example.org)")
			}
		}
	}
}

func (c *Config) validateTarget(name string, t *TargetConfig, bad func(string, string, ...any)) {
	f := "targets." + name
	if t == nil {
		bad(f, "the target is empty: give it pipelines")
		return
	}
	if !nameRe.MatchString(name) || name == "all" {
		bad(f, "%q is not a usable target name: use lower-case letters, digits, - and _, starting with a letter (and not \"all\")", name)
	}
	if t.Channel == "" && len(c.Access.ControlChannels) > 0 {
		t.Channel = c.Access.ControlChannels[0]
	}
	switch {
	case c.Chat.Platform == "matrix":
		if t.Channel != "" && (!strings.HasPrefix(t.Channel, "!") || !strings.Contains(t.Channel, ":")) {
			bad(f+".channel", "%q is not a Matrix room ID: give the room ID (!abc:example.org; Element: Room settings → Advanced), not its alias", t.Channel)
		}
	case strings.HasPrefix(t.Channel, "#"):
		bad(f+".channel", "write %q without the #", t.Channel)
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
		c.validateDatabase(f+".database", t.Database, bad)
	}
	if t.MaxAge < 0 {
		bad(f+".max_age", "must not be negative")
	}
	if t.StallTimeout < 0 || (t.StallTimeout > 0 && t.StallTimeout < Duration(10*time.Second)) {
		bad(f+".stall_timeout", "%s is too short for a busy server to show progress: give 10s or more (default 5m)", time.Duration(t.StallTimeout))
	}
	if _, ok := t.Pipelines["rollback"]; ok && t.Database != nil {
		bad(f+".pipelines.rollback", "a target with a database gets its rollback pipeline from its default one: give yours another name")
	}
	if t.Database != nil && t.Database.KeepBase {
		if _, ok := t.Pipelines["reset"]; ok {
			bad(f+".pipelines.reset", "keep_base makes the target's reset pipeline itself: give yours another name")
		}
		if dp := t.Pipelines[t.DefaultPipeline]; dp != nil && !slices.ContainsFunc(dp.Steps, func(s StepConfig) bool { return s.kind() == "pg_refresh" }) {
			bad(f+".database.keep_base", "the default pipeline (%s) has no pg_refresh step for a reset to stand in for", t.DefaultPipeline)
		}
	}
	if len(t.Pipelines) == 0 {
		bad(f+".pipelines", "no pipelines: give the target at least one")
	}
	for _, pn := range slices.Sorted(maps.Keys(t.Pipelines)) {
		pf := f + ".pipelines." + pn
		if !nameRe.MatchString(pn) {
			bad(pf, "%q is not a usable pipeline name: use lower-case letters, digits, - and _", pn)
		}
		p := t.Pipelines[pn]
		if p == nil || len(p.Steps) == 0 {
			bad(pf+".steps", "the pipeline has no steps")
			continue
		}
		for i := range p.Steps {
			validateStep(fmt.Sprintf("%s.steps[%d]", pf, i), &p.Steps[i], t, false, bad)
			c.stepSecrets(&p.Steps[i])
		}
		for i := range p.Finally {
			validateStep(fmt.Sprintf("%s.finally[%d]", pf, i), &p.Finally[i], t, true, bad)
			c.stepSecrets(&p.Finally[i])
			if p.Finally[i].On == "shadow" {
				bad(fmt.Sprintf("%s.finally[%d].on", pf, i), "finally steps run after the swap or a failure, when there is no shadow: use staging")
			}
		}
		checkShadowSteps(pf, p.Steps, bad)
	}
	switch {
	case t.DefaultPipeline != "":
		if t.Pipelines[t.DefaultPipeline] == nil {
			bad(f+".default_pipeline", "there is no pipeline %q", t.DefaultPipeline)
		}
	case t.Pipelines["default"] != nil:
		t.DefaultPipeline = "default"
	case len(t.Pipelines) == 1:
		t.DefaultPipeline = slices.Sorted(maps.Keys(t.Pipelines))[0]
	case len(t.Pipelines) > 1:
		bad(f+".default_pipeline", "the target has several pipelines and none is called default: name the one to use")
	}
	parseCron := func(field, spec string) cron.Schedule {
		if !strings.HasPrefix(spec, "CRON_TZ=") && !strings.HasPrefix(spec, "TZ=") {
			spec = "CRON_TZ=" + c.Timezone + " " + spec
		}
		body := spec[strings.IndexByte(spec, ' ')+1:]
		if n := len(strings.Fields(body)); !strings.HasPrefix(body, "@") && n != 5 {
			bad(field, "expected 5 fields (minute hour day-of-month month day-of-week), got %d", n)
		} else if s, err := cronParser.Parse(spec); err != nil {
			bad(field, "%s", err)
		} else if n := s.Next(time.Now()); n.IsZero() {
			bad(field, "%q never comes round", body)
		} else if s.Next(n).Sub(n) < time.Minute {
			// Runs are announced and held to the minute.
			bad(field, "%q comes round more often than once a minute; the shortest schedule is every minute (* * * * *)", body)
		} else {
			return s
		}
		return nil
	}
	switch {
	case t.Schedule != "" && len(t.Schedules) > 0:
		bad(f+".schedules", "give either schedule (one) or schedules (several), not both")
	case t.Schedule != "":
		if t.SchedulePipeline == "" {
			t.SchedulePipeline = t.DefaultPipeline
		}
		if t.SchedulePipeline != "" && t.Pipelines[t.SchedulePipeline] == nil {
			bad(f+".schedule_pipeline", "there is no pipeline %q", t.SchedulePipeline)
		}
		if s := parseCron(f+".schedule", t.Schedule); s != nil {
			t.schedules = append(t.schedules, bot.Schedule{Spec: t.Schedule, Cron: s, Pipeline: t.SchedulePipeline})
		}
	case t.SchedulePipeline != "":
		bad(f+".schedule_pipeline", "set, but the target has no schedule")
	}
	for i, sc := range t.Schedules {
		sf := fmt.Sprintf("%s.schedules[%d]", f, i)
		if sc.Cron == "" {
			bad(sf+".cron", "missing: give five cron fields, e.g. cron: \"0 22 * * 5\"")
			continue
		}
		if sc.Pipeline == "" {
			sc.Pipeline = t.DefaultPipeline
		}
		if t.Pipelines[sc.Pipeline] == nil {
			bad(sf+".pipeline", "there is no pipeline %q", sc.Pipeline)
		}
		if s := parseCron(sf+".cron", sc.Cron); s != nil {
			t.schedules = append(t.schedules, bot.Schedule{Spec: sc.Cron, Cron: s, Pipeline: sc.Pipeline})
		}
	}
	for _, r := range []struct {
		field string
		rule  ApprovalConfig
	}{{"manual", t.Approvals.Manual}, {"scheduled", t.Approvals.Scheduled}} {
		af := f + ".approvals." + r.field
		if r.rule.Count < 0 || r.rule.Count > 10 {
			bad(af+".count", "%d is not a sensible number of approvals: use 0 to 10", r.rule.Count)
		}
		if r.rule.Group != "" {
			if _, ok := c.Access.Groups[r.rule.Group]; !ok {
				bad(af+".group", "there is no group %q in access.groups", r.rule.Group)
			}
		}
	}
}

func (c *Config) validateDatabase(f string, d *DatabaseConfig, bad func(string, string, ...any)) {
	check := func(field, dsn string, required bool) {
		if dsn == "" {
			if required {
				bad(f+"."+field, "give the %s database's DSN, e.g. postgres://user@host:5432/dbname", field)
			}
			return
		}
		cfg, err := pgx.ParseConfig(dsn)
		if err != nil {
			bad(f+"."+field, "not a usable DSN (%s)", redactDSNError(err, dsn))
			return
		}
		if cfg.Password != "" {
			c.secrets = append(c.secrets, cfg.Password)
		}
		if field == "staging" {
			if _, err := (&postgres.Target{StagingDSN: dsn}).StagingDB(); err != nil {
				bad(f+".staging", "%s", err)
			}
		}
	}
	check("production", d.Production, false)
	check("staging", d.Staging, true)
	if d.Jobs < 0 || d.Jobs > 64 {
		bad(f+".jobs", "%d: use 1 to 64", d.Jobs)
	}
	if d.KeepPrevious == nil {
		keep := KeepAlways
		d.KeepPrevious = &keep
	}
}

// matrixRoomRe matches a room ID or alias: a sigil, a local part, a
// colon and a server name.
var matrixRoomRe = regexp.MustCompile(`^[!#][^:\s]+:[A-Za-z0-9.\-\[\]:]+$`)

// isSnowflake reports whether s looks like a Discord ID.
func isSnowflake(s string) bool {
	if s == "" || len(s) > 20 {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// redactDSNError keeps a DSN's password out of a parse error.
func redactDSNError(err error, dsn string) string {
	msg := err.Error()
	if cfg, perr := pgconn.ParseConfig(dsn); perr == nil && cfg.Password != "" {
		msg = strings.ReplaceAll(msg, cfg.Password, "***")
	}
	if u := strings.Index(dsn, "://"); u >= 0 {
		if at := strings.LastIndex(dsn, "@"); at > u {
			msg = strings.ReplaceAll(msg, dsn[u+3:at], "***")
		}
	}
	return msg
}

// stepSecrets adds the values of a step's secret-looking variables, set in
// its env or inherited from the bot's environment, to what the bot removes
// from everything it says and logs: a step's output can show them.
func (c *Config) stepSecrets(s *StepConfig) {
	for _, name := range s.InheritEnv {
		if v := os.Getenv(name); secretName.MatchString(name) && len(v) >= 4 {
			c.secrets = append(c.secrets, v)
		}
	}
	for k, v := range s.Env {
		if secretName.MatchString(k) && len(v) >= 4 {
			c.secrets = append(c.secrets, v)
		}
	}
}

func validateStep(f string, s *StepConfig, t *TargetConfig, finally bool, bad func(string, string, ...any)) {
	kinds := s.kinds()
	switch len(kinds) {
	case 0:
		bad(f, "the step has no kind: give it one of exec, pg_refresh, sql, check, http_check, pg_swap, pg_drop")
		return
	case 1:
	default:
		bad(f, "the step has several kinds (%s): give it one", strings.Join(kinds, ", "))
		return
	}
	kind := kinds[0]
	if s.Name == "" {
		s.Name = defaultStepName(s, kind)
	}
	if s.Timeout < 0 {
		bad(f+".timeout", "must not be negative")
	}
	switch kind {
	case "exec":
		if s.Exec.Shell == "" && len(s.Exec.Argv) == 0 {
			bad(f+".exec", "empty command")
		}
		for i, name := range s.InheritEnv {
			if !envName.MatchString(name) {
				bad(fmt.Sprintf("%s.inherit_env[%d]", f, i), "%q is not a variable name (letters, digits and _)", name)
			}
		}
	case "http_check":
		if !strings.HasPrefix(s.HTTPCheck.URL, "http://") && !strings.HasPrefix(s.HTTPCheck.URL, "https://") {
			bad(f+".http_check.url", "%q is not an http(s) URL", s.HTTPCheck.URL)
		}
	default:
		if t.Database == nil {
			bad(f+"."+kind, "a %s step needs the target's database section (production and staging DSNs)", kind)
		}
	}
	if finally && (kind == "pg_refresh" || kind == "pg_swap" || kind == "pg_drop") {
		bad(f+"."+kind, "a %s step cannot be a finally step", kind)
	}
	switch kind {
	case "pg_refresh":
		if s.PGRefresh.Kind == yaml.MappingNode {
			if err := strictDecode(&s.PGRefresh, &s.refresh); err != nil {
				bad(f+".pg_refresh", "%s", err)
			}
		}
		if s.refresh.FromFile != "" && s.refresh.FromDir != "" {
			bad(f+".pg_refresh", "give from_file or from_dir, not both")
		}
		switch m := s.refresh.Method; {
		case m != "" && m != "stream" && m != "dump":
			bad(f+".pg_refresh.method", "%q: use stream (server to server, the default) or dump (pg_dump/pg_restore)", m)
		case m != "" && (s.refresh.FromFile != "" || s.refresh.FromDir != ""):
			bad(f+".pg_refresh.method", "a method is for copying a live database, not a backup file")
		}
		if s.refresh.FromFile == "" && s.refresh.FromDir == "" && t.Database != nil && t.Database.Production == "" {
			bad(f+".pg_refresh", "refreshing from a live database needs database.production; or give from_file or from_dir")
		}
	case "sql":
		if strings.TrimSpace(*s.SQL) == "" {
			bad(f+".sql", "empty SQL")
		}
	case "check":
		if strings.TrimSpace(s.Check.Query) == "" {
			bad(f+".check.query", "empty query")
		}
		if s.Check.SameOn != "" && !validOn(s.Check.SameOn) {
			bad(f+".check.same_on", "%q: use shadow, staging or production", s.Check.SameOn)
		}
	}
	if s.On != "" {
		switch {
		case kind != "sql" && kind != "check" && kind != "exec":
			bad(f+".on", "only sql, check and exec steps take on")
		case !validOn(s.On):
			bad(f+".on", "%q: use shadow, staging or production", s.On)
		case kind == "sql" && s.On == "production":
			bad(f+".on", "sql steps never write to production: use shadow or staging")
		case kind == "exec" && s.On == "production":
			bad(f+".on", "commands never get production's connection: use shadow or staging")
		case kind == "exec" && t.Database == nil:
			bad(f+".on", "on needs the target's database section")
		}
	}
	if len(s.Hosts) > 0 {
		if kind != "exec" {
			bad(f+".hosts", "only exec steps run on hosts")
		} else if !strings.Contains(s.Exec.Shell+strings.Join(s.Exec.Argv, " "), runner.HostPlaceholder) {
			bad(f+".hosts", "the command does not say where: put {host} in it, e.g. exec: [ssh, \"{host}\", sudo, systemctl, stop, httpd]")
		}
		for i, h := range s.Hosts {
			if strings.TrimSpace(h) == "" {
				bad(fmt.Sprintf("%s.hosts[%d]", f, i), "empty host")
			}
		}
	}
}

// checkShadowSteps refuses on: shadow where no shadow exists: before the
// pg_refresh that makes it, or after the swap.
func checkShadowSteps(pf string, steps []StepConfig, bad func(string, string, ...any)) {
	explicitSwap := slices.ContainsFunc(steps, func(s StepConfig) bool { return s.kind() == "pg_swap" })
	inShadow := false
	for i, s := range steps {
		kind := s.kind()
		continues := (kind == "sql" || kind == "check") && (s.On == "" || s.On == "shadow") || kind == "exec" && s.On == "shadow"
		if inShadow && !explicitSwap && !continues || kind == "pg_swap" {
			inShadow = false
		}
		if (s.On == "shadow" || kind == "check" && s.Check.SameOn == "shadow") && !inShadow {
			bad(fmt.Sprintf("%s.steps[%d].on", pf, i), "there is no shadow here: it exists from a pg_refresh step until the swap, and only steps on the shadow may come between them")
		}
		if kind == "pg_refresh" {
			inShadow = true
		}
	}
}

// strictDecode decodes a node, rejecting unknown keys (Node.Decode alone
// would ignore them, and a misspelt option would be lost).
func strictDecode(n *yaml.Node, out any) error {
	data, err := yaml.Marshal(n)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(out); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			var msgs []string
			for _, e := range te.Errors {
				// Line numbers refer to the fragment; leave them out.
				_, msg, _ := strings.Cut(e, ": ")
				msgs = append(msgs, unknownField.ReplaceAllString(msg, `unknown field $1`))
			}
			return errors.New(strings.Join(msgs, "; "))
		}
		return err
	}
	return nil
}

func validOn(s string) bool { return s == "shadow" || s == "staging" || s == "production" }

func defaultStepName(s *StepConfig, kind string) string {
	var name string
	switch kind {
	case "exec":
		name = s.Exec.Shell
		if name == "" {
			name = strings.Join(s.Exec.Argv, " ")
		}
	case "sql":
		name = "sql: " + strings.TrimSpace(*s.SQL)
	case "check":
		name = "check: " + strings.TrimSpace(s.Check.Query)
	case "http_check":
		name = "wait for " + s.HTTPCheck.URL
	case "pg_refresh":
		name = "refresh the database"
	case "pg_swap":
		name = "swap it into place"
	case "pg_drop":
		name = "drop the database"
	}
	if i := strings.IndexByte(name, '\n'); i >= 0 {
		name = name[:i]
	}
	if len(name) > 40 {
		name = name[:40] + "…"
	}
	return name
}

// badWebHost says what is wrong with an http.hosts entry, or "" when it
// is a bare host name: the page compares names only, so an entry with a
// scheme, port or path would never match any request.
func badWebHost(h string) string {
	switch {
	case strings.TrimSpace(h) == "":
		return "is empty: give a host name, like stagebot.example.org"
	case strings.Contains(h, "://"):
		return "has a scheme: give the host name alone, like stagebot.example.org"
	case strings.ContainsAny(h, "/?#@ "):
		return "is not a host name: give it alone, without a path, user or spaces, like stagebot.example.org"
	case strings.Contains(h, ":"):
		return "has a port: give the host name alone (any port is accepted), like stagebot.example.org"
	}
	return ""
}

package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
	"github.com/xhit/go-str2duration/v2"
	"go.yaml.in/yaml/v3"
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
	Targets  map[string]*TargetConfig `yaml:"targets"`

	location *time.Location
	// secrets are values that came from secret-looking environment
	// variables; they are removed from everything the bot says or logs.
	secrets []string
}

// StoreConfig says where state is kept.
type StoreConfig struct {
	Type string `yaml:"type"`
	Path string `yaml:"path"`
}

// LogConfig sets up the operator's log.
type LogConfig struct {
	Format string `yaml:"format"`
	Level  string `yaml:"level"`
}

// ChatConfig picks the chat platform.
type ChatConfig struct {
	Platform string `yaml:"platform"`
}

// AccessConfig says who may do what.
type AccessConfig struct {
	ControlChannels []string               `yaml:"control_channels"`
	Everyone        []string               `yaml:"everyone"`
	Users           map[string][]string    `yaml:"users"`
	Groups          map[string]GroupConfig `yaml:"groups"`
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
	DefaultPipeline  string                     `yaml:"default_pipeline"`
	Notice           *Duration                  `yaml:"notice"`
	Ladder           []Duration                 `yaml:"ladder"`
	Approvals        ApprovalsConfig            `yaml:"approvals"`
	Pipelines        map[string]*PipelineConfig `yaml:"pipelines"`

	schedule cron.Schedule
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
}

// StepConfig is one step. Exactly one kind key (exec) is set.
type StepConfig struct {
	Name    string            `yaml:"name"`
	Exec    *ExecConfig       `yaml:"exec"`
	Timeout Duration          `yaml:"timeout"`
	Env     map[string]string `yaml:"env"`
	Dir     string            `yaml:"dir"`
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

// UnmarshalYAML reads a duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := str2duration.ParseDuration(strings.TrimSpace(n.Value))
	if err != nil || v < 0 {
		return fmt.Errorf("line %d: %q is not a duration: write it like 30m, 2h or 1d", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// LoadConfig reads, expands and validates a config file. The error lists
// every problem found, each naming its field.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return ParseConfig(data, path)
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

// ParseConfig is LoadConfig for bytes already read; name is used in errors.
func ParseConfig(data []byte, name string) (*Config, error) {
	cfg := &Config{}
	errs := &ConfigError{File: name}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			for _, e := range te.Errors {
				errs.Problems = append(errs.Problems, unknownField.ReplaceAllString(strings.TrimPrefix(e, "yaml: "), `unknown field $1 (check its spelling; config.example.yaml lists every field)`))
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

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}`)
var secretName = regexp.MustCompile(`(?i)(TOKEN|PASS|SECRET|KEY|DSN|CREDENTIAL)`)

// expandEnv replaces ${VAR} (or ${VAR:-default}) in every string of the
// config. A variable that is not set is a problem, named by field.
func (c *Config) expandEnv(errs *ConfigError) {
	var walk func(v reflect.Value, path string)
	expand := func(s, path string) string {
		return envRef.ReplaceAllStringFunc(s, func(ref string) string {
			m := envRef.FindStringSubmatch(ref)
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
	default:
		bad("store.type", "unknown store %q: the only store is bolt", c.Store.Type)
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
	default:
		bad("chat.platform", "%q is not a chat platform this stagebot knows: use console", c.Chat.Platform)
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
	if d.Hold.Default > d.Hold.Max {
		bad("defaults.hold.default", "%s is longer than defaults.hold.max (%s)", d.Hold.Default.D(), d.Hold.Max.D())
	}

	for _, ch := range c.Access.ControlChannels {
		if strings.HasPrefix(ch, "#") {
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
	for _, u := range sortedKeys(c.Access.Users) {
		checkScopes("access.users."+u, c.Access.Users[u])
	}
	for _, g := range sortedKeys(c.Access.Groups) {
		checkScopes("access.groups."+g+".scopes", c.Access.Groups[g].Scopes)
		if len(c.Access.Groups[g].Members) == 0 {
			bad("access.groups."+g+".members", "the group has no members")
		}
	}

	if len(c.Targets) == 0 {
		bad("targets", "no targets: configure at least one (see config.example.yaml)")
	}
	for _, name := range sortedKeys(c.Targets) {
		c.validateTarget(name, c.Targets[name], bad)
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
	if strings.HasPrefix(t.Channel, "#") {
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
	if len(t.Pipelines) == 0 {
		bad(f+".pipelines", "no pipelines: give the target at least one")
	}
	for _, pn := range sortedKeys(t.Pipelines) {
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
			validateStep(fmt.Sprintf("%s.steps[%d]", pf, i), &p.Steps[i], bad)
		}
		for i := range p.Finally {
			validateStep(fmt.Sprintf("%s.finally[%d]", pf, i), &p.Finally[i], bad)
		}
	}
	switch {
	case t.DefaultPipeline != "":
		if t.Pipelines[t.DefaultPipeline] == nil {
			bad(f+".default_pipeline", "there is no pipeline %q", t.DefaultPipeline)
		}
	case t.Pipelines["default"] != nil:
		t.DefaultPipeline = "default"
	case len(t.Pipelines) == 1:
		t.DefaultPipeline = sortedKeys(t.Pipelines)[0]
	case len(t.Pipelines) > 1:
		bad(f+".default_pipeline", "the target has several pipelines and none is called default: name the one to use")
	}
	if t.Schedule != "" {
		spec := t.Schedule
		if !strings.HasPrefix(spec, "CRON_TZ=") && !strings.HasPrefix(spec, "TZ=") {
			spec = "CRON_TZ=" + c.Timezone + " " + spec
		}
		body := spec[strings.IndexByte(spec, ' ')+1:]
		if n := len(strings.Fields(body)); !strings.HasPrefix(body, "@") && n != 5 {
			bad(f+".schedule", "expected 5 fields (minute hour day-of-month month day-of-week), got %d", n)
		} else if s, err := cronParser.Parse(spec); err != nil {
			bad(f+".schedule", "%s", err)
		} else if s.Next(time.Now()).IsZero() {
			bad(f+".schedule", "%q never comes round", t.Schedule)
		} else {
			t.schedule = s
		}
		if t.SchedulePipeline == "" {
			t.SchedulePipeline = t.DefaultPipeline
		}
		if t.SchedulePipeline != "" && t.Pipelines[t.SchedulePipeline] == nil {
			bad(f+".schedule_pipeline", "there is no pipeline %q", t.SchedulePipeline)
		}
	} else if t.SchedulePipeline != "" {
		bad(f+".schedule_pipeline", "set, but the target has no schedule")
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

func validateStep(f string, s *StepConfig, bad func(string, string, ...any)) {
	if s.Exec == nil {
		bad(f, "the step has no kind: give it exec")
		return
	}
	if s.Name == "" {
		if s.Exec.Shell != "" {
			s.Name = s.Exec.Shell
		} else if len(s.Exec.Argv) > 0 {
			s.Name = strings.Join(s.Exec.Argv, " ")
		}
		if len(s.Name) > 40 {
			s.Name = s.Name[:40] + "…"
		}
	}
	if s.Exec.Shell == "" && len(s.Exec.Argv) == 0 {
		bad(f+".exec", "empty command")
	}
	if s.Timeout < 0 {
		bad(f+".timeout", "must not be negative")
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

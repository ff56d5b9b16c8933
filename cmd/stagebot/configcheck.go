package main

import (
	"fmt"
	"maps"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/robfig/cron/v3"

	"github.com/stagebot/stagebot/bot/slack"
)

var (
	nameRe  = regexp.MustCompile(`^[a-z][a-z0-9_-]*$`)
	scopeRe = regexp.MustCompile(`^stage(\.[a-z0-9_*-]+)*$`)
)

// cronParser reads five-field specs and descriptors like @daily.
var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// validate fills defaults and records every problem.
func (c *Config) validate(errs *ConfigError) {
	v := &validation{errs}
	c.validateBasics(v)
	c.validateStore(v)
	c.validateHTTP(v)
	c.validateLog(v)
	c.validateChat(v)
	c.validateDefaults(v)
	c.validateAccess(v)
	c.validateTargets(v)
	c.collectSecrets()
}

// validation collects what is wrong with a config, each problem naming
// its field.
type validation struct{ errs *ConfigError }

// bad adds a problem with field.
func (v *validation) bad(field, format string, args ...any) {
	v.errs.Problems = append(v.errs.Problems, field+": "+fmt.Sprintf(format, args...))
}

// validateBasics: the time zone and the prefix.
func (c *Config) validateBasics(v *validation) {
	if c.Timezone == "" {
		c.Timezone = "UTC"
	}
	loc, err := time.LoadLocation(c.Timezone)
	if err != nil {
		v.bad("timezone", "unknown time zone %q: use an IANA name such as UTC or Europe/Berlin", c.Timezone)
		loc = time.UTC
	}
	c.location = loc
	if c.Prefix == "" {
		c.Prefix = "!stage"
	}
	if strings.ContainsAny(c.Prefix, " \t\n") {
		v.bad("prefix", "%q contains white space: use one word such as !stage", c.Prefix)
	}
}

// validateStore: the store's type, where it is, its lease and retention.
func (c *Config) validateStore(v *validation) {
	switch c.Store.Type {
	case "", "bolt":
		c.Store.Type = "bolt"
		if c.Store.Path == "" {
			c.Store.Path = "stagebot.db"
		}
		if c.Store.DSN != "" {
			v.bad("store.dsn", "is for store.type postgres; a bolt store is a file (store.path)")
		}
	case "postgres":
		switch _, err := pgconn.ParseConfig(c.Store.DSN); {
		case c.unset["store.dsn"]: // its unset variable is its problem
		case c.Store.DSN == "":
			v.bad("store.dsn", "give the database the bots share, e.g. dsn: ${STAGEBOT_STORE_DSN}")
		case err != nil:
			v.bad("store.dsn", "not a usable DSN (%s)", redactDSNError(err, c.Store.DSN))
		}
		if c.Store.Path != "" {
			v.bad("store.path", "is for store.type bolt; a postgres store is a database (store.dsn)")
		}
		switch {
		case c.Store.Lease == 0:
			c.Store.Lease = Duration(15 * time.Second)
		case c.Store.Lease < Duration(3*time.Second):
			v.bad("store.lease", "%s is too short for a leader to renew it through a slow moment: give 3s or more (15s is usual)", time.Duration(c.Store.Lease))
		}
	default:
		v.bad("store.type", "unknown store %q: use bolt (one bot, a file) or postgres (bots on several hosts sharing a database)", c.Store.Type)
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
			v.bad(k.field, "%d is negative: give a count, or 0 to keep everything", **k.v)
		}
	}
}

// validateHTTP: where the page listens, who may reach it, by which names.
func (c *Config) validateHTTP(v *validation) {
	if c.HTTP.Listen != "" {
		if host, port, err := net.SplitHostPort(c.HTTP.Listen); err != nil || port == "" {
			v.bad("http.listen", "%q is not host:port: write it like 127.0.0.1:9187", c.HTTP.Listen)
		} else if ip := net.ParseIP(host); c.HTTP.Token == "" && host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			v.bad("http.listen", "%s is reachable from other machines: set http.token (from the environment) to guard it, or listen on 127.0.0.1", c.HTTP.Listen)
		}
	}
	if c.HTTP.URL != "" {
		if u, err := url.Parse(c.HTTP.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" {
			v.bad("http.url", "%q is not the page's address: give it like https://stagebot.example.org (no user, no query)", c.HTTP.URL)
		} else if c.HTTP.Listen == "" {
			v.bad("http.url", "is set but http.listen is not: links to %s would lead nowhere; set http.listen too, or remove http.url", c.HTTP.URL)
		}
	}
	for i, h := range c.HTTP.Hosts {
		if msg := badWebHost(h); msg != "" {
			v.bad(fmt.Sprintf("http.hosts[%d]", i), "%q %s", h, msg)
		}
	}
}

// validateLog: the operator's log.
func (c *Config) validateLog(v *validation) {
	switch c.Log.Format {
	case "":
		c.Log.Format = "text"
	case "text", "json":
	default:
		v.bad("log.format", "%q is not a log format: use text or json", c.Log.Format)
	}
	switch c.Log.Level {
	case "":
		c.Log.Level = "info"
	case "debug", "info", "warn", "error":
	default:
		v.bad("log.level", "%q is not a log level: use debug, info, warn or error", c.Log.Level)
	}
}

// validateChat: the platform and its settings.
func (c *Config) validateChat(v *validation) {
	switch c.Chat.Platform {
	case "":
		c.Chat.Platform = "console"
	case "console":
	case "slack":
		c.validateSlack(v)
	case "discord":
		c.validateDiscord(v)
	case "matrix":
		c.validateMatrix(v)
	default:
		v.bad("chat.platform", "%q is not a chat platform this stagebot knows: use console, slack, discord or matrix", c.Chat.Platform)
	}
}

func (c *Config) validateSlack(v *validation) {
	sc := &c.Chat.Slack
	app, bot := slack.TokenProblems(sc.AppToken, sc.BotToken)
	if app != "" {
		v.bad("chat.slack.app_token", "%s, e.g. app_token: ${SLACK_APP_TOKEN}", app)
	}
	if bot != "" {
		v.bad("chat.slack.bot_token", "%s, e.g. bot_token: ${SLACK_BOT_TOKEN}", bot)
	}
	if sc.APIURL != "" && !strings.HasPrefix(sc.APIURL, "http://") && !strings.HasPrefix(sc.APIURL, "https://") {
		v.bad("chat.slack.api_url", "%q is not an http(s) URL", sc.APIURL)
	}
}

func (c *Config) validateDiscord(v *validation) {
	dc := &c.Chat.Discord
	dc.Token = strings.TrimSpace(strings.TrimPrefix(dc.Token, "Bot "))
	if dc.Token == "" {
		v.bad("chat.discord.token", "give the bot token (Developer Portal → your app → Bot → Reset Token), e.g. token: ${DISCORD_TOKEN}")
	}
	for i, ch := range dc.Channels {
		if !isSnowflake(ch) {
			v.bad(fmt.Sprintf("chat.discord.channels[%d]", i), "%q is not a channel ID: turn on Developer Mode, right-click the channel, Copy Channel ID", ch)
		}
	}
	if dc.APIURL != "" && !strings.HasPrefix(dc.APIURL, "http://") && !strings.HasPrefix(dc.APIURL, "https://") {
		v.bad("chat.discord.api_url", "%q is not an http(s) URL", dc.APIURL)
	}
}

func (c *Config) validateMatrix(v *validation) {
	mc := &c.Chat.Matrix
	if u, err := url.Parse(mc.Homeserver); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		v.bad("chat.matrix.homeserver", "give the homeserver's client API URL, e.g. homeserver: https://matrix.example.org (not the server name, not a room)")
	}
	if strings.TrimSpace(mc.AccessToken) == "" {
		v.bad("chat.matrix.access_token", "give the bot account's access token from the environment, e.g. access_token: ${MATRIX_TOKEN} (README: Matrix)")
	}
	for i, r := range mc.Rooms {
		if !matrixRoomRe.MatchString(r) {
			v.bad(fmt.Sprintf("chat.matrix.rooms[%d]", i), "%q is not a room ID (!abc:example.org) or alias (#infra:example.org)", r)
		}
	}
	for i, ch := range c.Access.ControlChannels {
		if !strings.HasPrefix(ch, "!") || !strings.Contains(ch, ":") {
			v.bad(fmt.Sprintf("access.control_channels[%d]", i), "%q is not a Matrix room ID: give the room ID (!abc:example.org; Element: Room settings → Advanced), not its alias", ch)
		}
	}
}

// validateDefaults: the targets' defaults (notice, reminders, holds).
func (c *Config) validateDefaults(v *validation) {
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
		v.bad("defaults.stop_grace", "must not be negative")
	}
	if d.Hold.Default > d.Hold.Max {
		v.bad("defaults.hold.default", "%s is longer than defaults.hold.max (%s)", d.Hold.Default.D(), d.Hold.Max.D())
	}

}

// validateAccess: control channels, scopes and groups.
func (c *Config) validateAccess(v *validation) {
	for _, ch := range c.Access.ControlChannels {
		if strings.HasPrefix(ch, "#") && c.Chat.Platform != "matrix" {
			v.bad("access.control_channels", "write %q without the #", ch)
		}
	}
	checkScopes := func(field string, scopes []string) {
		for i, s := range scopes {
			if !scopeRe.MatchString(s) {
				v.bad(fmt.Sprintf("%s[%d]", field, i), "%q is not a scope: scopes look like stage, stage.hold or stage.resync.fas2", s)
				continue
			}
			if parts := strings.Split(s, "."); len(parts) >= 3 && parts[2] != "all" && c.Targets[parts[2]] == nil {
				v.bad(fmt.Sprintf("%s[%d]", field, i), "scope %q names target %q, which is not configured", s, parts[2])
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
			v.bad("access.groups."+g+".members", "the group has no members")
		}
	}

}

// validateTargets: production servers, and every target.
func (c *Config) validateTargets(v *validation) {
	for i, dsn := range c.ProductionServers {
		if _, err := pgx.ParseConfig(dsn); err != nil {
			v.bad(fmt.Sprintf("production_servers[%d]", i), "not a usable DSN (%s)", redactDSNError(err, dsn))
		}
	}
	if len(c.Targets) == 0 {
		v.bad("targets", "no targets: configure at least one (see config.example.yaml)")
	}
	for _, name := range slices.Sorted(maps.Keys(c.Targets)) {
		c.validateTarget(name, c.Targets[name], v)
	}
	if c.Chat.Platform == "matrix" {
		for _, name := range slices.Sorted(maps.Keys(c.Targets)) {
			if t := c.Targets[name]; t != nil && t.Channel == "" {
				v.bad("targets."+name+".channel", "no room to announce in: give the target a channel, or access.control_channels a room ID (!abc:example.org)")
			}
		}
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

package postgres

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stagebot/stagebot/runner"
)

// libpqKeywords are the connection parameters libpq knows (PostgreSQL 16's
// list). A DSN may carry others that only pgx reads (pool settings, say):
// libpq would refuse them, so they are left out of the tools' connection.
var libpqKeywords = []string{
	"host", "hostaddr", "port", "dbname", "user", "password", "passfile", "channel_binding", "connect_timeout",
	"client_encoding", "options", "application_name", "fallback_application_name", "keepalives", "keepalives_idle",
	"keepalives_interval", "keepalives_count", "tcp_user_timeout", "replication", "gssencmode", "sslmode", "requiressl",
	"sslcompression", "sslcert", "sslkey", "sslpassword", "sslcertmode", "sslrootcert", "sslcrl", "sslcrldir", "sslsni",
	"requirepeer", "require_auth", "ssl_min_protocol_version", "ssl_max_protocol_version", "krbsrvname", "gsslib",
	"gssdelegation", "service", "target_session_attrs", "load_balance_hosts",
}

// Defaults every connection of the tools gets unless the DSN says
// otherwise: a peer that stops answering is noticed in about a minute, not
// after the kernel's two hours, and an unreachable one in 15 seconds.
var libpqDefaults = [][2]string{
	{"connect_timeout", "15"}, {"keepalives", "1"}, {"keepalives_idle", "30"}, {"keepalives_interval", "10"}, {"keepalives_count", "3"},
}

// readOnly is the session setting production's connections carry.
const readOnly = "-c default_transaction_read_only=on"

// libpq describes a DSN for the PostgreSQL tools: every libpq parameter
// it gives (TLS mode and files, target_session_attrs, options…) in a
// connection string, except the password, which goes in a passfile only
// the bot's user can read, so that it shows neither in a process list nor
// in the tool's environment. done removes the passfile. db, when set,
// replaces the database; extraOptions are added to the session's options.
func libpq(dsn, db string, extraOptions ...string) (conn string, env []string, done func(), err error) {
	conn, env, password, err := libpqConn(dsn, db, extraOptions...)
	if err != nil || password == "" {
		return conn, env, func() {}, err
	}
	f, err := os.CreateTemp("", "stagebot-pgpass-") // mode 0600
	if err != nil {
		return "", nil, nil, fmt.Errorf("write a passfile for the PostgreSQL tools: %w", err)
	}
	escaped := strings.NewReplacer(`\`, `\\`, ":", `\:`).Replace(password)
	_, err = f.WriteString("*:*:*:*:" + escaped + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", nil, nil, fmt.Errorf("write a passfile for the PostgreSQL tools: %w", err)
	}
	return conn, append(env, "PGPASSFILE="+f.Name()), func() { os.Remove(f.Name()) }, nil
}

// libpqConn is libpq's connection string and environment, and the password
// apart.
func libpqConn(dsn, db string, extraOptions ...string) (string, []string, string, error) {
	params, err := parseDSN(dsn)
	if err != nil {
		return "", nil, "", err
	}
	if params["host"] == "" || params["port"] == "" || params["user"] == "" {
		// Where the DSN leaves them out, the server and user pgx connects
		// to (libpq's defaults differ: another socket directory, say).
		cfg, err := pgx.ParseConfig(dsn)
		if err != nil {
			return "", nil, "", err
		}
		for k, v := range map[string]string{"host": cfg.Host, "port": fmt.Sprint(cfg.Port), "user": cfg.User} {
			if params[k] == "" && v != "" && v != "0" {
				params[k] = v
			}
		}
	}
	if db != "" {
		params["dbname"] = db
	}
	if len(extraOptions) > 0 {
		params["options"] = strings.TrimSpace(params["options"] + " " + strings.Join(extraOptions, " "))
	}
	for _, d := range libpqDefaults {
		if _, ok := params[d[0]]; !ok {
			params[d[0]] = d[1]
		}
	}
	// The password pgx would use: the DSN's, or the bot's PGPASSWORD.
	password, ok := params["password"]
	if !ok {
		password = os.Getenv("PGPASSWORD")
	}
	delete(params, "password")
	var env []string
	if _, ok := params["application_name"]; !ok {
		env = append(env, "PGAPPNAME=stagebot")
	}
	var parts []string
	for _, k := range libpqKeywords {
		if v, ok := params[k]; ok {
			parts = append(parts, k+"="+quoteConn(v))
		}
	}
	return strings.Join(parts, " "), env, password, nil
}

// parseDSN reads a libpq connection string, URI or keyword/value, into its
// parameters.
func parseDSN(dsn string) (map[string]string, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		return parseURI(dsn)
	}
	return parseKeywords(dsn)
}

// parseURI reads postgres://[user[:password]@][host][:port][,…][/dbname][?k=v&…],
// which net/url cannot: libpq allows a list of hosts.
func parseURI(dsn string) (map[string]string, error) {
	rest := dsn[strings.Index(dsn, "://")+3:]
	query := ""
	if i := strings.IndexByte(rest, '?'); i >= 0 {
		rest, query = rest[:i], rest[i+1:]
	}
	path := ""
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		rest, path = rest[:i], rest[i+1:]
	}
	params := map[string]string{}
	unescape := func(what, s string) (string, error) {
		v, err := url.PathUnescape(s)
		if err != nil {
			return "", fmt.Errorf("parse the DSN: its %s has a bad %%-escape", what)
		}
		return v, nil
	}
	if i := strings.LastIndexByte(rest, '@'); i >= 0 {
		user, pw, hasPW := strings.Cut(rest[:i], ":")
		rest = rest[i+1:]
		var err error
		if params["user"], err = unescape("user", user); err != nil {
			return nil, err
		}
		if params["user"] == "" {
			delete(params, "user")
		}
		if hasPW {
			if params["password"], err = unescape("password", pw); err != nil {
				return nil, err
			}
		}
	}
	var hosts, ports []string
	for _, hp := range strings.Split(rest, ",") {
		host, port := hp, ""
		if strings.HasPrefix(hp, "[") { // [::1]:5432
			if end := strings.IndexByte(hp, ']'); end > 0 {
				host, port = hp[1:end], strings.TrimPrefix(hp[end+1:], ":")
			}
		} else if i := strings.LastIndexByte(hp, ':'); i >= 0 {
			host, port = hp[:i], hp[i+1:]
		}
		h, err := unescape("host", host)
		if err != nil {
			return nil, err
		}
		hosts, ports = append(hosts, h), append(ports, port)
	}
	if strings.Join(hosts, "") != "" {
		params["host"] = strings.Join(hosts, ",")
	}
	if strings.Join(ports, "") != "" {
		params["port"] = strings.Join(ports, ",")
	}
	if path != "" {
		db, err := unescape("database", path)
		if err != nil {
			return nil, err
		}
		params["dbname"] = db
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return nil, fmt.Errorf("parse the DSN: its parameters after ? are not key=value&key=value")
	}
	for k, vs := range q {
		params[k] = vs[len(vs)-1]
	}
	return params, nil
}

// parseKeywords reads "key=value key='quoted \' value'" as libpq does.
func parseKeywords(s string) (map[string]string, error) {
	params := map[string]string{}
	for {
		s = strings.TrimLeft(s, " \t\n\r")
		if s == "" {
			return params, nil
		}
		eq := strings.IndexByte(s, '=')
		if eq < 0 {
			return nil, fmt.Errorf("parse the DSN: %q has no value (write key=value)", strings.Fields(s)[0])
		}
		key := strings.TrimSpace(s[:eq])
		s = strings.TrimLeft(s[eq+1:], " \t")
		var val strings.Builder
		if strings.HasPrefix(s, "'") {
			s = s[1:]
			closed := false
			for len(s) > 0 {
				c := s[0]
				s = s[1:]
				if c == '\\' && len(s) > 0 {
					val.WriteByte(s[0])
					s = s[1:]
					continue
				}
				if c == '\'' {
					closed = true
					break
				}
				val.WriteByte(c)
			}
			if !closed {
				return nil, fmt.Errorf("parse the DSN: the value of %s has an unclosed quote", key)
			}
		} else {
			for len(s) > 0 && !strings.ContainsRune(" \t\n\r", rune(s[0])) {
				if s[0] == '\\' && len(s) > 1 {
					s = s[1:]
				}
				val.WriteByte(s[0])
				s = s[1:]
			}
		}
		params[key] = val.String()
	}
}

func quoteConn(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// toolEnv is what a PostgreSQL tool inherits from the bot: what every exec
// step inherits (runner.BaseEnv), and libpq's own PG* settings, which pgx
// honours too, so both see the same connection. Nothing else: not the
// chat tokens, not the variables the config's DSNs were expanded from.
func toolEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if slices.Contains(runner.BaseEnv, name) || (strings.HasPrefix(name, "PG") && name != "PGPASSWORD" && name != "PGAPPNAME") {
			out = append(out, kv)
		}
	}
	return out
}

// tool runs a PostgreSQL client program with its output in the run log. It
// dies with stagebot (no orphan keeps writing to the shadow after a crash).
func tool(ctx context.Context, env *runner.Env, extraEnv []string, path string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = append(toolEnv(), extraEnv...)
	cmd.Stdout, cmd.Stderr = env.Log, &stderrTail{w: env.Log}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

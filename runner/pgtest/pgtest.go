package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Server is one running PostgreSQL server.
type Server struct {
	Dir    string // holds data/ and the socket
	Port   int
	BinDir string
	runAs  *user.User
	once   sync.Once
}

// BinDir finds the directory of the PostgreSQL server binaries.
func BinDir() (string, error) {
	if d := os.Getenv("PG_BINDIR"); d != "" {
		return d, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", errors.New("no PostgreSQL server binaries found (initdb): install Debian's postgresql package, or set PG_BINDIR")
}

func version(dir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return n
}

// Options tune a server.
type Options struct {
	// Settings are extra postgresql.conf settings (name → value).
	Settings map[string]string
}

// Start initialises and starts a server. Stop it with Stop.
func Start(ctx context.Context, o Options) (*Server, error) {
	bin, err := BinDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "stagebot-pg-")
	if err != nil {
		return nil, err
	}
	s := &Server{Dir: dir, BinDir: bin}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			os.RemoveAll(dir)
			return nil, errors.New("running as root, and there is no postgres user to run PostgreSQL as: install Debian's postgresql package")
		}
		s.runAs = u
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chmod(dir, 0o755); err != nil {
			return nil, err
		}
		if err := os.Chown(dir, uid, gid); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	data := filepath.Join(dir, "data")
	if out, err := s.command(ctx, "initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync").CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %w\n%s", err, out)
	}
	settings := map[string]string{
		"listen_addresses":                    "127.0.0.1",
		"unix_socket_directories":             dir,
		"fsync":                               "off",
		"synchronous_commit":                  "off",
		"full_page_writes":                    "off",
		"max_connections":                     "100",
		"max_wal_senders":                     "0",
		"wal_level":                           "minimal",
		"shared_buffers":                      "128MB",
		"logging_collector":                   "off",
		"log_min_messages":                    "warning",
		"max_worker_processes":                "8",
		"max_parallel_workers":                "2",
		"track_activity_query_size":           "4096",
		"idle_in_transaction_session_timeout": "0",
	}
	for k, v := range o.Settings {
		settings[k] = v
	}
	var conf strings.Builder
	for k, v := range settings {
		fmt.Fprintf(&conf, "%s = '%s'\n", k, strings.ReplaceAll(v, "'", "''"))
	}
	// Ports can be taken between choosing and binding; try a few.
	for attempt := 0; ; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s.Port = port
		c := conf.String() + fmt.Sprintf("port = %d\n", port)
		if err := os.WriteFile(filepath.Join(data, "postgresql.auto.conf"), []byte(c), 0o600); err != nil {
			s.Stop()
			return nil, err
		}
		if s.runAs != nil {
			uid, _ := strconv.Atoi(s.runAs.Uid)
			os.Chown(filepath.Join(data, "postgresql.auto.conf"), uid, -1)
		}
		out, err := s.command(ctx, "pg_ctl", "-D", data, "-l", filepath.Join(dir, "server.log"), "-w", "-t", "60", "start").CombinedOutput()
		if err == nil {
			return s, nil
		}
		logText, _ := os.ReadFile(filepath.Join(dir, "server.log"))
		if attempt < 3 && strings.Contains(string(logText), "could not bind") {
			continue
		}
		s.Stop()
		return nil, fmt.Errorf("start postgres: %w\n%s\n%s", err, out, logText)
	}
}

func (s *Server) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(s.BinDir, name), args...)
	cmd.Dir = s.Dir
	if s.runAs != nil {
		uid, _ := strconv.Atoi(s.runAs.Uid)
		gid, _ := strconv.Atoi(s.runAs.Gid)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
		cmd.Env = append(os.Environ(), "HOME="+s.Dir)
	}
	return cmd
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// DSN returns a connection string for database db as the superuser.
func (s *Server) DSN(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.Port, db)
}

// Stop stops the server and removes its files. It is safe to call twice.
func (s *Server) Stop() {
	s.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		data := filepath.Join(s.Dir, "data")
		if _, err := os.Stat(filepath.Join(data, "postmaster.pid")); err == nil {
			s.command(ctx, "pg_ctl", "-D", data, "-m", "immediate", "-w", "stop").Run()
		}
		os.RemoveAll(s.Dir)
	})
}

// New starts a server for a test and stops it when the test ends.
func New(tb testing.TB) *Server {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := Start(ctx, Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Stop)
	return s
}

// Exec runs statements on dsn in order and fails the test at the first
// that fails.
func Exec(tb testing.TB, dsn string, sql ...string) {
	tb.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close(ctx)
	for _, s := range sql {
		if _, err := c.Exec(ctx, s); err != nil {
			tb.Fatalf("%s: %v", s, err)
		}
	}
}

// Value runs a query that returns one value and gives it as text.
func Value(tb testing.TB, dsn, query string) string {
	tb.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close(ctx)
	var v any
	if err := c.QueryRow(ctx, query).Scan(&v); err != nil {
		tb.Fatalf("%s: %v", query, err)
	}
	return fmt.Sprint(v)
}

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
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stagebot/stagebot/internal/pgbin"
)

// Server is one running PostgreSQL server.
type Server struct {
	Dir    string // holds data/ and the socket
	Port   int
	BinDir string
	runAs  *user.User
	once   sync.Once
	// postgres is the server binary: BinDir's, or a link to it in a
	// private installation with extra extensions.
	postgres string
}

// BinDir finds the directory of the PostgreSQL server binaries.
func BinDir() (string, error) {
	d, err := pgbin.Find("initdb")
	if err != nil {
		return "", errors.New("no PostgreSQL server binaries found (initdb): install Debian's postgresql package, or set PG_BINDIR")
	}
	return d, nil
}

// Options tune a server.
type Options struct {
	// Settings are extra postgresql.conf settings (name → value).
	Settings map[string]string
	// Extensions are extra files for the server's extension directory
	// (name → content: a .control file and its scripts), for extensions
	// the system has not installed. The server then runs from a private
	// installation that links to the system's.
	Extensions map[string]string
	// Files are written into the data directory before the server starts,
	// owned by the server's user and readable by it alone (a TLS key and
	// certificate, say: name them in Settings, relative to the directory).
	Files map[string][]byte
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
	s := &Server{Dir: dir, BinDir: bin, postgres: filepath.Join(bin, "postgres")}
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
	if len(o.Extensions) > 0 {
		if s.postgres, err = install(bin, filepath.Join(dir, "install"), o.Extensions); err != nil {
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
	for name, content := range o.Files {
		path := filepath.Join(data, name)
		if err := os.WriteFile(path, content, 0o600); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		if s.runAs != nil {
			uid, _ := strconv.Atoi(s.runAs.Uid)
			os.Chown(path, uid, -1)
		}
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
		out, err := s.command(ctx, "pg_ctl", "-p", s.postgres, "-D", data, "-l", filepath.Join(dir, "server.log"), "-w", "-t", "60", "start").CombinedOutput()
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

// install makes a private installation under dir for a server with extra
// extension files: PostgreSQL finds its share directory relative to its
// binary, so the server binary is linked in Debian's layout
// (lib/postgresql/N/bin beside share/postgresql/N), the share and library
// directories are links to the system's, and the extension directory holds
// links to the system's extensions plus the extra files. It returns the
// server binary to run.
func install(bin, dir string, files map[string]string) (string, error) {
	major := filepath.Base(filepath.Dir(bin))
	share := filepath.Join("/usr/share/postgresql", major)
	if _, err := os.Stat(filepath.Join(share, "extension")); err != nil || filepath.Dir(filepath.Dir(filepath.Dir(bin))) != "/usr/lib" {
		return "", fmt.Errorf("extra extensions need Debian's layout of PostgreSQL (/usr/lib/postgresql/N/bin, /usr/share/postgresql/N), not %s", bin)
	}
	ibin := filepath.Join(dir, "lib/postgresql", major, "bin")
	ishare := filepath.Join(dir, "share/postgresql", major)
	iext := filepath.Join(ishare, "extension")
	for _, d := range []string{ibin, iext} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", err
		}
	}
	// The binary itself must be a file there, not a symbolic link (which
	// PostgreSQL resolves): a hard link, or a copy across file systems.
	postgres := filepath.Join(ibin, "postgres")
	if err := os.Link(filepath.Join(bin, "postgres"), postgres); err != nil {
		data, err := os.ReadFile(filepath.Join(bin, "postgres"))
		if err != nil {
			return "", err
		}
		if err := os.WriteFile(postgres, data, 0o755); err != nil {
			return "", err
		}
	}
	if err := os.Symlink(filepath.Join(filepath.Dir(bin), "lib"), filepath.Join(filepath.Dir(ibin), "lib")); err != nil {
		return "", err
	}
	link := func(from, into string, skip string) error {
		entries, err := os.ReadDir(from)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if e.Name() == skip {
				continue
			}
			if err := os.Symlink(filepath.Join(from, e.Name()), filepath.Join(into, e.Name())); err != nil {
				return err
			}
		}
		return nil
	}
	if err := link(share, ishare, "extension"); err != nil {
		return "", err
	}
	if err := link(filepath.Join(share, "extension"), iext, ""); err != nil {
		return "", err
	}
	for name, content := range files {
		os.Remove(filepath.Join(iext, name)) // a link to the system's file of that name: never write through it
		if err := os.WriteFile(filepath.Join(iext, name), []byte(content), 0o644); err != nil {
			return "", err
		}
	}
	return postgres, nil
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

// Kill stops the server at once, as a crash or a lost host would, and
// keeps its files for Restart.
func (s *Server) Kill() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := s.command(ctx, "pg_ctl", "-D", filepath.Join(s.Dir, "data"), "-m", "immediate", "-w", "stop").CombinedOutput(); err != nil {
		return fmt.Errorf("kill postgres: %w\n%s", err, out)
	}
	return nil
}

// Restart starts a killed server again on its port.
func (s *Server) Restart(ctx context.Context) error {
	if out, err := s.command(ctx, "pg_ctl", "-p", s.postgres, "-D", filepath.Join(s.Dir, "data"), "-l", filepath.Join(s.Dir, "server.log"), "-w", "-t", "60", "start").CombinedOutput(); err != nil {
		return fmt.Errorf("restart postgres: %w\n%s", err, out)
	}
	return nil
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

// Connect opens a connection to dsn, failing the test if it cannot; the
// caller closes it.
func Connect(tb testing.TB, dsn string) *pgx.Conn {
	tb.Helper()
	c, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// Exec runs statements on dsn in order and fails the test at the first
// that fails.
func Exec(tb testing.TB, dsn string, sql ...string) {
	tb.Helper()
	c := Connect(tb, dsn)
	defer c.Close(context.Background())
	for _, s := range sql {
		if _, err := c.Exec(context.Background(), s); err != nil {
			tb.Fatalf("%s: %v", s, err)
		}
	}
}

// Value runs a query that returns one value and gives it as text.
func Value(tb testing.TB, dsn, query string) string {
	tb.Helper()
	c := Connect(tb, dsn)
	defer c.Close(context.Background())
	var v any
	if err := c.QueryRow(context.Background(), query).Scan(&v); err != nil {
		tb.Fatalf("%s: %v", query, err)
	}
	return fmt.Sprint(v)
}

// Package dendritetest runs Dendrite, a real Matrix homeserver, for the
// adapter's tests: built from the Go module proxy at a pinned version
// (cached, so only the first test run on a machine pays for the build),
// SQLite in a temporary directory, listening on 127.0.0.1, no federation,
// open registration for the test's accounts.
package dendritetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
	"maunium.net/go/mautrix"

	"github.com/stagebot/stagebot/internal/patience"
)

// Version is the Dendrite release the tests run against.
const Version = "v0.13.8"

// Module is where it is built from.
const Module = "github.com/matrix-org/dendrite"

// ServerName is the homeserver's name: users are @name:localhost.
const ServerName = "localhost"

var tools = []string{"dendrite", "generate-keys", "generate-config"}

// Server is one running Dendrite.
type Server struct {
	// URL is the client-server API's base URL.
	URL string
	dir string
	cmd *exec.Cmd
	log *bytes.Buffer

	mu       sync.Mutex
	accounts map[string]*mautrix.Client
}

// Start builds Dendrite if this machine has no build of Version yet,
// starts it in a temporary directory and waits until it answers. It is
// stopped when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := build(t)
	dir := t.TempDir()
	run := func(name string, args ...string) []byte {
		t.Helper()
		cmd := exec.Command(filepath.Join(bin, name), args...)
		cmd.Dir = dir
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("dendritetest: %s %s: %v\n%s", name, strings.Join(args, " "), err, stderrOf(err))
		}
		return out
	}
	run("generate-keys", "--private-key", "matrix_key.pem")
	cfg, err := configure(run("generate-config", "-ci", "-dir", dir, "-server", ServerName))
	if err != nil {
		t.Fatalf("dendritetest: the generated configuration: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "dendrite.yaml"), cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	s := &Server{dir: dir, log: &bytes.Buffer{}, accounts: map[string]*mautrix.Client{}}
	addr := freeAddr(t)
	s.URL = "http://" + addr
	s.cmd = exec.Command(filepath.Join(bin, "dendrite"), "--config", "dendrite.yaml", "--http-bind-address", addr, "--really-enable-open-registration")
	s.cmd.Dir = dir
	s.cmd.Stdout, s.cmd.Stderr = lockedWriter(s.log), lockedWriter(s.log)
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("dendritetest: start: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- s.cmd.Wait() }()
	t.Cleanup(func() {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = s.cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("dendrite's log:\n%s", s.Log())
		}
	})
	deadline := time.Now().Add(patience.D(30 * time.Second))
	for {
		select {
		case err := <-exited:
			t.Fatalf("dendritetest: dendrite exited at start: %v\n%s", err, s.Log())
		default:
		}
		if resp, err := http.Get(s.URL + "/_matrix/client/versions"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("dendritetest: dendrite did not answer on %s within %s\n%s", addr, patience.D(30*time.Second), s.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Log is what Dendrite wrote so far (warnings and errors).
func (s *Server) Log() string {
	logMu.Lock()
	defer logMu.Unlock()
	return s.log.String()
}

// Register creates the account name (password "password-"+name) and returns a
// client logged in as it. A second call for the same name returns the
// same client.
func (s *Server) Register(t testing.TB, name string) *mautrix.Client {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.accounts[name]; c != nil {
		return c
	}
	c, err := mautrix.NewClient(s.URL, "", "")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), patience.D(20*time.Second))
	defer cancel()
	resp, err := c.RegisterDummy(ctx, &mautrix.ReqRegister[any]{Username: name, Password: "password-" + name})
	if err != nil {
		t.Fatalf("dendritetest: register %s: %v", name, err)
	}
	c.UserID, c.AccessToken = resp.UserID, resp.AccessToken
	s.accounts[name] = c
	return c
}

// Login opens another session (a new device) of an account Register made.
func (s *Server) Login(t testing.TB, name string) *mautrix.Client {
	t.Helper()
	c, err := mautrix.NewClient(s.URL, "", "")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), patience.D(20*time.Second))
	defer cancel()
	_, err = c.Login(ctx, &mautrix.ReqLogin{
		Type: mautrix.AuthTypePassword, Identifier: mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: name},
		Password: "password-" + name, StoreCredentials: true,
	})
	if err != nil {
		t.Fatalf("dendritetest: log in as %s: %v", name, err)
	}
	return c
}

// configure turns generate-config's CI configuration into the tests': only
// warnings in the log, on stderr.
func configure(generated []byte) ([]byte, error) {
	var cfg map[string]any
	if err := yaml.Unmarshal(generated, &cfg); err != nil {
		return nil, err
	}
	cfg["logging"] = []any{map[string]any{"type": "std", "level": "warn"}}
	return yaml.Marshal(cfg)
}

var logMu sync.Mutex

type lockedBuffer struct{ b *bytes.Buffer }

func (w lockedBuffer) Write(p []byte) (int, error) {
	logMu.Lock()
	defer logMu.Unlock()
	return w.b.Write(p)
}

func lockedWriter(b *bytes.Buffer) lockedBuffer { return lockedBuffer{b} }

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func stderrOf(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(ee.Stderr)
	}
	return ""
}

// CacheDir is where the built binaries are kept: $STAGEBOT_DENDRITE_CACHE,
// or stagebot/dendrite-<Version> in the user's cache directory.
func CacheDir() (string, error) {
	if d := os.Getenv("STAGEBOT_DENDRITE_CACHE"); d != "" {
		return d, nil
	}
	base, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(base, "stagebot", "dendrite-"+Version), nil
}

// build is Build for a test, which fails when the build does.
func build(t testing.TB) string {
	t.Helper()
	dir, err := Build(t.Logf)
	if err != nil {
		t.Fatalf("dendritetest: %v", err)
	}
	return dir
}

// Build returns the directory holding Dendrite's binaries, building them
// with `go install` (cgo, for SQLite) the first time; logf hears of a
// build. Processes that build at once take turns on a lock file, and a
// build is moved into place only when whole.
func Build(logf func(format string, args ...any)) (string, error) {
	dir, err := CacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache directory for the build: %w", err)
	}
	if built(dir) {
		return dir, nil
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", err
	}
	lock, err := os.OpenFile(dir+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", err
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if built(dir) {
		return dir, nil
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".dendrite-build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	args := []string{"install", "-trimpath"}
	for _, name := range tools {
		args = append(args, Module+"/cmd/"+name+"@"+Version)
	}
	logf("building Dendrite %s into %s (the first time on a machine: about 2 minutes)", Version, dir)
	start := time.Now()
	cmd := exec.Command("go", args...)
	cmd.Env = append(os.Environ(), "GOBIN="+tmp, "CGO_ENABLED=1", "GOFLAGS=-buildvcs=false")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building Dendrite %s (go %s): %v\n%s", Version, strings.Join(args, " "), err, out)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return "", fmt.Errorf("keep the build: %w", err)
	}
	logf("built Dendrite %s in %s", Version, time.Since(start).Round(time.Second))
	return dir, nil
}

func built(dir string) bool {
	for _, name := range tools {
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
}

// String names the server in failures.
func (s *Server) String() string { return fmt.Sprintf("Dendrite %s at %s", Version, s.URL) }

package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

// Finding and running PostgreSQL's client tools (pg_dump, pg_restore,
// psql), and explaining how they failed.

// tools are the paths of the client tools a refresh runs.
type tools struct{ dump, restore, psql string }

func (t *Target) tools() (tools, error) {
	dir := t.BinDir
	if dir == "" {
		d, err := FindBinDir()
		if err != nil {
			return tools{}, err
		}
		dir = d
	}
	tl := tools{dump: filepath.Join(dir, "pg_dump"), restore: filepath.Join(dir, "pg_restore"), psql: filepath.Join(dir, "psql")}
	for _, p := range []string{tl.dump, tl.restore, tl.psql} {
		if _, err := os.Stat(p); err != nil {
			return tl, fmt.Errorf("%s not found: install Debian's postgresql-client package, or set pg_bindir", p)
		}
	}
	return tl, nil
}

// runTool runs c and explains how it failed, if it did.
func runTool(ctx context.Context, c *exec.Cmd) error {
	if err := c.Run(); err != nil {
		return cmdErrOf(ctx, err, c)
	}
	return nil
}

// cmdErr explains err, the end of a tool whose output was not kept.
func cmdErr(ctx context.Context, err error) error { return cmdErrOf(ctx, err, nil) }

// cmdErrOf explains how a tool ended: the exit status and the last line it
// wrote to its standard error (psql's and pg_restore's reason), the rest
// being in the run log.
func cmdErrOf(ctx context.Context, err error, c *exec.Cmd) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		msg := fmt.Sprintf("exited with status %d", ee.ExitCode())
		if t, ok := stderrOf(c); ok && t.last() != "" {
			msg += ": " + t.last()
		}
		return errors.New(msg + " (the run log has its output)")
	}
	return err
}

func stderrOf(c *exec.Cmd) (*stderrTail, bool) {
	if c == nil {
		return nil, false
	}
	t, ok := c.Stderr.(*stderrTail)
	return t, ok
}

// stderrTail passes a tool's standard error on to the run log and keeps
// its last line.
type stderrTail struct {
	w   io.Writer
	mu  sync.Mutex
	buf []byte
}

func (t *stderrTail) Write(p []byte) (int, error) {
	t.mu.Lock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 2048 {
		t.buf = t.buf[len(t.buf)-2048:]
	}
	t.mu.Unlock()
	return t.w.Write(p)
}

func (t *stderrTail) last() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	// The reason, not a HINT or DETAIL that follows it.
	lines := strings.Split(strings.TrimSpace(string(t.buf)), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], "ERROR:") || strings.Contains(lines[i], "FATAL:") || strings.Contains(lines[i], "error:") {
			return strings.TrimSpace(lines[i])
		}
	}
	return strings.TrimSpace(lines[len(lines)-1])
}

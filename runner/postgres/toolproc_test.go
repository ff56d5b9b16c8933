package postgres_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stagebot/stagebot/runner/postgres"
)

// While a refresh runs, what anyone on the host can read of its tools
// (ps: the command line) and what root can (/proc/PID/environ) holds
// neither a database password nor a chat token, by every method.
func TestRefresh_ToolsShowNoSecret(t *testing.T) {
	const password, token = "hunter2-db", "xoxb-chat-token"
	t.Setenv("SLACK_BOT_TOKEN", token)
	f := newFixture(t)
	// Trust authentication ignores the password; the tools still get it.
	withPassword := func(dsn string) string { return strings.Replace(dsn, "postgres@", "postgres:"+password+"@", 1) }
	f.target.ProductionDSN, f.target.StagingDSN = withPassword(f.target.ProductionDSN), withPassword(f.target.StagingDSN)
	for _, method := range []string{postgres.MethodStream, postgres.MethodDump} {
		seen := watchTools(t, func() {
			steps := refreshSteps(f.target)
			steps[0].(*postgres.Refresh).Method = method
			if log, err := run(t, steps, nil); err != nil {
				t.Fatalf("%s: %v\n%s", method, err, log)
			}
		})
		if len(seen) == 0 {
			t.Fatalf("%s: no PostgreSQL tool was seen running: the check saw nothing", method)
		}
		for _, p := range seen {
			if bytes.Contains(p.cmdline, []byte(password)) || bytes.Contains(p.environ, []byte(password)) ||
				bytes.Contains(p.cmdline, []byte(token)) || bytes.Contains(p.environ, []byte(token)) {
				t.Errorf("%s: %s shows a secret:\nargv %q\nenv %q", method, p.name, p.cmdline, p.environ)
			}
		}
	}
}

type toolProc struct {
	name             string
	cmdline, environ []byte
}

// watchTools runs fn while sampling every pg_dump, pg_restore and psql
// process on the host every few milliseconds.
func watchTools(t *testing.T, fn func()) []toolProc {
	t.Helper()
	var mu sync.Mutex
	seen := map[int]toolProc{}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			dirs, _ := filepath.Glob("/proc/[0-9]*")
			for _, d := range dirs {
				pid, _ := strconv.Atoi(filepath.Base(d))
				comm, err := os.ReadFile(filepath.Join(d, "comm"))
				name := strings.TrimSpace(string(comm))
				if err != nil || (name != "pg_dump" && name != "pg_restore" && name != "psql") {
					continue
				}
				cmdline, _ := os.ReadFile(filepath.Join(d, "cmdline"))
				environ, _ := os.ReadFile(filepath.Join(d, "environ"))
				mu.Lock()
				seen[pid] = toolProc{name, cmdline, environ}
				mu.Unlock()
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	fn()
	close(stop)
	<-done
	var out []toolProc
	for _, p := range seen {
		out = append(out, p)
	}
	return out
}

package runner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Exec runs a command: an argv, or a shell string run by /bin/sh -c.
type Exec struct {
	StepName string
	Argv     []string
	Shell    string
	Timeout  time.Duration // 0: none
	Env      map[string]string
	// Inherit names variables of the bot's environment the command gets
	// besides BaseEnv. Nothing else of the bot's environment (its tokens,
	// its DSNs) reaches the command.
	Inherit []string
	Dir     string
	// Grace is how long the process group has between SIGTERM and SIGKILL
	// when the step is aborted or times out (default 5s).
	Grace time.Duration
	// Hosts, when set, runs the command once per host, in order, with
	// {host} in the command replaced by the host and STAGEBOT_HOST set.
	// The step stops at the first host that fails unless KeepGoing is set,
	// in which case every host is tried and the failures are reported
	// together (for finally steps: start the app everywhere it can start).
	Hosts     []string
	KeepGoing bool
	// ExtraEnv, when set, adds variables decided when the step runs (the
	// connection of the database the step works on).
	ExtraEnv func(ctx context.Context) ([]string, error)
	// Check, when set, runs at plan time (the database guard of a step
	// that gets a database connection).
	Check func(ctx context.Context) error
}

// BaseEnv is what every exec step inherits from the bot's environment:
// where programs are, whose they are, the locale, the time zone and the
// ssh agent.
var BaseEnv = []string{"PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "SSH_AUTH_SOCK"}

// environ is the environment a step's command starts with: BaseEnv and
// the inherited variables that are set.
func (e *Exec) environ() []string {
	var out []string
	for _, name := range append(slices.Clone(BaseEnv), e.Inherit...) {
		if v, ok := os.LookupEnv(name); ok {
			out = append(out, name+"="+v)
		}
	}
	return out
}

// HostPlaceholder is replaced by each host of a multi-host step.
const HostPlaceholder = "{host}"

// Name implements Step.
func (e *Exec) Name() string { return e.StepName }

// Kind implements Step.
func (e *Exec) Kind() string { return "exec" }

// argv is the command to start, a fresh slice each time.
func (e *Exec) argv() []string {
	if e.Shell != "" {
		return []string{"/bin/sh", "-c", e.Shell}
	}
	return slices.Clone(e.Argv)
}

// Plan implements Step: the program must exist and the directory too.
func (e *Exec) Plan(ctx context.Context) (string, error) {
	var desc string
	if e.Shell != "" {
		desc = "run `" + e.Shell + "`"
	} else {
		desc = "run `" + strings.Join(e.Argv, " ") + "`"
	}
	if e.Dir != "" {
		desc += " in " + e.Dir
	}
	if len(e.Hosts) > 0 {
		desc += " on " + strings.Join(e.Hosts, ", ")
	}
	if e.Timeout > 0 {
		desc += fmt.Sprintf(" (timeout %s)", e.Timeout)
	}
	argv := e.argv()
	if len(argv) == 0 || argv[0] == "" {
		return desc, errors.New("no command given")
	}
	if _, err := exec.LookPath(argv[0]); err != nil {
		return desc, fmt.Errorf("program %q not found: install it or fix the step's command", argv[0])
	}
	if e.Dir != "" {
		if st, err := os.Stat(e.Dir); err != nil || !st.IsDir() {
			return desc, fmt.Errorf("working directory %s does not exist", e.Dir)
		}
	}
	if e.Check != nil {
		return desc, e.Check(ctx)
	}
	return desc, nil
}

// Run implements Step.
func (e *Exec) Run(ctx context.Context, env *Env) error {
	var extra []string
	if e.ExtraEnv != nil {
		var err error
		if extra, err = e.ExtraEnv(ctx); err != nil {
			return err
		}
	}
	if len(e.Hosts) == 0 {
		return e.run(ctx, env, e.argv(), extra)
	}
	var failed []string
	for _, h := range e.Hosts {
		argv := e.argv()
		for i := range argv {
			argv[i] = strings.ReplaceAll(argv[i], HostPlaceholder, h)
		}
		fmt.Fprintf(env.Log, "── %s\n", h)
		err := e.run(ctx, env, argv, append(slices.Clip(extra), "STAGEBOT_HOST="+h))
		switch {
		case err == nil:
		case ctx.Err() != nil || !e.KeepGoing:
			return fmt.Errorf("on %s: %w", h, err)
		default:
			failed = append(failed, fmt.Sprintf("on %s: %s", h, err))
		}
	}
	if len(failed) > 0 {
		return errors.New(strings.Join(failed, "; "))
	}
	return nil
}

func (e *Exec) run(ctx context.Context, env *Env, argv, extra []string) error {
	if e.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, e.Timeout)
		defer cancel()
	}
	grace := e.Grace
	if grace == 0 {
		grace = 5 * time.Second
	}
	runtime := append([]string{
		fmt.Sprintf("STAGEBOT_RUN=%d", env.Run),
		"STAGEBOT_TARGET=" + env.Target,
		"STAGEBOT_PIPELINE=" + env.Pipeline,
	}, extra...)
	if env.Token != "" {
		runtime = append(runtime, TokenVar+"="+env.Token)
	}
	// ${STAGEBOT_RUN} and the like in an argv (no shell to read them) or
	// in env values are filled in here.
	fill := func(s string) string {
		for _, kv := range runtime {
			k, v, _ := strings.Cut(kv, "=")
			s = strings.ReplaceAll(s, "${"+k+"}", v)
		}
		return s
	}
	if e.Shell == "" {
		argv = slices.Clone(argv)
		for i := range argv {
			argv[i] = fill(argv[i])
		}
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = e.Dir
	cmd.Env = append(e.environ(), runtime...)
	keys := make([]string, 0, len(e.Env))
	for k := range e.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		cmd.Env = append(cmd.Env, k+"="+fill(e.Env[k]))
	}
	// Its own process group, so that an abort reaches the children a shell
	// started too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	tail := &tailBuffer{max: 512}
	out := &lockedWriter{w: io.MultiWriter(env.Log, tail)}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", argv[0], err)
	}
	if env.Process != nil {
		env.Process(cmd.Process.Pid, true)
		defer env.Process(cmd.Process.Pid, false)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		pgid := cmd.Process.Pid
		syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(grace):
			syscall.Kill(-pgid, syscall.SIGKILL)
			<-done
		}
		// Kill what is left of the group even when the leader went quietly.
		syscall.Kill(-pgid, syscall.SIGKILL)
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("timed out after %s", e.Timeout)
		}
		return ctx.Err()
	}
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			msg := fmt.Sprintf("exited with status %d", ee.ExitCode())
			if last := tail.lastLine(); last != "" {
				msg += ": " + last
			}
			return errors.New(msg)
		}
		return err
	}
	return nil
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// tailBuffer keeps the last bytes written, for the error message.
type tailBuffer struct {
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = t.buf[len(t.buf)-t.max:]
	}
	return len(p), nil
}

func (t *tailBuffer) lastLine() string {
	lines := bytes.Split(bytes.TrimSpace(t.buf), []byte("\n"))
	return strings.TrimSpace(string(lines[len(lines)-1]))
}

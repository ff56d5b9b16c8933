package runner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stagebot/stagebot/internal/patience"
	"github.com/stagebot/stagebot/store"
)

func sh(name, script string) *Exec { return &Exec{StepName: name, Shell: script} }

func states(rs []store.StepResult) string {
	var out []string
	for _, r := range rs {
		out = append(out, string(r.State))
	}
	return strings.Join(out, ",")
}

type recorder struct {
	mu     sync.Mutex
	events []string
}

func (r *recorder) add(s string) { r.mu.Lock(); r.events = append(r.events, s); r.mu.Unlock() }
func (r *recorder) StepStarted(i int, s store.StepResult) {
	r.add("start " + s.Name)
}
func (r *recorder) StepProgress(i int, p Progress) { r.add("progress " + p.String()) }
func (r *recorder) StepFinished(i int, s store.StepResult) {
	r.add("finish " + s.Name + " " + string(s.State))
}

func TestExecute_Succeeds(t *testing.T) {
	dir := t.TempDir()
	p := &Pipeline{Name: "default",
		Steps: []Step{
			sh("stop app", "echo stopping $STAGEBOT_TARGET run $STAGEBOT_RUN"),
			&Exec{StepName: "copy", Argv: []string{"sh", "-c", "echo $GREETING > out.txt; printf 'no newline'"}, Env: map[string]string{"GREETING": "hello"}, Dir: dir},
		},
		Finally: []Step{sh("start app", "echo starting")},
	}
	plan := MakePlan(context.Background(), "fas2", p)
	if probs := plan.Problems(); len(probs) > 0 {
		t.Fatal(probs)
	}
	var log bytes.Buffer
	rec := &recorder{}
	res, err := Execute(context.Background(), plan, Env{Run: 7, Target: "fas2", Log: &log}, rec, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := states(res); got != "succeeded,succeeded,succeeded" {
		t.Fatalf("states = %s", got)
	}
	if !res[2].Finally || res[0].StartedAt.IsZero() {
		t.Fatalf("results lack finally flag or start time: %+v", res)
	}
	data, err := os.ReadFile(filepath.Join(dir, "out.txt"))
	if err != nil || string(data) != "hello\n" {
		t.Fatalf("env or dir not applied: %q, %v", data, err)
	}
	for _, want := range []string{"[stop app] stopping fas2 run 7\n", "[copy] no newline\n", "[start app] starting\n", "== copy succeeded"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, log.String())
		}
	}
	if got := strings.Join(rec.events, "|"); got != "start stop app|finish stop app succeeded|start copy|finish copy succeeded|start start app|finish start app succeeded" {
		t.Errorf("reporter heard %s", got)
	}
}

func TestExecute_FailureSkipsRestButRunsFinally(t *testing.T) {
	p := &Pipeline{
		Steps:   []Step{sh("stop", "true"), sh("upgrade_db", "echo 'relation users does not exist' >&2; exit 3"), sh("sync", "true")},
		Finally: []Step{sh("start httpd", "true")},
	}
	res, err := Execute(context.Background(), MakePlan(context.Background(), "t", p), Env{}, nil, nil)
	if err == nil || !strings.Contains(err.Error(), `step "upgrade_db" failed: exited with status 3: relation users does not exist`) {
		t.Fatalf("error = %v", err)
	}
	if got := states(res); got != "succeeded,failed,skipped,succeeded" {
		t.Fatalf("states = %s", got)
	}
}

func TestExecute_FailingFinallyFailsRun(t *testing.T) {
	p := &Pipeline{Steps: []Step{sh("a", "true")}, Finally: []Step{sh("start", "exit 1"), sh("notify", "true")}}
	res, err := Execute(context.Background(), MakePlan(context.Background(), "t", p), Env{}, nil, nil)
	if err == nil {
		t.Fatal("a failed finally step did not fail the run")
	}
	if got := states(res); got != "succeeded,failed,succeeded" {
		t.Fatalf("states = %s", got)
	}
}

func TestExecute_AbortKillsProcessGroup(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "child.pid")
	// The shell starts a grandchild that ignores nothing and sleeps; abort
	// must kill it too, not only the shell.
	p := &Pipeline{
		Steps:   []Step{&Exec{StepName: "copy", Shell: "sleep 300 & echo $! > " + pidFile + "; wait", Grace: 200 * time.Millisecond}, sh("never", "true")},
		Finally: []Step{sh("start app", "echo started")},
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		// Abort once the child's pid is written whole: the child runs.
		for {
			if data, err := os.ReadFile(pidFile); err == nil && strings.HasSuffix(string(data), "\n") {
				cancel()
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	res, err := Execute(ctx, MakePlan(context.Background(), "t", p), Env{}, nil, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error = %v, want context.Canceled", err)
	}
	if got := states(res); got != "aborted,skipped,succeeded" {
		t.Fatalf("states = %s", got)
	}
	data, _ := os.ReadFile(pidFile)
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	if pid == 0 {
		t.Fatal("no child pid recorded")
	}
	deadline := time.Now().Add(patience.D(5 * time.Second))
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("child %d still alive after abort", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestExecute_Timeout(t *testing.T) {
	p := &Pipeline{Steps: []Step{&Exec{StepName: "slow", Shell: "sleep 30", Timeout: 200 * time.Millisecond, Grace: 100 * time.Millisecond}}}
	start := time.Now()
	res, err := Execute(context.Background(), MakePlan(context.Background(), "t", p), Env{}, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "timed out after 200ms") {
		t.Fatalf("error = %v", err)
	}
	if res[0].State != store.StepFailed || time.Since(start) > patience.D(10*time.Second) {
		t.Fatalf("state %s after %s", res[0].State, time.Since(start))
	}
}

func TestMakePlan_ReportsEveryProblem(t *testing.T) {
	p := &Pipeline{
		Steps:   []Step{&Exec{StepName: "a", Argv: []string{"no-such-program-xyz"}}, &Exec{StepName: "b", Shell: "true", Dir: "/no/such/dir"}},
		Finally: []Step{&Exec{StepName: "c"}},
	}
	plan := MakePlan(context.Background(), "t", p)
	probs := plan.Problems()
	if len(probs) != 3 {
		t.Fatalf("problems = %q, want 3", probs)
	}
	for i, want := range []string{`program "no-such-program-xyz" not found`, "working directory /no/such/dir does not exist", "no command given"} {
		if !strings.Contains(probs[i], want) {
			t.Errorf("problem %d = %q, want %q", i, probs[i], want)
		}
	}
	if _, err := Execute(context.Background(), plan, Env{}, nil, nil); !errors.Is(err, ErrPlan) {
		t.Fatalf("Execute of a bad plan: %v, want ErrPlan", err)
	}
}

func TestProgress_String(t *testing.T) {
	p := Progress{Done: 512 << 20, Total: 1 << 30, Unit: "bytes", Items: "3/12 tables", ETA: 90 * time.Second}
	if got, want := p.String(), "50%, 512.0 MiB of 1.0 GiB, 3/12 tables, ETA 1m30s"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// Progress never says more is done than there is to do, shows no "0 B of
// 0 B", and guesses no ETA before it has a rate to go by.
func TestProgress_NeverSaysTheImpossible(t *testing.T) {
	for _, tt := range []struct {
		p    Progress
		want string
	}{
		{Progress{Done: 2 << 30, Total: 1 << 30, Unit: "bytes"}, "100%, 1.0 GiB of 1.0 GiB"},
		{Progress{Unit: "bytes", Items: "12 rows"}, "12 rows"},
		{Progress{Done: 5 << 20, Unit: "bytes"}, "5.0 MiB"},
		{Progress{Done: 9, Total: 4, Unit: "files"}, "100%, 4 of 4 files"},
	} {
		if got := tt.p.String(); got != tt.want {
			t.Errorf("%+v: %q, want %q", tt.p, got, tt.want)
		}
	}
	if got := Estimated(407609, 279168, "rows"); got != "407609 of ~407609 rows" {
		t.Errorf("a count past its estimate: %q", got)
	}
	if got := Estimated(5, 0, "rows"); got != "5 rows" {
		t.Errorf("no estimate: %q", got)
	}
	for _, tt := range []struct {
		elapsed     time.Duration
		done, total int64
		want        time.Duration
	}{
		{2 * time.Second, 10, 100, 0},       // too early
		{time.Minute, 1, 100, 0},            // too little done
		{time.Minute, 50, 100, time.Minute}, // half done
		{time.Minute, 100, 100, 0},          // done
		{time.Minute, 10, 0, 0},             // no total
	} {
		if got := ETA(tt.elapsed, tt.done, tt.total); got != tt.want {
			t.Errorf("ETA(%s, %d, %d) = %s, want %s", tt.elapsed, tt.done, tt.total, got, tt.want)
		}
	}
}

func TestExec_Hosts(t *testing.T) {
	dir := t.TempDir()
	calls := filepath.Join(dir, "calls")
	// A stand-in for ssh: records its arguments, fails for node "bad".
	record := func(hosts []string, keepGoing bool) *Exec {
		return &Exec{StepName: "stop httpd", Hosts: hosts, KeepGoing: keepGoing,
			Argv:     []string{"sh", "-c", `echo "$0 $1 via $STAGEBOT_HOST db=$PGDATABASE" >> ` + calls + `; [ "$0" != bad ]`, "{host}", "stop"},
			ExtraEnv: func(context.Context) ([]string, error) { return []string{"PGDATABASE=bb"}, nil }}
	}
	run := func(e *Exec) (string, error) {
		os.Remove(calls)
		var log bytes.Buffer
		err := e.Run(context.Background(), &Env{Log: &log})
		data, _ := os.ReadFile(calls)
		return string(data), err
	}
	e := record([]string{"bb01", "bb02"}, false)
	if desc, err := e.Plan(context.Background()); err != nil || !strings.HasSuffix(desc, "on bb01, bb02") {
		t.Fatalf("plan = %q, %v", desc, err)
	}
	got, err := run(e)
	if err != nil || got != "bb01 stop via bb01 db=bb\nbb02 stop via bb02 db=bb\n" {
		t.Fatalf("calls = %q, err = %v", got, err)
	}
	if e.Argv[3] != "{host}" {
		t.Fatalf("the step's own argv was changed: %q", e.Argv)
	}
	// A failing host stops the step, naming the host…
	got, err = run(record([]string{"bad", "bb02"}, false))
	if err == nil || err.Error() != "on bad: exited with status 1" || got != "bad stop via bad db=bb\n" {
		t.Fatalf("calls = %q, err = %v", got, err)
	}
	// …unless every host is to be tried.
	got, err = run(record([]string{"bad", "bb02", "bad"}, true))
	if err == nil || err.Error() != "on bad: exited with status 1; on bad: exited with status 1" || strings.Count(got, "\n") != 3 {
		t.Fatalf("calls = %q, err = %v", got, err)
	}
}

// Parallel workers write whole lines into one step's log at once: each
// line comes out whole, with its prefix, and none is lost (run with -race,
// this also finds unguarded writes).
func TestLineWriter_ConcurrentWritersKeepLinesWhole(t *testing.T) {
	var out bytes.Buffer
	lw := &lineWriter{w: &out, prefix: "[s] "}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				lw.Write([]byte("worker " + strconv.Itoa(g) + " line " + strconv.Itoa(i) + "\n"))
			}
		}(g)
	}
	wg.Wait()
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	seen := map[string]bool{}
	for _, l := range lines {
		var g, i int
		if n, err := fmt.Sscanf(l, "[s] worker %d line %d", &g, &i); n != 2 || err != nil || l != fmt.Sprintf("[s] worker %d line %d", g, i) {
			t.Fatalf("mangled line %q", l)
		}
		seen[l] = true
	}
	if len(seen) != 8*200 {
		t.Fatalf("got %d distinct lines of %d, want %d", len(seen), len(lines), 8*200)
	}
}

func TestExec_EnvironmentIsBuiltFromTheConfig(t *testing.T) {
	t.Setenv("API_TOKEN", "tok-123456")
	t.Setenv("DEPLOY_KEY_PATH", "/keys/deploy")
	t.Setenv("LANG", "C.UTF-8")
	run := func(e *Exec) string {
		var log bytes.Buffer
		if err := e.Run(context.Background(), &Env{Run: 7, Target: "fas2", Log: &log}); err != nil {
			t.Fatal(err)
		}
		return log.String()
	}
	out := run(&Exec{StepName: "env", Argv: []string{"env"}, Env: map[string]string{"MODE": "staging"}})
	for _, want := range []string{"PATH=", "LANG=C.UTF-8", "MODE=staging", "STAGEBOT_RUN=7", "STAGEBOT_TARGET=fas2"} {
		if !strings.Contains(out, want) {
			t.Errorf("the step's environment lacks %s:\n%s", want, out)
		}
	}
	for _, leak := range []string{"API_TOKEN", "DEPLOY_KEY_PATH"} {
		if strings.Contains(out, leak) {
			t.Errorf("the step inherited %s, which the config does not give it:\n%s", leak, out)
		}
	}
	out = run(&Exec{StepName: "env", Argv: []string{"env"}, Inherit: []string{"DEPLOY_KEY_PATH", "NOT_SET_ANYWHERE"}})
	if !strings.Contains(out, "DEPLOY_KEY_PATH=/keys/deploy") || strings.Contains(out, "API_TOKEN") || strings.Contains(out, "NOT_SET_ANYWHERE") {
		t.Errorf("inherit_env [DEPLOY_KEY_PATH, NOT_SET_ANYWHERE]:\n%s", out)
	}
}

func TestExec_RunTimeVariables(t *testing.T) {
	for _, e := range []*Exec{
		{StepName: "shell", Shell: `echo "shell ${STAGEBOT_RUN} ${STAGEBOT_TARGET} $LABEL"`, Env: map[string]string{"LABEL": "run-${STAGEBOT_RUN}"}},
		{StepName: "argv", Argv: []string{"echo", "argv", "${STAGEBOT_RUN}", "${STAGEBOT_TARGET}", "${NOT_OURS}"}},
	} {
		var log bytes.Buffer
		if err := e.Run(context.Background(), &Env{Run: 42, Target: "fas2", Log: &log}); err != nil {
			t.Fatal(err)
		}
		want := map[string]string{"shell": "shell 42 fas2 run-42\n", "argv": "argv 42 fas2 ${NOT_OURS}\n"}[e.StepName]
		if log.String() != want {
			t.Errorf("%s: %q, want %q", e.StepName, log.String(), want)
		}
	}
}

// TestExecute_FenceStopsEveryLaterStep: once the process no longer holds
// the lease, nothing more runs, finally steps included: the bot that took
// over runs them.
func TestExecute_FenceStopsEveryLaterStep(t *testing.T) {
	dir := t.TempDir()
	mark := filepath.Join(dir, "ran")
	var lost atomic.Bool
	fenced := errors.New("no longer the leader")
	p := &Pipeline{
		Steps:   []Step{sh("stop", "echo stop >> "+mark), sh("copy", "echo copy >> "+mark), sh("swap", "echo swap >> "+mark)},
		Finally: []Step{sh("start httpd", "echo start >> "+mark)},
	}
	env := Env{Fence: func(time.Duration) error {
		if lost.Load() {
			return fenced
		}
		return nil
	}}
	rep := &fenceAfter{n: 2, lost: &lost}
	res, err := Execute(context.Background(), MakePlan(context.Background(), "t", p), env, rep, nil)
	if !errors.Is(err, fenced) {
		t.Fatalf("error = %v, want the fence's", err)
	}
	if got := states(res); got != "succeeded,succeeded,skipped,skipped" {
		t.Fatalf("states = %s", got)
	}
	out, _ := os.ReadFile(mark)
	if string(out) != "stop\ncopy\n" {
		t.Fatalf("steps that ran: %q", out)
	}
}

// fenceAfter loses the lease once n steps have finished.
type fenceAfter struct {
	n    int
	lost *atomic.Bool
}

func (f *fenceAfter) StepStarted(int, store.StepResult) {}
func (f *fenceAfter) StepProgress(int, Progress)        {}
func (f *fenceAfter) StepFinished(int, store.StepResult) {
	if f.n--; f.n == 0 {
		f.lost.Store(true)
	}
}

// probedStep sleeps without progress; its servers answer or not.
type probedStep struct{ silent bool }

func (probedStep) Name() string                         { return "copy" }
func (probedStep) Kind() string                         { return "test" }
func (probedStep) Plan(context.Context) (string, error) { return "", nil }
func (probedStep) Run(ctx context.Context, env *Env) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(400 * time.Millisecond):
		return nil
	}
}
func (s probedStep) Probe(context.Context) error {
	if s.silent {
		return errors.New("production (db:5432) does not answer")
	}
	return nil
}

// A step with no progress is probed: while its servers answer it goes
// on (a long index build); once one does not, it fails, naming it.
func TestWatchdog_ProbesAStepThatMakesNoProgress(t *testing.T) {
	for _, silent := range []bool{false, true} {
		p := &Pipeline{Steps: []Step{probedStep{silent}}, StallTimeout: 60 * time.Millisecond}
		var log strings.Builder
		res, err := Execute(context.Background(), MakePlan(context.Background(), "t", p), Env{Log: &log}, nil, nil)
		switch {
		case !silent && (err != nil || !strings.Contains(log.String(), "every server answers: still waiting")):
			t.Errorf("answering servers: %v\n%s", err, log.String())
		case silent && (res[0].State != store.StepFailed || !strings.Contains(res[0].Error, "stalled: nothing moved since") || !strings.Contains(res[0].Error, "production (db:5432) does not answer")):
			t.Errorf("a silent server: %s %q", res[0].State, res[0].Error)
		}
	}
}

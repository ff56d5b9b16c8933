package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/stagebot/stagebot/store"
)

// Step is one unit of a pipeline.
type Step interface {
	// Name is what people see ("stop httpd").
	Name() string
	// Kind is the step's type ("exec").
	Kind() string
	// Plan checks that the step can run, without changing anything, and
	// says in one line what it will do.
	Plan(ctx context.Context) (string, error)
	// Run does the step's work. It must return when ctx is done.
	Run(ctx context.Context, env *Env) error
}

// Finisher is implemented by steps that leave something behind until the
// run is over (a shadow database). Finish is called once for each such step
// that started, after the main steps and before the finally steps, with the
// error that ended the run (nil on success), on a context an abort does not
// cancel.
type Finisher interface {
	Finish(ctx context.Context, env *Env, runErr error) error
}

// Env is what a running step may use.
type Env struct {
	Run      uint64
	Target   string
	Pipeline string
	// Log receives the step's output; every line is already attributed to
	// the step. It is safe for concurrent use.
	Log io.Writer
	// Progress reports how far the step is.
	Progress func(Progress)
	// Token, when set, goes into the environment of every process a step
	// starts, as STAGEBOT_RUN_TOKEN (EndLeftover finds them by it).
	Token string
	// Process, when set, hears of each process group a step starts
	// (running) and ends, so that one a crash leaves behind can be ended by
	// the next start (EndLeftover).
	Process func(pgid int, running bool)
	// Fence, when set, says whether this process may still act for the
	// next need (it holds the lease of a store shared by several bots).
	// No step starts, finally steps and clean-up included, once it errs:
	// the bot that took over finishes the run.
	Fence func(need time.Duration) error
}

// Progress is a step's report of how far it has come.
type Progress struct {
	Done, Total int64  // in Unit
	Unit        string // "bytes", "rows"…
	// Items is a short count of finished pieces, e.g. "3/12 tables".
	Items string
	// Rows copied so far, for a step that copies rows.
	Rows int64
	ETA  time.Duration
}

// String renders the progress in one short line.
func (p Progress) String() string {
	var parts []string
	if p.Total > 0 {
		parts = append(parts, fmt.Sprintf("%d%%", min(p.Done, p.Total)*100/p.Total))
	}
	switch {
	case p.Unit == "bytes" && p.Total > 0:
		parts = append(parts, fmt.Sprintf("%s of %s", Bytes(min(p.Done, p.Total)), Bytes(p.Total)))
	case p.Unit == "bytes" && p.Done > 0:
		parts = append(parts, Bytes(p.Done))
	case p.Unit != "" && p.Total > 0:
		parts = append(parts, fmt.Sprintf("%d of %d %s", min(p.Done, p.Total), p.Total, p.Unit))
	case p.Unit != "" && p.Done > 0:
		parts = append(parts, fmt.Sprintf("%d %s", p.Done, p.Unit))
	}
	if p.Items != "" {
		parts = append(parts, p.Items)
	}
	if p.ETA > 0 {
		parts = append(parts, "ETA "+p.ETA.Round(time.Second).String())
	}
	return strings.Join(parts, ", ")
}

// ETA guesses the time left from the rate so far, once there is a rate to
// go by: 0 (no guess) in the first 10 seconds and before 5% is done, when
// fixed costs dominate and a guess swings wildly.
func ETA(elapsed time.Duration, done, total int64) time.Duration {
	if total <= 0 || done <= 0 || done >= total || elapsed < 10*time.Second || done*20 < total {
		return 0
	}
	return time.Duration(float64(elapsed) * float64(total-done) / float64(done))
}

// Estimated renders "n of ~est what", with the estimate raised to n where
// it fell short, so that a count never passes its total.
func Estimated(n, est int64, what string) string {
	if est <= 0 {
		return fmt.Sprintf("%d %s", n, what)
	}
	return fmt.Sprintf("%d of ~%d %s", n, max(n, est), what)
}

// Bytes renders n bytes for people.
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// Reporter hears about a run's steps as they happen. Indexes count main steps
// first, then finally steps.
type Reporter interface {
	StepStarted(index int, r store.StepResult)
	StepProgress(index int, p Progress)
	StepFinished(index int, r store.StepResult)
}

type noReporter struct{}

func (noReporter) StepStarted(int, store.StepResult)  {}
func (noReporter) StepProgress(int, Progress)         {}
func (noReporter) StepFinished(int, store.StepResult) {}

// Pipeline is a named list of steps plus finally steps that always run.
type Pipeline struct {
	Name    string
	Steps   []Step
	Finally []Step
	// HoldAll asks the bot to hold every target while the pipeline runs,
	// so that no other run starts meanwhile (a schema upgrade that must not
	// meet other jobs).
	HoldAll bool
	// StallTimeout bounds how long a step that can be probed (a Prober)
	// may go without progress: then its peers are probed, and a peer that
	// does not answer fails the step (0: DefaultStallTimeout).
	StallTimeout time.Duration
}

// DefaultStallTimeout is how long a probed step may make no progress.
const DefaultStallTimeout = 5 * time.Minute

// Prober is a step that talks to servers which may go silent: Probe asks
// each of them for a sign of life, and its error says which did not answer.
type Prober interface {
	Probe(ctx context.Context) error
}

// PlannedStep is one line of a plan.
type PlannedStep struct {
	Name, Kind  string
	Finally     bool
	Description string
	Problem     string // why the step cannot run; empty when it can
}

// Plan is a checked pipeline, ready to execute when it has no problems.
type Plan struct {
	Target   string
	Pipeline *Pipeline
	Steps    []PlannedStep
}

// Problems lists what stops the plan from running.
func (p *Plan) Problems() []string {
	var out []string
	for _, s := range p.Steps {
		if s.Problem != "" {
			out = append(out, fmt.Sprintf("%s: %s", s.Name, s.Problem))
		}
	}
	return out
}

// Warnings are the lines of the steps' descriptions that start with
// "warning: ": what may go wrong though nothing stops the run (a copy that
// may not fit), without that prefix, each naming its step.
func (p *Plan) Warnings() []string {
	var out []string
	for _, s := range p.Steps {
		for _, line := range strings.Split(s.Description, "\n") {
			if w, ok := strings.CutPrefix(line, "warning: "); ok {
				out = append(out, fmt.Sprintf("%s: %s", s.Name, w))
			}
		}
	}
	return out
}

// ErrPlan is returned by Execute for a plan that has problems.
var ErrPlan = errors.New("the plan has problems")

// FinallyTimeout bounds each finally step when the step sets no timeout of
// its own: finally steps run on a context that an abort does not cancel.
var FinallyTimeout = 10 * time.Minute

// MakePlan checks every step of p (all of them, so that every problem is
// reported at once) and changes nothing.
func MakePlan(ctx context.Context, target string, p *Pipeline) *Plan {
	plan := &Plan{Target: target, Pipeline: p}
	if p == nil {
		plan.Steps = []PlannedStep{{Name: "pipeline", Problem: "there is no such pipeline"}}
		return plan
	}
	add := func(s Step, finally bool) {
		desc, err := s.Plan(ctx)
		ps := PlannedStep{Name: s.Name(), Kind: s.Kind(), Finally: finally, Description: desc}
		if err != nil {
			ps.Problem = err.Error()
		}
		plan.Steps = append(plan.Steps, ps)
	}
	for _, s := range p.Steps {
		add(s, false)
	}
	for _, s := range p.Finally {
		add(s, true)
	}
	return plan
}

// Results returns a pending result for every step of the plan, the shape a
// run's status starts from.
func (p *Plan) Results() []store.StepResult {
	out := make([]store.StepResult, len(p.Steps))
	for i, s := range p.Steps {
		out[i] = store.StepResult{Name: s.Name, Kind: s.Kind, Finally: s.Finally, State: store.StepPending}
	}
	return out
}

// Execute runs the plan. It returns the result of every step and the error
// that ended the run early: a step's failure, or ctx's error when the run was
// aborted. Finally steps run in every case, and a failing finally step fails
// the run too.
func Execute(ctx context.Context, plan *Plan, env Env, rep Reporter, now func() time.Time) ([]store.StepResult, error) {
	if rep == nil {
		rep = noReporter{}
	}
	if now == nil {
		now = time.Now
	}
	if probs := plan.Problems(); len(probs) > 0 {
		return plan.Results(), fmt.Errorf("%w: %s", ErrPlan, strings.Join(probs, "; "))
	}
	if env.Log == nil {
		env.Log = io.Discard
	}
	results := plan.Results()
	var runErr error
	steps := append(append([]Step(nil), plan.Pipeline.Steps...), plan.Pipeline.Finally...)
	nMain := len(plan.Pipeline.Steps)
	started := map[int]bool{}
	for i, s := range steps {
		finally := i >= nMain
		if i == nMain {
			runErr = finish(ctx, plan.Pipeline.Steps, started, env, runErr)
		}
		if env.Fence != nil {
			if ferr := env.Fence(0); ferr != nil {
				results[i].State = store.StepSkipped
				results[i].Error = ferr.Error()
				if runErr == nil || !errors.Is(runErr, ferr) {
					runErr = errors.Join(runErr, ferr)
				}
				rep.StepFinished(i, results[i])
				continue
			}
		}
		stepCtx := ctx
		cancel := func() {}
		if finally {
			stepCtx, cancel = context.WithTimeout(context.WithoutCancel(ctx), FinallyTimeout)
		} else if runErr != nil || ctx.Err() != nil {
			results[i].State = store.StepSkipped
			if runErr == nil {
				runErr = ctx.Err()
			}
			rep.StepFinished(i, results[i])
			continue
		}
		started[i] = true
		results[i].State = store.StepRunning
		results[i].StartedAt = now()
		rep.StepStarted(i, results[i])
		i := i
		stepEnv := env
		stepEnv.Log = &lineWriter{w: env.Log, prefix: "[" + s.Name() + "] "}
		var detailMu sync.Mutex
		detail := ""
		var last Progress
		dog := newWatchdog(s, plan.Pipeline.StallTimeout, env.Log)
		stepEnv.Progress = func(p Progress) {
			detailMu.Lock()
			detail, last = p.String(), p
			detailMu.Unlock()
			dog.saw(p)
			rep.StepProgress(i, p)
		}
		fmt.Fprintf(env.Log, "== %s (%s) started %s\n", s.Name(), s.Kind(), results[i].StartedAt.Format(time.RFC3339))
		stepCtx, stopDog := dog.watch(stepCtx)
		err := s.Run(stepCtx, &stepEnv)
		if stalled := stopDog(); stalled != nil && err != nil {
			err = stalled
		}
		stepEnv.Log.(*lineWriter).Flush()
		cancel()
		detailMu.Lock()
		// The last progress line stays as the step's detail.
		results[i].Detail = detail
		if last.Unit == "bytes" {
			results[i].Bytes = last.Done
		}
		results[i].Rows = last.Rows
		detailMu.Unlock()
		results[i].Duration = now().Sub(results[i].StartedAt)
		switch {
		case err == nil:
			results[i].State = store.StepSucceeded
		case !finally && ctx.Err() != nil:
			results[i].State = store.StepAborted
			results[i].Error = "aborted"
			runErr = ctx.Err()
		default:
			results[i].State = store.StepFailed
			results[i].Error = err.Error()
			if runErr == nil {
				runErr = fmt.Errorf("step %q failed: %w", s.Name(), err)
			}
		}
		fmt.Fprintf(env.Log, "== %s %s after %s%s\n", s.Name(), results[i].State, results[i].Duration.Round(time.Millisecond), errSuffix(results[i].Error))
		rep.StepFinished(i, results[i])
	}
	if len(plan.Pipeline.Finally) == 0 {
		runErr = finish(ctx, plan.Pipeline.Steps, started, env, runErr)
	}
	return results, runErr
}

// finish calls Finish on the started steps that need it.
func finish(ctx context.Context, steps []Step, started map[int]bool, env Env, runErr error) error {
	for i, s := range steps {
		f, ok := s.(Finisher)
		if !ok || !started[i] {
			continue
		}
		if env.Fence != nil && env.Fence(0) != nil {
			return runErr
		}
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), FinallyTimeout)
		err := f.Finish(fctx, &env, runErr)
		cancel()
		if err != nil {
			fmt.Fprintf(env.Log, "== clean-up after %s failed: %v\n", s.Name(), err)
			ce := &CleanupError{Step: s.Name(), Err: err}
			if runErr == nil {
				runErr = ce
			} else {
				runErr = fmt.Errorf("%w; %w", runErr, ce)
			}
		}
	}
	return runErr
}

// CleanupError is a step's clean-up (Finisher) that failed after the run:
// what it could not remove is still there, and people must hear it.
type CleanupError struct {
	Step string
	Err  error
}

func (e *CleanupError) Error() string {
	return fmt.Sprintf("clean up after step %q: %v", e.Step, e.Err)
}

func (e *CleanupError) Unwrap() error { return e.Err }

func errSuffix(e string) string {
	if e == "" {
		return ""
	}
	return ": " + e
}

// lineWriter prefixes every line written through it. Steps write from
// several goroutines at once (parallel workers, a command's stdout and
// stderr), so it is safe for concurrent use.
type lineWriter struct {
	mu      sync.Mutex
	w       io.Writer
	prefix  string
	partial []byte
}

func (l *lineWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(p)
	l.partial = append(l.partial, p...)
	for {
		i := strings.IndexByte(string(l.partial), '\n')
		if i < 0 {
			break
		}
		if _, err := io.WriteString(l.w, l.prefix+string(l.partial[:i+1])); err != nil {
			return n, err
		}
		l.partial = l.partial[i+1:]
	}
	return n, nil
}

// Flush writes a last line that had no newline.
func (l *lineWriter) Flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.partial) > 0 {
		io.WriteString(l.w, l.prefix+string(l.partial)+"\n")
		l.partial = nil
	}
}

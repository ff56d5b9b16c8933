package bot

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/stagebot/stagebot/runner"
	"github.com/stagebot/stagebot/store"
)

// execution is a run under way in this process.
type execution struct {
	target      string
	planTook    time.Duration // checking every step before the start
	up          *updater      // the run as it is now, progress included
	cancel      context.CancelFunc
	abortedBy   store.User
	abortReason string
}

// startRun plans the run again (everything is re-checked at start), marks it
// running, posts its status message and executes it in the background.
// b.mu is held.
func (b *Bot) startRun(ctx context.Context, r *store.Run, t *Target) error {
	now := b.clock.Now()
	planStart := time.Now()
	plan := runner.MakePlan(ctx, t.Name, t.Pipelines[r.Pipeline])
	planTook := time.Since(planStart)
	r.State, r.StartedAt, r.Reason, r.WaitNotice, r.HoldWait = store.RunRunning, now, "", "", false
	r.Token = newToken()
	r.Steps = plan.Results()
	if probs := plan.Problems(); len(probs) > 0 {
		r.State, r.EndedAt = store.RunFailed, now
		r.Reason = "the plan has problems: " + joinLines(probs)
		if err := b.store.UpdateRun(ctx, r); err != nil {
			return err
		}
		b.audit(ctx, store.Scheduler, "failed", r.Target, r.ID, 0, r.Reason)
		b.edit(ctx, r.Card, b.announcement(ctx, r, ""))
		b.send(ctx, Message{Channel: r.Channel, Thread: r.Card, Mentions: []store.User{r.Requester},
			Text: fmt.Sprintf("Run %d of %s did not start: %s. Staging is unchanged.", r.ID, r.Target, r.Reason)})
		return nil
	}
	if err := b.store.UpdateRun(ctx, r); err != nil {
		return err
	}
	b.audit(ctx, store.Scheduler, "started", r.Target, r.ID, 0, r.Pipeline)
	b.edit(ctx, r.Card, b.announcement(ctx, r, ""))
	r.Status = b.send(ctx, b.statusMessage(r))
	if err := b.store.UpdateRun(ctx, r); err != nil {
		return err
	}
	if t.Pipelines[r.Pipeline].HoldAll {
		if err := b.holdForRun(ctx, r); err != nil {
			return err
		}
	}

	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	x := &execution{target: r.Target, cancel: cancel, planTook: planTook}
	b.running[r.ID] = x
	b.runs.Add(1)
	run := *r
	go func() {
		defer b.runs.Done()
		defer cancel()
		b.execute(runCtx, &run, plan, x)
	}()
	return nil
}

// execute runs the plan and records the outcome. It runs without b.mu and
// takes it for each store write.
func (b *Bot) execute(ctx context.Context, r *store.Run, plan *runner.Plan, x *execution) {
	logs := &logSink{b: b, run: r.ID}
	fmt.Fprintf(logs, "== plan: every step checked (guards, connections, tools) in %s\n", x.planTook.Round(time.Millisecond))
	up := newUpdater(b, r)
	b.mu.Lock()
	x.up = up
	b.mu.Unlock()
	rep := &reporter{b: b, up: up, logs: logs, run: r.ID}
	env := runner.Env{Run: r.ID, Target: r.Target, Pipeline: r.Pipeline, Log: logs, Process: rep.process, Token: r.Token, Fence: b.opts.Fence}
	results, err := runner.Execute(ctx, plan, env, rep, b.clock.Now)
	logs.flush()

	b.mu.Lock()
	defer b.mu.Unlock()
	defer b.poke()
	delete(b.running, r.ID)
	bg := context.WithoutCancel(ctx)
	cur, lerr := b.store.Run(bg, r.ID)
	if lerr != nil {
		b.log.Error("load finished run", "run", r.ID, "err", lerr)
		up.stop(nil)
		return
	}
	cur.Steps, cur.EndedAt, cur.Processes = results, b.clock.Now(), nil
	switch {
	case err == nil:
		cur.State, cur.Reason = store.RunSucceeded, ""
	case errors.Is(err, context.Canceled):
		cur.State = store.RunAborted
		cur.Reason = "aborted by " + x.abortedBy.Display()
		if x.abortedBy.ID == store.Scheduler.ID {
			cur.Reason = "aborted"
		}
		if x.abortReason != "" {
			cur.Reason += ": " + x.abortReason
		}
	default:
		cur.State, cur.Reason = store.RunFailed, err.Error()
	}
	if err := b.store.UpdateRun(bg, cur); err != nil {
		b.log.Error("store finished run", "run", r.ID, "err", err)
	}
	b.audit(bg, store.Scheduler, string(cur.State), cur.Target, cur.ID, 0, cur.Reason)
	if b.opts.Observer != nil {
		b.opts.Observer.RunEnded(cur)
	}
	b.endRunHolds(bg, cur)
	final := b.statusMessage(cur)
	up.stop(&final)
	b.edit(bg, cur.Card, b.announcement(bg, cur, ""))
	text := b.outcome(cur)
	if ce := (*runner.CleanupError)(nil); errors.As(err, &ce) {
		text += fmt.Sprintf("\n⚠ The clean-up after step %q failed: %v", ce.Step, ce.Err)
	}
	b.send(bg, Message{Channel: cur.Channel, Thread: cur.Status, Mentions: []store.User{cur.Requester}, Text: text})
}

// newToken is a run's token: what marks the processes its steps start.
func newToken() string {
	b := make([]byte, 12)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// runHolder is who holds the targets while run r runs.
func runHolder(r *store.Run) store.User {
	return store.User{ID: fmt.Sprintf("run/%d", r.ID), Name: fmt.Sprintf("run %d (%s/%s)", r.ID, r.Target, r.Pipeline)}
}

// holdForRun holds every target while r runs. b.mu is held.
func (b *Bot) holdForRun(ctx context.Context, r *store.Run) error {
	now := b.clock.Now()
	h := &store.Hold{Target: store.AllTargets, Holder: runHolder(r), Run: r.ID, CreatedAt: now,
		Reason: fmt.Sprintf("%s/%s must not meet other runs", r.Target, r.Pipeline)}
	if err := b.store.CreateHold(ctx, h); err != nil {
		return err
	}
	b.audit(ctx, h.Holder, "hold", h.Target, r.ID, h.ID, h.Reason)
	b.send(ctx, Message{Channel: r.Channel, Thread: r.Status, Text: fmt.Sprintf(
		"While run %d runs, all targets are held: other runs wait until it ends.", r.ID)})
	return nil
}

// endRunHolds ends the holds r took. Runs that waited for them are
// announced again by the next tick. b.mu is held.
func (b *Bot) endRunHolds(ctx context.Context, r *store.Run) {
	holds, err := b.store.Holds(ctx, true)
	if err != nil {
		b.log.Error("load holds", "err", err)
		return
	}
	ended := false
	for _, h := range holds {
		if h.Run != r.ID {
			continue
		}
		h.EndedAt, h.EndedBy, h.EndReason = b.clock.Now(), store.Scheduler, fmt.Sprintf("run %d %s", r.ID, r.State)
		if err := b.store.UpdateHold(ctx, h); err != nil {
			b.log.Error("end a run's hold", "hold", h.ID, "err", err)
			continue
		}
		b.audit(ctx, store.Scheduler, "hold released", h.Target, r.ID, h.ID, h.EndReason)
		b.send(ctx, Message{Channel: r.Channel, Text: fmt.Sprintf("Run %d has ended, and with it its hold on %s.", r.ID, holdName(h.Target))})
		ended = true
	}
	if ended {
		b.tellFree(ctx)
	}
}

// outcome is the line that tells people how a run ended.
func (b *Bot) outcome(r *store.Run) string {
	took := fmtDur(r.EndedAt.Sub(r.StartedAt))
	switch r.State {
	case store.RunSucceeded:
		return fmt.Sprintf("✅ Run %d of %s/%s succeeded in %s.", r.ID, r.Target, r.Pipeline, took)
	case store.RunAborted:
		msg := fmt.Sprintf("⏹ Run %d of %s was %s after %s.", r.ID, r.Target, r.Reason, took)
		if beforeSwap(r.Steps) {
			msg += " Staging is as it was: the run stopped before the swap."
		}
		return msg + fmt.Sprintf(" `%s log %d` has the details.", b.opts.Prefix, r.ID)
	}
	// The failing step and its error were said in the run's thread as it
	// failed: the outcome names the step, not the error again.
	msg := fmt.Sprintf("❌ Run %d of %s/%s failed after %s", r.ID, r.Target, r.Pipeline, took)
	var failed []string
	for _, s := range r.Steps {
		if s.State == store.StepFailed {
			failed = append(failed, strconv.Quote(s.Name))
		}
	}
	if len(failed) > 0 {
		msg += " at step " + strings.Join(failed, " and ")
	} else if r.Reason != "" {
		msg += ": " + r.Reason
	}
	switch {
	case beforeSwap(r.Steps) && stagingDown(r.Steps):
		msg += "\nThe run stopped before the swap, so it did not touch staging, but staging's server does not answer: it is down."
	case beforeSwap(r.Steps):
		msg += "\nStaging is as it was: the run stopped before the swap."
	}
	return msg + fmt.Sprintf("\n`%s log %d` has the output.", b.opts.Prefix, r.ID)
}

// stagingDown reports whether a failed step found staging's server silent.
func stagingDown(steps []store.StepResult) bool {
	for _, s := range steps {
		if s.State == store.StepFailed && strings.Contains(s.Error, "staging's server (") && strings.Contains(s.Error, "does not answer") {
			return true
		}
	}
	return false
}

// beforeSwap reports whether the run has a swap step that did not run.
func beforeSwap(steps []store.StepResult) bool {
	for _, s := range steps {
		if s.Kind == "pg_swap" && s.State != store.StepSucceeded {
			return true
		}
	}
	return false
}

// reporter turns runner events into status edits and thread messages.
type reporter struct {
	b    *Bot
	up   *updater
	logs *logSink
	run  uint64
}

func (rp *reporter) StepStarted(i int, s store.StepResult) {
	var snapshot store.Run
	rp.up.change(func(r *store.Run) {
		r.Steps[i] = s
		snapshot = *r
		snapshot.Steps = append([]store.StepResult(nil), r.Steps...)
	})
	rp.persist(snapshot.Steps)
}

// process records the process groups the run's steps have running, so that
// the next start can end them if the bot dies meanwhile.
func (rp *reporter) process(pgid int, running bool) {
	rp.b.mu.Lock()
	defer rp.b.mu.Unlock()
	ctx := context.Background()
	cur, err := rp.b.store.Run(ctx, rp.run)
	if err != nil {
		rp.b.log.Error("record a step's process", "run", rp.run, "err", err)
		return
	}
	cur.Processes = slices.DeleteFunc(cur.Processes, func(p store.Process) bool { return p.PGID == pgid })
	if running {
		cur.Processes = append(cur.Processes, runner.Identify(pgid))
	}
	if err := rp.b.store.UpdateRun(ctx, cur); err != nil {
		rp.b.log.Error("record a step's process", "run", rp.run, "err", err)
	}
}

// persist stores the step results so far, so that a crash leaves an
// accurate record of where the run was.
func (rp *reporter) persist(steps []store.StepResult) {
	rp.b.mu.Lock()
	defer rp.b.mu.Unlock()
	ctx := context.Background()
	cur, err := rp.b.store.Run(ctx, rp.run)
	if err == nil {
		cur.Steps = steps
		err = rp.b.store.UpdateRun(ctx, cur)
	}
	if err != nil {
		rp.b.log.Error("store step result", "run", rp.run, "err", err)
	}
}

func (rp *reporter) StepProgress(i int, p runner.Progress) {
	rp.up.change(func(r *store.Run) { r.Steps[i].Detail = p.String() })
}

func (rp *reporter) StepFinished(i int, s store.StepResult) {
	rp.logs.flush()
	var snapshot store.Run
	rp.up.change(func(r *store.Run) {
		if s.Detail == "" {
			s.Detail = r.Steps[i].Detail
		}
		r.Steps[i] = s
		snapshot = *r
		snapshot.Steps = append([]store.StepResult(nil), r.Steps...)
	})
	rp.persist(snapshot.Steps)
	if s.State == store.StepFailed {
		rp.b.mu.Lock()
		defer rp.b.mu.Unlock()
		rp.b.send(context.Background(), Message{Channel: snapshot.Channel, Thread: snapshot.Status,
			Text: fmt.Sprintf("Step %q failed: %s (after %s)", s.Name, s.Error, fmtDur(s.Duration))})
	}
}

// updater edits a run's status message at most once per EditInterval and
// always writes the final state.
type updater struct {
	b      *Bot
	mu     sync.Mutex
	run    store.Run
	dirty  bool
	notify chan struct{}
	done   chan struct{}
	final  chan *Message
}

func newUpdater(b *Bot, r *store.Run) *updater {
	u := &updater{b: b, run: *r, notify: make(chan struct{}, 1), done: make(chan struct{}), final: make(chan *Message, 1)}
	u.run.Steps = append([]store.StepResult(nil), r.Steps...)
	go u.loop()
	return u
}

func (u *updater) change(fn func(r *store.Run)) {
	u.mu.Lock()
	fn(&u.run)
	u.dirty = true
	u.mu.Unlock()
	u.b.homeChanged()
	select {
	case u.notify <- struct{}{}:
	default:
	}
}

func (u *updater) loop() {
	defer close(u.done)
	var last time.Time
	for {
		select {
		case m := <-u.final:
			if m != nil {
				u.b.edit(context.Background(), u.run.Status, *m)
			}
			return
		case <-u.notify:
		}
		if wait := u.b.opts.EditInterval - time.Since(last); wait > 0 {
			select {
			case m := <-u.final:
				if m != nil {
					u.b.edit(context.Background(), u.run.Status, *m)
				}
				return
			case <-time.After(wait):
			}
		}
		u.mu.Lock()
		if !u.dirty {
			u.mu.Unlock()
			continue
		}
		u.dirty = false
		m := u.b.statusMessage(&u.run)
		u.mu.Unlock()
		u.b.edit(context.Background(), u.run.Status, m)
		last = time.Now()
	}
}

// stop writes the final message (if any) and ends the loop.
func (u *updater) stop(final *Message) {
	u.final <- final
	<-u.done
}

// logSink collects a run's output and appends it to the store in batches.
// A line past maxLogLine is cut, the rest counted: one step printing
// without newlines (a progress bar, a binary) cannot fill the bot's memory
// or crowd out the lines that follow. (The store bounds a run's whole log.)
type logSink struct {
	b   *Bot
	run uint64
	mu  sync.Mutex
	buf bytes.Buffer

	line int   // bytes of the current line kept so far
	cut  int64 // bytes of the current line dropped
}

// maxLogLine is the most a run's log keeps of one line.
const maxLogLine = 4 << 10

func (l *logSink) Write(p []byte) (int, error) {
	n := len(p)
	l.mu.Lock()
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		chunk := p
		if i >= 0 {
			chunk = p[:i]
		}
		keep := min(len(chunk), max(0, maxLogLine-l.line))
		l.buf.Write(chunk[:keep])
		l.line += keep
		l.cut += int64(len(chunk) - keep)
		if i < 0 {
			break
		}
		if l.cut > 0 {
			fmt.Fprintf(&l.buf, " … (%d more bytes on this line were not kept)", l.cut)
		}
		l.buf.WriteByte('\n')
		l.line, l.cut = 0, 0
		p = p[i+1:]
	}
	big := l.buf.Len() >= 16<<10
	l.mu.Unlock()
	if big {
		l.flush()
	}
	return n, nil
}

func (l *logSink) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.buf.Len() == 0 {
		return
	}
	text := l.b.opts.Redact(l.buf.String())
	l.buf.Reset()
	if err := l.b.store.AppendLog(context.Background(), l.run, []byte(text)); err != nil {
		l.b.log.Error("append run log", "run", l.run, "err", err)
	}
}

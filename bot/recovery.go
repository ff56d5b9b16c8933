package bot

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/stagebot/stagebot/runner"
	"github.com/stagebot/stagebot/store"
)

// Recover marks runs that were running when the bot stopped as
// interrupted (or as succeeded, when every step had finished) and says so
// in their channel, with what it repaired and which copy staging holds.
// Run calls it before anything else.
func (b *Bot) Recover(ctx context.Context) error {
	b.mu.Lock()
	runs, err := b.store.Runs(ctx, store.RunFilter{Active: true, States: []store.RunState{store.RunRunning}})
	if err != nil {
		b.mu.Unlock()
		return fmt.Errorf("recover: %w", err)
	}
	runs = slices.DeleteFunc(runs, func(r *store.Run) bool { return b.running[r.ID] != nil })
	interrupted := map[string]bool{}
	ended := map[uint64]string{}
	for _, r := range runs {
		interrupted[r.Target] = true
		if e := b.endLeftovers(r); e != "" {
			ended[r.ID] = e
		}
	}
	repaired := b.recoverTargets(ctx, interrupted)
	var finals []*store.Run
	for _, r := range runs {
		did := repaired[r.Target]
		if e := ended[r.ID]; e != "" {
			did = strings.TrimPrefix(e+"; "+did, "; ")
			did = strings.TrimSuffix(did, "; ")
		}
		if b.recoverRun(ctx, r, did) {
			finals = append(finals, r)
		}
		delete(repaired, r.Target)
	}
	err = b.reannounceMissed(ctx)
	b.mu.Unlock()
	for _, r := range finals {
		b.finallyAfterCrash(ctx, r)
	}
	return err
}

// endLeftovers ends what an interrupted run's steps left running (it may
// still be writing): the process groups recorded, and any started too late
// to be recorded, found by the run's token. It says what it ended.
func (b *Bot) endLeftovers(r *store.Run) string {
	var groups []string
	seen := map[int]bool{}
	for _, p := range r.Processes {
		found, err := runner.EndLeftover(p, 5*time.Second)
		if err != nil {
			b.log.Error("end a leftover process group", "run", r.ID, "pgid", p.PGID, "err", err)
		}
		if found {
			seen[p.PGID] = true
			groups = append(groups, strconv.Itoa(p.PGID))
		}
	}
	for _, pgid := range runner.EndTokenHolders(r.Token, 5*time.Second) {
		if !seen[pgid] {
			groups = append(groups, strconv.Itoa(pgid))
		}
	}
	if len(groups) == 0 {
		return ""
	}
	return "ended the processes its steps had left running (process group " + strings.Join(groups, ", ") + ")"
}

// recoverTargets has each target repair what a crash left. What was done
// to a target with an interrupted run is returned, to be said with that
// run; for the others it is said at once.
func (b *Bot) recoverTargets(ctx context.Context, interrupted map[string]bool) map[string]string {
	repaired := map[string]string{}
	for _, name := range b.targetNames("") {
		t := b.targets[name]
		if t.Recover == nil {
			continue
		}
		did, err := t.Recover(ctx)
		if err != nil {
			// The target stays as it is; its next run plans again and
			// reports what is wrong.
			b.log.Error("recover target", "target", name, "err", b.opts.Redact(err.Error()))
			b.send(ctx, Message{Channel: b.channelOf(t), Text: fmt.Sprintf("I could not check %s after a restart: %v", name, err)})
			continue
		}
		if did == "" {
			continue
		}
		b.audit(ctx, store.Scheduler, "recovered", name, 0, 0, did)
		if interrupted[name] {
			repaired[name] = did
			continue
		}
		b.send(ctx, Message{Channel: b.channelOf(t), Text: fmt.Sprintf("After a restart I tidied up %s: %s.", name, did)})
	}
	return repaired
}

// reannounceMissed gives runs that were to start while the bot was not
// running a new start after their notice period, and says so: a run never
// starts after a restart without a word. Runs that wait for a hold or for
// approvals go on waiting for their person. b.mu is held.
func (b *Bot) reannounceMissed(ctx context.Context) error {
	now := b.clock.Now()
	active, err := b.store.Runs(ctx, store.RunFilter{Active: true, States: []store.RunState{store.RunScheduled}})
	if err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	for _, r := range active {
		t := b.targets[r.Target]
		if t == nil || r.StartAt.After(now) {
			continue
		}
		was := r.StartAt
		r.StartAt, r.Announced = now.Add(t.Notice), t.Notice
		if err := b.store.UpdateRun(ctx, r); err != nil {
			return fmt.Errorf("recover run %d: %w", r.ID, err)
		}
		b.audit(ctx, store.Scheduler, "rescheduled", r.Target, r.ID, 0, "due while stagebot was not running")
		b.renotice(ctx, r, fmt.Sprintf("Run %d was due at %s, while stagebot was not running, so it did not start. It now starts at %s: hold, defer or cancel it if that no longer suits.", r.ID, b.fmtTime(was), b.fmtTime(r.StartAt)))
	}
	return nil
}

// finallyAfterCrash runs the finally steps of run r, which the bot's stop
// interrupted before they could run (a pipeline that stopped the app
// starts it again), records their results and says how they went.
func (b *Bot) finallyAfterCrash(ctx context.Context, r *store.Run) {
	t := b.targets[r.Target]
	p := t.Pipelines[r.Pipeline]
	plan := runner.MakePlan(ctx, t.Name, &runner.Pipeline{Name: p.Name, Finally: p.Finally})
	logs := &logSink{b: b, run: r.ID}
	fmt.Fprintf(logs, "== after a restart: the finally steps of the interrupted run\n")
	results, err := runner.Execute(ctx, plan, runner.Env{Run: r.ID, Target: r.Target, Pipeline: r.Pipeline, Log: logs, Fence: b.opts.Fence}, nil, b.clock.Now)
	logs.flush()
	b.mu.Lock()
	defer b.mu.Unlock()
	var lines []string
	cur, lerr := b.store.Run(ctx, r.ID)
	if lerr == nil {
		j := 0
		for i := range cur.Steps {
			if cur.Steps[i].Finally && j < len(results) {
				cur.Steps[i] = results[j]
				j++
			}
		}
		lerr = b.store.UpdateRun(ctx, cur)
	}
	if lerr != nil {
		b.log.Error("record the finally steps of an interrupted run", "run", r.ID, "err", lerr)
	}
	for _, s := range results {
		mark := "✓"
		if s.State != store.StepSucceeded {
			mark = "✗"
		}
		line := fmt.Sprintf("%s %s", mark, s.Name)
		if s.Error != "" {
			line += ": " + s.Error
		}
		lines = append(lines, line)
	}
	text := fmt.Sprintf("I ran the finally steps of interrupted run %d of %s:\n%s", r.ID, r.Target, strings.Join(lines, "\n"))
	if err != nil {
		text += fmt.Sprintf("\n`%s log %d` has the output.", b.opts.Prefix, r.ID)
	}
	b.audit(ctx, store.Scheduler, "finally after restart", r.Target, r.ID, 0, strings.Join(lines, "; "))
	b.send(ctx, Message{Channel: r.Channel, Thread: r.Status, Mentions: []store.User{r.Requester}, Text: text})
}

// recoverRun records what became of run r, which was running when the bot
// stopped, and tells its channel. It reports whether the run's finally
// steps are still to run. b.mu is held.
func (b *Bot) recoverRun(ctx context.Context, r *store.Run, repaired string) bool {
	var running, lastDone, nextUp string
	done := 0
	for i := range r.Steps {
		switch st := &r.Steps[i]; st.State {
		case store.StepRunning:
			running = st.Name
			st.State, st.Error = store.StepAborted, "interrupted"
		case store.StepSucceeded:
			done++
			lastDone = st.Name
		case store.StepPending:
			if nextUp == "" {
				nextUp = st.Name
			}
		}
	}
	where := "before its first step"
	switch {
	case running != "":
		where = "during step " + running
	case lastDone != "" && nextUp != "":
		where = fmt.Sprintf("after step %s, before step %s", lastDone, nextUp)
	case lastDone != "":
		where = "after step " + lastDone
	}
	r.EndedAt, r.Processes = b.clock.Now(), nil
	if done == len(r.Steps) && done > 0 {
		// Every step had finished: only the record of the end was lost.
		r.State, r.Reason = store.RunSucceeded, "every step had finished when stagebot stopped; the end was recorded after a restart"
	} else {
		r.State, r.Reason = store.RunInterrupted, "stagebot stopped "+where
	}
	var holding string
	if t := b.targets[r.Target]; t != nil && t.Holding != nil {
		holding = t.Holding(ctx, r.ID)
		r.Reason += "; " + holding
	}
	// The finally steps that had not all succeeded run now, once.
	finals := false
	if t := b.targets[r.Target]; t != nil && t.Pipelines[r.Pipeline] != nil && len(t.Pipelines[r.Pipeline].Finally) > 0 && r.State != store.RunSucceeded {
		for _, s := range r.Steps {
			if s.Finally && s.State != store.StepSucceeded {
				finals = true
			}
		}
	}
	if err := b.store.UpdateRun(ctx, r); err != nil {
		b.log.Error("recover run", "run", r.ID, "err", err)
		return false
	}
	b.audit(ctx, store.Scheduler, string(r.State), r.Target, r.ID, 0, r.Reason)
	b.endRunHolds(ctx, r)
	b.edit(ctx, r.Status, b.statusMessage(r))
	var text string
	if r.State == store.RunSucceeded {
		text = fmt.Sprintf("Run %d of %s had finished every step when I stopped; I recorded it as succeeded after a restart.", r.ID, r.Target)
	} else {
		text = fmt.Sprintf("Run %d of %s was interrupted: stagebot stopped %s.", r.ID, r.Target, where)
	}
	if repaired != "" {
		text += " I repaired what it left: " + repaired + "."
	}
	if holding != "" {
		text += " " + upperFirst(holding) + "."
	}
	if finals {
		text += " Its finally steps run now."
	}
	if r.State != store.RunSucceeded {
		text += fmt.Sprintf(" Check staging, then ask again with `%s resync %s`.", b.opts.Prefix, r.Target)
	}
	b.send(ctx, Message{Channel: r.Channel, Thread: r.Status, Mentions: []store.User{r.Requester}, Text: text})
	return finals
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// Tell says text in target's channel, for what happens outside a command
// or a run (a background repair that finished).
func (b *Bot) Tell(target, text string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	ctx := context.Background()
	t := b.targets[target]
	if t == nil {
		return
	}
	b.audit(ctx, store.Scheduler, "note", target, 0, 0, text)
	b.send(ctx, Message{Channel: b.channelOf(t), Text: text})
}

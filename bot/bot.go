package bot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/stagebot/stagebot/runner"
	"github.com/stagebot/stagebot/runner/mask"
	"github.com/stagebot/stagebot/store"
)

// Target is one thing the bot refreshes, as configured.
type Target struct {
	Name        string
	Description string
	// Channel is where the target's runs are announced.
	Channel string
	// Schedules create runs at their times, each of its own pipeline.
	Schedules []Schedule
	// Notice is how long after a request a manual run starts by default.
	Notice time.Duration
	// Ladder lists how long before the start reminders go out, longest first.
	Ladder    []time.Duration
	Manual    ApprovalRule
	Scheduled ApprovalRule
	// Pipelines by name; DefaultPipeline is used when a request names none.
	Pipelines       map[string]*runner.Pipeline
	DefaultPipeline string
	// Recover, when set, repairs what a crash left (a half-made copy, a
	// database left refusing connections) and says what it did.
	Recover func(ctx context.Context) (string, error)
	// Holding, when set, says which copy staging holds now as seen from a
	// run ("fas2 holds the new copy, made by run 12"), so that the bot can
	// tell the truth after a crash.
	Holding func(ctx context.Context, run uint64) string
	// MaxAge is how old staging's data may get: holds keep a scheduled
	// run waiting only until then (0: as long as they last).
	MaxAge time.Duration
	// Changes, when set, says what a refresh would wipe on staging now:
	// the tables written since the last refresh, who is connected, and
	// whether the replaced copy is kept.
	Changes func(ctx context.Context) (text string, roles []string, err error)
	// Forget, when set, drops a copy the target keeps on staging's server
	// ("previous" for rollback, "base" for reset) and says what it gave
	// back.
	Forget func(ctx context.Context, copy string) (string, error)
	// Masking, when set, says in a few words how the target is masked
	// ("by 14 rules"), for its cards; MaskReport looks at production.
	Masking    string
	MaskReport func(ctx context.Context) (mask.Report, error)
	// Wait, when set, waits for what the target still does after a run
	// (dropping a replaced copy in the background); the bot calls it
	// before it stops.
	Wait func()
}

// Schedule creates runs of Pipeline at the times of Cron.
type Schedule struct {
	Spec     string // as configured, for people
	Cron     cron.Schedule
	Pipeline string
}

// ApprovalRule says how many approvals a run needs and from whom.
type ApprovalRule struct {
	Count int
	// Group, when set, is the only group whose members' approvals count.
	Group string
	// AllowSelf lets the requester approve their own run.
	AllowSelf bool
}

// HoldOptions bound holds.
type HoldOptions struct {
	Default    time.Duration // length when none is given
	Max        time.Duration // longest allowed
	WarnBefore time.Duration // when the holder is warned before expiry
}

// Options configure a Bot. Zero values get defaults in New.
type Options struct {
	Prefix   string
	Location *time.Location
	Targets  []*Target
	Access   Access
	Holds    HoldOptions
	// EditInterval bounds how often a run's status message is edited.
	EditInterval time.Duration
	// PageURL is where people open the status page (no trailing slash),
	// for links in replies; "" when there is none.
	PageURL string
	// RunLinkKey, when set, is the key a link to run id's page carries
	// (the pages need a token, which a browser opened from chat lacks).
	RunLinkKey func(id uint64) string
	Clock      Clock
	Logger     *slog.Logger
	// Redact removes secrets from every text the bot sends or logs.
	Redact func(string) string
	// Observer, when set, hears of every run that ends (metrics).
	Observer Observer
	// StopGrace is how long runs under way may go on when the bot is told
	// to stop (default 1m); then they are aborted and their finally steps
	// run. Hurry, when it closes (a second signal), aborts them at once.
	StopGrace time.Duration
	Hurry     <-chan struct{}
	// Fence, when set, says whether this process may still act for the
	// next need: with several bots sharing one store, only the one
	// holding the lease may, and it neither talks in chat nor runs a step
	// once Fence errs.
	Fence func(need time.Duration) error
	// Keep is the retention policy for finished runs (zero: keep all):
	// at most KeepRuns of them, none older than KeepAge.
	KeepRuns int
	KeepAge  time.Duration
}

// Bot is the running bot.
type Bot struct {
	loss    lossCache
	dryRuns rateLimit
	opts    Options
	store   store.Store
	adapter Adapter
	targets map[string]*Target
	clock   Clock
	log     *slog.Logger

	// mu serialises every state change: commands, ticks and run endings.
	mu      sync.Mutex
	running map[uint64]*execution
	runs    sync.WaitGroup
	wake    chan struct{}
	// stopping: the bot is on its way out and starts no run.
	stopping bool
	beat     heartbeat
}

// New builds a bot. It does not touch the store or the adapter until Run.
func New(s store.Store, a Adapter, o Options) *Bot {
	if o.Prefix == "" {
		o.Prefix = "!stage"
	}
	if o.Location == nil {
		o.Location = time.UTC
	}
	if o.Clock == nil {
		o.Clock = RealClock{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Redact == nil {
		o.Redact = func(s string) string { return s }
	}
	if o.EditInterval == 0 {
		o.EditInterval = 2 * time.Second
	}
	if o.StopGrace == 0 {
		o.StopGrace = time.Minute
	}
	if o.Holds.Default == 0 {
		o.Holds.Default = 2 * time.Hour
	}
	if o.Holds.Max == 0 {
		o.Holds.Max = 7 * 24 * time.Hour
	}
	if o.Holds.WarnBefore == 0 {
		o.Holds.WarnBefore = 15 * time.Minute
	}
	b := &Bot{
		opts: o, store: redactingStore{s, o.Redact}, adapter: a, clock: o.Clock, log: o.Logger,
		targets: map[string]*Target{},
		running: map[uint64]*execution{},
		wake:    make(chan struct{}, 1),
	}
	for _, t := range o.Targets {
		b.targets[t.Name] = t
	}
	// Adapters that keep a position in the platform's stream (Matrix's
	// since token) keep it in the bot's store, fenced like every write.
	if sk, ok := a.(StreamKeeper); ok {
		sk.UseJournal(s)
	}
	if ob, ok := a.(OutboxOwner); ok {
		ob.Outbox().OnDelivered = b.delivered
		if o.Fence != nil {
			ob.Outbox().Allow = func() error { return o.Fence(0) }
		}
	}
	return b
}

// delivered replaces a placeholder reference the outbox answered with by
// the platform's own, in the runs that keep it (their card and status
// message), so that they can still be edited after a restart.
func (b *Bot) delivered(placeholder, ref store.MessageRef) {
	go func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		ctx := context.Background()
		runs, err := b.store.Runs(ctx, store.RunFilter{Limit: 100})
		if err != nil {
			b.log.Error("load runs", "err", err)
			return
		}
		for _, r := range runs {
			changed := false
			if r.Card == placeholder {
				r.Card, changed = ref, true
			}
			if r.Status == placeholder {
				r.Status, changed = ref, true
			}
			if !changed {
				continue
			}
			if err := b.store.UpdateRun(ctx, r); err != nil {
				b.log.Error("keep a delivered message's reference", "run", r.ID, "err", err)
			}
		}
	}()
}

// Run recovers from an earlier stop, then serves the adapter and the
// schedule until ctx is done or the adapter ends (the end of a piped
// console's input).
//
// When ctx ends (SIGTERM), the bot starts nothing new and tells the channel
// of each running run what will happen: it has StopGrace to finish, then it
// is aborted and its finally steps run; Hurry (a second signal) aborts at
// once. Chat stays connected until that is over, so people hear the end.
// When the adapter ends by itself, running runs are waited for. Runs still
// pending stay in the store for the next start.
func (b *Bot) Run(ctx context.Context) error {
	if err := b.Recover(ctx); err != nil {
		return err
	}
	b.compact(ctx)
	schedCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		b.schedule(schedCtx)
	}()
	actx, stopAdapter := context.WithCancel(context.WithoutCancel(ctx))
	defer stopAdapter()
	errc := make(chan error, 1)
	if c, ok := b.adapter.(Completer); ok {
		c.SetCompleter(b.Complete)
	}
	if h, ok := b.adapter.(HomeHost); ok {
		h.SetHome(b.Home)
	}
	go func() { errc <- b.adapter.Run(actx, b.Handle) }()
	var err error
	select {
	case err = <-errc:
		// The input ended (a piped console): what was asked for now still
		// runs, then the bot stops.
		b.drain(ctx)
		stop()
		wg.Wait()
		b.setStopping()
		b.runs.Wait()
	case <-ctx.Done():
		stop()
		wg.Wait()
		b.shutdown()
		b.flushOutbox(10 * time.Second)
		stopAdapter()
		err = <-errc
	}
	b.mu.Lock()
	targets := b.targets
	b.mu.Unlock()
	for _, t := range targets {
		if t.Wait != nil {
			t.Wait()
		}
	}
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// WaitIdle returns once no run is running and none is due to start (a
// run that waits only for another run of its target counts as due; one
// that waits for a hold or approvals, or starts later, does not), or when
// ctx ends. The console's /wait calls it.
func (b *Bot) WaitIdle(ctx context.Context) { b.drain(ctx) }

func (b *Bot) drain(ctx context.Context) {
	for ctx.Err() == nil {
		b.mu.Lock()
		due := len(b.running) > 0
		if !due {
			now := b.clock.Now()
			runs, err := b.store.Runs(ctx, store.RunFilter{Active: true})
			holds, herr := b.store.Holds(ctx, true)
			for _, r := range runs {
				if err != nil || herr != nil || r.State == store.RunRunning || r.StartAt.After(now) {
					continue
				}
				if k, err := b.blockersOf(ctx, r, holds, runs); err == nil && len(k.holds) == 0 && k.missing == 0 {
					due = true
					break
				}
			}
		}
		b.mu.Unlock()
		if !due {
			return
		}
		b.poke()
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (b *Bot) setStopping() {
	b.mu.Lock()
	b.stopping = true
	b.mu.Unlock()
}

// shutdown stops the runs under way: each is told what will happen, gets
// StopGrace to finish, and is then aborted (at once on Hurry).
func (b *Bot) shutdown() {
	ctx := context.Background()
	b.mu.Lock()
	b.stopping = true
	ids := make([]uint64, 0, len(b.running))
	for id := range b.running {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		r, err := b.store.Run(ctx, id)
		if err != nil {
			continue
		}
		step := "between steps"
		for _, s := range r.Steps {
			if s.State == store.StepRunning {
				step = fmt.Sprintf("in step %q", s.Name)
			}
		}
		text := fmt.Sprintf("⏳ stagebot is stopping. Run %d of %s is %s: it has %s to finish, then it is aborted and its finally steps run.", r.ID, r.Target, step, fmtDur(b.opts.StopGrace))
		if beforeSwap(r.Steps) {
			text += " If it stops before the swap, staging stays as it was."
		}
		b.send(ctx, Message{Channel: r.Channel, Thread: r.Status, Text: text, Mentions: []store.User{r.Requester}})
		b.log.Info("stopping: a run is under way", "run", r.ID, "target", r.Target, "step", step, "grace", b.opts.StopGrace)
	}
	grace := b.opts.StopGrace
	b.mu.Unlock()
	if len(ids) == 0 {
		return
	}
	done := make(chan struct{})
	go func() { b.runs.Wait(); close(done) }()
	why := ""
	select {
	case <-done:
		return
	case <-time.After(grace):
		why = fmt.Sprintf("stagebot was stopping and the run did not finish within %s", fmtDur(grace))
	case <-b.opts.Hurry:
		why = "stagebot was told twice to stop"
	}
	b.mu.Lock()
	for _, x := range b.running {
		x.abortedBy, x.abortReason = store.Scheduler, why
		x.cancel()
	}
	b.mu.Unlock()
	b.log.Warn("aborting the runs under way; their finally steps run", "why", why)
	<-done
}

// flushOutbox gives the chat platform up to wait to take what is queued.
func (b *Bot) flushOutbox(wait time.Duration) {
	ob, ok := b.adapter.(OutboxOwner)
	if !ok {
		return
	}
	deadline := time.Now().Add(wait)
	for ob.Outbox().Pending() > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
}

// compact applies the retention policy, at most once a day.
func (b *Bot) compact(ctx context.Context) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.opts.KeepRuns == 0 && b.opts.KeepAge == 0 || ctx.Err() != nil {
		return
	}
	now := b.clock.Now()
	if last, err := b.store.Mark(ctx, "compacted"); err == nil && now.Sub(last) < 24*time.Hour {
		return
	}
	k := store.Retention{Runs: b.opts.KeepRuns}
	if b.opts.KeepAge > 0 {
		k.Before = now.Add(-b.opts.KeepAge)
	}
	n, err := b.store.Compact(ctx, k)
	if err != nil {
		b.log.Error("compact the store", "err", err)
		return
	}
	if n > 0 {
		b.log.Info("removed finished runs the retention policy no longer keeps", "runs", n)
	}
	if err := b.store.SetMark(ctx, "compacted", now); err != nil {
		b.log.Error("compact the store", "err", err)
	}
}

// Wait blocks until no run is executing.
func (b *Bot) Wait() { b.runs.Wait() }

// schedule ticks whenever something is due, and at least every minute.
func (b *Bot) schedule(ctx context.Context) {
	for {
		// What is due by at, the tick does (or cannot do until something
		// else happens); the clock may move on while it works.
		at := b.clock.Now()
		b.beat.beat()
		if err := b.Tick(ctx); err != nil && ctx.Err() == nil {
			b.log.Error("scheduler tick", "err", err)
		}
		b.compact(ctx)
		now := b.clock.Now()
		until := now.Add(time.Minute)
		if next, ok := b.nextWake(ctx, at); ok && next.Before(until) {
			until = next
		}
		timer := b.clock.After(until.Sub(now))
		// The clock may have passed the wake-up time between reading it
		// and setting the timer (which then counts from the later time):
		// look again rather than sleep past it.
		if !b.clock.Now().Before(until) {
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-b.wake:
		case <-timer:
		}
	}
}

// poke makes the scheduler look again soon.
func (b *Bot) poke() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// send posts m with secrets removed; failures are logged, not fatal.
func (b *Bot) send(ctx context.Context, m Message) store.MessageRef {
	if err := b.fenced(); err != nil {
		b.log.Warn("message not sent", "channel", m.Channel, "err", err)
		return store.MessageRef{}
	}
	b.redact(&m)
	ref, err := b.adapter.Send(ctx, m)
	if err != nil {
		b.log.Error("send message", "channel", m.Channel, "err", err)
	}
	return ref
}

// fenced is the error Options.Fence gives now (nil: the bot may act).
func (b *Bot) fenced() error {
	if b.opts.Fence == nil {
		return nil
	}
	return b.opts.Fence(0)
}

// edit changes a posted message, or does nothing when the adapter cannot.
func (b *Bot) edit(ctx context.Context, ref store.MessageRef, m Message) {
	ed, ok := b.adapter.(Editor)
	if !ok || ref.IsZero() || b.fenced() != nil {
		return
	}
	b.redact(&m)
	if err := ed.Edit(ctx, ref, m); err != nil {
		b.log.Error("edit message", "id", ref.ID, "err", err)
	}
}

func (b *Bot) redact(m *Message) {
	m.Text = b.opts.Redact(m.Text)
	for i := range m.Fields {
		m.Fields[i].Value = b.opts.Redact(m.Fields[i].Value)
	}
}

// audit appends an event; a failure is logged, because the state change it
// describes has already been stored.
func (b *Bot) audit(ctx context.Context, actor store.User, action, target string, run, hold uint64, detail string) {
	e := &store.Event{At: b.clock.Now(), Actor: actor, Action: action, Target: target, RunID: run, HoldID: hold, Detail: b.opts.Redact(detail)}
	if err := b.store.AppendEvent(ctx, e); err != nil {
		b.log.Error("audit event", "action", action, "err", err)
	}
}

// channelOf is where a target's runs are announced: its channel, else the
// first control channel. A hold on all targets (t nil) goes there too.
func (b *Bot) channelOf(t *Target) string {
	if t != nil && t.Channel != "" {
		return t.Channel
	}
	if len(b.opts.Access.ControlChannels) > 0 {
		return b.opts.Access.ControlChannels[0]
	}
	return ""
}

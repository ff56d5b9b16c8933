package bot

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sort"
	"strings"

	"github.com/stagebot/stagebot/commands"
	"github.com/stagebot/stagebot/store"
)

// Handle is the entry point for every chat message.
func (b *Bot) Handle(ctx context.Context, in Incoming) {
	// A state change, once begun, is finished even if ctx ends meanwhile.
	ctx = context.WithoutCancel(ctx)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.dispatchGuarded(ctx, in)
	if err := b.tickLocked(ctx); err != nil {
		b.log.Error("tick after command", "err", err)
	}
	b.poke()
	b.homeChanged()
}

// homeChanged tells an adapter with home views that they may be stale.
func (b *Bot) homeChanged() {
	if h, ok := b.adapter.(HomeHost); ok {
		h.HomeChanged()
	}
}

// dispatchGuarded is dispatch for one event, with a panic turned into an
// answer: whatever one person types, the bot goes on serving everyone, and
// the event counts as handled, so that a platform's stream position moves
// past it instead of replaying it at every restart. b.mu is held.
func (b *Bot) dispatchGuarded(ctx context.Context, in Incoming) {
	defer func() {
		v := recover()
		if v == nil {
			return
		}
		ref := fmt.Sprintf("%x", b.clock.Now().UnixNano()&0xffffff)
		b.log.Error("command hit an internal error", "ref", ref, "event", in.ID, "channel", in.Channel, "user", in.User.ID,
			"text", b.opts.Redact(in.Text), "panic", b.opts.Redact(fmt.Sprint(v)), "stack", string(debug.Stack()))
		b.audit(ctx, in.User, "internal error", "", 0, 0, b.opts.Redact(commands.Cut(commands.Normalize(in.Text), auditTextMax)))
		b.reply(ctx, in, fmt.Sprintf("That command hit an internal error and was stopped (ref %s). `%s status` shows what is in effect; the operator's log has the details.", ref, b.opts.Prefix))
	}()
	b.dispatch(ctx, in)
}

// auditTextMax bounds the command text an audit event keeps.
const auditTextMax = 500

// call carries one command through its handler.
type call struct {
	*commands.Call
	in Incoming
}

type ctxKey struct{}

func callFrom(ctx context.Context) *call { return ctx.Value(ctxKey{}).(*call) }

func (b *Bot) parseOptions(direct bool) commands.Options {
	targets := make(map[string][]string, len(b.targets))
	for name, t := range b.targets {
		ps := []string{t.DefaultPipeline}
		for p := range t.Pipelines {
			if p != t.DefaultPipeline {
				ps = append(ps, p)
			}
		}
		sort.Strings(ps[1:])
		targets[name] = ps
	}
	return commands.Options{Prefix: b.opts.Prefix, Direct: direct, Now: b.clock.Now(), Location: b.opts.Location, Targets: targets}
}

// dispatch parses, checks access and runs a command. b.mu is held.
func (b *Bot) dispatch(ctx context.Context, in Incoming) {
	res := commands.Parse(in.Text, b.parseOptions(in.Direct))
	switch res.Outcome {
	case commands.Ignore:
		return
	case commands.Reply:
		b.reply(ctx, in, res.Text)
		return
	}
	c := res.Call
	spec := c.Spec
	if in.User.ID == store.Scheduler.ID && !in.Start.IsZero() {
		c.When = commands.When{Kind: commands.WhenAt, Time: in.Start}
	}
	if spec.RunArg {
		r, err := b.store.Run(ctx, c.Run)
		if errors.Is(err, store.ErrNotFound) {
			b.reply(ctx, in, fmt.Sprintf("There is no run %d. `%s history` lists the runs.", c.Run, b.opts.Prefix))
			return
		}
		if err != nil {
			b.fail(ctx, in, err)
			return
		}
		c.Target = r.Target
	}
	if c.Mutates() && !b.opts.Access.IsControl(in.Channel) && in.User.ID != store.Scheduler.ID {
		b.reply(ctx, in, fmt.Sprintf("`%s` changes state, so it is only accepted in %s.", spec.Name, b.channelList()))
		return
	}
	if spec.Scopes != nil {
		for _, sc := range spec.Scopes(c) {
			if !b.opts.Access.Allowed(in.User, sc) && !b.openRead(in.Channel, sc) {
				b.reply(ctx, in, fmt.Sprintf("You (%s) are not allowed to do that: it needs the scope `%s`. Ask an admin to grant it in the config (access.users or access.groups).", in.User.Display(), sc))
				b.audit(ctx, in.User, "denied", c.Target, c.Run, 0, commands.Cut(c.Text, auditTextMax))
				return
			}
		}
	}
	if c.DryRun {
		if wait := b.dryRuns.take(in.User.ID, b.clock.Now()); wait > 0 {
			b.reply(ctx, in, fmt.Sprintf("A dry run reads production, so each person may ask for %d a minute: try again in %s.", dryRunsPerMinute, fmtDur(wait)))
			return
		}
	}
	if c.ReasonCut {
		b.reply(ctx, in, fmt.Sprintf("Your reason was longer than %d characters: I kept the first %d.", commands.MaxReason, commands.MaxReason))
	}
	cctx := context.WithValue(ctx, ctxKey{}, &call{Call: c, in: in})
	if err := spec.Handler(b, cctx, c); err != nil {
		b.fail(ctx, in, err)
	}
}

// userError is a refusal the user can act on; other errors are internal.
type userError struct{ msg string }

func (e *userError) Error() string { return e.msg }

func refuse(format string, args ...any) error { return &userError{fmt.Sprintf(format, args...)} }

func (b *Bot) fail(ctx context.Context, in Incoming, err error) {
	var ue *userError
	if errors.As(err, &ue) {
		b.reply(ctx, in, ue.msg)
		return
	}
	ref := fmt.Sprintf("%x", b.clock.Now().UnixNano()&0xffffff)
	b.log.Error("command failed", "ref", ref, "user", in.User.ID, "text", b.opts.Redact(in.Text), "err", b.opts.Redact(err.Error()))
	b.reply(ctx, in, fmt.Sprintf("Something went wrong on my side (ref %s); the operator's log has the details.", ref))
}

func (b *Bot) channelList() string {
	var out []string
	for _, c := range b.opts.Access.ControlChannels {
		out = append(out, "#"+c)
	}
	return strings.Join(out, ", ")
}

// reply answers the message in, in its thread if it had one.
func (b *Bot) reply(ctx context.Context, in Incoming, text string) {
	m := Message{Channel: in.Channel, Text: text}
	if in.Thread != "" {
		m.Thread = store.MessageRef{Channel: in.Channel, ID: in.Thread}
	}
	b.send(ctx, m)
}

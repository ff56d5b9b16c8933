package slack

import (
	"context"
	"fmt"
	"strings"

	"github.com/slack-go/slack"

	"github.com/stagebot/stagebot/bot"
)

// holdModalID names the Hold modal, its global shortcut, and the button
// that opens it (whose value is this, not a command).
const holdModalID = "stagebot_hold"

// SetCompleter implements bot.Completer: the Hold modal's targets, hold
// lengths and the channel it acts in come from the bot.
func (a *Adapter) SetCompleter(f func(ctx context.Context, kind, typed string) []bot.Completion) {
	a.mu.Lock()
	a.complete = f
	a.mu.Unlock()
}

func (a *Adapter) choices(ctx context.Context, kind string) []bot.Completion {
	a.mu.Lock()
	complete := a.complete
	a.mu.Unlock()
	if complete == nil {
		return nil
	}
	return complete(ctx, kind, "")
}

// openHoldModal opens the Hold modal for the click or shortcut whose
// trigger this is: a target, a length within the limits, a reason.
func (a *Adapter) openHoldModal(ctx context.Context, trigger string) {
	options := func(kind string) []*slack.OptionBlockObject {
		var out []*slack.OptionBlockObject
		for _, c := range a.choices(ctx, kind) {
			out = append(out, slack.NewOptionBlockObject(c.Value, slack.NewTextBlockObject(slack.PlainTextType, bot.Truncate(c.Label, 75), false, false), nil))
		}
		return out
	}
	targets, lengths := options("target"), options("hold-length")
	if len(targets) == 0 || len(lengths) == 0 {
		a.log.Warn("slack: the Hold modal has no targets or lengths to offer")
		return
	}
	plain := func(s string) *slack.TextBlockObject {
		return slack.NewTextBlockObject(slack.PlainTextType, s, false, false)
	}
	length := slack.NewOptionsSelectBlockElement(slack.OptTypeStatic, plain("how long"), "length", lengths...)
	length.InitialOption = lengths[0]
	view := slack.ModalViewRequest{Type: slack.VTModal, CallbackID: holdModalID, Title: plain("Hold a target"), Submit: plain("Hold"), Close: plain("Cancel"),
		Blocks: slack.Blocks{BlockSet: []slack.Block{
			slack.NewInputBlock("target", plain("Target"), nil, slack.NewOptionsSelectBlockElement(slack.OptTypeStatic, plain("which target"), "target", targets...)),
			slack.NewInputBlock("length", plain("For"), nil, length),
			slack.NewInputBlock("reason", plain("Why"), plain("People see it: what you are testing, so that they know when to ask."), slack.NewPlainTextInputBlockElement(plain("testing the new login"), "reason")),
		}}}
	if _, err := a.api.OpenViewContext(ctx, trigger, view); err != nil {
		a.log.Warn("slack: open the Hold modal", "err", err)
	}
}

// holdSubmitted is the Hold modal sent: the hold it asks for, as the person
// would type it in the control channel, where the answer goes.
func (a *Adapter) holdSubmitted(ctx context.Context, cb slack.InteractionCallback, handle func(context.Context, bot.Incoming)) {
	v := cb.View.State.Values
	target := v["target"]["target"].SelectedOption.Value
	length := v["length"]["length"].SelectedOption.Value
	reason := strings.TrimSpace(v["reason"]["reason"].Value)
	if target == "" || length == "" || reason == "" {
		return
	}
	channel := cb.User.ID
	if cs := a.choices(ctx, "control-channel"); len(cs) > 0 {
		channel = cs[0].Value
	}
	u := a.user(ctx, cb.User.ID, cb.User.Name)
	text := fmt.Sprintf("hold %s %s %q", target, length, reason)
	handle(ctx, bot.Incoming{ID: "view:" + cb.View.ID + ":" + cb.View.Hash, Channel: channel, User: u, Text: text, Direct: true,
		After: func() { go a.publishHome(context.WithoutCancel(ctx), u) }})
}

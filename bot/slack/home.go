package slack

import (
	"context"

	"github.com/slack-go/slack"

	"github.com/stagebot/stagebot/bot"
	"github.com/stagebot/stagebot/store"
)

// SetHome implements bot.HomeHost.
func (a *Adapter) SetHome(f func(ctx context.Context, u store.User) bot.Message) {
	a.mu.Lock()
	a.home = f
	a.mu.Unlock()
}

// publishHome shows a person their App Home: the bot's home view of them,
// in Block Kit. It runs when they open the Home tab and after a click in
// it, so that what they did shows at once.
func (a *Adapter) publishHome(ctx context.Context, u store.User) {
	a.mu.Lock()
	home := a.home
	a.mu.Unlock()
	if home == nil {
		return
	}
	m := home(ctx, u)
	m.Buttons = append(m.Buttons, bot.Button{Label: "Hold a target…", Command: holdModalID})
	a.mu.Lock()
	a.homeChannel = m.Channel
	a.mu.Unlock()
	_, blocks := payload(m)
	_, err := a.api.PublishViewContext(ctx, slack.PublishViewContextRequest{UserID: u.ID,
		View: slack.HomeTabViewRequest{Type: slack.VTHomeTab, Blocks: slack.Blocks{BlockSet: blocks}}})
	if err != nil {
		a.log.Warn("slack: publish the App Home", "user", u.ID, "err", err)
	}
}

// homeClick is a button pressed in the App Home: the command it stands
// for, typed by the person in the control channel (where changes are
// accepted); the answer goes there. The home is shown again after.
func (a *Adapter) homeClick(ctx context.Context, cb slack.InteractionCallback, handle func(context.Context, bot.Incoming)) {
	a.mu.Lock()
	channel := a.homeChannel
	a.mu.Unlock()
	u := a.user(ctx, cb.User.ID, cb.User.Name)
	for _, act := range cb.ActionCallback.BlockActions {
		if act.Value == holdModalID {
			go a.openHoldModal(ctx, cb.TriggerID)
			continue
		}
		if act.Value == "" {
			continue
		}
		in := bot.Incoming{ID: act.ActionTs, Channel: channel, User: u, Text: act.Value, Direct: true,
			After: func() { go a.publishHome(context.WithoutCancel(ctx), u) }}
		if channel == "" {
			in.Channel = cb.User.ID // the app's messages tab with the person
		}
		handle(ctx, in)
	}
}

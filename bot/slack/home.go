package slack

import (
	"context"
	"time"

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

// homeEvery is how often homes are shown again at most while things change
// (a run's progress changes many times a second).
const homeEvery = 2 * time.Second

// HomeChanged implements bot.HomeHost: every home opened since the start
// is shown again, at most every two seconds.
func (a *Adapter) HomeChanged() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.homePending || len(a.homeUsers) == 0 || a.runCtx == nil {
		return
	}
	a.homePending = true
	ctx := a.runCtx
	time.AfterFunc(homeEvery, func() {
		a.mu.Lock()
		a.homePending = false
		users := make([]store.User, 0, len(a.homeUsers))
		for _, u := range a.homeUsers {
			users = append(users, u)
		}
		a.mu.Unlock()
		if ctx.Err() != nil {
			return
		}
		for _, u := range users {
			a.publishHome(ctx, u)
		}
	})
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
	a.mu.Lock()
	if a.homeUsers == nil {
		a.homeUsers = map[string]store.User{}
	}
	a.homeUsers[u.ID] = u
	a.mu.Unlock()
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

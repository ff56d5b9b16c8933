package slack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/slackevents"
	"github.com/slack-go/slack/socketmode"

	"github.com/stagebot/stagebot/bot"
	"github.com/stagebot/stagebot/store"
)

// DefaultAPIURL is Slack's Web API.
const DefaultAPIURL = "https://slack.com/api/"

// Options configure the adapter.
type Options struct {
	AppToken string // xapp-…: opens the Socket Mode connection
	BotToken string // xoxb-…: posts and edits messages
	// APIURL is the Web API base (default Slack's); set it for
	// Slack-compatible servers and tests.
	APIURL string
	// PingInterval is how long without a ping from Slack before the socket
	// is taken for dead and reopened (default slack-go's 30s).
	PingInterval time.Duration
	Logger       *slog.Logger
}

// Adapter is stagebot in Slack.
type Adapter struct {
	opts Options
	api  *slack.Client
	out  *bot.Outbox
	log  *slog.Logger

	mu        sync.Mutex
	botUserID string
	botID     string
	names     map[string]store.User
	seen      bot.Seen // event IDs, against redelivery
	connected atomic.Bool
	// home is the bot's home view of a person; homeChannel where its
	// buttons act.
	home        func(ctx context.Context, u store.User) bot.Message
	homeChannel string
	homeUsers   map[string]store.User // who opened their home since the start
	homePending bool
	runCtx      context.Context
	complete    func(ctx context.Context, kind, typed string) []bot.Completion
}

var (
	_ bot.Adapter     = (*Adapter)(nil)
	_ bot.Editor      = (*Adapter)(nil)
	_ bot.OutboxOwner = (*Adapter)(nil)
)

// TokenProblems says what is wrong with each token ("" when it looks
// right): Socket Mode needs an app-level token and posting a bot token,
// and the two are easily swapped.
func TokenProblems(appToken, botToken string) (app, bot string) {
	if !strings.HasPrefix(appToken, "xapp-") {
		app = "give the app-level token (xapp-…, scope connections:write)"
	}
	if !strings.HasPrefix(botToken, "xoxb-") {
		bot = "give the bot token (xoxb-…)"
	}
	return app, bot
}

// New builds the adapter; nothing connects until Run. Messages sent before
// Run wait in the outbox.
func New(o Options) (*Adapter, error) {
	if app, bot := TokenProblems(o.AppToken, o.BotToken); app != "" || bot != "" {
		return nil, errors.New("slack: " + strings.Trim(app+"; "+bot, "; "))
	}
	if o.APIURL == "" {
		o.APIURL = DefaultAPIURL
	}
	if !strings.HasSuffix(o.APIURL, "/") {
		o.APIURL += "/"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	sdkLog := slog.NewLogLogger(o.Logger.Handler(), slog.LevelDebug)
	a := &Adapter{
		opts: o, log: o.Logger,
		api:   slack.New(o.BotToken, slack.OptionAppLevelToken(o.AppToken), slack.OptionAPIURL(o.APIURL), slack.OptionLog(sdkLog)),
		names: map[string]store.User{},
	}
	a.out = bot.NewOutbox(sender{a}, o.Logger)
	return a, nil
}

// Close stops delivering messages.
func (a *Adapter) Close() { a.out.Stop() }

// Outbox gives access to the queue of undelivered messages.
func (a *Adapter) Outbox() *bot.Outbox { return a.out }

// Run connects and hands every command to handle until ctx ends. It fails
// at once when Slack refuses the tokens.
func (a *Adapter) Run(ctx context.Context, handle func(context.Context, bot.Incoming)) error {
	a.mu.Lock()
	a.runCtx = ctx
	a.mu.Unlock()
	a.out.Start(ctx)
	defer a.out.Stop()
	var auth *slack.AuthTestResponse
	for attempt := 0; ; attempt++ {
		var err error
		auth, err = a.api.AuthTestContext(ctx)
		if err == nil {
			break
		}
		var se slack.SlackErrorResponse
		if errors.As(err, &se) {
			return fmt.Errorf("slack refused the bot token (%s): check chat.slack.bot_token", se.Err)
		}
		if ctx.Err() != nil {
			return nil
		}
		a.log.Warn("slack unreachable; retrying", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(min(time.Duration(attempt+1)*time.Second, 30*time.Second)):
		}
	}
	a.mu.Lock()
	a.botUserID, a.botID = auth.UserID, auth.BotID
	a.mu.Unlock()
	opts := []socketmode.Option{socketmode.OptionLog(slog.NewLogLogger(a.log.Handler(), slog.LevelDebug))}
	if a.opts.PingInterval > 0 {
		opts = append(opts, socketmode.OptionPingInterval(a.opts.PingInterval))
	}
	sm := socketmode.New(a.api, opts...)
	errc := make(chan error, 1)
	go func() { errc <- sm.RunContext(ctx) }()
	// Events are acknowledged as they arrive and handled in order beside:
	// Slack wants the ack within 3 seconds, whatever the bot is doing.
	inbox := bot.NewInbox(handle)
	go inbox.Run(ctx)
	handle = func(_ context.Context, in bot.Incoming) { inbox.Put(in) }
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("slack socket mode: %w (check chat.slack.app_token)", err)
		case ev, ok := <-sm.Events:
			if !ok {
				return nil
			}
			a.event(ctx, sm, ev, handle)
		}
	}
}

func (a *Adapter) event(ctx context.Context, sm *socketmode.Client, ev socketmode.Event, handle func(context.Context, bot.Incoming)) {
	switch ev.Type {
	case socketmode.EventTypeConnected:
		a.connected.Store(true)
		a.log.Info("slack connected")
	case socketmode.EventTypeConnecting:
		a.connected.Store(false)
		a.log.Info("slack connecting")
	case socketmode.EventTypeConnectionError:
		a.connected.Store(false)
		a.log.Warn("slack connection error", "err", ev.Data)
	case socketmode.EventTypeDisconnect:
		a.connected.Store(false)
	case socketmode.EventTypeEventsAPI:
		sm.Ack(*ev.Request)
		if !a.firstTime("envelope:" + ev.Request.EnvelopeID) {
			return
		}
		cb, ok := ev.Data.(slackevents.EventsAPIEvent)
		if !ok {
			return
		}
		if e, ok := cb.InnerEvent.Data.(*slackevents.AppHomeOpenedEvent); ok && e.Tab == "home" {
			go a.publishHome(ctx, a.user(ctx, e.User, ""))
			return
		}
		if in, ok := a.fromEvent(ctx, cb); ok {
			handle(ctx, in)
		}
	case socketmode.EventTypeInteractive:
		a.interactive(ctx, sm, ev, handle)
	case socketmode.EventTypeSlashCommand:
		cmd, ok := ev.Data.(slack.SlashCommand)
		if !ok {
			sm.Ack(*ev.Request)
			return
		}
		// Slack wants the ack within 3 seconds; the answer follows in the
		// channel.
		sm.Ack(*ev.Request, map[string]any{"response_type": "ephemeral", "text": "On it: " + cmd.Command + " " + cmd.Text})
		if !a.firstTime("envelope:"+ev.Request.EnvelopeID) || cmd.TriggerID != "" && !a.firstTime("trigger:"+cmd.TriggerID) {
			return
		}
		handle(ctx, bot.Incoming{Channel: cmd.ChannelID, User: a.user(ctx, cmd.UserID, cmd.UserName), Text: cmd.Text, Direct: true})
	}
}

// interactive handles a click, a shortcut or a modal sent.
func (a *Adapter) interactive(ctx context.Context, sm *socketmode.Client, ev socketmode.Event, handle func(context.Context, bot.Incoming)) {
	sm.Ack(*ev.Request)
	cb, ok := ev.Data.(slack.InteractionCallback)
	if !ok || !a.firstTime("envelope:"+ev.Request.EnvelopeID) {
		return
	}
	switch {
	case cb.Type == slack.InteractionTypeShortcut && cb.CallbackID == holdModalID:
		go a.openHoldModal(ctx, cb.TriggerID)
		return
	case cb.Type == slack.InteractionTypeViewSubmission && cb.View.CallbackID == holdModalID:
		a.holdSubmitted(ctx, cb, handle)
		return
	case cb.Type != slack.InteractionTypeBlockActions:
		return
	}
	// A click Slack redelivers (no ack seen in time) comes in a new
	// envelope with the same trigger.
	if cb.TriggerID != "" && !a.firstTime("trigger:"+cb.TriggerID) {
		return
	}
	if cb.View.Type == slack.VTHomeTab {
		a.homeClick(ctx, cb, handle)
		return
	}
	for _, act := range cb.ActionCallback.BlockActions {
		if act.Value == "" {
			continue
		}
		// A click is the command its button stands for, typed by the
		// clicking user; the answer goes to the clicked message's thread.
		thread := cb.Message.ThreadTimestamp
		if thread == "" {
			thread = cb.Container.MessageTs
		}
		handle(ctx, bot.Incoming{ID: act.ActionTs, Channel: cb.Channel.ID, Thread: thread,
			User: a.user(ctx, cb.User.ID, cb.User.Name), Text: act.Value, Direct: true})
	}
}

var mentionRe = regexp.MustCompile(`<@([A-Z0-9]+)(\|[^>]*)?>`)

// fromEvent turns a message or mention into an Incoming; ok is false for
// what the bot must ignore (its own messages, other bots, edits, repeats).
func (a *Adapter) fromEvent(ctx context.Context, cb slackevents.EventsAPIEvent) (bot.Incoming, bool) {
	if cb.Type != slackevents.CallbackEvent {
		return bot.Incoming{}, false
	}
	if outer, ok := cb.Data.(*slackevents.EventsAPICallbackEvent); ok && outer.EventID != "" {
		if !a.firstTime(outer.EventID) {
			return bot.Incoming{}, false
		}
	}
	a.mu.Lock()
	me, myBot := a.botUserID, a.botID
	a.mu.Unlock()
	switch e := cb.InnerEvent.Data.(type) {
	case *slackevents.MessageEvent:
		if e.BotID != "" || e.User == "" || e.User == me || (e.BotID == myBot && myBot != "") {
			return bot.Incoming{}, false
		}
		if e.SubType != "" && e.SubType != "thread_broadcast" && e.SubType != "file_share" {
			return bot.Incoming{}, false
		}
		direct := e.ChannelType == "im"
		text := e.Text
		if strings.Contains(text, "<@"+me+">") {
			if !direct {
				return bot.Incoming{}, false // the app_mention event carries it
			}
			text = strings.TrimSpace(strings.ReplaceAll(text, "<@"+me+">", ""))
		}
		return bot.Incoming{ID: e.TimeStamp, Channel: e.Channel, Thread: e.ThreadTimeStamp,
			User: a.user(ctx, e.User, ""), Text: text, Direct: direct}, true
	case *slackevents.AppMentionEvent:
		if e.BotID != "" || e.User == "" || e.User == me {
			return bot.Incoming{}, false
		}
		text := strings.TrimSpace(mentionRe.ReplaceAllStringFunc(e.Text, func(m string) string {
			if strings.HasPrefix(m, "<@"+me) {
				return ""
			}
			return m
		}))
		return bot.Incoming{ID: e.TimeStamp, Channel: e.Channel, Thread: e.ThreadTimeStamp,
			User: a.user(ctx, e.User, ""), Text: text, Direct: true}, true
	}
	return bot.Incoming{}, false
}

// Connected implements bot.Connector: the Socket Mode connection is up.
func (a *Adapter) Connected() bool { return a.connected.Load() }

// firstTime reports whether an event ID is new (platforms deliver again
// what they think was not received).
func (a *Adapter) firstTime(id string) bool { return a.seen.First(id) }

// user names a user as Slack shows them: the display name they chose,
// with their unique username beside it when the two differ (anyone may
// choose any display name). The ID stays the identity; username is what
// the event said, for when Slack cannot be asked.
func (a *Adapter) user(ctx context.Context, id, username string) store.User {
	a.mu.Lock()
	u, ok := a.names[id]
	a.mu.Unlock()
	if ok {
		return u
	}
	info, err := a.api.GetUserInfoContext(ctx, id)
	if err != nil {
		if username == "" {
			username = id
		}
		return store.User{ID: id, Name: username}
	}
	u = store.User{ID: id, Name: info.Name}
	if d := info.Profile.DisplayName; d != "" && d != info.Name {
		u.Name, u.Handle = d, "@"+info.Name
	}
	a.mu.Lock()
	a.names[id] = u
	a.mu.Unlock()
	return u
}

// Send implements bot.Adapter.
func (a *Adapter) Send(ctx context.Context, m bot.Message) (store.MessageRef, error) {
	return a.out.Send(ctx, m)
}

// Edit implements bot.Editor.
func (a *Adapter) Edit(ctx context.Context, ref store.MessageRef, m bot.Message) error {
	return a.out.Edit(ctx, ref, m)
}

// sender talks to the Web API for the outbox.
type sender struct{ a *Adapter }

func (s sender) Post(ctx context.Context, m bot.Message) (store.MessageRef, error) {
	opts := render(m)
	if !m.Thread.IsZero() {
		opts = append(opts, slack.MsgOptionTS(m.Thread.ID))
	}
	ch, ts, err := s.a.api.PostMessageContext(ctx, m.Channel, opts...)
	if err != nil {
		return store.MessageRef{}, classify(err)
	}
	return store.MessageRef{Channel: ch, ID: ts}, nil
}

func (s sender) Update(ctx context.Context, ref store.MessageRef, m bot.Message) error {
	_, _, _, err := s.a.api.UpdateMessageContext(ctx, ref.Channel, ref.ID, render(m)...)
	return classify(err)
}

// classify tells the outbox which errors to wait out.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var rl *slack.RateLimitedError
	if errors.As(err, &rl) {
		return &bot.RetryAfter{Wait: rl.RetryAfter}
	}
	var se slack.SlackErrorResponse
	if errors.As(err, &se) {
		switch se.Err {
		case "ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout":
			return err
		}
		return bot.Permanent(err)
	}
	return err // the network, HTTP 5xx and the like: try again
}

// Limits Slack puts on a message.
const (
	maxSectionText = 2900
	maxFields      = 10
)

// escape makes text inert: &, < and > are what Slack reads as mentions
// (<!channel>, <@U…>) and links (<url|label>), so once escaped, text
// people typed or a database held shows as typed and notifies nobody. The
// bot's own messages use none of that syntax; its mentions are added after.
var escape = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace

// fit escapes s and cuts it so that the escaped text has at most n
// characters, never in the middle of an entity.
func fit(s string, n int) string {
	for cut := n; ; cut = cut * 9 / 10 {
		e := escape(bot.Truncate(s, cut))
		if len([]rune(e)) <= n || cut < 10 {
			return e
		}
	}
}

// render turns a platform-neutral message into Block Kit.
func render(m bot.Message) []slack.MsgOption {
	text, blocks := payload(m)
	return []slack.MsgOption{slack.MsgOptionText(text, false), slack.MsgOptionBlocks(blocks...)}
}

// payload is a message's fallback text (notifications, old clients) and
// its blocks.
func payload(m bot.Message) (string, []slack.Block) {
	var at []string
	for _, u := range m.Mentions {
		at = append(at, "<@"+u.ID+">")
	}
	mentions := ""
	if len(at) > 0 {
		mentions = strings.Join(at, " ") + " "
	}
	text := mentions + escape(m.Text)
	body := mentions + fit(m.Text, maxSectionText-len([]rune(mentions)))
	blocks := []slack.Block{slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType, body, false, false), nil, nil)}
	if len(m.Fields) > 0 {
		var fields []*slack.TextBlockObject
		for i, f := range m.Fields {
			if i == maxFields {
				break
			}
			fields = append(fields, slack.NewTextBlockObject(slack.MarkdownType, "*"+escape(f.Label)+"*\n"+fit(f.Value, 1900), false, false))
		}
		blocks = append(blocks, slack.NewSectionBlock(nil, fields, nil))
	}
	if len(m.Buttons) > 0 {
		var els []slack.BlockElement
		for i, b := range m.Buttons {
			btn := slack.NewButtonBlockElement(fmt.Sprintf("stagebot_%d", i), b.Command, slack.NewTextBlockObject(slack.PlainTextType, b.Label, false, false))
			if b.Danger {
				btn.Style = slack.StyleDanger
			}
			els = append(els, btn)
		}
		blocks = append(blocks, slack.NewActionBlock("stagebot", els...))
	}
	return text, blocks
}

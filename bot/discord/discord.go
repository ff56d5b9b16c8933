package discord

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bwmarrin/discordgo"
	"github.com/gorilla/websocket"

	"github.com/stagebot/stagebot/bot"
	"github.com/stagebot/stagebot/store"
)

// Options configure the adapter.
type Options struct {
	// Token is the bot token ("Bot " is added when missing).
	Token string
	// Channels are the channel IDs the bot listens in (direct messages
	// always work). Empty means every channel it can see.
	Channels []string
	// APIURL replaces https://discord.com for every REST call (tests and
	// Discord-compatible servers); the gateway URL comes from its answer.
	APIURL string
	// ReadyTimeout bounds the wait for the gateway's READY (default 30s).
	ReadyTimeout time.Duration
	// Prefix is the bot's command prefix, which /stage's commands are
	// given with (default !stage).
	Prefix string
	Logger *slog.Logger
}

// Adapter is stagebot in Discord.
type Adapter struct {
	opts Options
	s    *discordgo.Session
	out  *bot.Outbox
	log  *slog.Logger

	mu        sync.Mutex
	buttons   map[string]string // custom_id → command, for commands too long for an ID
	seen      bot.Seen          // event IDs, against replays
	connected atomic.Bool
	conns     []net.Conn // connections dialled during Open, closed to unblock it
	complete  func(ctx context.Context, kind, typed string) []bot.Completion
	// registered are the guilds /stage was registered in by this process.
	registered map[string]bool
}

var (
	_ bot.Adapter     = (*Adapter)(nil)
	_ bot.Editor      = (*Adapter)(nil)
	_ bot.OutboxOwner = (*Adapter)(nil)
)

// Intents asked for: guild and direct messages, and their content (a
// privileged intent to enable in the Developer Portal).
const Intents = discordgo.IntentsGuildMessages | discordgo.IntentsDirectMessages | discordgo.IntentMessageContent

// New builds the adapter; nothing connects until Run.
func New(o Options) (*Adapter, error) {
	if strings.TrimSpace(strings.TrimPrefix(o.Token, "Bot ")) == "" {
		return nil, errors.New("discord: no bot token: set chat.discord.token")
	}
	if !strings.HasPrefix(o.Token, "Bot ") {
		o.Token = "Bot " + o.Token
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s, err := discordgo.New(o.Token)
	if err != nil {
		return nil, fmt.Errorf("discord: %w", err)
	}
	if o.APIURL != "" {
		base, err := url.Parse(o.APIURL)
		if err != nil || base.Host == "" {
			return nil, fmt.Errorf("discord: api url %q is not a URL", o.APIURL)
		}
		// Per-session redirection: discordgo's endpoint variables are
		// package globals and stay untouched.
		s.Client = &http.Client{Timeout: 20 * time.Second, Transport: rewrite{base: base}}
	}
	a := &Adapter{opts: o, s: s, log: o.Logger, buttons: map[string]string{}}
	// discordgo's Open holds the session lock while it waits for READY,
	// with no deadline, so Close would wait forever too. The adapter keeps
	// the gateway's TCP connections to itself and closes them instead.
	d := *websocket.DefaultDialer
	d.NetDialContext = a.dial
	s.Dialer = &d
	s.Identify.Intents = Intents
	s.SyncEvents = true // one user's commands are handled in the order typed
	s.LogLevel = discordgo.LogError
	a.out = bot.NewOutbox(sender{a}, o.Logger)
	return a, nil
}

func (a *Adapter) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err == nil {
		a.mu.Lock()
		a.conns = append(a.conns, c)
		a.mu.Unlock()
	}
	return c, err
}

// dropGateway closes the gateway connections, which makes a pending Open
// fail and give the session lock back.
func (a *Adapter) dropGateway() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, c := range a.conns {
		c.Close()
	}
	a.conns = nil
}

type rewrite struct{ base *url.URL }

func (r rewrite) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.URL.Scheme, req.URL.Host, req.Host = r.base.Scheme, r.base.Host, r.base.Host
	return http.DefaultTransport.RoundTrip(req)
}

// Connected implements bot.Connector: the gateway session is up.
func (a *Adapter) Connected() bool { return a.connected.Load() }

// firstTime reports whether an event ID is new (platforms deliver again
// what they think was not received).
func (a *Adapter) firstTime(id string) bool { return a.seen.First(id) }

// Close stops delivering messages.
func (a *Adapter) Close() { a.out.Stop() }

// Outbox gives access to the queue of undelivered messages.
func (a *Adapter) Outbox() *bot.Outbox { return a.out }

// Run opens the gateway and hands every command to handle until ctx ends.
func (a *Adapter) Run(ctx context.Context, handle func(context.Context, bot.Incoming)) error {
	a.out.Start(ctx)
	defer a.out.Stop()
	// Events are handled in order beside the gateway's loop, which only
	// answers clicks (Discord wants that within 3 seconds) and queues.
	inbox := bot.NewInbox(handle)
	go inbox.Run(ctx)
	handle = func(_ context.Context, in bot.Incoming) {
		if a.firstTime(in.ID) {
			inbox.Put(in)
		}
	}
	removeMsg := a.s.AddHandler(func(s *discordgo.Session, m *discordgo.MessageCreate) {
		if in, ok := a.fromMessage(m); ok {
			handle(ctx, in)
		}
	})
	defer removeMsg()
	defer a.s.AddHandler(func(*discordgo.Session, *discordgo.Connect) { a.connected.Store(true) })()
	defer a.s.AddHandler(func(*discordgo.Session, *discordgo.Disconnect) { a.connected.Store(false) })()
	defer a.s.AddHandler(func(_ *discordgo.Session, r *discordgo.Ready) {
		a.connected.Store(true)
		go a.register(ctx, r)
	})()
	removeInt := a.s.AddHandler(func(s *discordgo.Session, i *discordgo.InteractionCreate) {
		if in, ok := a.fromInteraction(ctx, i); ok {
			handle(ctx, in)
		}
	})
	defer removeInt()
	err := a.open(ctx)
	if errors.Is(err, errIntentRefused) {
		// Without the message-content intent the bot still hears /stage,
		// mentions and direct messages.
		a.log.Warn(`discord: the message-content intent is not granted, so "!stage …" typed in channels is not seen: use /stage, mention the bot, or enable "Message Content Intent" under Bot → Privileged Gateway Intents in the Developer Portal`)
		a.s.Identify.Intents = Intents &^ discordgo.IntentMessageContent
		err = a.open(ctx)
	}
	if err != nil || ctx.Err() != nil {
		return err
	}
	a.log.Info("discord connected", "user", a.s.State.User.ID)
	<-ctx.Done()
	return a.s.Close()
}

// open opens the gateway and waits for READY, within ReadyTimeout.
func (a *Adapter) open(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- a.s.Open() }()
	select {
	case err := <-errc:
		if err != nil {
			return openError(err)
		}
		a.mu.Lock()
		a.conns = nil // connected: later reconnects are discordgo's business
		a.mu.Unlock()
		return nil
	case <-time.After(a.opts.ReadyTimeout):
		a.dropGateway()
		<-errc
		a.s.Close()
		return fmt.Errorf("discord: the gateway did not answer READY within %s: check chat.discord.token and that Discord is reachable", a.opts.ReadyTimeout)
	case <-ctx.Done():
		a.dropGateway()
		<-errc
		a.s.Close()
		return nil
	}
}

// errIntentRefused: Discord closed the gateway with 4014, a privileged
// intent (message content) not enabled for the bot.
var errIntentRefused = errors.New(`discord refused the message-content intent (close 4014): enable "Message Content Intent" under Bot → Privileged Gateway Intents in the Developer Portal`)

func openError(err error) error {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		switch ce.Code {
		case 4014:
			return errIntentRefused
		case 4004:
			return errors.New("discord refused the token (close 4004): check chat.discord.token")
		}
	}
	var re *discordgo.RESTError
	if errors.As(err, &re) && re.Response != nil && re.Response.StatusCode == http.StatusUnauthorized {
		return errors.New("discord refused the token (401): check chat.discord.token")
	}
	return fmt.Errorf("discord: open the gateway: %w", err)
}

func (a *Adapter) listens(channel, guild string) bool {
	return guild == "" || len(a.opts.Channels) == 0 || slices.Contains(a.opts.Channels, channel)
}

// user names a Discord user by the display name they chose, with their
// unique username beside it when the two differ (anyone may choose any
// display name).
func user(u *discordgo.User) store.User {
	if u.GlobalName == "" || u.GlobalName == u.Username {
		return store.User{ID: u.ID, Name: u.Username}
	}
	return store.User{ID: u.ID, Name: u.GlobalName, Handle: "@" + u.Username}
}

func (a *Adapter) fromMessage(m *discordgo.MessageCreate) (bot.Incoming, bool) {
	if m.Author == nil || m.Author.Bot || (a.s.State.User != nil && m.Author.ID == a.s.State.User.ID) {
		return bot.Incoming{}, false
	}
	if !a.listens(m.ChannelID, m.GuildID) {
		return bot.Incoming{}, false
	}
	text, direct := m.Content, m.GuildID == ""
	if me := a.s.State.User; me != nil {
		for _, p := range []string{"<@" + me.ID + ">", "<@!" + me.ID + ">"} {
			if strings.HasPrefix(strings.TrimSpace(text), p) {
				text, direct = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(text), p)), true
			}
		}
	}
	in := bot.Incoming{ID: m.ID, Channel: m.ChannelID, User: user(m.Author), Text: text, Direct: direct}
	if m.MessageReference != nil {
		in.Thread = m.MessageReference.MessageID
	}
	return in, true
}

// fromInteraction answers a button click at once (Discord wants an answer
// within 3 seconds) and turns it into the command the button stands for.
func (a *Adapter) fromInteraction(ctx context.Context, i *discordgo.InteractionCreate) (bot.Incoming, bool) {
	switch i.Type {
	case discordgo.InteractionApplicationCommand:
		return a.fromSlash(ctx, i)
	case discordgo.InteractionApplicationCommandAutocomplete:
		go a.autocomplete(ctx, i)
		return bot.Incoming{}, false
	case discordgo.InteractionMessageComponent:
	default:
		return bot.Incoming{}, false
	}
	// Answered beside the event loop: a slow answer holds up no other
	// event. A click delivered again (a resumed session replays events) is
	// answered again but executed once.
	go func() {
		err := a.s.InteractionRespond(i.Interaction, &discordgo.InteractionResponse{Type: discordgo.InteractionResponseDeferredMessageUpdate}, discordgo.WithContext(ctx))
		if err != nil {
			a.log.Warn("discord: answer a click", "err", err)
		}
	}()
	var u *discordgo.User
	switch {
	case i.Member != nil && i.Member.User != nil:
		u = i.Member.User
	case i.User != nil:
		u = i.User
	default:
		return bot.Incoming{}, false
	}
	id := i.MessageComponentData().CustomID
	cmd := id
	if strings.HasPrefix(id, hashedPrefix) {
		a.mu.Lock()
		c, ok := a.buttons[id]
		a.mu.Unlock()
		if !ok {
			a.out.Send(ctx, bot.Message{Channel: i.ChannelID, Text: "That button is from before stagebot restarted; type its command instead."})
			return bot.Incoming{}, false
		}
		cmd = c
	}
	in := bot.Incoming{ID: i.ID, Channel: i.ChannelID, User: user(u), Text: cmd, Direct: true}
	if i.Message != nil {
		in.Thread = i.Message.ID
	}
	return in, true
}

const hashedPrefix = "stagebot#"

// customID is the button's command when it fits Discord's 100 characters,
// else a hash remembered in memory.
func (a *Adapter) customID(cmd string) string {
	if len(cmd) <= 100 && !strings.HasPrefix(cmd, hashedPrefix) {
		return cmd
	}
	sum := sha1.Sum([]byte(cmd))
	id := hashedPrefix + hex.EncodeToString(sum[:12])
	a.mu.Lock()
	a.buttons[id] = cmd
	a.mu.Unlock()
	return id
}

// Send implements bot.Adapter.
func (a *Adapter) Send(ctx context.Context, m bot.Message) (store.MessageRef, error) {
	return a.out.Send(ctx, m)
}

// Edit implements bot.Editor.
func (a *Adapter) Edit(ctx context.Context, ref store.MessageRef, m bot.Message) error {
	return a.out.Edit(ctx, ref, m)
}

const maxContent = 2000

// inert escapes the brackets of masked links ([label](url), which Discord
// renders in a bot's messages) outside code spans, so that text people
// typed or a database held cannot show a link whose label lies. Mentions
// in it notify nobody: allowed_mentions names only the bot's own.
func inert(s string) string {
	parts := strings.Split(s, "`")
	for i := 0; i < len(parts); i += 2 { // outside code spans
		parts[i] = strings.NewReplacer("[", `\[`, "]", `\]`).Replace(parts[i])
	}
	return strings.Join(parts, "`")
}

// render turns a platform-neutral message into content and components.
func (a *Adapter) render(m bot.Message) (string, []discordgo.MessageComponent, *discordgo.MessageAllowedMentions) {
	var sb strings.Builder
	allowed := &discordgo.MessageAllowedMentions{Parse: []discordgo.AllowedMentionType{}}
	for _, u := range m.Mentions {
		sb.WriteString("<@" + u.ID + "> ")
		allowed.Users = append(allowed.Users, u.ID)
	}
	sb.WriteString(inert(m.Text))
	for _, f := range m.Fields {
		fmt.Fprintf(&sb, "\n**%s:** %s", inert(f.Label), inert(f.Value))
	}
	content := bot.Truncate(sb.String(), maxContent)
	var rows []discordgo.MessageComponent
	var row discordgo.ActionsRow
	for _, b := range m.Buttons {
		style := discordgo.SecondaryButton
		if b.Danger {
			style = discordgo.DangerButton
		}
		row.Components = append(row.Components, discordgo.Button{Label: b.Label, Style: style, CustomID: a.customID(b.Command)})
		if len(row.Components) == 5 {
			rows = append(rows, row)
			row = discordgo.ActionsRow{}
		}
	}
	if len(row.Components) > 0 {
		rows = append(rows, row)
	}
	return content, rows, allowed
}

// sender talks to Discord's REST API for the outbox.
type sender struct{ a *Adapter }

func (s sender) Post(ctx context.Context, m bot.Message) (store.MessageRef, error) {
	content, comps, allowed := s.a.render(m)
	send := &discordgo.MessageSend{Content: content, Components: comps, AllowedMentions: allowed}
	if !m.Thread.IsZero() {
		send.Reference = &discordgo.MessageReference{MessageID: m.Thread.ID, ChannelID: m.Channel}
	}
	msg, err := s.a.s.ChannelMessageSendComplex(m.Channel, send, discordgo.WithContext(ctx))
	if err != nil {
		return store.MessageRef{}, classify(err)
	}
	return store.MessageRef{Channel: msg.ChannelID, ID: msg.ID}, nil
}

func (s sender) Update(ctx context.Context, ref store.MessageRef, m bot.Message) error {
	content, comps, allowed := s.a.render(m)
	edit := &discordgo.MessageEdit{ID: ref.ID, Channel: ref.Channel, Content: &content, Components: &comps, AllowedMentions: allowed}
	_, err := s.a.s.ChannelMessageEditComplex(edit, discordgo.WithContext(ctx))
	return classify(err)
}

// classify: discordgo already waited out 429s; a 4xx will not get better.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var re *discordgo.RESTError
	if errors.As(err, &re) && re.Response != nil {
		if c := re.Response.StatusCode; c >= 400 && c < 500 && c != http.StatusTooManyRequests {
			return bot.Permanent(err)
		}
	}
	return err
}

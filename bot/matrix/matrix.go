package matrix

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/stagebot/stagebot/bot"
	"github.com/stagebot/stagebot/store"
)

// Options configure the adapter.
type Options struct {
	// Homeserver is the client-server API's base URL
	// (https://matrix.example.org).
	Homeserver string
	// Token is the bot account's access token.
	Token string
	// Rooms are the room IDs (!abc:example.org) or aliases
	// (#infra:example.org) the bot joins and listens in.
	Rooms []string
	// AcceptDirect says whether an invitation to a direct chat from this
	// Matrix user is accepted. Nil accepts none.
	AcceptDirect func(user string) bool
	// SyncTimeout is how long one /sync long-polls (default 30s).
	SyncTimeout time.Duration
	Logger      *slog.Logger
}

// Adapter is stagebot in Matrix.
type Adapter struct {
	opts Options
	cli  *mautrix.Client
	out  *bot.Outbox
	log  *slog.Logger

	st        atomic.Pointer[bot.Journal]
	connected atomic.Bool
	seen      bot.Seen

	mu        sync.Mutex
	me        id.UserID
	rooms     map[id.RoomID]bool // configured rooms, resolved
	direct    map[id.RoomID]bool // direct chats the bot accepted
	joined    map[id.RoomID]bool
	encrypted map[id.RoomID]bool
	actions   map[id.EventID]map[string]string // card → reaction key → command
	latest    map[id.EventID]id.EventID        // thread root → latest event in it
	warned    map[id.RoomID]bool
	journal   *handled             // a.mu
	names     map[id.UserID]string // display names seen in member events
	started   time.Time
}

var (
	_ bot.Adapter      = (*Adapter)(nil)
	_ bot.Editor       = (*Adapter)(nil)
	_ bot.StreamKeeper = (*Adapter)(nil)
	_ bot.OutboxOwner  = (*Adapter)(nil)
)

// New builds the adapter; nothing connects until Run.
func New(o Options) (*Adapter, error) {
	if strings.TrimSpace(o.Token) == "" {
		return nil, errors.New("matrix: no access token: set chat.matrix.access_token")
	}
	if o.SyncTimeout == 0 {
		o.SyncTimeout = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	cli, err := mautrix.NewClient(o.Homeserver, "", o.Token)
	if err != nil {
		return nil, fmt.Errorf("matrix: homeserver %q: %w", o.Homeserver, err)
	}
	// The outbox retries, with the transaction ID of the outbox entry and
	// the wait the homeserver asks for; mautrix would retry with neither.
	cli.DefaultHTTPRetries = 0
	cli.Client = &http.Client{Timeout: o.SyncTimeout + 30*time.Second}
	a := &Adapter{opts: o, cli: cli, log: o.Logger, rooms: map[id.RoomID]bool{}, direct: map[id.RoomID]bool{},
		joined: map[id.RoomID]bool{}, encrypted: map[id.RoomID]bool{}, actions: map[id.EventID]map[string]string{},
		latest: map[id.EventID]id.EventID{}, warned: map[id.RoomID]bool{}, names: map[id.UserID]string{}}
	a.out = bot.NewOutbox(sender{a}, o.Logger)
	return a, nil
}

// UseJournal implements bot.StreamKeeper: the bot's store, where the
// adapter keeps its /sync position and the events it handled.
// Its outbox is kept there too: sends are idempotent by transaction ID,
// so what a killed process left undelivered is delivered by the next,
// and what it did deliver is not posted twice.
func (a *Adapter) UseJournal(s bot.Journal) {
	a.st.Store(&s)
	if err := a.out.UseJournal(context.Background(), s, "matrix/outbox"); err != nil {
		a.log.Error("matrix: read the undelivered messages", "err", err)
	}
}

// Connected implements bot.Connector: the last /sync was answered.
func (a *Adapter) Connected() bool { return a.connected.Load() }

// Close stops delivering messages.
func (a *Adapter) Close() { a.out.Stop() }

// Outbox gives access to the queue of undelivered messages.
func (a *Adapter) Outbox() *bot.Outbox { return a.out }

// Send implements bot.Adapter.
func (a *Adapter) Send(ctx context.Context, m bot.Message) (store.MessageRef, error) {
	return a.out.Send(ctx, m)
}

// Edit implements bot.Editor.
func (a *Adapter) Edit(ctx context.Context, ref store.MessageRef, m bot.Message) error {
	return a.out.Edit(ctx, ref, m)
}

// ErrToken is returned by Run when the homeserver no longer accepts the
// access token: retrying cannot help.
var ErrToken = errors.New("the homeserver refused the access token (M_UNKNOWN_TOKEN): it was revoked or has expired; log in as the bot again and set chat.matrix.access_token")

func tokenRefused(err error) bool {
	return errors.Is(err, mautrix.MUnknownToken) || errors.Is(err, mautrix.MMissingToken)
}

// retryAfter is the wait a 429 asks for: retry_after_ms in the body (the
// spec's), else the Retry-After header, else a second.
func retryAfter(err error) (time.Duration, bool) {
	var he mautrix.HTTPError
	if !errors.As(err, &he) || he.Response == nil || he.Response.StatusCode != http.StatusTooManyRequests {
		return 0, false
	}
	if he.RespError != nil {
		if ms, ok := he.RespError.ExtraData["retry_after_ms"].(float64); ok && ms > 0 {
			return time.Duration(ms) * time.Millisecond, true
		}
	}
	if s, err := strconv.Atoi(he.Response.Header.Get("Retry-After")); err == nil && s > 0 {
		return time.Duration(s) * time.Second, true
	}
	return time.Second, true
}

func status(err error) int {
	var he mautrix.HTTPError
	if errors.As(err, &he) && he.Response != nil {
		return he.Response.StatusCode
	}
	return 0
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// Run joins the rooms and long-polls /sync, handing every command to
// handle, until ctx ends (nil) or the token is refused (ErrToken).
func (a *Adapter) Run(ctx context.Context, handle func(context.Context, bot.Incoming)) error {
	a.out.Start(ctx)
	defer a.out.Stop()
	a.mu.Lock()
	a.started = time.Now()
	a.mu.Unlock()
	backoff := 250 * time.Millisecond
	// The homeserver may be down when the bot starts: wait for it.
	for {
		err := a.setup(ctx)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		if tokenRefused(err) {
			return ErrToken
		}
		if c := status(err); c >= 400 && c < 500 && c != http.StatusTooManyRequests {
			return err
		}
		a.log.Warn("matrix: homeserver unreachable; will retry", "in", backoff, "err", err)
		sleep(ctx, backoff)
		backoff = min(backoff*2, 30*time.Second)
	}
	since := a.loadSince(ctx)
	a.recall(ctx)
	a.log.Info("matrix connected", "user", a.me, "rooms", len(a.rooms), "resumed", since != "")
	filter := `{"room":{"timeline":{"limit":50},"state":{"lazy_load_members":true}},"presence":{"types":[]},"account_data":{"types":[]}}`
	backoff = 250 * time.Millisecond
	for ctx.Err() == nil {
		resp, err := a.cli.FullSyncRequest(ctx, mautrix.ReqSync{Timeout: int(a.opts.SyncTimeout.Milliseconds()), Since: since, FilterID: filter})
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if tokenRefused(err) {
				a.connected.Store(false)
				return ErrToken
			}
			if wait, ok := retryAfter(err); ok {
				sleep(ctx, wait)
				continue
			}
			a.connected.Store(false)
			a.log.Warn("matrix: sync failed; will retry", "in", backoff, "err", err)
			sleep(ctx, backoff)
			backoff = min(backoff*2, 30*time.Second)
			continue
		}
		backoff = 250 * time.Millisecond
		a.connected.Store(true)
		a.process(ctx, resp, since == "", since, handle)
		// The position moves on only once this batch's commands were
		// handled: a crash before this line replays the batch, never
		// skips it, and what was noted as handled is not run again.
		if err := a.saveSince(ctx, resp.NextBatch); err != nil && ctx.Err() == nil {
			a.log.Error("matrix: keep the sync position", "err", err)
		}
		since = resp.NextBatch
	}
	return nil
}

// process hands a /sync batch's commands to handle, in order.
func (a *Adapter) process(ctx context.Context, resp *mautrix.RespSync, initial bool, since string, handle func(context.Context, bot.Incoming)) {
	for roomID, inv := range resp.Rooms.Invite {
		a.invited(ctx, roomID, inv)
	}
	if initial {
		// The first sync of an account the bot never ran as carries
		// history: commands typed before stagebot ever started are not
		// run. From then on the stored position says what is new.
		return
	}
	type item struct {
		room id.RoomID
		evt  *event.Event
	}
	var items []item
	for _, jr := range resp.Rooms.Join {
		a.learnNames(jr.State.Events)
		a.learnNames(jr.Timeline.Events)
	}
	for roomID, jr := range resp.Rooms.Join {
		evs := jr.Timeline.Events
		if jr.Timeline.Limited && jr.Timeline.PrevBatch != "" {
			evs = append(a.pageBack(ctx, roomID, jr.Timeline.PrevBatch, since), evs...)
		}
		a.mu.Lock()
		known := a.joined[roomID]
		a.joined[roomID] = true
		started := a.started
		me := a.me
		a.mu.Unlock()
		if !known {
			// A room joined since the last sync comes with its history:
			// only what follows the bot's own join is new.
			for i, e := range evs {
				if e.Type == event.StateMember && e.StateKey != nil && id.UserID(*e.StateKey) == me && membership(e) == "join" {
					evs = evs[i+1:]
					break
				}
			}
			evs = slices.DeleteFunc(evs, func(e *event.Event) bool { return time.UnixMilli(e.Timestamp).Before(started) })
		}
		for _, e := range evs {
			items = append(items, item{roomID, e})
		}
	}
	sort.SliceStable(items, func(i, j int) bool { return items[i].evt.Timestamp < items[j].evt.Timestamp })
	for _, it := range items {
		if a.wasHandled(it.evt) {
			continue
		}
		if in, ok := a.incoming(ctx, it.room, it.evt); ok {
			handle(ctx, in)
			a.noteHandled(ctx, it.room, it.evt)
		}
	}
}

// learnNames keeps the display names member events carry, so that the
// bot calls people what their client shows.
func (a *Adapter) learnNames(evs []*event.Event) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, e := range evs {
		if e.Type != event.StateMember || e.StateKey == nil {
			continue
		}
		var c struct {
			Name string `json:"displayname"`
		}
		json.Unmarshal(e.Content.VeryRaw, &c)
		if n := strings.TrimSpace(c.Name); n != "" {
			a.names[id.UserID(*e.StateKey)] = n
		}
	}
}

// pageBack fetches what a limited timeline left out, back to since.
func (a *Adapter) pageBack(ctx context.Context, room id.RoomID, from, since string) []*event.Event {
	var got []*event.Event
	for pages, limited := 0, 0; pages < 20; pages++ {
		resp, err := a.cli.Messages(ctx, room, from, since, mautrix.DirectionBackward, nil, 100)
		if wait, ok := retryAfter(err); ok && limited < 10 {
			limited++
			pages--
			sleep(ctx, wait)
			continue
		}
		if err != nil {
			a.log.Warn("matrix: fetch messages a limited sync left out; some may be missed", "room", room, "err", err)
			break
		}
		// Back to what was handled: the gap ends there, whether or not
		// the server stopped at the "to" token.
		reached := false
		for _, e := range resp.Chunk {
			if a.beforeGap(room, e) {
				reached = true
				break
			}
			got = append(got, e)
		}
		if reached || len(resp.Chunk) == 0 || resp.End == "" || resp.End == from {
			break
		}
		from = resp.End
	}
	slices.Reverse(got)
	return got
}

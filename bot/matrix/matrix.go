package matrix

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
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
	opts   Options
	cli    *mautrix.Client
	out    *bot.Outbox
	cancel context.CancelFunc
	log    *slog.Logger

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
	ctx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	go a.out.Run(ctx)
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
func (a *Adapter) Close() { a.cancel() }

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

// sinceKey is where the /sync position is kept: per account, so that a
// new bot account starts afresh.
func (a *Adapter) sinceKey() string { return "matrix/since/" + string(a.me) }

func (a *Adapter) loadSince(ctx context.Context) string {
	p := a.st.Load()
	if p == nil {
		return ""
	}
	v, err := (*p).Value(ctx, a.sinceKey())
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			a.log.Warn("matrix: read the sync position", "err", err)
		}
		return ""
	}
	return string(v)
}

// handled is the journal of events handed to the bot: the last
// maxHandled event IDs, and per room the server time of the newest. It is
// kept after each event, so that a batch replayed after a crash (or by the
// process that takes over) runs none of them again, and so that paging
// back through a gap stops at what was handled, by identity and time,
// whatever the homeserver's pagination does (Dendrite does not stop at
// the "to" token and pages on past it).
type handled struct {
	IDs    []string         `json:"ids"`
	Newest map[string]int64 `json:"newest,omitempty"`
}

// maxHandled is how many handled event IDs the journal keeps.
const maxHandled = 2000

func (a *Adapter) handledKey() string { return "matrix/handled/" + string(a.me) }

// recall loads the journal and marks its events as seen.
func (a *Adapter) recall(ctx context.Context) {
	a.journal = &handled{Newest: map[string]int64{}}
	p := a.st.Load()
	if p == nil {
		return
	}
	v, err := (*p).Value(ctx, a.handledKey())
	if err != nil {
		return
	}
	var h handled
	if json.Unmarshal(v, &h) != nil {
		a.log.Warn("matrix: the journal of handled events is unreadable; starting a new one")
		return
	}
	if h.Newest == nil {
		h.Newest = map[string]int64{}
	}
	for _, id := range h.IDs {
		a.seen.First(id)
	}
	a.journal = &h
	a.log.Info("matrix: recalled the events already handled", "events", len(h.IDs))
}

// wasHandled reports whether e was handed to the bot before.
func (a *Adapter) wasHandled(e *event.Event) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.journal != nil && slices.Contains(a.journal.IDs, string(e.ID))
}

// clockSkew is how far behind the newest handled event an event in a gap
// may be stamped and still be new: servers' clocks differ.
const clockSkew = 5 * time.Minute

// beforeGap reports whether paging back through a gap in room has reached
// what came before it: an event handled already, or one stamped well
// before the newest handled there.
func (a *Adapter) beforeGap(room id.RoomID, e *event.Event) bool {
	if a.wasHandled(e) {
		return true
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	newest := a.journal.Newest[string(room)]
	return newest > 0 && e.Timestamp < newest-clockSkew.Milliseconds()
}

func (a *Adapter) noteHandled(ctx context.Context, room id.RoomID, e *event.Event) {
	a.mu.Lock()
	h := a.journal
	if h == nil {
		a.mu.Unlock()
		return
	}
	h.IDs = append(h.IDs, string(e.ID))
	if len(h.IDs) > maxHandled {
		h.IDs = slices.Clone(h.IDs[len(h.IDs)-maxHandled:])
	}
	h.Newest[string(room)] = max(h.Newest[string(room)], e.Timestamp)
	b, _ := json.Marshal(h)
	a.mu.Unlock()
	p := a.st.Load()
	if p == nil {
		return
	}
	// Noted even while the bot stops: the event was handled, and a note
	// lost here makes the next process run it again.
	if err := (*p).SetValue(context.WithoutCancel(ctx), a.handledKey(), b); err != nil {
		a.log.Error("matrix: note a handled event", "err", err)
	}
}

func (a *Adapter) saveSince(ctx context.Context, since string) error {
	if p := a.st.Load(); p != nil {
		return (*p).SetValue(ctx, a.sinceKey(), []byte(since))
	}
	return nil
}

// Run joins the rooms and long-polls /sync, handing every command to
// handle, until ctx ends (nil) or the token is refused (ErrToken).
func (a *Adapter) Run(ctx context.Context, handle func(context.Context, bot.Incoming)) error {
	defer a.cancel()
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

// setup learns who the bot is, joins the configured rooms and notes
// which are encrypted.
func (a *Adapter) setup(ctx context.Context) error {
	who, err := a.cli.Whoami(ctx)
	if err != nil {
		return err
	}
	a.cli.UserID = who.UserID
	a.mu.Lock()
	a.me = who.UserID
	a.mu.Unlock()
	joined, err := a.cli.JoinedRooms(ctx)
	if err != nil {
		return err
	}
	// Rooms joined before the sync position was kept are known; a room
	// joined now is not, so that its history is not taken for commands.
	a.mu.Lock()
	for _, r := range joined.JoinedRooms {
		a.joined[r] = true
	}
	a.mu.Unlock()
	for _, r := range a.opts.Rooms {
		resp, err := a.cli.JoinRoom(ctx, r, nil)
		if err != nil {
			if c := status(err); c == http.StatusForbidden || c == http.StatusNotFound {
				return fmt.Errorf("matrix: cannot join room %s: %w (invite %s to it, or check chat.matrix.rooms)", r, err, who.UserID)
			}
			return err
		}
		a.mu.Lock()
		a.rooms[resp.RoomID] = true
		a.mu.Unlock()
		enc, err := a.isEncrypted(ctx, resp.RoomID)
		if errors.Is(err, errNotEncryptionState) {
			a.log.Warn("matrix: cannot tell whether the room is encrypted; an encrypted message will be reported when one arrives", "room", r, "err", err)
			err = nil
		}
		if err != nil {
			return err
		}
		if enc {
			a.mu.Lock()
			a.encrypted[resp.RoomID] = true
			a.mu.Unlock()
			a.log.Error("matrix: room is end-to-end encrypted; stagebot can neither read nor write there",
				"room", r, "fix", "use an unencrypted control room (encryption cannot be turned off in a room once on)")
		}
	}
	// Besides its rooms the bot joins only direct chats; a room of more
	// people it is still in (one taken out of the config, one joined by
	// hand) is ignored, or every line typed there would be a command.
	for _, r := range joined.JoinedRooms {
		a.mu.Lock()
		configured := a.rooms[r]
		a.mu.Unlock()
		if configured {
			continue
		}
		m, err := a.cli.JoinedMembers(ctx, r)
		if err != nil {
			return err
		}
		if len(m.Joined) == 2 {
			a.mu.Lock()
			a.direct[r] = true
			a.mu.Unlock()
			continue
		}
		a.log.Info("matrix: ignoring a room that is neither configured nor a direct chat", "room", r, "members", len(m.Joined))
	}
	return nil
}

func (a *Adapter) isEncrypted(ctx context.Context, room id.RoomID) (bool, error) {
	var content map[string]any
	err := a.cli.StateEvent(ctx, room, event.StateEncryption, "", &content)
	switch {
	case err == nil && encryptionContent(content):
		return true, nil
	case err == nil:
		return false, errNotEncryptionState
	case errors.Is(err, mautrix.MNotFound):
		return false, nil
	}
	return false, err
}

// errNotEncryptionState: the homeserver answered the state request with
// something that is not an m.room.encryption event (Dendrite does so for a
// room the bot is not in yet), so whether the room is encrypted is unknown.
var errNotEncryptionState = errors.New("the homeserver's answer is not the room's encryption state (is the bot in the room yet?)")

// encryptionContent reports whether content is an m.room.encryption
// event's: it names an algorithm.
func encryptionContent(content map[string]any) bool {
	alg, _ := content["algorithm"].(string)
	return alg != ""
}

// Check connects, learns who the token belongs to and looks at each room
// without joining it: for `stagebot check`.
func Check(ctx context.Context, o Options) (user string, problems []string, err error) {
	cli, err := mautrix.NewClient(o.Homeserver, "", o.Token)
	if err != nil {
		return "", nil, err
	}
	cli.DefaultHTTPRetries = 0
	who, err := cli.Whoami(ctx)
	if err != nil {
		if tokenRefused(err) {
			return "", nil, ErrToken
		}
		return "", nil, err
	}
	for _, r := range o.Rooms {
		roomID := id.RoomID(r)
		if strings.HasPrefix(r, "#") {
			res, err := cli.ResolveAlias(ctx, id.RoomAlias(r))
			if err != nil {
				problems = append(problems, fmt.Sprintf("room %s: the alias does not resolve (%v)", r, err))
				continue
			}
			roomID = res.RoomID
		}
		var content map[string]any
		err := cli.StateEvent(ctx, roomID, event.StateEncryption, "", &content)
		switch {
		case err == nil && !encryptionContent(content):
			problems = append(problems, fmt.Sprintf("room %s: %s is not in it yet, so whether it is encrypted is unknown; it joins at start if the room is public or it is invited", r, who.UserID))
		case err == nil:
			problems = append(problems, fmt.Sprintf("room %s is end-to-end encrypted: stagebot cannot read or write there; use an unencrypted control room", r))
		case errors.Is(err, mautrix.MNotFound):
		case errors.Is(err, mautrix.MForbidden):
			problems = append(problems, fmt.Sprintf("room %s: %s is not in it yet; it joins at start if the room is public or it is invited", r, who.UserID))
		default:
			problems = append(problems, fmt.Sprintf("room %s: %v", r, err))
		}
	}
	return string(who.UserID), problems, nil
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

func membership(e *event.Event) string {
	m, _ := e.Content.Raw["membership"].(string)
	if m == "" {
		var c struct {
			Membership string `json:"membership"`
		}
		json.Unmarshal(e.Content.VeryRaw, &c)
		m = c.Membership
	}
	return m
}

// invited accepts an invitation to a configured room, or to a direct chat
// from someone AcceptDirect knows, unless it is encrypted; others are
// declined.
func (a *Adapter) invited(ctx context.Context, room id.RoomID, inv *mautrix.SyncInvitedRoom) {
	a.mu.Lock()
	me, configured := a.me, a.rooms[room]
	a.mu.Unlock()
	var from id.UserID
	direct, encrypted := false, false
	for _, e := range inv.State.Events {
		switch e.Type {
		case event.StateEncryption:
			encrypted = true
		case event.StateMember:
			if e.StateKey != nil && id.UserID(*e.StateKey) == me {
				from = e.Sender
				var c struct {
					IsDirect bool `json:"is_direct"`
				}
				json.Unmarshal(e.Content.VeryRaw, &c)
				direct = c.IsDirect
			}
		}
	}
	accept := configured || (direct && a.opts.AcceptDirect != nil && a.opts.AcceptDirect(string(from)))
	reason := ""
	switch {
	case !accept:
		reason = "stagebot only joins its configured rooms and direct chats from people it knows"
	case encrypted && !configured:
		accept, reason = false, "stagebot cannot read encrypted rooms: start the direct chat with encryption off, or use the team's control room"
	}
	if !accept {
		a.log.Info("matrix: declined an invitation", "room", room, "from", from, "why", reason)
		if _, err := a.cli.LeaveRoom(ctx, room, &mautrix.ReqLeave{Reason: reason}); err != nil {
			a.log.Warn("matrix: decline an invitation", "room", room, "err", err)
		}
		return
	}
	if _, err := a.cli.JoinRoomByID(ctx, room); err != nil {
		a.log.Warn("matrix: accept an invitation", "room", room, "err", err)
		return
	}
	a.mu.Lock()
	if !configured {
		a.direct[room] = true
	}
	if encrypted {
		a.encrypted[room] = true
	}
	a.mu.Unlock()
	a.log.Info("matrix: joined", "room", room, "direct", !configured)
}

// normKey compares reaction keys with and without the emoji variation
// selector.
func normKey(k string) string { return strings.ReplaceAll(k, "\uFE0F", "") }

var pill = regexp.MustCompile(`^\s*<a href="https://matrix\.to/#/([^"]+)">([^<]*)</a>:?\s*`)

// incoming turns an event into a command, or reports false for what the
// bot must not answer.
func (a *Adapter) incoming(ctx context.Context, room id.RoomID, e *event.Event) (bot.Incoming, bool) {
	a.mu.Lock()
	me, configured, direct, encrypted := a.me, a.rooms[room], a.direct[room], a.encrypted[room]
	a.mu.Unlock()
	if e.Sender == me || (!configured && !direct) || !a.seen.First(string(e.ID)) {
		return bot.Incoming{}, false
	}
	user := store.User{ID: string(e.Sender), Name: e.Sender.Localpart()}
	a.mu.Lock()
	if n := a.names[e.Sender]; n != "" && n != user.Name {
		// A display name is anyone's to choose: the user ID goes beside it.
		user.Name, user.Handle = n, string(e.Sender)
	}
	a.mu.Unlock()
	switch e.Type {
	case event.EventEncrypted:
		a.mu.Lock()
		first := !a.warned[room]
		a.warned[room] = true
		a.mu.Unlock()
		if first {
			a.log.Error("matrix: an encrypted message arrived; stagebot cannot read it", "room", room,
				"fix", "use an unencrypted control room (and direct chats without encryption)")
		}
		return bot.Incoming{}, false
	case event.EventReaction:
		if encrypted {
			return bot.Incoming{}, false
		}
		var c struct {
			Rel struct {
				RelType string     `json:"rel_type"`
				EventID id.EventID `json:"event_id"`
				Key     string     `json:"key"`
			} `json:"m.relates_to"`
		}
		if json.Unmarshal(e.Content.VeryRaw, &c) != nil || c.Rel.RelType != "m.annotation" {
			return bot.Incoming{}, false
		}
		cmd, ok := a.action(ctx, room, c.Rel.EventID, c.Rel.Key)
		if !ok {
			if actionKeys[normKey(c.Rel.Key)] && a.ownEvent(c.Rel.EventID) {
				a.out.Send(ctx, bot.Message{Channel: string(room), Thread: store.MessageRef{Channel: string(room), ID: string(c.Rel.EventID)},
					Text: fmt.Sprintf("%s: that message no longer offers %s; its current text lists what can be done now.", user.Name, c.Rel.Key)})
			}
			return bot.Incoming{}, false
		}
		return bot.Incoming{ID: string(e.ID), Channel: string(room), Thread: string(c.Rel.EventID), User: user, Text: cmd, Direct: true}, true
	case event.EventMessage:
	default:
		return bot.Incoming{}, false
	}
	var c struct {
		MsgType       string `json:"msgtype"`
		Body          string `json:"body"`
		Format        string `json:"format"`
		FormattedBody string `json:"formatted_body"`
		Mentions      *struct {
			UserIDs []id.UserID `json:"user_ids"`
		} `json:"m.mentions"`
		Rel *struct {
			RelType string     `json:"rel_type"`
			EventID id.EventID `json:"event_id"`
		} `json:"m.relates_to"`
	}
	if json.Unmarshal(e.Content.VeryRaw, &c) != nil {
		return bot.Incoming{}, false
	}
	// Other bots speak in notices, which must never be answered; an edit
	// of a command is not a new command.
	if c.MsgType != "m.text" || (c.Rel != nil && c.Rel.RelType == "m.replace") {
		return bot.Incoming{}, false
	}
	in := bot.Incoming{ID: string(e.ID), Channel: string(room), User: user, Text: strings.TrimSpace(c.Body), Direct: direct}
	if c.Rel != nil && c.Rel.RelType == "m.thread" {
		in.Thread = string(c.Rel.EventID)
	}
	mentioned := c.Mentions != nil && slices.Contains(c.Mentions.UserIDs, me)
	if m := pill.FindStringSubmatch(c.FormattedBody); m != nil {
		if target, err := url.PathUnescape(m[1]); err == nil && id.UserID(target) == me {
			mentioned = true
			name := html.UnescapeString(m[2])
			if rest, ok := strings.CutPrefix(in.Text, name); ok {
				in.Text = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(rest), ":"))
			}
		}
	}
	for _, name := range []string{string(me), me.Localpart()} {
		if rest, ok := strings.CutPrefix(in.Text, name); ok && (strings.HasPrefix(rest, ":") || strings.HasPrefix(rest, " ")) {
			mentioned = true
			in.Text = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(rest), ":"))
		}
	}
	if mentioned {
		in.Direct = true
	}
	return in, true
}

// action is the command a reaction on one of the bot's cards stands for.
// Cards posted by an earlier process are read back from the homeserver.
func (a *Adapter) action(ctx context.Context, room id.RoomID, card id.EventID, key string) (string, bool) {
	a.mu.Lock()
	acts, ok := a.actions[card]
	me := a.me
	a.mu.Unlock()
	if !ok {
		e, err := a.cli.GetEvent(ctx, room, card)
		if err != nil || e.Sender != me {
			return "", false
		}
		var c struct {
			Actions map[string]string `json:"org.stagebot.actions"`
		}
		json.Unmarshal(e.Content.VeryRaw, &c)
		acts = c.Actions
	}
	for k, cmd := range acts {
		if normKey(k) == normKey(key) {
			return cmd, true
		}
	}
	return "", false
}

// ownEvent reports whether the bot posted an event in this process.
func (a *Adapter) ownEvent(e id.EventID) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, ok := a.actions[e]
	return ok
}

// actionKeys are the reaction keys the bot offers, without variation
// selectors.
var actionKeys = func() map[string]bool {
	m := map[string]bool{}
	for _, l := range []string{"approve", "defer", "hold", "extend", "cancel", "abort", "release"} {
		m[normKey(reactionKey(l, 0))] = true
	}
	return m
}()

// reactionKey is the emoji offered for a button.
func reactionKey(label string, i int) string {
	word := strings.ToLower(strings.Fields(label + " x")[0])
	switch word {
	case "approve":
		return "✅"
	case "defer":
		return "⏸️"
	case "hold":
		return "✋"
	case "extend":
		return "⏳"
	case "cancel":
		return "❌"
	case "abort":
		return "🛑"
	case "release":
		return "🔓"
	}
	return []string{"1️⃣", "2️⃣", "3️⃣", "4️⃣", "5️⃣", "6️⃣", "7️⃣", "8️⃣", "9️⃣"}[min(i, 8)]
}

// maxBody is the most text a message carries before it is cut.
const maxBody = 16000

var code = regexp.MustCompile("`([^`\n]+)`")

func toHTML(s string) string {
	s = html.EscapeString(s)
	s = code.ReplaceAllString(s, "<code>$1</code>")
	return strings.ReplaceAll(s, "\n", "<br>")
}

// render is a message's content: a notice with a plain body and HTML,
// its mentions, and its actions (commands and reactions), with the text
// cut until the encoded content fits in budget bytes (an event may be at
// most 64 KiB, and an edit carries its content twice).
func render(m bot.Message, budget int) map[string]any {
	for n := maxBody; ; n = n * 2 / 3 {
		c := renderText(m, n)
		if b, err := json.Marshal(c); err != nil || len(b) <= budget || n < 200 {
			return c
		}
	}
}

func renderText(m bot.Message, maxBody int) map[string]any {
	var body, htm strings.Builder
	var ids []string
	for _, u := range m.Mentions {
		name := u.Name
		if name == "" {
			name = u.ID
		}
		body.WriteString(name + " ")
		htm.WriteString(`<a href="https://matrix.to/#/` + html.EscapeString(u.ID) + `">` + html.EscapeString(name) + "</a> ")
		ids = append(ids, u.ID)
	}
	text := bot.Truncate(m.Text, maxBody)
	if len([]rune(m.Text)) > maxBody {
		text += "\n(cut: the message was too long for Matrix)"
	}
	body.WriteString(text)
	htm.WriteString(toHTML(text))
	for _, f := range m.Fields {
		fmt.Fprintf(&body, "\n%s: %s", f.Label, f.Value)
		fmt.Fprintf(&htm, "<br><b>%s:</b> %s", html.EscapeString(f.Label), toHTML(f.Value))
	}
	content := map[string]any{"msgtype": "m.notice", "m.mentions": map[string]any{"user_ids": nonNil(ids)}}
	if len(m.Buttons) > 0 {
		acts := map[string]string{}
		var plain, rich []string
		for i, b := range m.Buttons {
			k := reactionKey(b.Label, i)
			acts[k] = b.Command
			plain = append(plain, fmt.Sprintf("%s %s (%s)", k, b.Label, b.Command))
			rich = append(rich, fmt.Sprintf("%s %s (<code>%s</code>)", k, html.EscapeString(b.Label), html.EscapeString(b.Command)))
		}
		body.WriteString("\nReact or type: " + strings.Join(plain, " · "))
		htm.WriteString("<br><i>React or type:</i> " + strings.Join(rich, " · "))
		content["org.stagebot.actions"] = acts
	}
	content["body"] = body.String()
	content["format"] = "org.matrix.custom.html"
	content["formatted_body"] = htm.String()
	return content
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// sender talks to the homeserver for the outbox.
type sender struct{ a *Adapter }

// txnID is the outbox entry's key, so a retried send is recognised by the
// homeserver and never posts twice.
func txnID(ctx context.Context) string {
	if k := bot.DeliveryKey(ctx); k != "" {
		return "stagebot-" + k
	}
	return ""
}

func (s sender) checkRoom(room id.RoomID) error {
	s.a.mu.Lock()
	defer s.a.mu.Unlock()
	if s.a.encrypted[room] {
		return bot.Permanent(fmt.Errorf("room %s is end-to-end encrypted; stagebot does not send plain messages there", room))
	}
	return nil
}

func (s sender) Post(ctx context.Context, m bot.Message) (store.MessageRef, error) {
	room := id.RoomID(m.Channel)
	if err := s.checkRoom(room); err != nil {
		return store.MessageRef{}, err
	}
	content := render(m, 60000)
	var root id.EventID
	if !m.Thread.IsZero() {
		root = id.EventID(m.Thread.ID)
		s.a.mu.Lock()
		last := s.a.latest[root]
		s.a.mu.Unlock()
		if last == "" {
			last = root
		}
		content["m.relates_to"] = map[string]any{"rel_type": "m.thread", "event_id": root, "is_falling_back": true,
			"m.in_reply_to": map[string]any{"event_id": last}}
	}
	resp, err := s.a.cli.SendMessageEvent(ctx, room, event.EventMessage, content, mautrix.ReqSendEvent{TransactionID: txnID(ctx)})
	if err != nil {
		return store.MessageRef{}, classify(err)
	}
	s.a.mu.Lock()
	if acts, ok := content["org.stagebot.actions"].(map[string]string); ok {
		s.a.actions[resp.EventID] = acts
	}
	if root != "" {
		s.a.latest[root] = resp.EventID
	}
	s.a.mu.Unlock()
	return store.MessageRef{Channel: m.Channel, ID: string(resp.EventID)}, nil
}

// Update edits a message in place: m.replace pointing at the original,
// the full new content in m.new_content, and the "* " fallback.
func (s sender) Update(ctx context.Context, ref store.MessageRef, m bot.Message) error {
	room := id.RoomID(ref.Channel)
	if err := s.checkRoom(room); err != nil {
		return err
	}
	nc := render(m, 29000)
	// Mentions notify once, when the message is first posted.
	edit := map[string]any{
		"msgtype": "m.notice", "body": "* " + nc["body"].(string),
		"format": "org.matrix.custom.html", "formatted_body": "* " + nc["formatted_body"].(string),
		"m.new_content": nc, "m.mentions": map[string]any{},
		"m.relates_to": map[string]any{"rel_type": "m.replace", "event_id": ref.ID},
	}
	_, err := s.a.cli.SendMessageEvent(ctx, room, event.EventMessage, edit, mautrix.ReqSendEvent{TransactionID: txnID(ctx)})
	if err != nil {
		return classify(err)
	}
	s.a.mu.Lock()
	if acts, ok := nc["org.stagebot.actions"].(map[string]string); ok {
		s.a.actions[id.EventID(ref.ID)] = acts
	} else {
		s.a.actions[id.EventID(ref.ID)] = map[string]string{}
	}
	s.a.mu.Unlock()
	return nil
}

// classify: a 429 waits as long as the homeserver says; other 4xx
// (except a refused token, which stops the bot) will not get better.
func classify(err error) error {
	if wait, ok := retryAfter(err); ok {
		return &bot.RetryAfter{Wait: wait}
	}
	if c := status(err); c >= 400 && c < 500 && !tokenRefused(err) {
		return bot.Permanent(err)
	}
	return err
}

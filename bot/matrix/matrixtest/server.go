package matrixtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The bot's account on the fake homeserver.
const (
	BotID = "@stagebot:test.local"
	Token = "syt_c3RhZ2Vib3Q_fake-access-token"
)

// Event is one event in a room, as the homeserver keeps it.
type Event struct {
	ID       string         `json:"event_id"`
	Room     string         `json:"room_id"`
	Sender   string         `json:"sender"`
	Type     string         `json:"type"`
	StateKey *string        `json:"state_key,omitempty"`
	Content  map[string]any `json:"content"`
	TS       int64          `json:"origin_server_ts"`
	Unsigned map[string]any `json:"unsigned,omitempty"`

	pos   int    // stream position
	txnBy string // the access token that sent it, for unsigned.transaction_id
	txn   string
}

// Body is the event's plain body.
func (e *Event) Body() string { s, _ := e.Content["body"].(string); return s }

// HTML is the event's formatted body.
func (e *Event) HTML() string { s, _ := e.Content["formatted_body"].(string); return s }

// Relation is the event's m.relates_to rel_type and event_id.
func (e *Event) Relation() (relType, eventID string) {
	rel, _ := e.Content["m.relates_to"].(map[string]any)
	relType, _ = rel["rel_type"].(string)
	eventID, _ = rel["event_id"].(string)
	return relType, eventID
}

type room struct {
	id, alias string
	public    bool
	encrypted bool
	members   map[string]string // user → membership
}

// Server is a Matrix homeserver's client-server API on 127.0.0.1, with
// what a bot meets: long-polled /sync with since tokens and limited
// timelines, /send with transaction IDs, joins and invites, reactions,
// edits, redactions, rate limits, outages and revoked tokens.
type Server struct {
	t   *testing.T
	srv *httptest.Server

	mu      sync.Mutex
	wake    chan struct{} // closed and replaced on every new event
	pos     int
	events  []*Event
	rooms   map[string]*room
	aliases map[string]string
	tokens  map[string]string // access token → user ID
	txns    map[string]*Event // token + "\x00" + txn ID → event
	filters map[string]string
	nextID  int

	down     bool
	dropped  int // requests met while down
	limit429 int // the next n sends are refused with 429
	// pagesPastTo makes /messages page as Dendrite does: past its "to"
	// token, always with an "end"; limitPages refuses the next n pages
	// with 429.
	pagesPastTo bool
	nonNotices  []string // the bot's messages that were not m.notice
	limitPages  int
	retryMS     int
	header429   bool // also send Retry-After
	fail500     int  // the next n sends are stored, then answered 500
	sends       int  // PUT /send requests (successful or not)
	syncs       []string
	refused     int
}

// New starts a fake homeserver that knows the bot's account, until the
// test ends.
func New(t *testing.T) *Server {
	s := &Server{t: t, wake: make(chan struct{}), rooms: map[string]*room{}, aliases: map[string]string{},
		tokens: map[string]string{Token: BotID}, txns: map[string]*Event{}, filters: map[string]string{}}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(func() {
		s.mu.Lock()
		s.down = true
		s.broadcast()
		s.mu.Unlock()
		s.srv.CloseClientConnections()
		s.srv.Close()
	})
	return s
}

// URL is the homeserver's base URL.
func (s *Server) URL() string { return s.srv.URL }

func (s *Server) broadcast() {
	close(s.wake)
	s.wake = make(chan struct{})
}

// CreateRoom makes a room with an alias (#name:test.local) that anyone may
// join, with the given users joined; it returns the room ID.
func (s *Server) CreateRoom(name string, members ...string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := "!" + name + ":test.local"
	r := &room{id: id, alias: "#" + name + ":test.local", public: true, members: map[string]string{}}
	s.rooms[id] = r
	s.aliases[r.alias] = id
	s.appendLocked(id, "@admin:test.local", "m.room.create", ptr(""), map[string]any{"creator": "@admin:test.local"})
	for _, m := range members {
		s.memberLocked(r, m, m, "join", nil)
	}
	return id
}

// SetDisplayName changes user's display name in a room, as a member
// event.
func (s *Server) SetDisplayName(roomID, user, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.memberLocked(s.rooms[roomID], user, user, "join", map[string]any{"displayname": name})
}

// Encrypt turns on end-to-end encryption in a room.
func (s *Server) Encrypt(roomID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rooms[roomID].encrypted = true
	s.appendLocked(roomID, "@admin:test.local", "m.room.encryption", ptr(""), map[string]any{"algorithm": "m.megolm.v1.aes-sha2"})
}

// Invite has from invite user to a private room, creating the room (a
// direct chat when direct is set) when it does not exist; encrypted makes
// it an encrypted room, as Element makes direct chats.
func (s *Server) Invite(roomID, from, user string, direct, encrypted bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rooms[roomID]
	if r == nil {
		r = &room{id: roomID, members: map[string]string{}}
		s.rooms[roomID] = r
		s.appendLocked(roomID, from, "m.room.create", ptr(""), map[string]any{"creator": from})
		s.memberLocked(r, from, from, "join", nil)
	}
	if encrypted {
		r.encrypted = true
		s.appendLocked(roomID, from, "m.room.encryption", ptr(""), map[string]any{"algorithm": "m.megolm.v1.aes-sha2"})
	}
	extra := map[string]any{}
	if direct {
		extra["is_direct"] = true
	}
	s.memberLocked(r, from, user, "invite", extra)
}

func (s *Server) memberLocked(r *room, sender, user, membership string, extra map[string]any) *Event {
	r.members[user] = membership
	c := map[string]any{"membership": membership}
	for k, v := range extra {
		c[k] = v
	}
	return s.appendLocked(r.id, sender, "m.room.member", ptr(user), c)
}

func ptr(s string) *string { return &s }

func (s *Server) appendLocked(roomID, sender, typ string, stateKey *string, content map[string]any) *Event {
	s.pos++
	s.nextID++
	e := &Event{ID: fmt.Sprintf("$ev%d", s.nextID), Room: roomID, Sender: sender, Type: typ, StateKey: stateKey,
		Content: content, TS: time.Now().UnixMilli(), pos: s.pos}
	s.events = append(s.events, e)
	s.broadcast()
	return e
}

// Say posts a plain text message from user.
func (s *Server) Say(user, roomID, body string) *Event {
	return s.Post(user, roomID, "m.room.message", map[string]any{"msgtype": "m.text", "body": body})
}

// Post adds any event from user to a room.
func (s *Server) Post(user, roomID, typ string, content map[string]any) *Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.appendLocked(roomID, user, typ, nil, content)
}

// Mention posts text addressed to the bot the way Element does: the
// bot's display name in the body, a pill in the HTML and m.mentions.
func (s *Server) Mention(user, roomID, text string) *Event {
	return s.Post(user, roomID, "m.room.message", map[string]any{
		"msgtype": "m.text", "body": "stagebot: " + text,
		"format": "org.matrix.custom.html", "formatted_body": `<a href="https://matrix.to/#/` + BotID + `">stagebot</a>: ` + text,
		"m.mentions": map[string]any{"user_ids": []any{BotID}},
	})
}

// InThread posts a message in the thread under root.
func (s *Server) InThread(user, roomID, root, body string) *Event {
	return s.Post(user, roomID, "m.room.message", map[string]any{"msgtype": "m.text", "body": body,
		"m.relates_to": map[string]any{"rel_type": "m.thread", "event_id": root, "is_falling_back": true, "m.in_reply_to": map[string]any{"event_id": root}}})
}

// React annotates an event with key, as a click would.
func (s *Server) React(user, roomID, eventID, key string) *Event {
	return s.Post(user, roomID, "m.reaction", map[string]any{"m.relates_to": map[string]any{"rel_type": "m.annotation", "event_id": eventID, "key": key}})
}

// EditMessage replaces the text of one of user's messages.
func (s *Server) EditMessage(user, roomID, eventID, body string) *Event {
	return s.Post(user, roomID, "m.room.message", map[string]any{"msgtype": "m.text", "body": "* " + body,
		"m.new_content": map[string]any{"msgtype": "m.text", "body": body},
		"m.relates_to":  map[string]any{"rel_type": "m.replace", "event_id": eventID}})
}

// Redact deletes an event as a homeserver does: its content is stripped
// and an m.room.redaction event follows.
func (s *Server) Redact(user, roomID, eventID string) *Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.redactLocked(user, roomID, eventID, map[string]any{})
}

func (s *Server) redactLocked(user, roomID, eventID string, content map[string]any) *Event {
	content["redacts"] = eventID
	e := s.appendLocked(roomID, user, "m.room.redaction", nil, content)
	for _, old := range s.events {
		if old.ID == eventID && old.Room == roomID {
			old.Content = map[string]any{}
			old.Unsigned = map[string]any{"redacted_because": map[string]any{"event_id": e.ID, "sender": user}}
		}
	}
	return e
}

// SetDown makes the homeserver unreachable: connections are closed
// without an answer, long polls included.
func (s *Server) SetDown(down bool) {
	s.mu.Lock()
	s.down = down
	s.broadcast()
	s.mu.Unlock()
	if down {
		s.srv.CloseClientConnections()
	}
}

// RateLimit refuses the next n sends with 429 M_LIMIT_EXCEEDED and
// retry_after_ms; header also sets Retry-After (whole seconds).
func (s *Server) RateLimit(n int, retry time.Duration, header bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.limit429, s.retryMS, s.header429 = n, int(retry.Milliseconds()), header
}

// NonNotices lists the bot's messages sent with another msgtype than
// m.notice.
func (s *Server) NonNotices() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.nonNotices...)
}

// PagePastTo makes the fake behave as Dendrite v0.13 does: /messages
// ignores its "to" token and always gives an "end", and a state request
// for a room the user is not in answers 200 with another event's content.
// The next limited pages are refused with 429 and retry_after_ms.
func (s *Server) PagePastTo(on bool, limited int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pagesPastTo, s.limitPages = on, limited
}

// FailAfterStoring makes the next n sends store their event and answer
// 500 anyway, as a homeserver behind a proxy that timed out does.
func (s *Server) FailAfterStoring(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail500 = n
}

// Revoke forgets an access token.
func (s *Server) Revoke(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.tokens, token)
	s.broadcast()
}

// Sends is the number of PUT /send requests answered so far.
func (s *Server) Sends() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sends
}

// Dropped is how many requests the homeserver met while it was down.
func (s *Server) Dropped() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dropped
}

// RateLimited is how many requests were refused with 429.
func (s *Server) RateLimited() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refused
}

// Syncs are the since tokens of the bot's /sync requests so far ("" for
// an initial sync).
func (s *Server) Syncs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.syncs)
}

// WaitSyncing waits until the bot long-polls /sync with a since token
// (it has caught up).
func (s *Server) WaitSyncing(d time.Duration) error {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		for _, since := range s.Syncs() {
			if since != "" {
				return nil
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("the bot did not sync with a since token within %s", d)
}

// Position is the stream's current since token: a sync from it returns
// what happens next.
func (s *Server) Position() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return token(s.pos)
}

// Joined reports whether user is joined to a room.
func (s *Server) Joined(roomID, user string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rooms[roomID]
	return r != nil && r.members[user] == "join"
}

// Membership is user's membership of a room ("" when none).
func (s *Server) Membership(roomID, user string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.rooms[roomID]; r != nil {
		return r.members[user]
	}
	return ""
}

// Message is one of the bot's messages with its edits.
type Message struct {
	*Event
	Edits []*Event
}

// Current is the message's content after its last edit.
func (m Message) Current() map[string]any {
	if len(m.Edits) == 0 {
		return m.Content
	}
	nc, _ := m.Edits[len(m.Edits)-1].Content["m.new_content"].(map[string]any)
	return nc
}

// Text is the current plain body.
func (m Message) Text() string { s, _ := m.Current()["body"].(string); return s }

// CurrentHTML is the current formatted body.
func (m Message) CurrentHTML() string { s, _ := m.Current()["formatted_body"].(string); return s }

// Thread is the root of the thread the message is in ("" when none).
func (m Message) Thread() string {
	if rel, root := m.Relation(); rel == "m.thread" {
		return root
	}
	return ""
}

// Messages are the m.room.message events the bot sent in a room that are
// not edits, oldest first.
func (s *Server) Messages(roomID string) []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Message
	idx := map[string]int{}
	for _, e := range s.events {
		if e.Room != roomID || e.Sender != BotID || e.Type != "m.room.message" {
			continue
		}
		if rel, orig := e.Relation(); rel == "m.replace" {
			if i, ok := idx[orig]; ok {
				out[i].Edits = append(out[i].Edits, e)
			}
			continue
		}
		idx[e.ID] = len(out)
		out = append(out, Message{Event: e})
	}
	return out
}

// Events are all events of a room, oldest first.
func (s *Server) Events(roomID string) []*Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*Event
	for _, e := range s.events {
		if e.Room == roomID {
			out = append(out, e)
		}
	}
	return out
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func merr(w http.ResponseWriter, code int, errcode, msg string) {
	writeJSON(w, code, map[string]any{"errcode": errcode, "error": msg})
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	down := s.down
	if down {
		s.dropped++
	}
	s.mu.Unlock()
	if down {
		if hj, ok := w.(http.Hijacker); ok {
			if c, _, err := hj.Hijack(); err == nil {
				c.Close()
				return
			}
		}
		http.Error(w, "down", http.StatusBadGateway)
		return
	}
	path := r.URL.EscapedPath()
	const base = "/_matrix/client/"
	if !strings.HasPrefix(path, base) {
		merr(w, 404, "M_UNRECOGNIZED", "unknown endpoint")
		return
	}
	if path == base+"versions" {
		writeJSON(w, 200, map[string]any{"versions": []string{"v1.11", "v1.12"}})
		return
	}
	if !strings.HasPrefix(path, base+"v3/") {
		merr(w, 404, "M_UNRECOGNIZED", "only v3 paths are served")
		return
	}
	if r.URL.Query().Has("access_token") {
		merr(w, 400, "M_UNRECOGNIZED", "send the token in the Authorization header")
		return
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		merr(w, 401, "M_MISSING_TOKEN", "missing access token")
		return
	}
	s.mu.Lock()
	user, known := s.tokens[tok]
	s.mu.Unlock()
	if !known {
		writeJSON(w, 401, map[string]any{"errcode": "M_UNKNOWN_TOKEN", "error": "Invalid access token passed.", "soft_logout": false})
		return
	}
	var parts []string
	for _, p := range strings.Split(strings.TrimPrefix(path, base+"v3/"), "/") {
		u, err := url.PathUnescape(p)
		if err != nil {
			merr(w, 400, "M_INVALID_PARAM", "bad path")
			return
		}
		parts = append(parts, u)
	}
	switch {
	case r.Method == "GET" && len(parts) == 2 && parts[0] == "account" && parts[1] == "whoami":
		writeJSON(w, 200, map[string]any{"user_id": user, "device_id": "STAGEBOT"})
	case r.Method == "GET" && len(parts) == 1 && parts[0] == "sync":
		s.sync(w, r, user)
	case r.Method == "GET" && len(parts) == 1 && parts[0] == "joined_rooms":
		s.mu.Lock()
		var ids []string
		for id, rm := range s.rooms {
			if rm.members[user] == "join" {
				ids = append(ids, id)
			}
		}
		s.mu.Unlock()
		slices.Sort(ids)
		writeJSON(w, 200, map[string]any{"joined_rooms": ids})
	case r.Method == "GET" && len(parts) == 3 && parts[0] == "directory" && parts[1] == "room":
		s.mu.Lock()
		id, ok := s.aliases[parts[2]]
		s.mu.Unlock()
		if !ok {
			merr(w, 404, "M_NOT_FOUND", "Room alias "+parts[2]+" not found")
			return
		}
		writeJSON(w, 200, map[string]any{"room_id": id, "servers": []string{"test.local"}})
	case r.Method == "POST" && len(parts) == 2 && parts[0] == "join":
		s.join(w, user, parts[1])
	case r.Method == "POST" && len(parts) == 3 && parts[0] == "rooms" && parts[2] == "join":
		s.join(w, user, parts[1])
	case r.Method == "POST" && len(parts) == 3 && parts[0] == "rooms" && parts[2] == "leave":
		s.mu.Lock()
		if rm := s.rooms[parts[1]]; rm != nil && rm.members[user] != "" {
			var body struct{ Reason string }
			json.NewDecoder(r.Body).Decode(&body)
			extra := map[string]any{}
			if body.Reason != "" {
				extra["reason"] = body.Reason
			}
			s.memberLocked(rm, user, user, "leave", extra)
		}
		s.mu.Unlock()
		writeJSON(w, 200, map[string]any{})
	case r.Method == "GET" && len(parts) == 5 && parts[0] == "rooms" && parts[2] == "state":
		s.state(w, user, parts[1], parts[3], parts[4])
	case r.Method == "GET" && len(parts) == 4 && parts[0] == "rooms" && parts[2] == "state":
		s.state(w, user, parts[1], parts[3], "")
	case r.Method == "GET" && len(parts) == 3 && parts[0] == "rooms" && parts[2] == "joined_members":
		s.mu.Lock()
		defer s.mu.Unlock()
		rm := s.rooms[parts[1]]
		if rm == nil || rm.members[user] != "join" {
			merr(w, 403, "M_FORBIDDEN", "You aren't a member of the room.")
			return
		}
		joined := map[string]any{}
		for u, m := range rm.members {
			if m == "join" {
				joined[u] = map[string]any{}
			}
		}
		writeJSON(w, 200, map[string]any{"joined": joined})
	case r.Method == "GET" && len(parts) == 4 && parts[0] == "rooms" && parts[2] == "event":
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, e := range s.events {
			if e.ID == parts[3] && e.Room == parts[1] {
				writeJSON(w, 200, s.wireLocked(e, tok))
				return
			}
		}
		merr(w, 404, "M_NOT_FOUND", "Event not found.")
	case r.Method == "GET" && len(parts) == 3 && parts[0] == "rooms" && parts[2] == "messages":
		s.messages(w, r, tok, parts[1])
	case r.Method == "PUT" && len(parts) == 5 && parts[0] == "rooms" && parts[2] == "send":
		s.send(w, r, tok, user, parts[1], parts[3], parts[4], "")
	case r.Method == "PUT" && len(parts) == 5 && parts[0] == "rooms" && parts[2] == "redact":
		s.send(w, r, tok, user, parts[1], "m.room.redaction", parts[4], parts[3])
	case r.Method == "POST" && len(parts) == 3 && parts[0] == "user" && parts[2] == "filter":
		var f json.RawMessage
		json.NewDecoder(r.Body).Decode(&f)
		s.mu.Lock()
		id := strconv.Itoa(len(s.filters) + 1)
		s.filters[id] = string(f)
		s.mu.Unlock()
		writeJSON(w, 200, map[string]any{"filter_id": id})
	default:
		merr(w, 404, "M_UNRECOGNIZED", "Unrecognized request: "+r.Method+" "+path)
	}
}

func (s *Server) join(w http.ResponseWriter, user, idOrAlias string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := idOrAlias
	if strings.HasPrefix(idOrAlias, "#") {
		var ok bool
		if id, ok = s.aliases[idOrAlias]; !ok {
			merr(w, 404, "M_NOT_FOUND", "No known servers")
			return
		}
	}
	rm := s.rooms[id]
	if rm == nil {
		merr(w, 404, "M_NOT_FOUND", "No known servers")
		return
	}
	if !rm.public && rm.members[user] != "invite" && rm.members[user] != "join" {
		merr(w, 403, "M_FORBIDDEN", "You are not invited to this room.")
		return
	}
	if rm.members[user] != "join" {
		s.memberLocked(rm, user, user, "join", nil)
	}
	writeJSON(w, 200, map[string]any{"room_id": id})
}

func (s *Server) state(w http.ResponseWriter, user, roomID, typ, key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rm := s.rooms[roomID]
	if rm != nil && rm.members[user] != "join" && s.pagesPastTo {
		// As Dendrite v0.13 does: 200 and another event's content.
		writeJSON(w, 200, map[string]any{"membership": "invite"})
		return
	}
	if rm == nil || rm.members[user] != "join" {
		merr(w, 403, "M_FORBIDDEN", "You aren't a member of the room.")
		return
	}
	var found *Event
	for _, e := range s.events {
		if e.Room == roomID && e.Type == typ && e.StateKey != nil && *e.StateKey == key {
			found = e
		}
	}
	if found == nil {
		merr(w, 404, "M_NOT_FOUND", "Event not found.")
		return
	}
	writeJSON(w, 200, found.Content)
}

// wireLocked is an event as the client sees it: its own events carry the
// transaction ID they were sent with.
func (s *Server) wireLocked(e *Event, tok string) map[string]any {
	m := map[string]any{"event_id": e.ID, "room_id": e.Room, "sender": e.Sender, "type": e.Type, "content": e.Content, "origin_server_ts": e.TS}
	if e.StateKey != nil {
		m["state_key"] = *e.StateKey
	}
	unsigned := map[string]any{}
	for k, v := range e.Unsigned {
		unsigned[k] = v
	}
	if e.txnBy == tok && e.txn != "" {
		unsigned["transaction_id"] = e.txn
	}
	if len(unsigned) > 0 {
		m["unsigned"] = unsigned
	}
	return m
}

func (s *Server) send(w http.ResponseWriter, r *http.Request, tok, user, roomID, typ, txn, redacts string) {
	var content map[string]any
	if err := json.NewDecoder(r.Body).Decode(&content); err != nil {
		merr(w, 400, "M_NOT_JSON", "Content not JSON.")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sends++
	if prev, ok := s.txns[tok+"\x00"+txn]; ok {
		writeJSON(w, 200, map[string]any{"event_id": prev.ID})
		return
	}
	if s.limit429 > 0 {
		s.limit429--
		s.refused++
		if s.header429 {
			w.Header().Set("Retry-After", strconv.Itoa((s.retryMS+999)/1000))
		}
		writeJSON(w, 429, map[string]any{"errcode": "M_LIMIT_EXCEEDED", "error": "Too Many Requests", "retry_after_ms": s.retryMS})
		return
	}
	rm := s.rooms[roomID]
	if rm == nil || rm.members[user] != "join" {
		merr(w, 403, "M_FORBIDDEN", "User "+user+" not in room "+roomID)
		return
	}
	if b, _ := json.Marshal(content); len(b) > 65536 {
		merr(w, 413, "M_TOO_LARGE", "event too large")
		return
	}
	if typ == "m.room.message" && user == BotID && content["msgtype"] != "m.notice" {
		// A bot speaks in notices, which other bots do not answer.
		s.nonNotices = append(s.nonNotices, fmt.Sprint(content["msgtype"], ": ", content["body"]))
	}
	if typ == "m.reaction" {
		rel, _ := content["m.relates_to"].(map[string]any)
		for _, e := range s.events {
			if e.Type == "m.reaction" && e.Sender == user {
				erel, _ := e.Content["m.relates_to"].(map[string]any)
				if erel["event_id"] == rel["event_id"] && erel["key"] == rel["key"] {
					merr(w, 400, "M_DUPLICATE_ANNOTATION", "Can't send same reaction twice")
					return
				}
			}
		}
	}
	if rel, _ := content["m.relates_to"].(map[string]any); rel != nil && rel["rel_type"] == "m.thread" {
		root, _ := rel["event_id"].(string)
		for _, e := range s.events {
			if e.ID == root {
				if rt, _ := e.Relation(); rt != "" {
					merr(w, 400, "M_UNKNOWN", "Cannot start threads from an event with a relation")
					return
				}
			}
		}
	}
	var e *Event
	if redacts != "" {
		e = s.redactLocked(user, roomID, redacts, content)
	} else {
		e = s.appendLocked(roomID, user, typ, nil, content)
	}
	e.txnBy, e.txn = tok, txn
	s.txns[tok+"\x00"+txn] = e
	if s.fail500 > 0 {
		s.fail500--
		merr(w, 500, "M_UNKNOWN", "Internal server error")
		return
	}
	writeJSON(w, 200, map[string]any{"event_id": e.ID})
}

// timelineLimit reads room.timeline.limit from an inline or stored filter.
func (s *Server) timelineLimit(filter string) int {
	if filter == "" {
		return 10
	}
	if !strings.HasPrefix(filter, "{") {
		s.mu.Lock()
		filter = s.filters[filter]
		s.mu.Unlock()
	}
	var f struct {
		Room struct {
			Timeline struct {
				Limit int `json:"limit"`
			} `json:"timeline"`
		} `json:"room"`
	}
	if json.Unmarshal([]byte(filter), &f) != nil || f.Room.Timeline.Limit <= 0 {
		return 10
	}
	return f.Room.Timeline.Limit
}

func token(pos int) string { return "s" + strconv.Itoa(pos) }

func parseToken(t string) (int, bool) {
	n, err := strconv.Atoi(strings.TrimPrefix(t, "s"))
	return n, err == nil && strings.HasPrefix(t, "s")
}

func (s *Server) sync(w http.ResponseWriter, r *http.Request, user string) {
	q := r.URL.Query()
	tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	since := -1
	if q.Get("since") != "" {
		n, ok := parseToken(q.Get("since"))
		if !ok {
			merr(w, 400, "M_INVALID_PARAM", "bad since token")
			return
		}
		since = n
	}
	timeout, _ := strconv.Atoi(q.Get("timeout"))
	limit := s.timelineLimit(q.Get("filter"))
	s.mu.Lock()
	if user == BotID {
		s.syncs = append(s.syncs, q.Get("since"))
	}
	s.mu.Unlock()
	deadline := time.After(time.Duration(timeout) * time.Millisecond)
	for {
		s.mu.Lock()
		if s.down {
			s.dropped++
			s.mu.Unlock()
			if hj, ok := w.(http.Hijacker); ok {
				if c, _, err := hj.Hijack(); err == nil {
					c.Close()
				}
			}
			return
		}
		if _, ok := s.tokens[tok]; !ok {
			s.mu.Unlock()
			writeJSON(w, 401, map[string]any{"errcode": "M_UNKNOWN_TOKEN", "error": "Invalid access token passed.", "soft_logout": false})
			return
		}
		resp, has := s.syncLocked(user, tok, since, limit)
		wake := s.wake
		s.mu.Unlock()
		if has || timeout == 0 || since < 0 {
			writeJSON(w, 200, resp)
			return
		}
		select {
		case <-wake:
		case <-deadline:
			timeout = 0
		case <-r.Context().Done():
			return
		}
	}
}

func (s *Server) syncLocked(user, tok string, since, limit int) (map[string]any, bool) {
	join := map[string]any{}
	invite := map[string]any{}
	for id, rm := range s.rooms {
		switch rm.members[user] {
		case "join":
			var all, fresh []*Event
			newlyJoined := since < 0
			for _, e := range s.events {
				if e.Room != id {
					continue
				}
				all = append(all, e)
				if e.pos > since {
					fresh = append(fresh, e)
					if e.Type == "m.room.member" && e.StateKey != nil && *e.StateKey == user && e.Content["membership"] == "join" {
						newlyJoined = true
					}
				}
			}
			// A room joined since the last sync comes with its recent
			// history, as real servers send it.
			if newlyJoined {
				fresh = all
			}
			if len(fresh) == 0 {
				continue
			}
			limited := len(fresh) > limit
			if limited {
				fresh = fresh[len(fresh)-limit:]
			}
			var evs []any
			for _, e := range fresh {
				evs = append(evs, s.wireLocked(e, tok))
			}
			join[id] = map[string]any{"timeline": map[string]any{"events": evs, "limited": limited, "prev_batch": token(fresh[0].pos - 1)}}
		case "invite":
			var inv *Event
			for _, e := range s.events {
				if e.Room == id && e.Type == "m.room.member" && e.StateKey != nil && *e.StateKey == user {
					inv = e
				}
			}
			if inv == nil || inv.pos <= since {
				continue
			}
			state := []any{map[string]any{"type": "m.room.member", "state_key": user, "sender": inv.Sender, "content": inv.Content}}
			if rm.encrypted {
				state = append(state, map[string]any{"type": "m.room.encryption", "state_key": "", "sender": inv.Sender, "content": map[string]any{"algorithm": "m.megolm.v1.aes-sha2"}})
			}
			invite[id] = map[string]any{"invite_state": map[string]any{"events": state}}
		}
	}
	rooms := map[string]any{}
	if len(join) > 0 {
		rooms["join"] = join
	}
	if len(invite) > 0 {
		rooms["invite"] = invite
	}
	return map[string]any{"next_batch": token(s.pos), "rooms": rooms}, len(rooms) > 0
}

func (s *Server) messages(w http.ResponseWriter, r *http.Request, tok, roomID string) {
	q := r.URL.Query()
	from, ok := parseToken(q.Get("from"))
	if !ok || q.Get("dir") != "b" {
		merr(w, 400, "M_INVALID_PARAM", "this fake pages backwards from a token only")
		return
	}
	to := -1
	if q.Get("to") != "" {
		if to, ok = parseToken(q.Get("to")); !ok {
			merr(w, 400, "M_INVALID_PARAM", "bad to token")
			return
		}
	}
	limit, _ := strconv.Atoi(q.Get("limit"))
	if limit <= 0 {
		limit = 10
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.limitPages > 0 {
		s.limitPages--
		s.refused++
		writeJSON(w, 429, map[string]any{"errcode": "M_LIMIT_EXCEEDED", "error": "Too Many Requests", "retry_after_ms": 100})
		return
	}
	var chunk []any
	end := ""
	last := 0
	for i := len(s.events) - 1; i >= 0; i-- {
		e := s.events[i]
		if e.Room != roomID || e.pos > from {
			continue
		}
		if e.pos <= to && !s.pagesPastTo {
			break
		}
		if len(chunk) == limit {
			end = token(e.pos)
			break
		}
		chunk = append(chunk, s.wireLocked(e, tok))
		last = e.pos
	}
	if s.pagesPastTo && end == "" && last > 0 {
		end = token(last - 1)
	}
	resp := map[string]any{"start": q.Get("from"), "chunk": chunk}
	if end != "" {
		resp["end"] = end
	}
	writeJSON(w, 200, resp)
}

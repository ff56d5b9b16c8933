package discordtest

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Identities the fake uses.
const (
	Token   = "Bot test-token"
	BotUser = "900"
	Guild   = "100"
	AppID   = "800"
)

// Message is a message the bot posted, with its edits.
type Message struct {
	ID, Channel, Content string
	// ReplyTo is the message this one replies to.
	ReplyTo    string
	Components []map[string]any
	Edits      []Message
	// AllowedMentions is what the post said may notify; nil when it said
	// nothing, and Discord then notifies everything the content mentions.
	AllowedMentions *AllowedMentions
}

// AllowedMentions is a post's allowed_mentions object.
type AllowedMentions struct {
	Parse []string `json:"parse"`
	Users []string `json:"users"`
	Roles []string `json:"roles"`
}

var mentionRe = regexp.MustCompile(`@everyone|@here|<@[!&]?(\w+)>`)

// Pings lists whom Discord would notify for the message as first posted,
// by its rules: "@everyone" (for @everyone and @here), "user:ID" and
// "role:ID", each allowed by allowed_mentions' parse list or by name.
func (m Message) Pings() []string {
	allowed := func(kind, id string) bool {
		a := m.AllowedMentions
		if a == nil {
			return true
		}
		if slices.Contains(a.Parse, kind) {
			return true
		}
		switch kind {
		case "users":
			return slices.Contains(a.Users, id)
		case "roles":
			return slices.Contains(a.Roles, id)
		}
		return false
	}
	var out []string
	for _, g := range mentionRe.FindAllStringSubmatch(m.Content, -1) {
		switch {
		case g[0] == "@everyone" || g[0] == "@here":
			if allowed("everyone", "") {
				out = append(out, "@everyone")
			}
		case strings.HasPrefix(g[0], "<@&"):
			if allowed("roles", g[1]) {
				out = append(out, "role:"+g[1])
			}
		default:
			if allowed("users", g[1]) {
				out = append(out, "user:"+g[1])
			}
		}
	}
	return out
}

// Current is the message as it reads now.
func (m Message) Current() Message {
	if len(m.Edits) > 0 {
		e := m.Edits[len(m.Edits)-1]
		e.ID, e.Channel, e.ReplyTo = m.ID, m.Channel, m.ReplyTo
		return e
	}
	return m
}

// Buttons returns label → custom_id.
func (m Message) Buttons() map[string]string {
	out := map[string]string{}
	for _, row := range m.Components {
		cs, _ := row["components"].([]any)
		for _, c := range cs {
			b, _ := c.(map[string]any)
			label, _ := b["label"].(string)
			id, _ := b["custom_id"].(string)
			out[label] = id
		}
	}
	return out
}

// Server is the fake Discord.
type Server struct {
	srv *httptest.Server

	mu        sync.Mutex
	messages  []*Message
	callbacks []map[string]any
	// commands are the application commands registered, by guild.
	commands      map[string][]map[string]any
	registrations int
	idSeq         int
	seq           int
	down          bool
	noReady       bool
	closeCode     int
	limitNext     int
	retryAfter    float64
	conns         map[*websocket.Conn]func(any) error
	identifies    int
	resumes       int
	intents       int
	session       string
	clicked       map[string]time.Time // interaction ID → when it was dispatched
	answered      []time.Duration
	lastEvent     [2]any // the last dispatched event's type and data
	slowPosts     time.Duration
	failNext      int
}

// SlowPosts makes every message call take d before it answers.
func (s *Server) SlowPosts(d time.Duration) { s.mu.Lock(); s.slowPosts = d; s.mu.Unlock() }

// FailNext answers the next n message calls with 500.
func (s *Server) FailNext(n int) { s.mu.Lock(); s.failNext = n; s.mu.Unlock() }

// CallbackTimes are how long the bot took to answer each click.
func (s *Server) CallbackTimes() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.answered...)
}

// Redeliver dispatches the last event again, as a resumed session replays
// events.
func (s *Server) Redeliver() error {
	s.mu.Lock()
	ev := s.lastEvent
	s.mu.Unlock()
	return s.dispatch(ev[0].(string), ev[1])
}

// New starts a fake Discord; it stops when the test ends.
func New(t interface{ Cleanup(func()) }) *Server {
	s := &Server{conns: map[*websocket.Conn]func(any) error{}, idSeq: 1000, clicked: map[string]time.Time{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/api/v9/gateway", s.gateway)
	mux.HandleFunc("/gw/", s.ws)
	mux.HandleFunc("/api/v9/channels/", s.channels)
	mux.HandleFunc("/api/v9/interactions/", s.interactions)
	mux.HandleFunc("/api/v9/applications/", s.applications)
	s.srv = httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

// URL is the base URL to point the client at.
func (s *Server) URL() string { return s.srv.URL }

// Close stops the server.
func (s *Server) Close() {
	s.DropGateway()
	s.srv.Close()
}

// SetDown makes every REST call fail with 503 and drops the gateway.
func (s *Server) SetDown(down bool) {
	s.mu.Lock()
	s.down = down
	s.mu.Unlock()
	if down {
		s.DropGateway()
	}
}

// NoReady makes the gateway never answer IDENTIFY.
func (s *Server) NoReady(v bool) { s.mu.Lock(); s.noReady = v; s.mu.Unlock() }

// CloseOnIdentify makes the gateway close with code after IDENTIFY (4014:
// a privileged intent that is not enabled; 4004: a bad token).
func (s *Server) CloseOnIdentify(code int) { s.mu.Lock(); s.closeCode = code; s.mu.Unlock() }

// RateLimit answers the next n message calls with 429.
func (s *Server) RateLimit(n int, retryAfter float64) {
	s.mu.Lock()
	s.limitNext, s.retryAfter = n, retryAfter
	s.mu.Unlock()
}

// DropGateway closes every gateway connection without a close frame.
func (s *Server) DropGateway() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.Close()
		delete(s.conns, c)
	}
}

// Stats are how many IDENTIFYs and RESUMEs the gateway saw, and the
// intents last asked for.
func (s *Server) Stats() (identifies, resumes, intents int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.identifies, s.resumes, s.intents
}

// Connected reports whether a gateway connection is ready.
func (s *Server) Connected() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns) > 0
}

// WaitConnected waits for a ready gateway connection.
func (s *Server) WaitConnected(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for !s.Connected() {
		if time.Now().After(deadline) {
			return errors.New("the client did not connect")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}

// Messages returns copies of the messages posted, in order.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Message, len(s.messages))
	for i, m := range s.messages {
		out[i] = *m
		out[i].Edits = append([]Message(nil), m.Edits...)
	}
	return out
}

// Callbacks returns the interaction responses received.
func (s *Server) Callbacks() []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]map[string]any(nil), s.callbacks...)
}

func (s *Server) nextID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.idSeq++
	return fmt.Sprint(s.idSeq)
}

func (s *Server) gate(w http.ResponseWriter, r *http.Request, limited bool) bool {
	s.mu.Lock()
	down := s.down
	limit := false
	if limited && s.limitNext > 0 {
		s.limitNext--
		limit = true
	}
	failed := false
	if limited && !limit && s.failNext > 0 {
		s.failNext--
		failed = true
	}
	slow := time.Duration(0)
	if limited {
		slow = s.slowPosts
	}
	retry := s.retryAfter
	s.mu.Unlock()
	time.Sleep(slow)
	if failed {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return false
	}
	if down {
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
		return false
	}
	if r.Header.Get("Authorization") != Token {
		w.WriteHeader(http.StatusUnauthorized)
		json.NewEncoder(w).Encode(map[string]any{"message": "401: Unauthorized", "code": 0})
		return false
	}
	if limit {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTooManyRequests)
		json.NewEncoder(w).Encode(map[string]any{"message": "You are being rate limited.", "retry_after": retry, "global": false})
		return false
	}
	return true
}

func (s *Server) gateway(w http.ResponseWriter, r *http.Request) {
	if !s.gate(w, r, false) {
		return
	}
	json.NewEncoder(w).Encode(map[string]any{"url": "ws" + strings.TrimPrefix(s.srv.URL, "http") + "/gw"})
}

func messageJSON(m *Message) map[string]any {
	out := map[string]any{"id": m.ID, "channel_id": m.Channel, "guild_id": Guild, "content": m.Content,
		"timestamp": time.Now().UTC().Format(time.RFC3339), "author": map[string]any{"id": BotUser, "username": "stagebot", "bot": true}}
	return out
}

func (s *Server) channels(w http.ResponseWriter, r *http.Request) {
	if !s.gate(w, r, true) {
		return
	}
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/api/v9/channels/"), "/")
	var body struct {
		Content    string           `json:"content"`
		Components []map[string]any `json:"components"`
		Reference  *struct {
			MessageID string `json:"message_id"`
		} `json:"message_reference"`
		AllowedMentions *AllowedMentions `json:"allowed_mentions"`
	}
	json.NewDecoder(r.Body).Decode(&body)
	w.Header().Set("Content-Type", "application/json")
	switch {
	case r.Method == http.MethodPost && len(parts) == 2 && parts[1] == "messages":
		if strings.HasPrefix(parts[0], "404") {
			w.WriteHeader(http.StatusNotFound)
			json.NewEncoder(w).Encode(map[string]any{"message": "Unknown Channel", "code": 10003})
			return
		}
		m := &Message{ID: s.nextID(), Channel: parts[0], Content: body.Content, Components: body.Components, AllowedMentions: body.AllowedMentions}
		if body.Reference != nil {
			m.ReplyTo = body.Reference.MessageID
		}
		s.mu.Lock()
		s.messages = append(s.messages, m)
		s.mu.Unlock()
		json.NewEncoder(w).Encode(messageJSON(m))
	case r.Method == http.MethodPatch && len(parts) == 3 && parts[1] == "messages":
		s.mu.Lock()
		var found *Message
		for _, m := range s.messages {
			if m.ID == parts[2] && m.Channel == parts[0] {
				found = m
			}
		}
		if found != nil {
			found.Edits = append(found.Edits, Message{Content: body.Content, Components: body.Components})
		}
		s.mu.Unlock()
		if found == nil {
			w.WriteHeader(http.StatusNotFound)
			json.NewEncoder(w).Encode(map[string]any{"message": "Unknown Message", "code": 10008})
			return
		}
		json.NewEncoder(w).Encode(messageJSON(found))
	default:
		http.NotFound(w, r)
	}
}

func (s *Server) interactions(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	down := s.down
	s.mu.Unlock()
	if down {
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
		return
	}
	var body map[string]any
	json.NewDecoder(r.Body).Decode(&body)
	id := strings.SplitN(strings.TrimPrefix(r.URL.Path, "/api/v9/interactions/"), "/", 2)[0]
	s.mu.Lock()
	if body != nil {
		body["interaction_id"] = id
	}
	s.callbacks = append(s.callbacks, body)
	if at, ok := s.clicked[id]; ok {
		s.answered = append(s.answered, time.Since(at))
	}
	s.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

var upgrader = websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}

func (s *Server) ws(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	down := s.down
	s.mu.Unlock()
	if down {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	c, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer c.Close()
	var wmu sync.Mutex
	write := func(v any) error {
		wmu.Lock()
		defer wmu.Unlock()
		return c.WriteJSON(v)
	}
	write(map[string]any{"op": 10, "d": map[string]any{"heartbeat_interval": 500}})
	for {
		_, data, err := c.ReadMessage()
		if err != nil {
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
			return
		}
		var f struct {
			Op int             `json:"op"`
			D  json.RawMessage `json:"d"`
		}
		if json.Unmarshal(data, &f) != nil {
			continue
		}
		switch f.Op {
		case 1:
			write(map[string]any{"op": 11})
		case 2, 6:
			s.mu.Lock()
			noReady, code := s.noReady, s.closeCode
			if f.Op == 2 {
				s.identifies++
				var id struct {
					Intents int `json:"intents"`
				}
				json.Unmarshal(f.D, &id)
				s.intents = id.Intents
				s.session = fmt.Sprintf("sess-%d", s.identifies)
			} else {
				s.resumes++
			}
			s.seq++
			seq, session := s.seq, s.session
			s.mu.Unlock()
			// 4014: a privileged intent asked for and not granted; the
			// same bot without it is let in.
			if code == 4014 && s.intents&(1<<15) == 0 {
				code = 0
			}
			if code != 0 {
				wmu.Lock()
				c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, "Disallowed intent(s)."), time.Now().Add(time.Second))
				wmu.Unlock()
				return
			}
			if noReady {
				continue
			}
			if f.Op == 2 {
				write(map[string]any{"op": 0, "s": seq, "t": "READY", "d": map[string]any{
					"v": 9, "session_id": session, "user": map[string]any{"id": BotUser, "username": "stagebot", "bot": true},
					"guilds": []any{map[string]any{"id": Guild, "unavailable": true}}, "application": map[string]any{"id": AppID}, "shard": []int{0, 1}}})
			} else {
				write(map[string]any{"op": 0, "s": seq, "t": "RESUMED", "d": map[string]any{}})
			}
			s.mu.Lock()
			s.conns[c] = write
			s.mu.Unlock()
		}
	}
}

// dispatch sends an event to every ready connection.
func (s *Server) dispatch(t string, d any) error {
	if err := s.WaitConnected(10 * time.Second); err != nil {
		return err
	}
	s.mu.Lock()
	s.seq++
	frame := map[string]any{"op": 0, "s": s.seq, "t": t, "d": d}
	s.lastEvent = [2]any{t, d}
	if m, ok := d.(map[string]any); ok && t == "INTERACTION_CREATE" {
		if _, seen := s.clicked[m["id"].(string)]; !seen {
			s.clicked[m["id"].(string)] = time.Now()
		}
	}
	var ws []func(any) error
	for _, w := range s.conns {
		ws = append(ws, w)
	}
	s.mu.Unlock()
	for _, w := range ws {
		if err := w(frame); err != nil {
			return err
		}
	}
	return nil
}

// Say delivers a guild message from a user.
func (s *Server) Say(userID, userName, channel, content string) error {
	return s.dispatch("MESSAGE_CREATE", map[string]any{
		"id": s.nextID(), "channel_id": channel, "guild_id": Guild, "content": content,
		"timestamp": time.Now().UTC().Format(time.RFC3339), "mentions": []any{},
		"author": map[string]any{"id": userID, "username": userName},
	})
}

// BotEcho delivers the bot's own message back to it.
func (s *Server) BotEcho(channel, content string) error {
	return s.dispatch("MESSAGE_CREATE", map[string]any{
		"id": s.nextID(), "channel_id": channel, "guild_id": Guild, "content": content,
		"timestamp": time.Now().UTC().Format(time.RFC3339), "mentions": []any{},
		"author": map[string]any{"id": BotUser, "username": "stagebot", "bot": true},
	})
}

// Click presses the button labelled label on m, as a user.
func (s *Server) Click(userID, userName string, m Message, label string) error {
	id, ok := m.Current().Buttons()[label]
	if !ok {
		return fmt.Errorf("message %s has no button %q (it has %v)", m.ID, label, m.Current().Buttons())
	}
	return s.dispatch("INTERACTION_CREATE", map[string]any{
		"id": s.nextID(), "application_id": AppID, "type": 3, "token": "itok-" + s.nextID(), "version": 1,
		"guild_id": Guild, "channel_id": m.Channel,
		"member":  map[string]any{"user": map[string]any{"id": userID, "username": userName}, "permissions": "0"},
		"message": messageJSON(&m), "data": map[string]any{"custom_id": id, "component_type": 2},
		"app_permissions": "0",
	})
}

var guildCommandsPath = regexp.MustCompile(`^/api/v9/applications/(\w+)/guilds/(\w+)/commands$`)

// applications takes a bulk overwrite of a guild's application commands
// (PUT /applications/{app}/guilds/{guild}/commands), as Discord does: the
// list replaces what was there, and comes back with IDs.
func (s *Server) applications(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	down := s.down
	s.mu.Unlock()
	if down {
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
		return
	}
	m := guildCommandsPath.FindStringSubmatch(r.URL.Path)
	if m == nil || m[1] != AppID {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodPut {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	var cmds []map[string]any
	if err := json.NewDecoder(r.Body).Decode(&cmds); err != nil {
		http.Error(w, `{"message": "Invalid Form Body", "code": 50035}`, http.StatusBadRequest)
		return
	}
	for _, c := range cmds {
		c["id"] = s.nextID()
		c["application_id"] = AppID
		c["guild_id"] = m[2]
		c["version"] = "1"
	}
	s.mu.Lock()
	if s.commands == nil {
		s.commands = map[string][]map[string]any{}
	}
	s.commands[m[2]] = cmds
	s.registrations++
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(cmds)
}

// Commands are the application commands registered in a guild.
func (s *Server) Commands(guild string) []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.commands[guild]
}

// Option is one option of a slash command as Discord sends it.
type Option struct {
	Name    string
	Type    int // 3 string, 4 integer
	Value   any
	Focused bool
}

func (s *Server) commandInteraction(typ int, userID, userName, channel, sub string, opts []Option) (string, error) {
	var os []any
	for _, o := range opts {
		m := map[string]any{"name": o.Name, "type": o.Type, "value": o.Value}
		if o.Focused {
			m["focused"] = true
		}
		os = append(os, m)
	}
	id := s.nextID()
	return id, s.dispatch("INTERACTION_CREATE", map[string]any{
		"id": id, "application_id": AppID, "type": typ, "token": "itok-" + s.nextID(), "version": 1,
		"guild_id": Guild, "channel_id": channel,
		"member":          map[string]any{"user": map[string]any{"id": userID, "username": userName}, "permissions": "0"},
		"data":            map[string]any{"id": "cmd-stage", "name": "stage", "type": 1, "options": []any{map[string]any{"name": sub, "type": 1, "options": os}}},
		"app_permissions": "0",
	})
}

// Slash runs /stage sub with options, as a user; it returns the
// interaction's ID.
func (s *Server) Slash(userID, userName, channel, sub string, opts ...Option) (string, error) {
	return s.commandInteraction(2, userID, userName, channel, sub, opts)
}

// Autocomplete is a user typing the focused option of /stage sub; it
// returns the interaction's ID, whose callback has the choices.
func (s *Server) Autocomplete(userID, userName, channel, sub string, opts ...Option) (string, error) {
	return s.commandInteraction(4, userID, userName, channel, sub, opts)
}

// Callback waits for the answer to an interaction.
func (s *Server) Callback(id string, timeout time.Duration) (map[string]any, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		s.mu.Lock()
		for _, c := range s.callbacks {
			if c["interaction_id"] == id {
				s.mu.Unlock()
				return c, nil
			}
		}
		s.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	return nil, fmt.Errorf("interaction %s was not answered within %s", id, timeout)
}

// Registrations counts the bulk overwrites of guild commands that Discord
// took.
func (s *Server) Registrations() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.registrations
}

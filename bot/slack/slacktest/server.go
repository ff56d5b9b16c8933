package slacktest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Tokens the fake accepts.
const (
	BotToken = "xoxb-test-bot-token"
	AppToken = "xapp-test-app-token"
	BotUser  = "UBOT"
	BotID    = "BBOT"
)

// Message is a message the bot posted or edited, as Slack recorded it.
type Message struct {
	Channel  string
	TS       string
	ThreadTS string
	Text     string
	Blocks   []map[string]any
	// Edits are the later versions of the message (chat.update), oldest
	// first.
	Edits []Message
}

// Current is the message as it reads now.
func (m Message) Current() Message {
	if len(m.Edits) > 0 {
		e := m.Edits[len(m.Edits)-1]
		e.TS, e.ThreadTS = m.TS, m.ThreadTS
		return e
	}
	return m
}

// Buttons returns the message's buttons as label → value.
func (m Message) Buttons() map[string]string {
	out := map[string]string{}
	for _, b := range m.Blocks {
		if b["type"] != "actions" {
			continue
		}
		els, _ := b["elements"].([]any)
		for _, e := range els {
			el, _ := e.(map[string]any)
			text, _ := el["text"].(map[string]any)
			label, _ := text["text"].(string)
			value, _ := el["value"].(string)
			out[label] = value
		}
	}
	return out
}

// AllText is the message's text and every text in its blocks.
func (m Message) AllText() string {
	var sb strings.Builder
	sb.WriteString(m.Text)
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if t, ok := x["text"].(string); ok {
				sb.WriteString("\n" + t)
			}
			for _, y := range x {
				walk(y)
			}
		case []any:
			for _, y := range x {
				walk(y)
			}
		}
	}
	for _, b := range m.Blocks {
		walk(b)
	}
	return sb.String()
}

// Server is the fake Slack.
type Server struct {
	srv *httptest.Server
	// PingInterval is how often the socket is pinged (default 100ms).
	PingInterval time.Duration

	mu           sync.Mutex
	homes        map[string]Message // the App Home published for each user
	modals       []map[string]any   // the modals opened, in order
	messages     []*Message
	calls        map[string]int
	users        map[string]string
	displayNames map[string]string
	tsSeq        int
	envSeq       int
	down         bool
	noPings      bool
	limitNext    int
	retryAfter   int
	conns        map[*websocket.Conn]bool
	writers      map[*websocket.Conn]func(any) error
	connects     int
	acks         map[string]chan json.RawMessage
	connChanged  chan struct{}
	lastType     string
	lastPayload  any
	ackTimes     []time.Duration
	slowPosts    time.Duration
	failNext     int
}

// New starts a fake Slack; it stops when the test ends.
func New(t interface{ Cleanup(func()) }) *Server {
	s := &Server{
		PingInterval: 100 * time.Millisecond,
		calls:        map[string]int{}, users: map[string]string{}, displayNames: map[string]string{},
		conns: map[*websocket.Conn]bool{}, writers: map[*websocket.Conn]func(any) error{}, acks: map[string]chan json.RawMessage{},
		connChanged: make(chan struct{}, 16),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/api/", s.api)
	mux.HandleFunc("/link/", s.link)
	s.srv = httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

// URL is the Web API base URL, with the trailing slash slack-go needs.
func (s *Server) URL() string { return s.srv.URL + "/api/" }

// Close stops the server.
func (s *Server) Close() {
	s.DropSocket()
	s.srv.Close()
}

// AddUser makes users.info know a user by its username.
func (s *Server) AddUser(id, name string) {
	s.mu.Lock()
	s.users[id] = name
	s.mu.Unlock()
}

// SetDisplayName gives a user the display name its owner chose (users.info
// returns it in the profile).
func (s *Server) SetDisplayName(id, display string) {
	s.mu.Lock()
	s.displayNames[id] = display
	s.mu.Unlock()
}

// SetDown makes every Web API call fail with 503 and refuses sockets.
func (s *Server) SetDown(down bool) {
	s.mu.Lock()
	s.down = down
	s.mu.Unlock()
	if down {
		s.DropSocket()
	}
}

// SlowPosts makes every chat.* call take d before it answers.
func (s *Server) SlowPosts(d time.Duration) {
	s.mu.Lock()
	s.slowPosts = d
	s.mu.Unlock()
}

// FailNext answers the next n chat.* calls with 500.
func (s *Server) FailNext(n int) {
	s.mu.Lock()
	s.failNext = n
	s.mu.Unlock()
}

// RateLimit answers the next n chat.* calls with 429 and Retry-After.
func (s *Server) RateLimit(n, retryAfterSeconds int) {
	s.mu.Lock()
	s.limitNext, s.retryAfter = n, retryAfterSeconds
	s.mu.Unlock()
}

// StopPings stops (or resumes) pinging the socket.
func (s *Server) StopPings(stop bool) {
	s.mu.Lock()
	s.noPings = stop
	s.mu.Unlock()
}

// DropSocket closes every open socket without a word.
func (s *Server) DropSocket() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.Close()
		delete(s.conns, c)
	}
}

// Disconnect sends a "disconnect" frame, as Slack does before it closes a
// connection.
func (s *Server) Disconnect() {
	s.broadcast(map[string]any{"type": "disconnect", "reason": "refresh_requested", "debug_info": map[string]any{"host": "fake"}})
}

// Connects is how many sockets the client has opened.
func (s *Server) Connects() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.connects
}

// Connected reports whether a socket is open.
func (s *Server) Connected() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.writers) > 0
}

// Calls is how many times a Web API method was called.
func (s *Server) Calls(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[method]
}

// Methods are the Web API methods called so far, sorted.
func (s *Server) Methods() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.calls))
	for m := range s.calls {
		out = append(out, m)
	}
	sort.Strings(out)
	return out
}

// Messages returns copies of every message posted, in order.
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

func (s *Server) api(w http.ResponseWriter, r *http.Request) {
	method := strings.TrimPrefix(r.URL.Path, "/api/")
	s.mu.Lock()
	s.calls[method]++
	down := s.down
	limited := false
	if strings.HasPrefix(method, "chat.") && s.limitNext > 0 {
		s.limitNext--
		limited = true
	}
	failed := false
	if strings.HasPrefix(method, "chat.") && !limited && s.failNext > 0 {
		s.failNext--
		failed = true
	}
	slow := time.Duration(0)
	if strings.HasPrefix(method, "chat.") {
		slow = s.slowPosts
	}
	retry := s.retryAfter
	s.mu.Unlock()
	time.Sleep(slow)
	if failed {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	if down {
		http.Error(w, "service unavailable", http.StatusServiceUnavailable)
		return
	}
	if limited {
		w.Header().Set("Retry-After", strconv.Itoa(retry))
		w.WriteHeader(http.StatusTooManyRequests)
		return
	}
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	reply := func(v map[string]any) {
		v["ok"] = true
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(v)
	}
	fail := func(code string) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"ok": false, "error": code})
	}
	if method == "apps.connections.open" {
		if r.Header.Get("Authorization") != "Bearer "+AppToken {
			fail("invalid_auth")
			return
		}
		reply(map[string]any{"url": "ws" + strings.TrimPrefix(s.srv.URL, "http") + "/link/?ticket=t"})
		return
	}
	if r.PostForm.Get("token") != BotToken && r.Header.Get("Authorization") != "Bearer "+BotToken {
		fail("invalid_auth")
		return
	}
	switch method {
	case "views.open":
		var req struct {
			TriggerID string         `json:"trigger_id"`
			View      map[string]any `json:"view"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.TriggerID == "" || req.View["type"] != "modal" {
			fail("invalid_arguments")
			return
		}
		s.mu.Lock()
		s.modals = append(s.modals, req.View)
		s.mu.Unlock()
		reply(map[string]any{"view": map[string]any{"id": "V2", "type": "modal"}})
	case "views.publish":
		var req struct {
			UserID string `json:"user_id"`
			View   struct {
				Type   string           `json:"type"`
				Blocks []map[string]any `json:"blocks"`
			} `json:"view"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.UserID == "" || req.View.Type != "home" {
			fail("invalid_arguments")
			return
		}
		s.mu.Lock()
		if s.homes == nil {
			s.homes = map[string]Message{}
		}
		s.homes[req.UserID] = Message{Channel: req.UserID, Blocks: req.View.Blocks}
		s.mu.Unlock()
		reply(map[string]any{"view": map[string]any{"id": "V1", "type": "home"}})
	case "auth.test":
		reply(map[string]any{"url": "https://fake.slack.com/", "team": "Fake", "user": "stagebot", "team_id": "T1", "user_id": BotUser, "bot_id": BotID})
	case "users.info":
		s.mu.Lock()
		name, ok := s.users[r.PostForm.Get("user")]
		display := s.displayNames[r.PostForm.Get("user")]
		s.mu.Unlock()
		if !ok {
			fail("user_not_found")
			return
		}
		reply(map[string]any{"user": map[string]any{"id": r.PostForm.Get("user"), "name": name, "real_name": name,
			"profile": map[string]any{"display_name": display}}})
	case "chat.postMessage":
		m := s.record(r)
		if m.Channel == "" || strings.HasPrefix(m.Channel, "NOPE") {
			fail("channel_not_found")
			return
		}
		s.mu.Lock()
		s.tsSeq++
		m.TS = fmt.Sprintf("1700000000.%06d", s.tsSeq)
		s.messages = append(s.messages, &m)
		s.mu.Unlock()
		reply(map[string]any{"channel": m.Channel, "ts": m.TS, "message": map[string]any{"type": "message", "text": m.Text, "user": BotUser, "bot_id": BotID, "ts": m.TS}})
	case "chat.update":
		m := s.record(r)
		ts := r.PostForm.Get("ts")
		s.mu.Lock()
		var found *Message
		for _, old := range s.messages {
			if old.TS == ts && old.Channel == m.Channel {
				found = old
			}
		}
		if found != nil {
			found.Edits = append(found.Edits, m)
		}
		s.mu.Unlock()
		if found == nil {
			fail("message_not_found")
			return
		}
		reply(map[string]any{"channel": m.Channel, "ts": ts, "text": m.Text})
	default:
		fail("unknown_method")
	}
}

func (s *Server) record(r *http.Request) Message {
	m := Message{Channel: r.PostForm.Get("channel"), Text: r.PostForm.Get("text"), ThreadTS: r.PostForm.Get("thread_ts")}
	if b := r.PostForm.Get("blocks"); b != "" {
		json.Unmarshal([]byte(b), &m.Blocks)
	}
	return m
}

var upgrader = websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}

func (s *Server) link(w http.ResponseWriter, r *http.Request) {
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
	var wmu sync.Mutex
	write := func(v any) error {
		wmu.Lock()
		defer wmu.Unlock()
		return c.WriteJSON(v)
	}
	s.mu.Lock()
	s.conns[c] = true
	s.connects++
	s.mu.Unlock()
	select {
	case s.connChanged <- struct{}{}:
	default:
	}
	c.SetReadLimit(1 << 20)
	write(map[string]any{"type": "hello", "num_connections": 1, "debug_info": map[string]any{"host": "fake", "approximate_connection_time": 3600}, "connection_info": map[string]any{"app_id": "A1"}})
	stop := make(chan struct{})
	go func() {
		t := time.NewTicker(s.PingInterval)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				s.mu.Lock()
				quiet := s.noPings
				s.mu.Unlock()
				if !quiet {
					wmu.Lock()
					c.WriteControl(websocket.PingMessage, []byte("ping"), time.Now().Add(time.Second))
					wmu.Unlock()
				}
			}
		}
	}()
	s.mu.Lock()
	s.writers[c] = write
	s.mu.Unlock()
	defer func() {
		close(stop)
		s.mu.Lock()
		delete(s.conns, c)
		delete(s.writers, c)
		s.mu.Unlock()
		c.Close()
	}()
	for {
		_, data, err := c.ReadMessage()
		if err != nil {
			return
		}
		var ack struct {
			EnvelopeID string          `json:"envelope_id"`
			Payload    json.RawMessage `json:"payload"`
		}
		if json.Unmarshal(data, &ack) == nil && ack.EnvelopeID != "" {
			s.mu.Lock()
			ch := s.acks[ack.EnvelopeID]
			s.mu.Unlock()
			if ch != nil {
				select {
				case ch <- ack.Payload:
				default:
				}
			}
		}
	}
}

// Home is the App Home last published for a user.
func (s *Server) Home(user string) (Message, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.homes[user]
	return m, ok
}

// Modals are the modals the app opened (views.open), in order.
func (s *Server) Modals() []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]map[string]any(nil), s.modals...)
}

package slacktest

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// ErrNoAck is returned when the client does not ack an envelope in time.
var ErrNoAck = errors.New("the envelope was not acked within 3s")

func (s *Server) broadcast(v any) int {
	s.mu.Lock()
	var ws []func(any) error
	for _, w := range s.writers {
		ws = append(ws, w)
	}
	s.mu.Unlock()
	n := 0
	for _, w := range ws {
		if w(v) == nil {
			n++
		}
	}
	return n
}

// WaitConnected waits until a socket is open.
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

// push sends an envelope and waits for its ack, as Slack does (it would
// redeliver after 3s without one). It returns the ack's payload.
func (s *Server) push(typ string, payload any) (json.RawMessage, error) {
	return s.pushAttempt(typ, payload, 0)
}

// Redeliver sends the last envelope again, in a new envelope with
// retry_attempt 1, as Slack does when it thinks the first was not acked.
func (s *Server) Redeliver() (json.RawMessage, error) {
	s.mu.Lock()
	typ, payload := s.lastType, s.lastPayload
	s.mu.Unlock()
	return s.pushAttempt(typ, payload, 1)
}

// AckTimes are how long the bot took to acknowledge each envelope.
func (s *Server) AckTimes() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.ackTimes...)
}

func (s *Server) pushAttempt(typ string, payload any, attempt int) (json.RawMessage, error) {
	if err := s.WaitConnected(10 * time.Second); err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.envSeq++
	id := fmt.Sprintf("env-%d", s.envSeq)
	ch := make(chan json.RawMessage, 1)
	s.acks[id] = ch
	s.lastType, s.lastPayload = typ, payload
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.acks, id)
		s.mu.Unlock()
	}()
	reason := ""
	if attempt > 0 {
		reason = "timeout"
	}
	env := map[string]any{"envelope_id": id, "type": typ, "payload": payload, "accepts_response_payload": typ == "slash_commands", "retry_attempt": attempt, "retry_reason": reason}
	sent := time.Now()
	// A socket may be between connections (the client reconnects when a
	// loaded machine delays its pings): wait for the next, as Slack does.
	for deadline := time.Now().Add(10 * time.Second); s.broadcast(env) == 0; {
		if time.Now().After(deadline) {
			return nil, errors.New("no socket to send on")
		}
		time.Sleep(10 * time.Millisecond)
		sent = time.Now()
	}
	select {
	case p := <-ch:
		s.mu.Lock()
		s.ackTimes = append(s.ackTimes, time.Since(sent))
		s.mu.Unlock()
		return p, nil
	case <-time.After(3 * time.Second):
		return nil, ErrNoAck
	}
}

func (s *Server) nextTS() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tsSeq++
	return fmt.Sprintf("1700000000.%06d", s.tsSeq)
}

// Say delivers a channel message from user, as an events_api envelope. It
// returns the message's ts.
func (s *Server) Say(user, channel, text string) (string, error) {
	ts := s.nextTS()
	_, err := s.push("events_api", s.callback(map[string]any{
		"type": "message", "channel": channel, "channel_type": "channel", "user": user, "text": text, "ts": ts, "event_ts": ts,
	}))
	return ts, err
}

// SayDirect delivers a direct message from user to the bot (channel is
// the conversation's ID, D…), as an events_api envelope.
func (s *Server) SayDirect(user, channel, text string) (string, error) {
	ts := s.nextTS()
	_, err := s.push("events_api", s.callback(map[string]any{
		"type": "message", "channel": channel, "channel_type": "im", "user": user, "text": text, "ts": ts, "event_ts": ts,
	}))
	return ts, err
}

// SayInThread is Say as a reply in the thread of threadTS.
func (s *Server) SayInThread(user, channel, threadTS, text string) (string, error) {
	ts := s.nextTS()
	_, err := s.push("events_api", s.callback(map[string]any{
		"type": "message", "channel": channel, "channel_type": "channel", "user": user, "text": text, "ts": ts, "event_ts": ts, "thread_ts": threadTS,
	}))
	return ts, err
}

// Mention delivers an app_mention of the bot.
func (s *Server) Mention(user, channel, text string) error {
	ts := s.nextTS()
	_, err := s.push("events_api", s.callback(map[string]any{
		"type": "app_mention", "channel": channel, "user": user, "text": fmt.Sprintf("<@%s> %s", BotUser, text), "ts": ts, "event_ts": ts,
	}))
	return err
}

// BotEcho delivers the bot's own message back to it, as Slack does.
func (s *Server) BotEcho(channel, text string) error {
	ts := s.nextTS()
	_, err := s.push("events_api", s.callback(map[string]any{
		"type": "message", "subtype": "bot_message", "channel": channel, "channel_type": "channel", "bot_id": BotID, "text": text, "ts": ts, "event_ts": ts,
	}))
	return err
}

func (s *Server) callback(event map[string]any) map[string]any {
	s.mu.Lock()
	s.envSeq++
	n := s.envSeq
	s.mu.Unlock()
	return map[string]any{"token": "t", "team_id": "T1", "api_app_id": "A1", "type": "event_callback",
		"event_id": fmt.Sprintf("Ev%d", n), "event_time": time.Now().Unix(), "event": event}
}

// Click presses the button labelled label on message m, as user.
func (s *Server) Click(user, userName string, m Message, label string) error {
	value, ok := m.Current().Buttons()[label]
	if !ok {
		return fmt.Errorf("message %s has no button %q (it has %v)", m.TS, label, m.Current().Buttons())
	}
	now := s.nextTS()
	_, err := s.push("interactive", map[string]any{
		"type": "block_actions", "user": map[string]any{"id": user, "username": userName, "name": userName, "team_id": "T1"},
		"team": map[string]any{"id": "T1", "domain": "fake"}, "api_app_id": "A1", "trigger_id": "tr" + now,
		"response_url": s.srv.URL + "/response", "container": map[string]any{"type": "message", "message_ts": m.TS, "channel_id": m.Channel, "is_ephemeral": false},
		"channel": map[string]any{"id": m.Channel, "name": m.Channel},
		"message": map[string]any{"type": "message", "ts": m.TS, "text": m.Text, "bot_id": BotID},
		"actions": []any{map[string]any{"action_id": "a1", "block_id": "stagebot", "type": "button", "value": value, "text": map[string]any{"type": "plain_text", "text": label}, "action_ts": now}},
	})
	return err
}

// Slash sends the /stage command with text and returns the ack's payload
// (the immediate answer the user sees).
func (s *Server) Slash(user, userName, channel, text string) (json.RawMessage, error) {
	return s.push("slash_commands", map[string]any{
		"token": "t", "team_id": "T1", "team_domain": "fake", "channel_id": channel, "channel_name": channel,
		"user_id": user, "user_name": userName, "command": "/stage", "text": text, "api_app_id": "A1",
		"response_url": s.srv.URL + "/response", "trigger_id": "tr" + s.nextTS(), "is_enterprise_install": "false",
	})
}

// OpenHome is a user opening the app's Home tab.
func (s *Server) OpenHome(user string) error {
	ts := s.nextTS()
	_, err := s.push("events_api", s.callback(map[string]any{
		"type": "app_home_opened", "user": user, "channel": "D" + user, "tab": "home", "event_ts": ts,
	}))
	return err
}

// ClickHome presses the button labelled label in the App Home published
// for user.
func (s *Server) ClickHome(user, userName, label string) error {
	home, ok := s.Home(user)
	if !ok {
		return fmt.Errorf("no App Home was published for %s", user)
	}
	value, ok := home.Buttons()[label]
	if !ok {
		return fmt.Errorf("the App Home of %s has no button %q (it has %v)", user, label, home.Buttons())
	}
	now := s.nextTS()
	_, err := s.push("interactive", map[string]any{
		"type": "block_actions", "user": map[string]any{"id": user, "username": userName, "name": userName, "team_id": "T1"},
		"team": map[string]any{"id": "T1", "domain": "fake"}, "api_app_id": "A1", "trigger_id": "tr" + now,
		"container": map[string]any{"type": "view", "view_id": "V1"},
		"view":      map[string]any{"id": "V1", "type": "home"},
		"actions":   []any{map[string]any{"action_id": "a1", "block_id": "stagebot", "type": "button", "value": value, "text": map[string]any{"type": "plain_text", "text": label}, "action_ts": now}},
	})
	return err
}

// Shortcut is a user choosing the app's global shortcut callbackID.
func (s *Server) Shortcut(user, userName, callbackID string) error {
	_, err := s.push("interactive", map[string]any{
		"type": "shortcut", "callback_id": callbackID, "trigger_id": "tr" + s.nextTS(), "action_ts": s.nextTS(),
		"user": map[string]any{"id": user, "username": userName, "name": userName, "team_id": "T1"},
		"team": map[string]any{"id": "T1", "domain": "fake"}, "api_app_id": "A1",
	})
	return err
}

// Submit sends the modal callbackID as user with the values given, by
// block ID: a selected option's value, or an input's text.
func (s *Server) Submit(user, userName, callbackID string, selected, typed map[string]string) error {
	values := map[string]any{}
	for block, v := range selected {
		values[block] = map[string]any{block: map[string]any{"type": "static_select", "selected_option": map[string]any{"value": v, "text": map[string]any{"type": "plain_text", "text": v}}}}
	}
	for block, v := range typed {
		values[block] = map[string]any{block: map[string]any{"type": "plain_text_input", "value": v}}
	}
	_, err := s.push("interactive", map[string]any{
		"type": "view_submission", "trigger_id": "tr" + s.nextTS(),
		"user": map[string]any{"id": user, "username": userName, "name": userName, "team_id": "T1"},
		"team": map[string]any{"id": "T1", "domain": "fake"}, "api_app_id": "A1",
		"view": map[string]any{"id": "V2", "type": "modal", "callback_id": callbackID, "hash": s.nextTS(), "state": map[string]any{"values": values}},
	})
	return err
}

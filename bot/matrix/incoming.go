package matrix

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/stagebot/stagebot/bot"
	"github.com/stagebot/stagebot/store"
)

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
		a.encryptedMessage(room)
		return bot.Incoming{}, false
	case event.EventReaction:
		if encrypted {
			return bot.Incoming{}, false
		}
		return a.reaction(ctx, room, e, user)
	case event.EventMessage:
		return a.message(room, e, user, me, direct)
	}
	return bot.Incoming{}, false
}

// encryptedMessage says once per room that a message could not be read.
func (a *Adapter) encryptedMessage(room id.RoomID) {
	a.mu.Lock()
	first := !a.warned[room]
	a.warned[room] = true
	a.mu.Unlock()
	if first {
		a.log.Error("matrix: an encrypted message arrived; stagebot cannot read it", "room", room,
			"fix", "use an unencrypted control room (and direct chats without encryption)")
	}
}

// reaction is a reaction on one of the bot's cards: the command it stands
// for, from whoever reacted.
func (a *Adapter) reaction(ctx context.Context, room id.RoomID, e *event.Event, user store.User) (bot.Incoming, bool) {
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
}

// message is a command typed in a room or a direct chat: notices (other
// bots) and edits of commands are not; a mention or a pill makes it
// addressed to the bot.
func (a *Adapter) message(room id.RoomID, e *event.Event, user store.User, me id.UserID, direct bool) (bot.Incoming, bool) {
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

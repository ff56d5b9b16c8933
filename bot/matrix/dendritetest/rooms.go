package dendritetest

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/stagebot/stagebot/internal/patience"
)

// RoomOptions shape a room CreateRoom makes.
type RoomOptions struct {
	// Joined are invited and join at once; Invited are only invited.
	Joined, Invited []*mautrix.Client
	// Encrypted turns end-to-end encryption on from the start.
	Encrypted bool
}

// CreateRoom has owner create the private room #alias:localhost.
func CreateRoom(t testing.TB, owner *mautrix.Client, alias string, o RoomOptions) id.RoomID {
	t.Helper()
	ctx, cancel := timeout()
	defer cancel()
	req := &mautrix.ReqCreateRoom{RoomAliasName: alias, Name: alias, Preset: "private_chat"}
	for _, c := range append(append([]*mautrix.Client{}, o.Joined...), o.Invited...) {
		req.Invite = append(req.Invite, c.UserID)
	}
	if o.Encrypted {
		req.InitialState = append(req.InitialState, &event.Event{
			Type: event.StateEncryption, StateKey: new(string),
			Content: event.Content{Raw: map[string]any{"algorithm": "m.megolm.v1.aes-sha2"}},
		})
	}
	resp, err := owner.CreateRoom(ctx, req)
	if err != nil {
		t.Fatalf("dendritetest: create #%s: %v", alias, err)
	}
	for _, c := range o.Joined {
		if _, err := c.JoinRoom(ctx, resp.RoomID.String(), nil); err != nil {
			t.Fatalf("dendritetest: %s joins #%s: %v", c.UserID, alias, err)
		}
	}
	return resp.RoomID
}

// Alias is #name:localhost.
func Alias(name string) string { return "#" + name + ":" + ServerName }

// Say has c post text in room as a person does (m.text).
func Say(t testing.TB, c *mautrix.Client, room id.RoomID, text string) id.EventID {
	t.Helper()
	ctx, cancel := timeout()
	defer cancel()
	resp, err := c.SendText(ctx, room, text)
	if err != nil {
		t.Fatalf("dendritetest: %s says %q: %v", c.UserID, text, err)
	}
	return resp.EventID
}

// React has c react with key to an event.
func React(t testing.TB, c *mautrix.Client, room id.RoomID, to id.EventID, key string) {
	t.Helper()
	ctx, cancel := timeout()
	defer cancel()
	if _, err := c.SendReaction(ctx, room, to, key); err != nil {
		t.Fatalf("dendritetest: %s reacts %s: %v", c.UserID, key, err)
	}
}

// Joined reports whether user is a member of room, as c sees it.
func Joined(t testing.TB, c *mautrix.Client, room id.RoomID, user id.UserID) bool {
	t.Helper()
	ctx, cancel := timeout()
	defer cancel()
	m, err := c.JoinedMembers(ctx, room)
	if err != nil {
		t.Fatalf("dendritetest: members of %s: %v", room, err)
	}
	_, ok := m.Joined[user]
	return ok
}

// Message is one m.room.message event as it reads now: its text is its
// latest edit's.
type Message struct {
	ID      id.EventID
	Sender  id.UserID
	MsgType string
	Body    string
	// Thread is the root of the thread it was posted in, if any.
	Thread id.EventID
	Edits  int
}

// Messages is every m.room.message of room that c can read, oldest first,
// with edits folded into the message they replace.
func Messages(t testing.TB, c *mautrix.Client, room id.RoomID) []Message {
	t.Helper()
	var evs []*event.Event
	from := ""
	for {
		ctx, cancel := timeout()
		resp, err := c.Messages(ctx, room, from, "", mautrix.DirectionBackward, nil, 100)
		cancel()
		if err != nil {
			t.Fatalf("dendritetest: read %s: %v", room, err)
		}
		evs = append(evs, resp.Chunk...)
		if len(resp.Chunk) == 0 || resp.End == "" || resp.End == from {
			break
		}
		from = resp.End
	}
	var out []Message
	at := map[id.EventID]int{}
	for i := len(evs) - 1; i >= 0; i-- {
		e := evs[i]
		if e.Type != event.EventMessage {
			continue
		}
		var c struct {
			MsgType   string `json:"msgtype"`
			Body      string `json:"body"`
			RelatesTo struct {
				RelType string     `json:"rel_type"`
				EventID id.EventID `json:"event_id"`
			} `json:"m.relates_to"`
			NewContent *struct {
				MsgType string `json:"msgtype"`
				Body    string `json:"body"`
			} `json:"m.new_content"`
		}
		if err := json.Unmarshal(e.Content.VeryRaw, &c); err != nil {
			t.Fatalf("dendritetest: event %s: %v", e.ID, err)
		}
		if c.RelatesTo.RelType == "m.replace" && c.NewContent != nil {
			if j, ok := at[c.RelatesTo.EventID]; ok && out[j].Sender == e.Sender {
				out[j].Body, out[j].MsgType = c.NewContent.Body, c.NewContent.MsgType
				out[j].Edits++
			}
			continue
		}
		m := Message{ID: e.ID, Sender: e.Sender, MsgType: c.MsgType, Body: c.Body}
		if c.RelatesTo.RelType == "m.thread" {
			m.Thread = c.RelatesTo.EventID
		}
		at[e.ID] = len(out)
		out = append(out, m)
	}
	return out
}

// From is the messages sent by user.
func From(ms []Message, user id.UserID) []Message {
	var out []Message
	for _, m := range ms {
		if m.Sender == user {
			out = append(out, m)
		}
	}
	return out
}

// Count is how many of ms contain want.
func Count(ms []Message, want string) int {
	n := 0
	for _, m := range ms {
		if strings.Contains(m.Body, want) {
			n++
		}
	}
	return n
}

// timeout bounds one request to the homeserver.
func timeout() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), patience.D(20*time.Second))
}

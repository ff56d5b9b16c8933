package matrix

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"regexp"
	"strings"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/stagebot/stagebot/bot"
	"github.com/stagebot/stagebot/store"
)

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

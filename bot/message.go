package bot

import (
	"context"
	"time"
	"unicode/utf8"

	"github.com/stagebot/stagebot/store"
)

// Incoming is a chat message, normalised by its adapter.
type Incoming struct {
	ID      string // the platform's message ID
	Channel string
	// Thread is the thread the message was posted in, if any.
	Thread string
	User   store.User
	Text   string
	// Direct is set when the message was addressed to the bot (mention,
	// direct message, slash command, button): the prefix is then optional.
	Direct bool
	// Start is the start the scheduler's own request is for (it is not read
	// from the text of anyone else's).
	Start time.Time
	// After, when set, is called once an Inbox has handed the message to
	// the bot and the bot has handled it.
	After func()
}

// Message is something the bot says, built without knowing the platform.
type Message struct {
	Channel string
	// Thread, when set, makes the message a reply in that message's thread.
	Thread store.MessageRef
	Text   string
	Fields []Field
	// Buttons stand for typed commands; a click is handled exactly as if the
	// clicking user had typed Command.
	Buttons []Button
	// Mentions are people to notify.
	Mentions []store.User
}

// Field is a labelled value shown under a message's text.
type Field struct {
	Label, Value string
}

// Button is an action offered with a message.
type Button struct {
	Label string
	// Command is the full command text, prefix included.
	Command string
	Danger  bool
}

// Adapter connects the bot to one chat platform.
type Adapter interface {
	// Run receives messages and hands each to handle until ctx is done or
	// the platform ends the session. It returns nil on a normal end.
	Run(ctx context.Context, handle func(context.Context, Incoming)) error
	// Send posts a message and returns a reference to it.
	Send(ctx context.Context, m Message) (store.MessageRef, error)
}

// StreamKeeper is implemented by adapters that keep their place in the
// platform's stream (Matrix's since token, the events handled) in the
// bot's store: the bot hands them its store as a Journal at start, so the
// writes are fenced like every other.
type StreamKeeper interface {
	UseJournal(Journal)
}

// OutboxOwner is implemented by adapters that send through an Outbox: the
// bot tells it what was delivered, fences it, flushes it before it stops
// and reports its queue.
type OutboxOwner interface {
	Outbox() *Outbox
}

// Editor is implemented by adapters that can change a message they posted.
type Editor interface {
	Edit(ctx context.Context, ref store.MessageRef, m Message) error
}

// Truncate shortens s to at most n characters (not bytes, so a character is
// never cut in half), ending it with "…" when something was cut.
func Truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// Completion is one choice offered while a person types a command's
// option (Discord's autocomplete): what is shown and what is filled in.
type Completion struct{ Label, Value string }

// Completer is implemented by adapters that offer choices as people type:
// the bot gives them its Complete when it starts them.
type Completer interface {
	SetCompleter(func(ctx context.Context, kind, typed string) []Completion)
}

// HomeHost is implemented by adapters with a per-person home view (Slack's
// App Home): the bot gives them its Home when it starts them.
type HomeHost interface {
	SetHome(func(ctx context.Context, u store.User) Message)
	// HomeChanged says that what the homes show may have changed; it
	// returns at once (the adapter shows them again in its own time).
	HomeChanged()
}

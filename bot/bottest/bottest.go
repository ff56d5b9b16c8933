package bottest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/stagebot/stagebot/bot"
	"github.com/stagebot/stagebot/store"
)

// Clock is a bot.Clock that moves only when told to.
type Clock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []waiter
	timers  int
}

// Timers counts the calls to After: how often the bot went to sleep.
func (c *Clock) Timers() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.timers
}

type waiter struct {
	at time.Time
	ch chan time.Time
}

var _ bot.Clock = (*Clock)(nil)

// NewClock returns a clock stopped at t.
func NewClock(t time.Time) *Clock { return &Clock{now: t} }

// Now implements bot.Clock.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// After implements bot.Clock; the channel fires when Advance passes the time.
func (c *Clock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.timers++
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, waiter{at: c.now.Add(d), ch: ch})
	return ch
}

// Advance moves the clock forward and fires the timers that came due.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if !w.at.After(c.now) {
			w.ch <- c.now
		} else {
			kept = append(kept, w)
		}
	}
	c.waiters = kept
}

// Posted is one message the bot sent, with its edits.
type Posted struct {
	Ref   store.MessageRef
	Msg   bot.Message
	Edits []bot.Message
}

// Current is the message as it reads now.
func (p Posted) Current() bot.Message {
	if len(p.Edits) > 0 {
		return p.Edits[len(p.Edits)-1]
	}
	return p.Msg
}

// Adapter records what the bot sends and lets tests type as users.
type Adapter struct {
	mu    sync.Mutex
	posts []*Posted
	in    chan typed
}

var (
	_ bot.Adapter = (*Adapter)(nil)
	_ bot.Editor  = (*Adapter)(nil)
)

// NewAdapter returns an empty recording adapter.
func NewAdapter() *Adapter { return &Adapter{in: make(chan typed)} }

type typed struct {
	in      bot.Incoming
	handled chan struct{}
}

// Run implements bot.Adapter: it delivers what Type sends until ctx ends.
func (a *Adapter) Run(ctx context.Context, handle func(context.Context, bot.Incoming)) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case m := <-a.in:
			handle(ctx, m.in)
			close(m.handled)
		}
	}
}

// Send implements bot.Adapter.
func (a *Adapter) Send(ctx context.Context, m bot.Message) (store.MessageRef, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	ref := store.MessageRef{Channel: m.Channel, ID: fmt.Sprint(len(a.posts) + 1)}
	a.posts = append(a.posts, &Posted{Ref: ref, Msg: m})
	return ref, nil
}

// Edit implements bot.Editor.
func (a *Adapter) Edit(ctx context.Context, ref store.MessageRef, m bot.Message) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, p := range a.posts {
		if p.Ref == ref {
			p.Edits = append(p.Edits, m)
			return nil
		}
	}
	return fmt.Errorf("no message %s", ref.ID)
}

// Posts returns copies of everything sent so far.
func (a *Adapter) Posts() []Posted {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]Posted, len(a.posts))
	for i, p := range a.posts {
		out[i] = *p
		out[i].Edits = append([]bot.Message(nil), p.Edits...)
	}
	return out
}

// Since returns the messages sent after the first n.
func (a *Adapter) Since(n int) []Posted {
	all := a.Posts()
	if n > len(all) {
		return nil
	}
	return all[n:]
}

// Len is how many messages were sent.
func (a *Adapter) Len() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.posts)
}

// Find returns the messages (as they read now) whose text contains s.
func (a *Adapter) Find(s string) []bot.Message {
	var out []bot.Message
	for _, p := range a.Posts() {
		if m := p.Current(); strings.Contains(m.Text, s) {
			out = append(out, m)
		}
	}
	return out
}

// Type delivers a message to the bot as user in channel, through Run,
// and returns once the bot has handled it (so a test reads the state the
// command made, not the state before it).
func (a *Adapter) Type(ctx context.Context, channel string, user store.User, text string) {
	m := typed{in: bot.Incoming{Channel: channel, User: user, Text: text}, handled: make(chan struct{})}
	select {
	case a.in <- m:
	case <-ctx.Done():
		return
	}
	select {
	case <-m.handled:
	case <-ctx.Done():
	}
}

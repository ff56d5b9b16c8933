package bot

import (
	"context"
	"sync"
	"time"

	"github.com/stagebot/stagebot/commands"
)

// MaxText is the longest command a person may type, in characters.
const MaxText = commands.MaxText

// Inbox hands a platform's events to the bot one at a time, in the order
// they came, without ever making the adapter wait: the adapter acknowledges
// an event to its platform (which wants that within 3 seconds) and puts it
// here, whatever the bot is busy with.
type Inbox struct {
	handle func(context.Context, Incoming)
	mu     sync.Mutex
	queue  []Incoming
	wake   chan struct{}
}

// NewInbox returns an inbox that calls handle for each event; Run delivers.
func NewInbox(handle func(context.Context, Incoming)) *Inbox {
	return &Inbox{handle: handle, wake: make(chan struct{}, 1)}
}

// Put queues an event and returns at once.
func (i *Inbox) Put(in Incoming) {
	i.mu.Lock()
	i.queue = append(i.queue, in)
	i.mu.Unlock()
	select {
	case i.wake <- struct{}{}:
	default:
	}
}

// Run hands queued events to the handler until ctx ends.
func (i *Inbox) Run(ctx context.Context) {
	for {
		i.mu.Lock()
		var in *Incoming
		if len(i.queue) > 0 {
			in = &i.queue[0]
			i.queue = i.queue[1:]
		}
		i.mu.Unlock()
		if in == nil {
			select {
			case <-ctx.Done():
				return
			case <-i.wake:
				continue
			}
		}
		i.handle(ctx, *in)
		if in.After != nil {
			in.After()
		}
	}
}

// Seen remembers event IDs for an hour, so that an adapter executes an
// event its platform delivers twice once. The zero value is ready to use.
type Seen struct {
	mu sync.Mutex
	m  map[string]time.Time
}

// First reports whether id is new; an empty id always is.
func (s *Seen) First(id string) bool {
	if id == "" {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[id]; ok {
		return false
	}
	now := time.Now()
	if s.m == nil {
		s.m = map[string]time.Time{}
	}
	s.m[id] = now
	if len(s.m) > 1000 {
		for k, t := range s.m {
			if now.Sub(t) > time.Hour {
				delete(s.m, k)
			}
		}
	}
	return true
}

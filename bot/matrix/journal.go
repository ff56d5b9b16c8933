package matrix

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/stagebot/stagebot/store"
)

// sinceKey is where the /sync position is kept: per account, so that a
// new bot account starts afresh.
func (a *Adapter) sinceKey() string { return "matrix/since/" + string(a.me) }

func (a *Adapter) loadSince(ctx context.Context) string {
	p := a.st.Load()
	if p == nil {
		return ""
	}
	v, err := (*p).Value(ctx, a.sinceKey())
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			a.log.Warn("matrix: read the sync position", "err", err)
		}
		return ""
	}
	return string(v)
}

// handled is the journal of events handed to the bot: the last
// maxHandled event IDs, and per room the server time of the newest. It is
// kept after each event, so that a batch replayed after a crash (or by the
// process that takes over) runs none of them again, and so that paging
// back through a gap stops at what was handled, by identity and time,
// whatever the homeserver's pagination does (Dendrite does not stop at
// the "to" token and pages on past it).
type handled struct {
	IDs    []string         `json:"ids"`
	Newest map[string]int64 `json:"newest,omitempty"`
}

// maxHandled is how many handled event IDs the journal keeps.
const maxHandled = 2000

func (a *Adapter) handledKey() string { return "matrix/handled/" + string(a.me) }

// recall loads the journal and marks its events as seen.
func (a *Adapter) recall(ctx context.Context) {
	a.journal = &handled{Newest: map[string]int64{}}
	p := a.st.Load()
	if p == nil {
		return
	}
	v, err := (*p).Value(ctx, a.handledKey())
	if err != nil {
		return
	}
	var h handled
	if json.Unmarshal(v, &h) != nil {
		a.log.Warn("matrix: the journal of handled events is unreadable; starting a new one")
		return
	}
	if h.Newest == nil {
		h.Newest = map[string]int64{}
	}
	for _, id := range h.IDs {
		a.seen.First(id)
	}
	a.journal = &h
	a.log.Info("matrix: recalled the events already handled", "events", len(h.IDs))
}

// wasHandled reports whether e was handed to the bot before.
func (a *Adapter) wasHandled(e *event.Event) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.journal != nil && slices.Contains(a.journal.IDs, string(e.ID))
}

// clockSkew is how far behind the newest handled event an event in a gap
// may be stamped and still be new: servers' clocks differ.
const clockSkew = 5 * time.Minute

// beforeGap reports whether paging back through a gap in room has reached
// what came before it: an event handled already, or one stamped well
// before the newest handled there.
func (a *Adapter) beforeGap(room id.RoomID, e *event.Event) bool {
	if a.wasHandled(e) {
		return true
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	newest := a.journal.Newest[string(room)]
	return newest > 0 && e.Timestamp < newest-clockSkew.Milliseconds()
}

func (a *Adapter) noteHandled(ctx context.Context, room id.RoomID, e *event.Event) {
	a.mu.Lock()
	h := a.journal
	if h == nil {
		a.mu.Unlock()
		return
	}
	h.IDs = append(h.IDs, string(e.ID))
	if len(h.IDs) > maxHandled {
		h.IDs = slices.Clone(h.IDs[len(h.IDs)-maxHandled:])
	}
	h.Newest[string(room)] = max(h.Newest[string(room)], e.Timestamp)
	b, _ := json.Marshal(h)
	a.mu.Unlock()
	p := a.st.Load()
	if p == nil {
		return
	}
	// Noted even while the bot stops: the event was handled, and a note
	// lost here makes the next process run it again.
	if err := (*p).SetValue(context.WithoutCancel(ctx), a.handledKey(), b); err != nil {
		a.log.Error("matrix: note a handled event", "err", err)
	}
}

func (a *Adapter) saveSince(ctx context.Context, since string) error {
	if p := a.st.Load(); p != nil {
		return (*p).SetValue(ctx, a.sinceKey(), []byte(since))
	}
	return nil
}

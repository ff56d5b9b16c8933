package bot

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/stagebot/stagebot/store"
)

// Connector is implemented by adapters that know whether they are
// connected to their chat platform now.
type Connector interface {
	Connected() bool
}

// Observer hears of every run that ends, for metrics. It is called with
// b.mu held: it must not call back into the bot.
type Observer interface {
	RunEnded(r *store.Run)
}

// heartbeat is when the scheduler loop last turned (unix nanoseconds).
type heartbeat struct{ at atomic.Int64 }

func (h *heartbeat) beat()           { h.at.Store(time.Now().UnixNano()) }
func (h *heartbeat) last() time.Time { return time.Unix(0, h.at.Load()) }

// Health reports whether the bot's loop turns: the scheduler wakes at
// least once a minute, so a loop silent for three is stuck.
func (b *Bot) Health() (bool, string) {
	last := b.beat.last()
	if last.IsZero() || last.Unix() == 0 {
		return false, "the scheduler has not started"
	}
	if age := time.Since(last); age > 3*time.Minute {
		return false, fmt.Sprintf("the scheduler last turned %s ago", fmtDur(age))
	}
	return true, "ok"
}

// Ready reports whether the bot can serve: its store answers and its chat
// connection is up.
func (b *Bot) Ready(ctx context.Context) (bool, string) {
	if _, err := b.store.Mark(ctx, "compacted"); err != nil {
		return false, "the store does not answer: " + err.Error()
	}
	if c, ok := b.adapter.(Connector); ok && !c.Connected() {
		return false, "not connected to chat"
	}
	if ok, why := b.Health(); !ok {
		return false, why
	}
	return true, "ok"
}

// Snapshot is the state the metrics show, read at once.
type Snapshot struct {
	// Now is the bot's clock at the snapshot.
	Now time.Time
	// LastSuccess is when each target's last successful refresh ended
	// (zero: never).
	LastSuccess map[string]time.Time
	// DataFrom is when the data each target's staging holds came from
	// production (see dataSource; absent: never refreshed). After a
	// rollback it is the older refresh's, not the rollback's.
	DataFrom map[string]time.Time
	// MaxAge is each target's max_age (targets without one are absent).
	MaxAge map[string]time.Duration
	// Unavailable is how long staging was unavailable in each target's
	// last swap.
	Unavailable map[string]time.Duration
	// Holds counts the active holds by target ("all" for every target).
	Holds map[string]int
	// Waiting counts runs not yet started, by what they wait for:
	// "hold", "approval", "schedule" (their start time), "run" (another
	// run of the target).
	Waiting map[string]int
	Running int
	// Outbox is how many messages wait to be sent; Connected whether
	// chat is up.
	Outbox    int
	Connected bool
	// SendFailures counts the sends chat refused or did not answer.
	SendFailures int64
}

// Snapshot reads the state the metrics show.
func (b *Bot) Snapshot(ctx context.Context) (Snapshot, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := Snapshot{LastSuccess: map[string]time.Time{}, DataFrom: map[string]time.Time{}, MaxAge: map[string]time.Duration{}, Unavailable: map[string]time.Duration{}, Holds: map[string]int{},
		Waiting: map[string]int{}, Running: len(b.running), Connected: true, Now: b.clock.Now()}
	for name, t := range b.targets {
		if t.MaxAge > 0 {
			s.MaxAge[name] = t.MaxAge
		}
		last, err := b.store.Runs(ctx, store.RunFilter{Target: name, States: []store.RunState{store.RunSucceeded}, Limit: 1})
		if err != nil {
			return s, err
		}
		if from, _, ok := b.dataSource(ctx, name); ok {
			s.DataFrom[name] = from.EndedAt
		}
		if len(last) == 1 {
			s.LastSuccess[name] = last[0].EndedAt
			for _, st := range last[0].Steps {
				if st.Kind == "pg_swap" || st.Kind == "pg_rollback" {
					if d, ok := unavailableFor(st.Detail); ok {
						s.Unavailable[name] = d
					}
				}
			}
		}
	}
	holds, err := b.store.Holds(ctx, true)
	if err != nil {
		return s, err
	}
	for _, h := range holds {
		s.Holds[h.Target]++
	}
	active, err := b.store.Runs(ctx, store.RunFilter{Active: true})
	if err != nil {
		return s, err
	}
	now := b.clock.Now()
	for _, r := range active {
		if r.State == store.RunRunning {
			continue
		}
		if r.StartAt.After(now) {
			s.Waiting["schedule"]++
			continue
		}
		k, err := b.blockersOf(ctx, r, holds, active)
		switch {
		case err != nil:
			return s, err
		case len(k.holds) > 0:
			s.Waiting["hold"]++
		case k.missing > 0:
			s.Waiting["approval"]++
		default:
			s.Waiting["run"]++
		}
	}
	if ob, ok := b.adapter.(OutboxOwner); ok {
		s.Outbox = ob.Outbox().Pending()
		s.SendFailures = ob.Outbox().Failures()
	}
	if c, ok := b.adapter.(Connector); ok {
		s.Connected = c.Connected()
	}
	return s, nil
}

// unavailableFor reads "unavailable for 5ms", the swap step's detail.
func unavailableFor(detail string) (time.Duration, bool) {
	var d string
	if _, err := fmt.Sscanf(detail, "unavailable for %s", &d); err != nil {
		return 0, false
	}
	v, err := time.ParseDuration(d)
	return v, err == nil
}

package store

import (
	"context"
	"errors"
	"time"
)

// Sentinel errors returned by every Store implementation.
var (
	// ErrNotFound means the record asked for does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict means the write would break a uniqueness rule (a second
	// approval by the same person) or was based on a stale version.
	ErrConflict = errors.New("conflict")
)

// Store is the persistence contract. Every method honours ctx, and every
// returned record is a copy the caller may keep.
type Store interface {
	// CreateRun assigns r.ID (the next run number, starting at 1) and
	// r.Version, then stores r.
	CreateRun(ctx context.Context, r *Run) error
	// UpdateRun replaces the stored run with r. It returns ErrNotFound for an
	// unknown ID and ErrConflict when r.Version is not the stored version
	// (someone else wrote the run since r was read). On success r.Version is
	// incremented.
	UpdateRun(ctx context.Context, r *Run) error
	// Run returns one run, or ErrNotFound.
	Run(ctx context.Context, id uint64) (*Run, error)
	// Runs returns the runs that match f, newest first.
	Runs(ctx context.Context, f RunFilter) ([]*Run, error)

	// AppendLog adds text to a run's log. The log of an unknown run is
	// ErrNotFound.
	AppendLog(ctx context.Context, runID uint64, text []byte) error
	// Log returns a run's whole log (empty when nothing was logged), or
	// ErrNotFound for an unknown run.
	Log(ctx context.Context, runID uint64) ([]byte, error)

	// CreateHold assigns h.ID and stores h.
	CreateHold(ctx context.Context, h *Hold) error
	// UpdateHold replaces a stored hold, or returns ErrNotFound.
	UpdateHold(ctx context.Context, h *Hold) error
	// Holds returns holds, oldest first: only those not yet ended when
	// activeOnly is set.
	Holds(ctx context.Context, activeOnly bool) ([]*Hold, error)

	// AddApproval records an approval; a second approval of the same run by
	// the same user is ErrConflict, and an unknown run ErrNotFound.
	AddApproval(ctx context.Context, a Approval) error
	// Approvals returns a run's approvals in the order they were given.
	Approvals(ctx context.Context, runID uint64) ([]Approval, error)

	// Watch adds user to target's watchers (idempotent).
	Watch(ctx context.Context, target string, user User) error
	// Unwatch removes user from target's watchers, or returns ErrNotFound.
	Unwatch(ctx context.Context, target string, user User) error
	// Watchers returns target's watchers ordered by user ID.
	Watchers(ctx context.Context, target string) ([]User, error)

	// AppendEvent assigns e.ID and adds e to the audit log.
	AppendEvent(ctx context.Context, e *Event) error
	// Events returns audit events that match f, newest first.
	Events(ctx context.Context, f EventFilter) ([]Event, error)

	// Mark returns a named timestamp (zero time when never set); the
	// scheduler keeps its per-target cursors here.
	Mark(ctx context.Context, name string) (time.Time, error)
	// SetMark stores a named timestamp.
	SetMark(ctx context.Context, name string, t time.Time) error

	// RecordDatabase notes that run made a database; key names it (its
	// server's system identifier and its OID), so that nothing in the
	// database has to say so.
	RecordDatabase(ctx context.Context, key string, run uint64) error
	// DatabaseRun returns the run that made the database key names, or
	// ErrNotFound.
	DatabaseRun(ctx context.Context, key string) (uint64, error)

	// SetValue keeps a small named value for a part of the bot (a
	// target's write counters at its last refresh); Value returns it, or
	// an error wrapping ErrNotFound.
	SetValue(ctx context.Context, name string, v []byte) error
	Value(ctx context.Context, name string) ([]byte, error)

	// Compact removes finished runs (with their logs and approvals) that
	// the retention policy no longer keeps, and holds that ended and audit
	// events written before k.Before. Active runs and holds always stay. It returns how many
	// runs it removed.
	Compact(ctx context.Context, k Retention) (int, error)

	// Close releases the store. It is safe to call once.
	Close() error
}

// Retention says which finished runs a store keeps.
type Retention struct {
	Runs   int       // at most this many, the newest (0: no limit)
	Before time.Time // none that ended before this (zero: no limit)
}

// RunFilter selects runs. Zero values select everything.
type RunFilter struct {
	Target string     // only this target
	States []RunState // only these states
	Active bool       // only runs not yet finished
	Limit  int        // at most this many (0: no limit)
}

// Match reports whether r passes the filter (Limit aside). Implementations
// use it so that every backend filters alike.
func (f RunFilter) Match(r *Run) bool {
	if f.Target != "" && r.Target != f.Target {
		return false
	}
	if f.Active && r.State.Done() {
		return false
	}
	if len(f.States) == 0 {
		return true
	}
	for _, s := range f.States {
		if r.State == s {
			return true
		}
	}
	return false
}

// EventFilter selects audit events. Zero values select everything.
type EventFilter struct {
	Target string
	RunID  uint64
	Limit  int
}

// Match reports whether e passes the filter (Limit aside).
func (f EventFilter) Match(e *Event) bool {
	if f.Target != "" && e.Target != f.Target {
		return false
	}
	if f.RunID != 0 && e.RunID != f.RunID {
		return false
	}
	return true
}

// Dump is everything a store holds, to move it to another store.
type Dump struct {
	Runs      []*Run               `json:"runs"`
	Logs      map[uint64][]byte    `json:"logs"`
	Holds     []*Hold              `json:"holds"`
	Approvals []Approval           `json:"approvals"` // in the order they were given
	Watchers  map[string][]User    `json:"watchers"`  // by target
	Events    []Event              `json:"events"`
	Marks     map[string]time.Time `json:"marks"`
	Databases map[string]uint64    `json:"databases"`
	Values    map[string][]byte    `json:"values"`
}

// Porter is implemented by stores whose contents can be moved whole.
type Porter interface {
	// Export reads everything, in one consistent view.
	Export(ctx context.Context) (*Dump, error)
	// Import writes d into an empty store, keeping every record's number
	// (the next run after it is numbered as it would have been). It
	// refuses a store that holds anything.
	Import(ctx context.Context, d *Dump) error
}

// ErrNotEmpty is Import's answer when the destination holds records.
var ErrNotEmpty = errors.New("the destination store is not empty")

package store

import "time"

// User is a chat identity: a stable platform ID and the name shown for it.
type User struct {
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
	// Handle is the platform's unique handle (@mallory, @mallory:example.org)
	// where the name shown is one its owner chose and anyone could choose
	// too: shown beside it, so that nobody passes for someone else.
	Handle string `json:"handle,omitempty"`
}

// Scheduler is the principal that scheduled runs are requested by.
var Scheduler = User{ID: "scheduler", Name: "scheduler"}

// Display returns the name to show, falling back to the ID.
func (u User) Display() string {
	name := u.Name
	if name == "" {
		name = u.ID
	}
	if u.Handle != "" && u.Handle != name {
		name += " (" + u.Handle + ")"
	}
	return name
}

// RunState is where a run is in its lifecycle.
type RunState string

// The states of a run. Scheduled and Waiting runs are pending; Running is
// under way; the rest are final.
const (
	RunScheduled   RunState = "scheduled"
	RunWaiting     RunState = "waiting"
	RunRunning     RunState = "running"
	RunSucceeded   RunState = "succeeded"
	RunFailed      RunState = "failed"
	RunCancelled   RunState = "cancelled"
	RunAborted     RunState = "aborted"
	RunInterrupted RunState = "interrupted"
)

// Done reports whether the state is final.
func (s RunState) Done() bool {
	switch s {
	case RunScheduled, RunWaiting, RunRunning:
		return false
	}
	return true
}

// Origin says who asked for a run.
type Origin string

// Origins of runs.
const (
	OriginManual    Origin = "manual"
	OriginScheduled Origin = "scheduled"
)

// MessageRef points at a chat message the bot posted, so it can be edited or
// replied to later. Its fields mean whatever the adapter that made it says.
type MessageRef struct {
	Channel string `json:"channel,omitempty"`
	ID      string `json:"id,omitempty"`
}

// IsZero reports whether the reference points nowhere.
func (m MessageRef) IsZero() bool { return m.ID == "" }

// Run is one refresh of one target with one pipeline.
type Run struct {
	ID        uint64   `json:"id"`
	Version   uint64   `json:"version"`
	Target    string   `json:"target"`
	Pipeline  string   `json:"pipeline"`
	Origin    Origin   `json:"origin"`
	Requester User     `json:"requester"`
	State     RunState `json:"state"`
	// Reason says why the run waits, failed or ended early.
	Reason string `json:"reason,omitempty"`

	CreatedAt time.Time `json:"created_at"`
	// StartAt is when the run is due to start.
	StartAt time.Time `json:"start_at"`
	// Slot is the cron time a scheduled run was created for.
	Slot time.Time `json:"slot,omitzero"`
	// Announced is the smallest reminder offset already announced for the
	// current StartAt; -1 means none yet.
	Announced time.Duration `json:"announced"`
	// WaitNotice records that the "waiting" message went out for the current
	// wait, so it is not repeated on every tick.
	WaitNotice string `json:"wait_notice,omitempty"`
	// HoldWait is set while the run waits for a hold: when the last hold
	// ends, the run is announced again with a new start.
	HoldWait bool `json:"hold_wait,omitempty"`
	// BudgetUntil is how long an admin let holds keep this scheduled run
	// waiting past the target's max_age (zero: not extended).
	BudgetUntil time.Time `json:"budget_until,omitzero"`
	// LastCall is when the holders were told that the run starts despite
	// their holds, its data being past max_age.
	LastCall time.Time `json:"last_call,omitzero"`
	// Processes are the process groups the run's steps have running now,
	// so that the next start can end what a crash left behind.
	Processes []Process `json:"processes,omitempty"`
	// Token is put in the environment of every process the run's steps
	// start (STAGEBOT_RUN_TOKEN), so that the next start finds them all,
	// even one started the instant before a crash.
	Token string `json:"token,omitempty"`

	StartedAt time.Time    `json:"started_at,omitzero"`
	EndedAt   time.Time    `json:"ended_at,omitzero"`
	Steps     []StepResult `json:"steps,omitempty"`

	// Card is the announcement message; Status the message edited with
	// progress while the run executes.
	Card   MessageRef `json:"card,omitzero"`
	Status MessageRef `json:"status,omitzero"`
	// Channel is where the run is announced.
	Channel string `json:"channel,omitempty"`
}

// StepState is the outcome of one step.
type StepState string

// Step outcomes.
const (
	StepPending   StepState = "pending"
	StepRunning   StepState = "running"
	StepSucceeded StepState = "succeeded"
	StepFailed    StepState = "failed"
	StepSkipped   StepState = "skipped"
	StepAborted   StepState = "aborted"
)

// StepResult is what one step of a run did.
type StepResult struct {
	Name      string        `json:"name"`
	Kind      string        `json:"kind"`
	Finally   bool          `json:"finally,omitempty"`
	State     StepState     `json:"state"`
	StartedAt time.Time     `json:"started_at,omitzero"`
	Duration  time.Duration `json:"duration,omitempty"`
	Error     string        `json:"error,omitempty"`
	// Detail is a short line about the step (progress, or what it measured).
	Detail string `json:"detail,omitempty"`
	// Bytes and Rows are what the step copied, when it copies.
	Bytes int64 `json:"bytes,omitempty"`
	Rows  int64 `json:"rows,omitempty"`
}

// AllTargets is the Target of a hold on every target.
const AllTargets = "all"

// Hold is a person asking the bot not to refresh a target (or all of them)
// until it ends.
type Hold struct {
	ID        uint64    `json:"id"`
	Target    string    `json:"target"`
	Holder    User      `json:"holder"`
	Reason    string    `json:"reason"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
	// WarnedAt is when the holder was told the hold is about to expire.
	WarnedAt time.Time `json:"warned_at,omitzero"`
	// Run, when set, is the run that holds: the hold lasts while the run
	// runs, with no expiry of its own.
	Run uint64 `json:"run,omitempty"`

	EndedAt   time.Time `json:"ended_at,omitzero"`
	EndedBy   User      `json:"ended_by,omitzero"`
	EndReason string    `json:"end_reason,omitempty"`
}

// Active reports whether the hold has not ended.
func (h *Hold) Active() bool { return h.EndedAt.IsZero() }

// Covers reports whether the hold keeps target from being refreshed.
func (h *Hold) Covers(target string) bool {
	return h.Target == AllTargets || h.Target == target
}

// Approval is one person saying a run may go.
type Approval struct {
	RunID uint64    `json:"run_id"`
	User  User      `json:"user"`
	At    time.Time `json:"at"`
}

// Event is one line of the audit log.
type Event struct {
	ID     uint64    `json:"id"`
	At     time.Time `json:"at"`
	Actor  User      `json:"actor"`
	Action string    `json:"action"`
	Target string    `json:"target,omitempty"`
	RunID  uint64    `json:"run_id,omitempty"`
	HoldID uint64    `json:"hold_id,omitempty"`
	Detail string    `json:"detail,omitempty"`
}

// Process identifies a process group a step started: its ID, and the
// leader's start time and boot, so that a reused ID is not taken for it.
type Process struct {
	PGID  int    `json:"pgid"`
	Start uint64 `json:"start"`
	Boot  string `json:"boot"`
}

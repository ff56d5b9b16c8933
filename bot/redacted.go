package bot

import (
	"context"

	"github.com/stagebot/stagebot/store"
)

// redactingStore removes secrets from every text the bot writes (step
// errors and details, reasons, run logs, audit details) before it is
// stored, so that no reader of the store sees one: chat, the status page,
// `stagebot store copy`, the state file itself.
type redactingStore struct {
	store.Store
	redact func(string) string
}

func (s redactingStore) run(r *store.Run) {
	r.Reason, r.WaitNotice = s.redact(r.Reason), s.redact(r.WaitNotice)
	for i := range r.Steps {
		r.Steps[i].Error = s.redact(r.Steps[i].Error)
		r.Steps[i].Detail = s.redact(r.Steps[i].Detail)
	}
}

func (s redactingStore) CreateRun(ctx context.Context, r *store.Run) error {
	s.run(r)
	return s.Store.CreateRun(ctx, r)
}

func (s redactingStore) UpdateRun(ctx context.Context, r *store.Run) error {
	s.run(r)
	return s.Store.UpdateRun(ctx, r)
}

func (s redactingStore) AppendLog(ctx context.Context, runID uint64, text []byte) error {
	return s.Store.AppendLog(ctx, runID, []byte(s.redact(string(text))))
}

func (s redactingStore) CreateHold(ctx context.Context, h *store.Hold) error {
	h.Reason, h.EndReason = s.redact(h.Reason), s.redact(h.EndReason)
	return s.Store.CreateHold(ctx, h)
}

func (s redactingStore) UpdateHold(ctx context.Context, h *store.Hold) error {
	h.Reason, h.EndReason = s.redact(h.Reason), s.redact(h.EndReason)
	return s.Store.UpdateHold(ctx, h)
}

func (s redactingStore) AppendEvent(ctx context.Context, e *store.Event) error {
	e.Detail = s.redact(e.Detail)
	return s.Store.AppendEvent(ctx, e)
}

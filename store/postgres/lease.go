package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultLease is how long a leader may go without renewing its lease
// before another process takes over.
const DefaultLease = 15 * time.Second

// Elector takes and keeps the leadership lease for one process.
//
// Timing, for a lease of L: the row says the lease ends 2L/3 after each
// renewal, the leader renews every L/6, and followers look every L/6. A
// leader that dies is replaced within 2L/3 + L/6 < L. The leader counts its
// lease from the moment it sent the renewal (before the server's clock
// read it), so it believes itself leader no longer than the row says.
type Elector struct {
	st     *Store
	holder string
	lease  time.Duration
	log    *slog.Logger

	mu     sync.Mutex
	token  uint64
	until  time.Time // when this process stops being leader unless it renews
	lost   chan struct{}
	closed bool
}

// LeaseInfo is what the lease row says.
type LeaseInfo struct {
	Holder  string
	Token   uint64
	Expires time.Time
	Valid   bool // not yet expired, by the server's clock
}

// NewElector makes an elector for the process named holder (host and
// process ID, say), with a lease of lease (DefaultLease when zero).
func NewElector(st *Store, holder string, lease time.Duration, log *slog.Logger) *Elector {
	if lease <= 0 {
		lease = DefaultLease
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Elector{st: st, holder: holder, lease: lease, log: log, lost: make(chan struct{})}
}

func (e *Elector) ttl() time.Duration   { return e.lease * 2 / 3 }
func (e *Elector) every() time.Duration { return e.lease / 6 }

// Info reads the lease row.
func (e *Elector) Info(ctx context.Context) (LeaseInfo, error) {
	var in LeaseInfo
	err := e.st.pool.QueryRow(ctx, "select holder, token, expires, expires > now() from stagebot_lease where id = 1").Scan(&in.Holder, &in.Token, &in.Expires, &in.Valid)
	return in, err
}

// Acquire waits until this process holds the lease, then fences the store
// with the new token and keeps renewing until ctx ends or the lease is
// lost (Lost is then closed). waiting is called, with the current holder,
// each time another process is seen to hold the lease.
func (e *Elector) Acquire(ctx context.Context, waiting func(LeaseInfo)) error {
	for {
		sent := time.Now()
		token, err := e.tryAcquire(ctx)
		if err == nil {
			e.mu.Lock()
			e.token, e.until = token, sent.Add(e.ttl())
			e.mu.Unlock()
			e.st.Fence(token)
			e.log.Info("leader: took the lease", "token", token, "holder", e.holder)
			go e.renew(ctx)
			return nil
		}
		if !errors.Is(err, errHeld) {
			e.log.Warn("leader election: the store did not answer", "err", err)
		} else if waiting != nil {
			if in, err := e.Info(ctx); err == nil {
				waiting(in)
			}
		}
		// Followers look at slightly different moments.
		wait := e.every() + rand.N(e.every()/4+1)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

var errHeld = errors.New("another process holds the lease")

func (e *Elector) tryAcquire(ctx context.Context) (uint64, error) {
	var token uint64
	err := pgx.BeginFunc(ctx, e.st.pool, func(tx pgx.Tx) error {
		// A paused leader's open write must not block the takeover for
		// long: its session ends after idle_in_transaction_session_timeout.
		if _, err := tx.Exec(ctx, "set local lock_timeout = '10s'"); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `update stagebot_lease set holder = $1, token = token + 1, expires = now() + $2::interval, acquired = now()
			where id = 1 and expires <= now() returning token`, e.holder, e.ttl().String()).Scan(&token)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, errHeld
	}
	return token, err
}

// renew keeps the lease until ctx ends or a renewal fails for longer
// than the lease lasts.
func (e *Elector) renew(ctx context.Context) {
	t := time.NewTicker(e.every())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if e.ValidFor() <= 0 {
			e.step("the lease ran out before it could be renewed")
			return
		}
		sent := time.Now()
		rctx, cancel := context.WithDeadline(ctx, e.Until())
		var ok bool
		err := e.st.pool.QueryRow(rctx, `update stagebot_lease set expires = now() + $2::interval where id = 1 and token = $1 returning true`, e.Token(), e.ttl().String()).Scan(&ok)
		cancel()
		switch {
		case err == nil:
			e.mu.Lock()
			e.until = sent.Add(e.ttl())
			e.mu.Unlock()
		case errors.Is(err, pgx.ErrNoRows):
			in, _ := e.Info(context.WithoutCancel(ctx))
			e.step(fmt.Sprintf("another process took the lease (%s, token %d)", in.Holder, in.Token))
			return
		case ctx.Err() != nil:
			return
		default:
			e.log.Warn("leader: could not renew the lease; trying again", "err", err, "valid_for", e.ValidFor().Round(time.Millisecond))
		}
	}
}

// step gives up leadership: Lost is closed.
func (e *Elector) step(why string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.until = time.Time{}
	if !e.closed {
		e.closed = true
		if e.token != 0 {
			e.log.Warn("leader: stepping down: "+why, "token", e.token, "holder", e.holder)
		}
		close(e.lost)
	}
}

// Lost is closed once this process is no longer leader.
func (e *Elector) Lost() <-chan struct{} { return e.lost }

// Token is the fencing token of this process's leadership (0 before).
func (e *Elector) Token() uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.token
}

// Until is when this process stops being leader unless it renews.
func (e *Elector) Until() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.until
}

// ValidFor is how long this process surely stays leader (≤ 0: not leader).
func (e *Elector) ValidFor() time.Duration {
	u := e.Until()
	if u.IsZero() {
		return 0
	}
	return time.Until(u)
}

// Fence returns nil when this process will surely still be leader after
// need, and an error saying why not otherwise. Steps that change staging
// ask it first.
func (e *Elector) Fence(need time.Duration) error {
	if v := e.ValidFor(); v <= need {
		if v <= 0 {
			return fmt.Errorf("%w: this process is no longer the leader", ErrFenced)
		}
		return fmt.Errorf("%w: this process's lease lasts %s, less than the %s the step may take", ErrFenced, v.Round(time.Millisecond), need)
	}
	return nil
}

// Release gives the lease up at once (on a clean stop), so that another
// process need not wait for it to run out.
func (e *Elector) Release(ctx context.Context) error {
	token := e.Token()
	e.step("stopping")
	if token == 0 {
		return nil
	}
	_, err := e.st.pool.Exec(ctx, "update stagebot_lease set expires = '-infinity' where id = 1 and token = $1", token)
	return err
}

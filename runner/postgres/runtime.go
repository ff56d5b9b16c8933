package postgres

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// runtime is what a Target holds while stagebot runs, apart from its
// configuration: the lock that lets one change to the copies happen at a
// time, the drops of replaced copies still going on, a pending background
// repair, and what was learned of the servers. Its zero value is ready.
type runtime struct {
	moving   sync.Mutex     // one swap, rollback, forget, recovery or drop at a time
	drops    sync.WaitGroup // background drops of replaced copies
	dropping atomic.Int64   // background drops not yet over

	repairMu     sync.Mutex
	repairCancel context.CancelFunc // a background repair is pending
	repairDone   chan struct{}
	repairEvery  time.Duration // how soon a repair first tries again (0: a second)

	registryOnce sync.Once
	fromBase     atomic.Bool // the shadow is a copy of the base (Reset)

	servers Servers // when the configuration names none to share

	bypassMask bool // tests only: copy masked tables unmasked, for the proof to catch
	maskText   bool // tests only: mask in the text format even where binary would do
}

// exclusive takes the lock on the copies; the caller defers the result.
func (r *runtime) exclusive() (unlock func()) {
	r.moving.Lock()
	return r.moving.Unlock
}

// inBackground runs f on its own goroutine, holding the lock on the
// copies; settle waits for it.
func (r *runtime) inBackground(f func()) {
	r.drops.Add(1)
	r.dropping.Add(1)
	go func() {
		defer r.drops.Done()
		defer r.dropping.Add(-1)
		defer r.exclusive()()
		f()
	}()
}

// settle waits for what inBackground started.
func (r *runtime) settle() { r.drops.Wait() }

// firstRetry is how soon a background repair first tries again.
func (r *runtime) firstRetry() time.Duration {
	if r.repairEvery > 0 {
		return r.repairEvery
	}
	return time.Second
}

// Servers remembers the identity of every production DSN that was
// reached, so that one that is down for a while can still be told apart
// from staging's server. A process keeps one for all its targets, across
// config reloads (a reload makes new Targets). Its zero value is ready.
type Servers struct{ seen sync.Map } // DSN → serverIdentity

// serverIdentity is what productionID learns of a server.
type serverIdentity struct{ id, database string }

func (s *Servers) remember(dsn string, id serverIdentity) { s.seen.Store(dsn, id) }

func (s *Servers) recall(dsn string) (serverIdentity, bool) {
	v, ok := s.seen.Load(dsn)
	if !ok {
		return serverIdentity{}, false
	}
	return v.(serverIdentity), true
}

// servers is the memory of servers t uses.
func (t *Target) servers() *Servers {
	if t.Servers != nil {
		return t.Servers
	}
	return &t.rt.servers
}

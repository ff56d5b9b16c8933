package postgres_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stagebot/stagebot/internal/patience"
	"github.com/stagebot/stagebot/store"
	"github.com/stagebot/stagebot/store/postgres"
)

// TestElector_OneLeaderAndFencing: of two processes, one leads; when it
// stops renewing (paused, cut off), the other takes over within the
// lease, and the old one's writes are refused.
func TestElector_OneLeaderAndFencing(t *testing.T) {
	dsn := freshDB(t)
	a, b := open(t, dsn), open(t, dsn)
	const lease = 1200 * time.Millisecond
	ea := postgres.NewElector(a, "a", lease, nil)
	eb := postgres.NewElector(b, "b", lease, nil)
	ctx := context.Background()
	actx, pause := context.WithCancel(ctx)
	if err := ea.Acquire(actx, nil); err != nil {
		t.Fatal(err)
	}
	if err := ea.Fence(100 * time.Millisecond); err != nil {
		t.Fatalf("the new leader is fenced: %v", err)
	}
	must(t, a.CreateHold(ctx, &store.Hold{Target: "fas2", Reason: "by a"}))

	// b waits while a renews.
	bctx, cancelB := context.WithTimeout(ctx, 2*lease)
	var seen []string
	err := eb.Acquire(bctx, func(in postgres.LeaseInfo) { seen = append(seen, in.Holder) })
	cancelB()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("b became leader while a renewed: %v", err)
	}
	if len(seen) == 0 || seen[0] != "a" {
		t.Fatalf("b saw holders %v, want a", seen)
	}

	// a stops renewing, as a paused process does.
	pause()
	stopped := time.Now()
	if err := eb.Acquire(ctx, nil); err != nil {
		t.Fatal(err)
	}
	took := time.Since(stopped)
	if took > lease {
		t.Fatalf("b took over %s after a stopped renewing; the lease is %s", took, lease)
	}
	if ea.Token() >= eb.Token() {
		t.Fatalf("tokens: a %d, b %d; a new leader's must be greater", ea.Token(), eb.Token())
	}
	// a comes back: it knows it is no longer leader, and the store
	// refuses what it writes.
	if err := ea.Fence(0); !errors.Is(err, postgres.ErrFenced) {
		t.Fatalf("a.Fence after losing the lease = %v, want ErrFenced", err)
	}
	if err := a.CreateHold(ctx, &store.Hold{Target: "fas2", Reason: "late write by a"}); !errors.Is(err, postgres.ErrFenced) {
		t.Fatalf("the old leader's write: err = %v, want ErrFenced", err)
	}
	must(t, b.CreateHold(ctx, &store.Hold{Target: "fas2", Reason: "by b"}))
	holds, err := b.Holds(ctx, true)
	must(t, err)
	if len(holds) != 2 || holds[0].Reason != "by a" || holds[1].Reason != "by b" {
		t.Fatalf("holds: %+v", holds)
	}

	// A clean stop hands over at once.
	c := open(t, dsn)
	ec := postgres.NewElector(c, "c", lease, nil)
	if err := eb.Release(ctx); err != nil {
		t.Fatal(err)
	}
	released := time.Now()
	if err := ec.Acquire(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(released); d > lease/2 {
		t.Fatalf("c took %s to take a released lease", d)
	}
	select {
	case <-eb.Lost():
	default:
		t.Fatal("b's Lost is not closed after Release")
	}
}

// TestElector_StepsDownWhenTheStoreIsGone: a leader that cannot reach the
// store steps down on its own once its lease has run out.
func TestElector_StepsDownWhenTheStoreIsGone(t *testing.T) {
	dsn := freshDB(t)
	a := open(t, dsn)
	const lease = 900 * time.Millisecond
	ea := postgres.NewElector(a, "a", lease, nil)
	if err := ea.Acquire(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	// The store goes away: the leader cannot renew.
	a.Close()
	select {
	case <-ea.Lost():
	case <-patience.After(2 * lease):
		t.Fatal("a leader that cannot renew did not step down")
	}
	if err := ea.Fence(0); err == nil {
		t.Fatal("Fence passes after stepping down")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

package runner

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"
)

// watchdog fails a step whose peers went silent: when a Prober step has
// reported no progress (rows, bytes, items) for its timeout, it probes the
// step's servers; one that does not answer ends the step with an error that
// names it and says since when nothing moved. A step that is busy on a live
// server (one long index build) goes on.
type watchdog struct {
	prober  Prober
	timeout time.Duration
	log     io.Writer

	mu     sync.Mutex
	last   Progress
	moved  time.Time
	err    error
	cancel context.CancelFunc
	done   chan struct{}
}

func newWatchdog(s Step, timeout time.Duration, log io.Writer) *watchdog {
	p, _ := s.(Prober)
	if timeout <= 0 {
		timeout = DefaultStallTimeout
	}
	return &watchdog{prober: p, timeout: timeout, log: log, moved: time.Now()}
}

// saw notes a progress report; one that differs from the last is movement.
func (w *watchdog) saw(p Progress) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if p.Done != w.last.Done || p.Rows != w.last.Rows || p.Items != w.last.Items {
		w.last, w.moved = p, time.Now()
	}
}

// watch starts watching; stop ends it and returns the stall that ended the
// step, if one did.
func (w *watchdog) watch(ctx context.Context) (context.Context, func() error) {
	if w.prober == nil {
		return ctx, func() error { return nil }
	}
	ctx, w.cancel = context.WithCancel(ctx)
	w.done = make(chan struct{})
	stop := make(chan struct{})
	go w.loop(ctx, stop)
	return ctx, func() error {
		w.cancel() // a probe under way ends too
		close(stop)
		<-w.done
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.err
	}
}

func (w *watchdog) loop(ctx context.Context, stop chan struct{}) {
	defer close(w.done)
	every := min(w.timeout/4, 30*time.Second)
	tick := time.NewTicker(max(every, 10*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		w.mu.Lock()
		since := w.moved
		w.mu.Unlock()
		if time.Since(since) < w.timeout {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, min(w.timeout, 30*time.Second))
		err := w.prober.Probe(pctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			fmt.Fprintf(w.log, "no progress for %s, but every server answers: still waiting\n", time.Since(since).Round(time.Second))
			w.mu.Lock()
			w.moved = time.Now() // ask again after another timeout
			w.mu.Unlock()
			continue
		}
		w.mu.Lock()
		w.err = fmt.Errorf("stalled: nothing moved since %s (%s ago), and %w", since.UTC().Format("15:04:05 MST"), time.Since(since).Round(time.Second), err)
		w.mu.Unlock()
		w.cancel()
		return
	}
}

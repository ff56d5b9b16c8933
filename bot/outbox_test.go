package bot_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stagebot/stagebot/bot"
	"github.com/stagebot/stagebot/store"
)

// flakySender is a platform that can be down or rate limited.
type flakySender struct {
	mu        sync.Mutex
	down      bool
	limitNext int
	posts     []string
	edits     []string
	n         int
}

func (f *flakySender) Post(ctx context.Context, m bot.Message) (store.MessageRef, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return store.MessageRef{}, errors.New("connection refused")
	}
	if f.limitNext > 0 {
		f.limitNext--
		return store.MessageRef{}, &bot.RetryAfter{Wait: 20 * time.Millisecond}
	}
	if m.Channel == "nowhere" {
		return store.MessageRef{}, bot.Permanent(errors.New("channel_not_found"))
	}
	f.n++
	id := fmt.Sprint(f.n)
	f.posts = append(f.posts, fmt.Sprintf("%s:%s (thread %s)", id, m.Text, m.Thread.ID))
	return store.MessageRef{Channel: m.Channel, ID: id}, nil
}

func (f *flakySender) Update(ctx context.Context, ref store.MessageRef, m bot.Message) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return errors.New("connection refused")
	}
	f.edits = append(f.edits, ref.ID+":"+m.Text)
	return nil
}

func (f *flakySender) set(down bool) { f.mu.Lock(); f.down = down; f.mu.Unlock() }

func (f *flakySender) snapshot() ([]string, []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.posts...), append([]string(nil), f.edits...)
}

func TestOutbox_DeliversInOrderAfterAnOutage(t *testing.T) {
	f := &flakySender{}
	o := bot.NewOutbox(f, nil)
	o.MaxBackoff = 20 * time.Millisecond
	var mu sync.Mutex
	delivered := map[string]string{}
	o.OnDelivered = func(placeholder, ref store.MessageRef) {
		mu.Lock()
		delivered[placeholder.ID] = ref.ID
		mu.Unlock()
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go o.Run(ctx)

	ref, err := o.Send(ctx, bot.Message{Channel: "c", Text: "one"})
	if err != nil || !bot.IsPlaceholder(ref) {
		t.Fatalf("send while up: %v %v, want a placeholder at once", ref, err)
	}
	waitFor(t, func() bool { return o.Pending() == 0 })
	f.set(true)
	status, _ := o.Send(ctx, bot.Message{Channel: "c", Text: "two"})
	if status.ID[:8] != "pending:" {
		t.Fatalf("send while down returned %v, want a placeholder", status)
	}
	o.Send(ctx, bot.Message{Channel: "c", Text: "three", Thread: status})
	o.Edit(ctx, status, bot.Message{Text: "two, edited"})
	o.Edit(ctx, status, bot.Message{Text: "two, edited again"})
	o.Edit(ctx, ref, bot.Message{Text: "one, edited"})
	f.set(false)
	waitFor(t, func() bool { return o.Pending() == 0 })
	posts, edits := f.snapshot()
	if fmt.Sprint(posts) != "[1:one (thread ) 2:two (thread ) 3:three (thread 2)]" {
		t.Fatalf("posts = %v", posts)
	}
	// Edits follow their message, and a newer edit replaced an older one
	// that was still waiting.
	if fmt.Sprint(edits) != "[2:two, edited again 1:one, edited]" {
		t.Fatalf("edits = %v", edits)
	}
	// Whoever kept a placeholder hears the real reference.
	mu.Lock()
	defer mu.Unlock()
	if delivered[ref.ID] != "1" || delivered[status.ID] != "2" || len(delivered) != 3 {
		t.Fatalf("delivered = %v", delivered)
	}
}

// TestOutbox_SendNeverWaitsForThePlatform: with the platform slow and
// rate-limited, Send still answers at once.
func TestOutbox_SendNeverWaitsForThePlatform(t *testing.T) {
	f := &flakySender{}
	f.set(true)
	o := bot.NewOutbox(f, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go o.Run(ctx)
	start := time.Now()
	for i := range 50 {
		if _, err := o.Send(ctx, bot.Message{Channel: "c", Text: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("50 sends to a platform that is down took %s", took)
	}
	if o.Pending() != 50 {
		t.Fatalf("pending = %d, want 50", o.Pending())
	}
}

func TestOutbox_ObeysRateLimitsAndDropsPermanentFailures(t *testing.T) {
	f := &flakySender{limitNext: 2}
	o := bot.NewOutbox(f, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go o.Run(ctx)
	start := time.Now()
	for _, m := range []bot.Message{{Channel: "c", Text: "after the limit"}, {Channel: "nowhere", Text: "x"}, {Channel: "c", Text: "next"}} {
		if _, err := o.Send(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, func() bool { return o.Pending() == 0 })
	if time.Since(start) < 40*time.Millisecond {
		t.Fatalf("delivered after %s: the retry-after waits were not obeyed", time.Since(start))
	}
	// The rejected message is dropped and does not block the next.
	if posts, _ := f.snapshot(); fmt.Sprint(posts) != "[1:after the limit (thread ) 2:next (thread )]" {
		t.Fatalf("posts = %v", posts)
	}
}

// TestOutbox_PlaceholdersDifferAcrossRestarts: a placeholder an earlier
// process left in the store never names a message of the next one.
func TestOutbox_PlaceholdersDifferAcrossRestarts(t *testing.T) {
	ctx := context.Background()
	a, _ := bot.NewOutbox(&flakySender{}, nil).Send(ctx, bot.Message{Channel: "c", Text: "x"})
	b, _ := bot.NewOutbox(&flakySender{}, nil).Send(ctx, bot.Message{Channel: "c", Text: "x"})
	if a == b || !bot.IsPlaceholder(a) || !bot.IsPlaceholder(b) {
		t.Fatalf("placeholders %v and %v", a, b)
	}
}

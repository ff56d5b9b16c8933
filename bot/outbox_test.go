package bot_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stagebot/stagebot/bot"
	"github.com/stagebot/stagebot/internal/patience"
	"github.com/stagebot/stagebot/store"
	"github.com/stagebot/stagebot/store/bolt"
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
	if took := time.Since(start); took > patience.D(time.Second) {
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

// keyedSender records the delivery key of every post and edit.
type keyedSender struct {
	mu    sync.Mutex
	keys  []string
	down  bool
	tries int // attempts refused while down
}

func (k *keyedSender) Post(ctx context.Context, m bot.Message) (store.MessageRef, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.down {
		k.tries++
		return store.MessageRef{}, errors.New("connection refused")
	}
	k.keys = append(k.keys, "post "+m.Text+" "+bot.DeliveryKey(ctx))
	return store.MessageRef{Channel: m.Channel, ID: fmt.Sprint(len(k.keys))}, nil
}

func (k *keyedSender) Update(ctx context.Context, ref store.MessageRef, m bot.Message) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.down {
		k.tries++
		return errors.New("connection refused")
	}
	k.keys = append(k.keys, "edit "+ref.ID+" "+m.Text+" "+bot.DeliveryKey(ctx))
	return nil
}

// TestOutbox_JournalOutlivesTheProcess: what one outbox could not deliver
// is delivered by the next one on the same journal, in order, with the
// same delivery keys (so an idempotent platform recognises a repeat), and
// the edit of a post the first never delivered reaches that post.
func TestOutbox_JournalOutlivesTheProcess(t *testing.T) {
	j, err := bolt.Open(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	dead := &keyedSender{down: true}
	first := bot.NewOutbox(dead, nil)
	ctx, cancel := context.WithCancel(context.Background())
	if err := first.UseJournal(ctx, j, "outbox"); err != nil {
		t.Fatal(err)
	}
	go first.Run(ctx)
	ref, _ := first.Send(ctx, bot.Message{Channel: "c", Text: "one"})
	first.Send(ctx, bot.Message{Channel: "c", Text: "two"})
	first.Edit(ctx, ref, bot.Message{Channel: "c", Text: "one, edited"})
	// The process dies with three items queued, after delivery was tried.
	patience.Until(t, "a delivery to be tried", 5*time.Second, func() bool {
		dead.mu.Lock()
		defer dead.mu.Unlock()
		return dead.tries > 0
	})
	cancel()

	alive := &keyedSender{}
	second := bot.NewOutbox(alive, nil)
	var delivered []string
	var mu sync.Mutex
	second.OnDelivered = func(placeholder, real store.MessageRef) {
		mu.Lock()
		delivered = append(delivered, placeholder.ID+"→"+real.ID)
		mu.Unlock()
	}
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	if err := second.UseJournal(ctx2, j, "outbox"); err != nil {
		t.Fatal(err)
	}
	go second.Run(ctx2)
	deadline := time.Now().Add(patience.D(5 * time.Second))
	for second.Pending() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	alive.mu.Lock()
	got := append([]string(nil), alive.keys...)
	alive.mu.Unlock()
	if len(got) != 3 {
		t.Fatalf("delivered %q, want the three items the first outbox left", got)
	}
	key := strings.TrimPrefix(ref.ID, "pending:")
	if got[0] != "post one "+key || !strings.HasPrefix(got[1], "post two ") || !strings.HasPrefix(got[2], "edit 1 one, edited ") {
		t.Fatalf("delivered %q: not in order, not with the first outbox's keys, or the edit missed its post", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(delivered) != 2 || delivered[0] != ref.ID+"→1" {
		t.Errorf("OnDelivered heard %q: the runs keeping the old placeholder would not learn the real message", delivered)
	}
	if v, err := j.Value(context.Background(), "outbox"); err != nil || string(v) != "[]" {
		t.Errorf("the journal still holds %s after delivery", v)
	}
}

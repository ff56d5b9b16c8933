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
	o.Wait, o.MaxBackoff = 50*time.Millisecond, 20*time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go o.Run(ctx)

	ref, err := o.Send(ctx, bot.Message{Channel: "c", Text: "one"})
	if err != nil || ref.ID != "1" {
		t.Fatalf("send while up: %v %v", ref, err)
	}
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
}

func TestOutbox_ObeysRateLimitsAndDropsPermanentFailures(t *testing.T) {
	f := &flakySender{limitNext: 2}
	o := bot.NewOutbox(f, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go o.Run(ctx)
	start := time.Now()
	if _, err := o.Send(ctx, bot.Message{Channel: "c", Text: "after the limit"}); err != nil {
		t.Fatal(err)
	}
	if time.Since(start) < 40*time.Millisecond {
		t.Fatalf("sent after %s: the retry-after waits were not obeyed", time.Since(start))
	}
	if _, err := o.Send(ctx, bot.Message{Channel: "nowhere", Text: "x"}); err == nil || err.Error() != "channel_not_found" {
		t.Fatalf("permanent failure: %v", err)
	}
	if _, err := o.Send(ctx, bot.Message{Channel: "c", Text: "next"}); err != nil {
		t.Fatalf("a rejected message blocked the next: %v", err)
	}
}

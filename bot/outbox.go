package bot

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stagebot/stagebot/store"
)

// Sender is what a chat platform does once it is reachable: post a message
// and change one it posted.
type Sender interface {
	Post(ctx context.Context, m Message) (store.MessageRef, error)
	Update(ctx context.Context, ref store.MessageRef, m Message) error
}

// RetryAfter is the error a Sender returns when the platform asks it to slow
// down (HTTP 429): the outbox waits that long and sends again.
type RetryAfter struct{ Wait time.Duration }

func (e *RetryAfter) Error() string { return fmt.Sprintf("rate limited: retry after %s", e.Wait) }

// Permanent marks a Sender error that sending again cannot cure (an unknown
// channel, a rejected message). Other errors are retried.
func Permanent(err error) error { return &permanentError{err} }

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

const pendingPrefix = "pending:"

// Outbox sends a platform's messages in order. When the platform cannot be
// reached, messages wait in the outbox and go out, in order, when it can;
// when it asks to slow down, the outbox waits as long as it says. Send
// never waits for the platform: it answers at once with a placeholder
// reference, which edits and thread replies may use (they are resolved
// when the message is delivered), and OnDelivered hears the real one.
type Outbox struct {
	sender Sender
	log    *slog.Logger
	// MaxBackoff caps the pause between retries (default 30s).
	MaxBackoff time.Duration
	// OnDelivered, when set, is called (from the delivering goroutine)
	// with a posted message's placeholder and its real reference, so that
	// whoever kept the placeholder can keep the real one instead.
	OnDelivered func(placeholder, ref store.MessageRef)
	// Allow, when set, is asked before each send: a process that no
	// longer holds the lease of a shared store must not talk in chat
	// (the bot that took over does).
	Allow func() error

	journal     Journal
	journalName string
	jmu         sync.Mutex // one journal write at a time, newest last

	mu       sync.Mutex
	stop     context.CancelFunc // ends the delivery Start began
	queue    []*outItem
	resolved map[string]store.MessageRef
	seq      int
	wake     chan struct{}
	// session keeps this process's placeholders apart from those an
	// earlier one left in the store.
	session  string
	failures atomic.Int64
}

// Failures counts the sends the platform refused or did not answer
// (each retry counts).
func (o *Outbox) Failures() int64 { return o.failures.Load() }

type outItem struct {
	post  bool
	local string           // post: the placeholder ID
	key   string           // the delivery's idempotency key (see DeliveryKey)
	ref   store.MessageRef // edit: the message to change
	msg   Message
	done  chan outResult
}

type outResult struct {
	ref store.MessageRef
	err error
}

// Journal is where an outbox keeps what it has yet to deliver (the bot's
// store).
type Journal interface {
	SetValue(ctx context.Context, name string, v []byte) error
	Value(ctx context.Context, name string) ([]byte, error)
}

// journaled is an outbox item as the journal keeps it.
type journaled struct {
	Post  bool             `json:"post"`
	Local string           `json:"local,omitempty"`
	Key   string           `json:"key"`
	Ref   store.MessageRef `json:"ref"`
	Msg   Message          `json:"msg"`
}

// UseJournal keeps the queue in j under name from now on, after putting
// back in front of it what a previous process left there undelivered:
// a bot killed while the platform was slow still says what it had to
// say. Only for platforms whose sends are idempotent by DeliveryKey
// (Matrix's transaction IDs): a message the dead process did post is then
// recognised instead of posted twice.
func (o *Outbox) UseJournal(ctx context.Context, j Journal, name string) error {
	var left []journaled
	v, err := j.Value(ctx, name)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return fmt.Errorf("read the undelivered messages: %w", err)
	default:
		if err := json.Unmarshal(v, &left); err != nil {
			o.log.Error("the journal of undelivered messages is unreadable; they are lost", "err", err)
			left = nil
		}
	}
	o.mu.Lock()
	var back []*outItem
	for _, l := range left {
		back = append(back, &outItem{post: l.Post, local: l.Local, key: l.Key, ref: l.Ref, msg: l.Msg, done: make(chan outResult, 1)})
	}
	o.queue = append(back, o.queue...)
	o.journal, o.journalName = j, name
	o.mu.Unlock()
	if len(back) > 0 {
		o.log.Info("delivering what the previous process could not", "messages", len(back))
	}
	o.persist()
	select {
	case o.wake <- struct{}{}:
	default:
	}
	return nil
}

// persist writes the queue to the journal, if there is one.
func (o *Outbox) persist() {
	o.jmu.Lock()
	defer o.jmu.Unlock()
	o.mu.Lock()
	j, name := o.journal, o.journalName
	items := make([]journaled, 0, len(o.queue))
	for _, it := range o.queue {
		items = append(items, journaled{Post: it.post, Local: it.local, Key: it.key, Ref: it.ref, Msg: it.msg})
	}
	o.mu.Unlock()
	if j == nil {
		return
	}
	b, err := json.Marshal(items)
	if err == nil {
		err = j.SetValue(context.Background(), name, b)
	}
	if err != nil {
		o.log.Warn("keep the undelivered messages", "err", err)
	}
}

// NewOutbox returns an outbox for s; call Run to deliver.
func NewOutbox(s Sender, log *slog.Logger) *Outbox {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	session := make([]byte, 4)
	rand.Read(session)
	return &Outbox{sender: s, log: log, MaxBackoff: 30 * time.Second, session: hex.EncodeToString(session),
		resolved: map[string]store.MessageRef{}, wake: make(chan struct{}, 1)}
}

func (o *Outbox) push(it *outItem) {
	o.mu.Lock()
	if !it.post {
		// A newer edit of the same message replaces one still waiting.
		for i := len(o.queue) - 1; i >= 1; i-- {
			q := o.queue[i]
			if !q.post && q.ref == it.ref {
				q.msg = it.msg
				o.mu.Unlock()
				o.persist()
				return
			}
		}
	}
	o.queue = append(o.queue, it)
	o.mu.Unlock()
	o.persist()
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// Send queues a message and answers at once with its placeholder
// reference: handling a person's command never waits for a slow or
// rate-limited platform.
func (o *Outbox) Send(ctx context.Context, m Message) (store.MessageRef, error) {
	o.mu.Lock()
	o.seq++
	it := &outItem{post: true, local: fmt.Sprintf("%s%s-%d", pendingPrefix, o.session, o.seq), msg: m, done: make(chan outResult, 1)}
	it.key = strings.TrimPrefix(it.local, pendingPrefix)
	o.mu.Unlock()
	o.push(it)
	return store.MessageRef{Channel: m.Channel, ID: it.local}, nil
}

// IsPlaceholder reports whether ref is an Outbox placeholder, not yet (or
// never) replaced by the platform's reference.
func IsPlaceholder(ref store.MessageRef) bool { return strings.HasPrefix(ref.ID, pendingPrefix) }

// Edit queues a change to a message.
func (o *Outbox) Edit(ctx context.Context, ref store.MessageRef, m Message) error {
	o.mu.Lock()
	o.seq++
	key := fmt.Sprintf("%s-%d", o.session, o.seq)
	o.mu.Unlock()
	o.push(&outItem{ref: ref, key: key, msg: m, done: make(chan outResult, 1)})
	return nil
}

type deliveryKey struct{}

// DeliveryKey is the idempotency key of the post or edit a Sender is
// asked to deliver: the same on every retry of one queued item and
// different for every item (an edit folded into a queued one keeps that
// one's key, as it was never sent). Platforms that take a transaction ID
// use it, so that a send the platform stored but did not confirm is not
// posted twice. Empty outside a delivery.
func DeliveryKey(ctx context.Context) string {
	k, _ := ctx.Value(deliveryKey{}).(string)
	return k
}

// Pending is how many messages and edits wait to be delivered.
func (o *Outbox) Pending() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.queue)
}

// resolve replaces placeholders with delivered references; ok is false
// when a placeholder names a message that was never delivered.
func (o *Outbox) resolve(ref store.MessageRef) (store.MessageRef, bool) {
	if !strings.HasPrefix(ref.ID, pendingPrefix) {
		return ref, true
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	r, ok := o.resolved[ref.ID]
	return r, ok
}

// Start delivers, in the background, what is queued and what is sent from
// now on, until ctx ends or Stop is called. An adapter starts it in its
// Run: messages sent before then wait in the queue.
func (o *Outbox) Start(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	o.mu.Lock()
	if o.stop != nil {
		o.stop()
	}
	o.stop = cancel
	o.mu.Unlock()
	go o.Run(ctx)
}

// Stop ends the delivery Start began; what is queued stays queued (and,
// with a journal, is delivered by the next process).
func (o *Outbox) Stop() {
	o.mu.Lock()
	stop := o.stop
	o.mu.Unlock()
	if stop != nil {
		stop()
	}
}

// Run delivers until ctx ends. Whatever is still queued then is logged.
func (o *Outbox) Run(ctx context.Context) {
	backoff := 250 * time.Millisecond
	for {
		o.mu.Lock()
		var it *outItem
		if len(o.queue) > 0 {
			it = o.queue[0]
		}
		o.mu.Unlock()
		if it == nil {
			select {
			case <-ctx.Done():
				return
			case <-o.wake:
				continue
			}
		}
		res, err := o.deliver(ctx, it)
		if err != nil && ctx.Err() == nil {
			o.failures.Add(1)
		}
		var ra *RetryAfter
		var perm *permanentError
		switch {
		case err == nil:
			backoff = 250 * time.Millisecond
			o.pop(it, res, nil)
			continue
		case ctx.Err() != nil:
			if n := o.Pending(); n > 0 {
				o.log.Warn("stopping with undelivered messages", "count", n)
			}
			return
		case errors.As(err, &perm):
			o.log.Error("message rejected by the chat platform; dropped", "channel", it.msg.Channel, "err", err)
			o.pop(it, res, err)
			continue
		case errors.As(err, &ra):
			o.log.Warn("rate limited by the chat platform", "wait", ra.Wait)
			sleep(ctx, ra.Wait)
		default:
			o.log.Warn("chat platform unreachable; will retry", "in", backoff, "queued", o.Pending(), "err", err)
			sleep(ctx, backoff)
			backoff = min(backoff*2, o.MaxBackoff)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func (o *Outbox) deliver(ctx context.Context, it *outItem) (store.MessageRef, error) {
	if o.Allow != nil {
		if err := o.Allow(); err != nil {
			return store.MessageRef{}, Permanent(fmt.Errorf("not sent: %w", err))
		}
	}
	ctx = context.WithValue(ctx, deliveryKey{}, it.key)
	m := it.msg
	if !m.Thread.IsZero() {
		t, ok := o.resolve(m.Thread)
		if !ok {
			m.Thread = store.MessageRef{} // its parent was never delivered: post in the channel
		} else {
			m.Thread = t
		}
	}
	if it.post {
		return o.sender.Post(ctx, m)
	}
	ref, ok := o.resolve(it.ref)
	if !ok {
		return store.MessageRef{}, Permanent(fmt.Errorf("edit of message %s, which was never delivered", it.ref.ID))
	}
	return ref, o.sender.Update(ctx, ref, m)
}

func (o *Outbox) pop(it *outItem, ref store.MessageRef, err error) {
	o.mu.Lock()
	if len(o.queue) > 0 && o.queue[0] == it {
		o.queue = o.queue[1:]
	}
	if it.post && err == nil {
		o.resolved[it.local] = ref
	}
	o.mu.Unlock()
	o.persist()
	it.done <- outResult{ref: ref, err: err}
	if it.post && err == nil && o.OnDelivered != nil {
		o.OnDelivered(store.MessageRef{Channel: it.msg.Channel, ID: it.local}, ref)
	}
}

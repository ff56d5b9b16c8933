package bot_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stagebot/stagebot/internal/patience"
	"github.com/stagebot/stagebot/runner/mask"
)

// TestMask_ReadsProductionWithoutHoldingTheBot: !stage mask words the
// report; while production is slow to answer, other commands are
// answered; a report that panics or fails leaves the bot serving.
func TestMask_ReadsProductionWithoutHoldingTheBot(t *testing.T) {
	tg := fas2()
	tg.Masking = "by 2 rules"
	release, entered := make(chan struct{}), make(chan struct{}, 1)
	report := func(context.Context) (mask.Report, error) {
		entered <- struct{}{}
		<-release
		return mask.Report{Tables: 1, Columns: 3, Masked: 1, Kept: 1,
			Proposals: []mask.Suggestion{{Column: "public.people.phone", Func: mask.Func{Kind: mask.Phone}, Why: "looks like a phone number"}},
			Findings:  []mask.Finding{{Column: "public.people.note", What: "email addresses", Of: 150, In: 200}}}, nil
	}
	tg.MaskReport = report
	e := newEnv(t, tg)
	done := make(chan string)
	go func() { done <- texts(e.say(alice, "!stage mask fas2")) }()
	<-entered
	// The bot is not held while production is read.
	holds := make(chan string, 1)
	go func() { holds <- texts(e.say(alice, "!stage holds")) }()
	select {
	case got := <-holds:
		if !strings.Contains(got, "No holds") {
			t.Errorf("!stage holds meanwhile: %q", got)
		}
	case <-patience.After(10 * time.Second):
		close(release)
		t.Fatal("!stage holds waited for production to answer !stage mask")
	}
	close(release)
	got := <-done
	for _, want := range []string{
		"Masking of fas2 (by 2 rules): 3 columns in 1 table; 1 masked, 1 kept, 0 tables truncated.",
		"⚠ The next refresh stops before copying anything until these are settled:\n• 1 column without a rule.",
		"⚠ Kept, but looks personal: public.people.note: 150 of 200 sampled values look like email addresses.",
		"\"public.people.phone\": phone # looks like a phone number",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("the answer lacks %q:\n%s", want, got)
		}
	}
	// A report that fails, or panics, is answered and the bot goes on.
	tg.MaskReport = func(context.Context) (mask.Report, error) { return mask.Report{}, errors.New("connection refused") }
	wantText(t, e.say(alice, "!stage mask fas2"), "I could not read production's columns for fas2: connection refused")
	tg.MaskReport = func(context.Context) (mask.Report, error) { panic("boom") }
	e.say(alice, "!stage mask fas2")
	wantText(t, e.say(alice, "!stage holds"), "No holds")
	// A target without production has nothing to mask.
	tg.MaskReport = nil
	wantText(t, e.say(alice, "!stage mask fas2"), "fas2 has no production database")
}

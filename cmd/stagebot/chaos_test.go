package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stagebot/stagebot/internal/patience"
	"github.com/stagebot/stagebot/store"
	pgstore "github.com/stagebot/stagebot/store/postgres"
)

// runAsked finds the number of the run a request made.
var runAsked = regexp.MustCompile(`Run (\d+): refresh of db`)

var chaosFor = flag.Duration("chaos", 0, "run the chaos test this long (make chaos); 0: the short version")

// TestChaos runs three bot processes on one PostgreSQL store with a
// schedule that fires every minute and holds and approvals arriving, and keeps
// killing (SIGKILL) or pausing (SIGSTOP past the lease) whichever leads,
// starting a new process for each one that is gone. Afterwards: no run
// executed twice; every run acknowledged in chat is in the store; every
// hold and approval acknowledged is there; the audit log has no gap and is in order;
// no two processes ever ran steps at the same time.
func TestChaos(t *testing.T) {
	length := *chaosFor
	if length == 0 {
		length = 130 * time.Second
	}
	ctx := context.Background()
	dsn := stateDB(t)
	dir := t.TempDir()
	marks := filepath.Join(dir, "steps")
	cfg := filepath.Join(dir, "stagebot.yaml")
	const lease = 3 * time.Second
	os.WriteFile(cfg, []byte(`
store: {type: postgres, dsn: "`+dsn+`", lease: 3s}
access: {control_channels: [infra], everyone: [stage, stage.admin]}
defaults: {notice: 1s, ladder: []}
targets:
  web:
    schedule: "* * * * *"
    pipelines:
      default:
        steps:
          - {name: copy, exec: "echo start $STAGEBOT_RUN $PPID $(date +%s%N) >> `+marks+`; sleep 2; echo end $STAGEBOT_RUN $PPID $(date +%s%N) >> `+marks+`"}
  api:
    pipelines:
      default:
        steps:
          - {name: copy, exec: "true"}
  db:
    approvals: {manual: {count: 1}}
    pipelines:
      default:
        steps:
          - {name: copy, exec: "true"}
`), 0o600)

	var procs []*botProcess
	start := func() { procs = append(procs, startBot(t, cfg)) }
	for range 3 {
		start()
	}
	leader := func(not *botProcess) *botProcess {
		for _, p := range procs {
			if p != not && p.cmd.ProcessState == nil && strings.Contains(p.out.String(), "took the lease") && !strings.Contains(p.out.String(), "stepping down") {
				return p
			}
		}
		return nil
	}
	var failovers []time.Duration
	var approvals [][2]string // run, approver: typed at the leader
	kills, pauses, holds := 0, 0, 0
	waitLeader := func(gone *botProcess) *botProcess {
		t.Helper()
		from := time.Now()
		var next *botProcess
		waitUntil(t, "a new leader", func() bool {
			next = leader(gone)
			return next != nil
		})
		failovers = append(failovers, time.Since(from))
		return next
	}
	cur := waitLeader(nil)
	failovers = failovers[:0]
	started := time.Now()
	end := started.Add(length)
	for time.Now().Before(end) {
		// Holds arrive at the leader for a while.
		for range 2 + rand.N(3) {
			holds++
			// Each from someone else: a second hold by the same person
			// extends the first.
			cur.say(t, fmt.Sprintf("/as user%d", holds))
			cur.say(t, fmt.Sprintf("!stage hold api 8h chaos %d", holds))
			time.Sleep(time.Duration(300+rand.N(700)) * time.Millisecond)
		}
		// An approval arrives: someone asks for a run of db, someone else
		// approves it, the first cancels it (one pending run at a time).
		approver := fmt.Sprintf("approver%d", holds)
		cur.say(t, "/as asker")
		seen := len(cur.out.String())
		cur.say(t, "!stage resync db in 2h")
		var run string
		for range 40 {
			if m := runAsked.FindStringSubmatch(cur.out.String()[seen:]); m != nil {
				run = m[1]
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if run != "" {
			cur.say(t, "/as "+approver)
			cur.say(t, "!stage approve "+run)
			approvals = append(approvals, [2]string{run, approver})
			time.Sleep(300 * time.Millisecond)
			cur.say(t, "/as asker")
			cur.say(t, "!stage cancel "+run)
		}
		time.Sleep(time.Duration(2+rand.N(5)) * time.Second)
		gone := cur
		if rand.N(2) == 0 {
			kills++
			gone.cmd.Process.Kill()
			gone.cmd.Wait()
			cur = waitLeader(gone)
		} else {
			pauses++
			gone.cmd.Process.Signal(syscall.SIGSTOP)
			cur = waitLeader(gone)
			time.Sleep(time.Second)
			gone.cmd.Process.Signal(syscall.SIGCONT)
			waitUntil(t, "the paused leader to step down", func() bool { return strings.Contains(gone.out.String(), "stepping down") })
			gone.cmd.Wait()
		}
		start()
	}
	// Let the last leader finish what it runs, then stop every process.
	time.Sleep(4 * time.Second)
	for _, p := range procs {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	for _, p := range procs {
		if p.cmd.ProcessState == nil {
			p.cmd.Wait()
		}
	}

	st, err := pgstore.Open(ctx, dsn)
	must(t, err)
	defer st.Close()
	// Every run executed at most once, and never two at a time.
	type span struct {
		run, pid   string
		start, end int64
	}
	spans := map[string]*span{}
	data, _ := os.ReadFile(marks)
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		f := strings.Fields(line)
		if len(f) != 4 {
			continue
		}
		at, _ := strconv.ParseInt(f[3], 10, 64)
		switch f[0] {
		case "start":
			if spans[f[1]] != nil {
				t.Errorf("run %s started twice (by %s and %s)", f[1], spans[f[1]].pid, f[2])
			}
			spans[f[1]] = &span{run: f[1], pid: f[2], start: at, end: -1}
		case "end":
			if s := spans[f[1]]; s != nil {
				s.end = at
			}
		}
	}
	var ordered []*span
	for _, s := range spans {
		ordered = append(ordered, s)
	}
	slices.SortFunc(ordered, func(a, b *span) int { return int(a.start - b.start) })
	for i := 1; i < len(ordered); i++ {
		prev, s := ordered[i-1], ordered[i]
		if prev.end < 0 {
			continue // its process was killed mid-step
		}
		if s.start < prev.end && s.pid != prev.pid {
			t.Errorf("runs %s (process %s) and %s (process %s) ran at the same time", prev.run, prev.pid, s.run, s.pid)
		}
	}
	runs, err := st.Runs(ctx, store.RunFilter{Target: "web"})
	must(t, err)
	states := map[store.RunState]int{}
	for _, r := range runs {
		states[r.State]++
		if r.State == store.RunSucceeded && spans[strconv.FormatUint(r.ID, 10)] == nil {
			t.Errorf("run %d succeeded without running its step", r.ID)
		}
	}
	for id := range spans {
		n, _ := strconv.ParseUint(id, 10, 64)
		if _, err := st.Run(ctx, n); err != nil {
			t.Errorf("run %s ran, but the store does not know it: %v", id, err)
		}
	}
	// Every hold the bot acknowledged is there.
	stored := map[string]bool{}
	all, err := st.Holds(ctx, false)
	must(t, err)
	for _, h := range all {
		stored[h.Reason] = true
	}
	acked := 0
	for i := 1; i <= holds; i++ {
		said := fmt.Sprintf("user%d holds api until", i)
		for _, p := range procs {
			if strings.Contains(p.out.String(), said) {
				if !stored[fmt.Sprintf("chaos %d", i)] {
					t.Errorf("the hold of user%d was acknowledged but is not in the store", i)
				}
				acked++
				break
			}
		}
	}
	// Every approval the bot acknowledged is there.
	approved := 0
	for _, a := range approvals {
		said := fmt.Sprintf("%s approved run %s of db", a[1], a[0])
		for _, p := range procs {
			if !strings.Contains(p.out.String(), said) {
				continue
			}
			n, _ := strconv.ParseUint(a[0], 10, 64)
			got, err := st.Approvals(ctx, n)
			must(t, err)
			if !slices.ContainsFunc(got, func(x store.Approval) bool { return x.User.ID == a[1] }) {
				t.Errorf("the approval of run %s by %s was acknowledged but is not in the store", a[0], a[1])
			}
			approved++
			break
		}
	}
	// The audit log: no gap, in order.
	events, err := st.Events(ctx, store.EventFilter{})
	must(t, err)
	for i := 1; i < len(events); i++ {
		if events[i-1].ID != events[i].ID+1 {
			t.Errorf("audit log: event %d follows %d", events[i-1].ID, events[i].ID)
		}
		if events[i-1].At.Before(events[i].At.Add(-time.Second)) {
			t.Errorf("audit log: event %d (%s) is older than event %d (%s)", events[i-1].ID, events[i-1].At, events[i].ID, events[i].At)
		}
	}
	slices.Sort(failovers)
	med, worst := time.Duration(0), time.Duration(0)
	if len(failovers) > 0 {
		med, worst = failovers[len(failovers)/2], failovers[len(failovers)-1]
	}
	t.Logf("chaos for %s: %d processes, %d SIGKILLs and %d SIGSTOPs of the leader; failover median %s, worst %s (lease %s); %d scheduled runs (%v), %d executed; %d holds typed, %d acknowledged; %d approvals typed, %d acknowledged; %d audit events",
		length, len(procs), kills, pauses, med.Round(time.Millisecond), worst.Round(time.Millisecond), lease, len(runs), states, len(spans), holds, acked, len(approvals), approved, len(events))
	if want := int(length / time.Minute); len(runs) < want {
		// What the schedulers did, to tell a lost slot from a slow start.
		var did []string
		for _, e := range events {
			if e.Target == "web" {
				did = append(did, fmt.Sprintf("%s %s by %s (run %d) %s", e.At.Format("15:04:05.000"), e.Action, e.Actor.Display(), e.RunID, e.Detail))
			}
		}
		t.Errorf("%d scheduled runs in %s (from %s); the schedule fires every minute. The audit log of web:\n%s", len(runs), length, started.Format("15:04:05"), strings.Join(did, "\n"))
	}
	if kills+pauses == 0 || len(spans) == 0 || acked == 0 || approved == 0 {
		t.Errorf("the chaos did too little to show anything")
	}
	if worst > lease+patience.D(time.Second) {
		t.Errorf("the worst failover took %s; the lease is %s", worst, lease)
	}
}

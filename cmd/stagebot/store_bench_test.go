package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stagebot/stagebot/store"
	"github.com/stagebot/stagebot/store/bolt"
)

// BenchmarkStore_10000Runs starts the real bot on a state file with 10,000
// finished runs (each with a log, an approval and audit events), types
// `status` and `history`, and reports the whole process's wall time (start,
// both answers, exit) and peak memory, with the retention policy off
// (everything kept) and on (the default: 2000 runs, compacted by the first
// start, whose figures are reported apart).
//
//	go test ./cmd/stagebot -run '^$' -bench Store_10000Runs -benchtime 5x
func BenchmarkStore_10000Runs(b *testing.B) {
	dir := b.TempDir()
	full := filepath.Join(dir, "full.db")
	fillStore(b, full, 10000)
	for _, keep := range []struct {
		name string
		yaml string
	}{{"keep-all", "keep: {runs: 0, days: 0}"}, {"keep-2000", ""}} {
		b.Run(keep.name, func(b *testing.B) {
			state := filepath.Join(b.TempDir(), "stagebot.db")
			data, err := os.ReadFile(full)
			if err != nil {
				b.Fatal(err)
			}
			if err := os.WriteFile(state, data, 0o600); err != nil {
				b.Fatal(err)
			}
			cfg := filepath.Join(b.TempDir(), "c.yaml")
			os.WriteFile(cfg, []byte(fmt.Sprintf(`
store: {path: %q, %s}
access: {everyone: [stage]}
targets:
  demo:
    pipelines: {default: {steps: [{exec: "true"}]}}
`, state, keep.yaml)), 0o600)
			var peak int64
			var worst time.Duration
			start := func() (time.Duration, int64) {
				cmd := exec.Command(os.Args[0], "run", "-c", cfg, "--as", "alice")
				cmd.Env = append(os.Environ(), "STAGEBOT_TEST_AS_MAIN=1", "STAGEBOT_TEST_REPORT_HWM=1")
				cmd.Stdin = strings.NewReader("!stage status\n!stage history\n")
				start := time.Now()
				out, err := cmd.CombinedOutput()
				took := time.Since(start)
				if err != nil || !strings.Contains(string(out), "Runs, newest first") {
					b.Fatalf("%v\n%s", err, out)
				}
				var kb int64
				if i := strings.Index(string(out), "VmHWM:"); i >= 0 {
					fmt.Sscan(strings.TrimSpace(string(out[i+len("VmHWM:"):])), &kb)
				}
				if kb == 0 {
					b.Fatalf("no VmHWM in the output:\n%s", out)
				}
				return took, kb * 1024
			}
			// The first start applies the retention policy to the whole
			// history (at most once a day after that): reported apart.
			first, firstPeak := start()
			b.ResetTimer()
			for range b.N {
				took, rss := start()
				worst, peak = max(worst, took), max(peak, rss)
			}
			b.ReportMetric(float64(first.Milliseconds()), "first-start-ms")
			b.ReportMetric(float64(firstPeak)/(1<<20), "first-start-RSS-MiB")
			b.ReportMetric(float64(worst.Milliseconds()), "worst-ms")
			b.ReportMetric(float64(peak)/(1<<20), "peak-RSS-MiB")
		})
	}
}

// fillStore writes n finished runs to a new state file at path.
func fillStore(b *testing.B, path string, n int) {
	s, err := bolt.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	t0 := time.Now().Add(-time.Duration(n) * time.Hour)
	log := []byte(strings.Repeat("== step output line, as a refresh writes it\n", 100))
	for i := range n {
		at := t0.Add(time.Duration(i) * time.Hour)
		r := &store.Run{Target: "demo", Pipeline: "default", Origin: store.OriginScheduled, Requester: store.Scheduler, State: store.RunSucceeded,
			CreatedAt: at, StartAt: at, StartedAt: at, EndedAt: at.Add(time.Minute), Channel: "infra",
			Steps: []store.StepResult{{Name: "refresh", Kind: "pg_refresh", State: store.StepSucceeded, Duration: time.Minute, Detail: "100%, 1.5 GiB"}, {Name: "swap", Kind: "pg_swap", State: store.StepSucceeded}}}
		if err := s.CreateRun(ctx, r); err != nil {
			b.Fatal(err)
		}
		s.AppendLog(ctx, r.ID, log)
		s.AddApproval(ctx, store.Approval{RunID: r.ID, User: store.User{ID: "bob", Name: "bob"}, At: at})
		for _, action := range []string{"requested", "approved", "started", "succeeded"} {
			s.AppendEvent(ctx, &store.Event{At: at, Actor: store.Scheduler, Action: action, Target: "demo", RunID: r.ID})
		}
	}
}

var idleFor = flag.Duration("idle", 10*time.Second, "how long BenchmarkIdle_1000WaitingRuns watches the bot")

// BenchmarkIdle_1000WaitingRuns starts the real bot with a hold on its
// target and 1,000 runs waiting for it, past their start times, and reports
// the CPU time the process used while it waited (-idle, default 10s; a
// minute is -idle 1m), start-up included, per minute of waiting, against
// the same bot with nothing to do.
//
//	go test ./cmd/stagebot -run '^$' -bench Idle -benchtime 1x -idle 1m
func BenchmarkIdle_1000WaitingRuns(b *testing.B) {
	for _, tc := range []struct {
		name string
		runs int
	}{{"nothing-due", 0}, {"1000-waiting", 1000}} {
		b.Run(tc.name, func(b *testing.B) {
			dir := b.TempDir()
			state := filepath.Join(dir, "stagebot.db")
			s, err := bolt.Open(state)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			now := time.Now()
			if tc.runs > 0 {
				h := &store.Hold{Target: "demo", Holder: store.User{ID: "carol", Name: "carol"}, Reason: "testing", CreatedAt: now, ExpiresAt: now.Add(24 * time.Hour)}
				if err := s.CreateHold(ctx, h); err != nil {
					b.Fatal(err)
				}
			}
			for i := range tc.runs {
				at := now.Add(-time.Duration(i+1) * time.Minute)
				r := &store.Run{Target: "demo", Pipeline: "default", Origin: store.OriginManual, Requester: store.User{ID: "alice", Name: "alice"},
					State: store.RunWaiting, HoldWait: true, WaitNotice: "held by carol", CreatedAt: at.Add(-10 * time.Minute), StartAt: at, Channel: "infra"}
				if err := s.CreateRun(ctx, r); err != nil {
					b.Fatal(err)
				}
			}
			s.Close()
			cfg := filepath.Join(dir, "c.yaml")
			os.WriteFile(cfg, []byte(fmt.Sprintf(`
store: {path: %q}
access: {everyone: [stage]}
targets:
  demo:
    pipelines: {default: {steps: [{exec: "true"}]}}
`, state)), 0o600)
			var perMinute time.Duration
			// A first start says, once, what each run waits for; the
			// measured starts find that said.
			warm := exec.Command(os.Args[0], "run", "-c", cfg, "--as", "alice")
			warm.Env = append(os.Environ(), "STAGEBOT_TEST_AS_MAIN=1")
			if out, err := warm.CombinedOutput(); err != nil {
				b.Fatalf("%v\n%s", err, out)
			}
			b.ResetTimer()
			for range b.N {
				cmd := exec.Command(os.Args[0], "run", "-c", cfg, "--as", "alice")
				cmd.Env = append(os.Environ(), "STAGEBOT_TEST_AS_MAIN=1")
				in, err := cmd.StdinPipe()
				if err != nil {
					b.Fatal(err)
				}
				if err := cmd.Start(); err != nil {
					b.Fatal(err)
				}
				time.Sleep(*idleFor)
				in.Close() // the end of the input stops the console bot
				if err := cmd.Wait(); err != nil {
					b.Fatal(err)
				}
				cpu := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
				perMinute = max(perMinute, time.Duration(float64(cpu)*float64(time.Minute)/float64(*idleFor)))
			}
			b.ReportMetric(float64(perMinute.Milliseconds()), "cpu-ms/min")
		})
	}
}

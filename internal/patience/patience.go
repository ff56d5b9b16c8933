// Package patience is how long the tests wait. Every deadline in the suite
// is a base tuned on an idle two-core machine, multiplied here by one factor:
// STAGEBOT_PATIENCE (default 1) times how far the machine is
// oversubscribed right now (its one-minute load average over its cores, when
// above 1). A deadline only bounds how long a broken test takes to fail: a
// test waits for the event it needs, never for a fixed time, so a larger
// factor makes no passing test slower.
package patience

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Env is the variable that multiplies every deadline.
const Env = "STAGEBOT_PATIENCE"

// Factor is the multiplier in force now.
func Factor() float64 {
	f := 1.0
	if v := os.Getenv(Env); v != "" {
		if x, err := strconv.ParseFloat(v, 64); err == nil && x > 0 {
			f = x
		}
	}
	return f * load()
}

// load is the one-minute load average per core, at least 1.
func load() float64 {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 1
	}
	fields := strings.Fields(string(data))
	if len(fields) == 0 {
		return 1
	}
	l, err := strconv.ParseFloat(fields[0], 64)
	if err != nil {
		return 1
	}
	return max(1, l/float64(runtime.NumCPU()))
}

// D is base scaled by the factor.
func D(base time.Duration) time.Duration { return time.Duration(float64(base) * Factor()) }

// After is time.After(D(base)).
func After(base time.Duration) <-chan time.Time { return time.After(D(base)) }

// Until polls cond every 10ms until it holds, failing the test after
// D(base). describe, when not nil, says what the test saw at the end.
func Until(t testing.TB, what string, base time.Duration, cond func() bool, describe ...func() string) {
	t.Helper()
	if err := Wait(base, cond); err != nil {
		msg := fmt.Sprintf("timed out waiting for %s (%v)", what, err)
		for _, d := range describe {
			msg += "\n" + d()
		}
		t.Fatal(msg)
	}
}

// Wait polls cond every 10ms until it holds, or returns an error after
// D(base). For helpers that report to their caller instead of a test.
func Wait(base time.Duration, cond func() bool) error {
	limit := D(base)
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("%s, %.1f× patience", limit.Round(time.Millisecond), Factor())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

package patience

import (
	"testing"
	"time"
)

func TestFactorReadsTheEnvironment(t *testing.T) {
	t.Setenv(Env, "")
	base := Factor()
	if base < 1 {
		t.Fatalf("factor %v below 1", base)
	}
	t.Setenv(Env, "3")
	if got := Factor(); got < 3 {
		t.Errorf("with %s=3 the factor is %v", Env, got)
	}
	t.Setenv(Env, "nonsense")
	if got := Factor(); got < 1 || got >= 3*base {
		t.Errorf("a nonsense %s gives %v", Env, got)
	}
}

func TestWaitReturnsOnceTheConditionHolds(t *testing.T) {
	n := 0
	if err := Wait(time.Minute, func() bool { n++; return n == 3 }); err != nil || n != 3 {
		t.Fatalf("Wait: %v after %d looks", err, n)
	}
	t.Setenv(Env, "0.001")
	if err := Wait(time.Second, func() bool { return false }); err == nil {
		t.Fatal("Wait on a condition that never holds returned no error")
	}
}

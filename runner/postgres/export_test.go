package postgres

import (
	"testing"
	"time"
)

// SetSplitSize splits every table over n bytes into ranges, and returns a
// function that puts things back.
func SetSplitSize(n int64) (restore func()) {
	old := splitSize
	splitSize, splitAlways = n, true
	return func() { splitSize, splitAlways = old, false }
}

// SetProgressEvery changes how often the streaming method reports progress.
func SetProgressEvery(d time.Duration) (restore func()) {
	old := progressEvery
	progressEvery = d
	return func() { progressEvery = old }
}

// SetRepairEvery makes background repairs try again sooner, for a test.
func SetRepairEvery(t *testing.T, d time.Duration) {
	old := repairEvery
	repairEvery = d
	t.Cleanup(func() { repairEvery = old })
}

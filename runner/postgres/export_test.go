package postgres

import (
	"bytes"
	"sync"
	"time"
)

// SetSplitSize splits every table over n bytes into ranges, and returns a
// function that puts things back.
func SetSplitSize(n int64) (restore func()) {
	old := splitSize
	splitSize, splitAlways = n, true
	return func() { splitSize, splitAlways = old, false }
}

// SetProofBatch makes the masking proof send n tables' queries a batch.
func SetProofBatch(n int) (restore func()) {
	old := proofBatch
	proofBatch = n
	return func() { proofBatch = old }
}

// SetProgressEvery changes how often the streaming method reports progress.
func SetProgressEvery(d time.Duration) (restore func()) {
	old := progressEvery
	progressEvery = d
	return func() { progressEvery = old }
}

// SetRepairEvery makes background repairs try again sooner, for a test.
func (t *Target) SetRepairEvery(d time.Duration) { t.rt.repairEvery = d }

// SyncBuffer is a buffer several goroutines may write (a tool's stdout
// and stderr at once).
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// BypassMasking copies masked tables unmasked, for a test of the proof
// that must catch it.
func (t *Target) BypassMasking() { t.rt.bypassMask = true }

// MaskInText masks in COPY's text format even where binary would do, so
// that tests cover both.
func (t *Target) MaskInText() { t.rt.maskText = true }

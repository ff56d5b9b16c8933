package postgres

import "time"

// SetSplitSize changes the size above which tables are copied in ranges,
// and returns a function that puts it back.
func SetSplitSize(n int64) (restore func()) {
	old := splitSize
	splitSize = n
	return func() { splitSize = old }
}

// SetProgressEvery changes how often the streaming method reports progress.
func SetProgressEvery(d time.Duration) (restore func()) {
	old := progressEvery
	progressEvery = d
	return func() { progressEvery = old }
}

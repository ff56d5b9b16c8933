// Package bolt implements store.Store on a single bbolt file.
//
// One process at a time may open the file: a second Open fails after a short
// timeout with an error that names the file, rather than waiting forever.
// Records are JSON values under 8-byte big-endian keys, so cursor order is
// numeric order.
package bolt

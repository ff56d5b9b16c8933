package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/stagebot/stagebot/store"
)

// Compact implements store.Store.
func (s *Store) Compact(ctx context.Context, k store.Retention) (int, error) {
	removed := 0
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		runs, active := tx.Bucket(bucketRuns), tx.Bucket(bucketActive)
		var gone [][]byte
		kept := 0
		c := runs.Cursor()
		for key, v := c.Last(); key != nil; key, v = c.Prev() {
			if active.Get(key) != nil {
				continue
			}
			var r store.Run
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("decode run %d: %w", binary.BigEndian.Uint64(key), err)
			}
			if (k.Runs > 0 && kept >= k.Runs) || (!k.Before.IsZero() && r.EndedAt.Before(k.Before)) {
				gone = append(gone, bytes.Clone(key))
				continue
			}
			kept++
		}
		apps := tx.Bucket(bucketApprovals)
		for _, key := range gone {
			if err := runs.Delete(key); err != nil {
				return err
			}
			if err := tx.Bucket(bucketLogs).Delete(key); err != nil {
				return err
			}
			var appKeys [][]byte
			ac := apps.Cursor()
			for ak, _ := ac.Seek(key); ak != nil && bytes.HasPrefix(ak, key); ak, _ = ac.Next() {
				appKeys = append(appKeys, bytes.Clone(ak))
			}
			for _, ak := range appKeys {
				if err := apps.Delete(ak); err != nil {
					return err
				}
			}
		}
		removed = len(gone)
		if k.Before.IsZero() {
			return nil
		}
		holds := tx.Bucket(bucketHolds)
		var oldHolds [][]byte
		err := holds.ForEach(func(key, v []byte) error {
			var h store.Hold
			if err := json.Unmarshal(v, &h); err != nil {
				return fmt.Errorf("decode hold %d: %w", binary.BigEndian.Uint64(key), err)
			}
			if !h.Active() && h.EndedAt.Before(k.Before) {
				oldHolds = append(oldHolds, bytes.Clone(key))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, key := range oldHolds {
			if err := holds.Delete(key); err != nil {
				return err
			}
		}
		return compactEvents(tx.Bucket(bucketEvents), k.Before)
	})
	if err != nil {
		return 0, fmt.Errorf("compact: %w", err)
	}
	return removed, nil
}

// compactEvents removes the audit events from before before: they are
// kept in the order they were written, so the oldest come first.
func compactEvents(events *bbolt.Bucket, before time.Time) error {
	var old [][]byte
	c := events.Cursor()
	for key, v := c.First(); key != nil; key, v = c.Next() {
		var e store.Event
		if err := json.Unmarshal(v, &e); err != nil {
			return fmt.Errorf("decode event %d: %w", binary.BigEndian.Uint64(key), err)
		}
		if !e.At.Before(before) {
			break
		}
		old = append(old, bytes.Clone(key))
	}
	for _, key := range old {
		if err := events.Delete(key); err != nil {
			return err
		}
	}
	return nil
}

package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/stagebot/stagebot/store"
)

var _ store.Porter = (*Store)(nil)

// Export implements store.Porter.
func (s *Store) Export(ctx context.Context) (*store.Dump, error) {
	d := &store.Dump{Logs: map[uint64][]byte{}, Watchers: map[string][]store.User{}, Marks: map[string]time.Time{}, Databases: map[string]uint64{}, Values: map[string][]byte{}}
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		each := func(bucket []byte, fn func(k, v []byte) error) error { return tx.Bucket(bucket).ForEach(fn) }
		if err := each(bucketRuns, func(k, v []byte) error {
			var r store.Run
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("decode run %d: %w", binary.BigEndian.Uint64(k), err)
			}
			d.Runs = append(d.Runs, &r)
			return nil
		}); err != nil {
			return err
		}
		if err := each(bucketLogs, func(k, v []byte) error {
			d.Logs[binary.BigEndian.Uint64(k)] = bytes.Clone(v)
			return nil
		}); err != nil {
			return err
		}
		if err := each(bucketHolds, func(k, v []byte) error {
			var h store.Hold
			if err := json.Unmarshal(v, &h); err != nil {
				return err
			}
			d.Holds = append(d.Holds, &h)
			return nil
		}); err != nil {
			return err
		}
		type seqApproval struct {
			seq uint64
			a   store.Approval
		}
		var apps []seqApproval
		if err := each(bucketApprovals, func(k, v []byte) error {
			var a store.Approval
			if err := json.Unmarshal(v, &a); err != nil {
				return err
			}
			apps = append(apps, seqApproval{binary.BigEndian.Uint64(k[8:]), a})
			return nil
		}); err != nil {
			return err
		}
		sort.Slice(apps, func(i, j int) bool { return apps[i].seq < apps[j].seq })
		for _, a := range apps {
			d.Approvals = append(d.Approvals, a.a)
		}
		if err := each(bucketWatchers, func(k, v []byte) error {
			var u store.User
			if err := json.Unmarshal(v, &u); err != nil {
				return err
			}
			target, _, _ := bytes.Cut(k, []byte{0})
			d.Watchers[string(target)] = append(d.Watchers[string(target)], u)
			return nil
		}); err != nil {
			return err
		}
		if err := each(bucketEvents, func(k, v []byte) error {
			var e store.Event
			if err := json.Unmarshal(v, &e); err != nil {
				return err
			}
			d.Events = append(d.Events, e)
			return nil
		}); err != nil {
			return err
		}
		if err := each(bucketMarks, func(k, v []byte) error {
			var t time.Time
			if err := t.UnmarshalBinary(v); err != nil {
				return err
			}
			d.Marks[string(k)] = t
			return nil
		}); err != nil {
			return err
		}
		if err := each(bucketValues, func(k, v []byte) error {
			d.Values[string(k)] = bytes.Clone(v)
			return nil
		}); err != nil {
			return err
		}
		return each(bucketDatabases, func(k, v []byte) error {
			if len(v) == 8 {
				d.Databases[string(k)] = binary.BigEndian.Uint64(v)
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	return d, nil
}

// Import implements store.Porter.
func (s *Store) Import(ctx context.Context, d *store.Dump) error {
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		for _, name := range allBuckets {
			if k, _ := tx.Bucket(name).Cursor().First(); !bytes.Equal(name, bucketMeta) && k != nil {
				return fmt.Errorf("%w: it has %s", store.ErrNotEmpty, name)
			}
		}
		runs, active := tx.Bucket(bucketRuns), tx.Bucket(bucketActive)
		for _, r := range d.Runs {
			if err := put(runs, itob(r.ID), r); err != nil {
				return err
			}
			if !r.State.Done() {
				if err := active.Put(itob(r.ID), nil); err != nil {
					return err
				}
			}
			if r.ID > runs.Sequence() {
				if err := runs.SetSequence(r.ID); err != nil {
					return err
				}
			}
		}
		for id, text := range d.Logs {
			if err := tx.Bucket(bucketLogs).Put(itob(id), text); err != nil {
				return err
			}
		}
		holds := tx.Bucket(bucketHolds)
		for _, h := range d.Holds {
			if err := put(holds, itob(h.ID), h); err != nil {
				return err
			}
			if h.ID > holds.Sequence() {
				if err := holds.SetSequence(h.ID); err != nil {
					return err
				}
			}
		}
		apps := tx.Bucket(bucketApprovals)
		for _, a := range d.Approvals {
			seq, err := apps.NextSequence()
			if err != nil {
				return err
			}
			if err := put(apps, approvalKey(a.RunID, seq), &a); err != nil {
				return err
			}
		}
		for target, users := range d.Watchers {
			for _, u := range users {
				if err := put(tx.Bucket(bucketWatchers), watcherKey(target, u.ID), &u); err != nil {
					return err
				}
			}
		}
		events := tx.Bucket(bucketEvents)
		for _, e := range d.Events {
			if err := put(events, itob(e.ID), &e); err != nil {
				return err
			}
			if e.ID > events.Sequence() {
				if err := events.SetSequence(e.ID); err != nil {
					return err
				}
			}
		}
		for name, t := range d.Marks {
			v, err := t.MarshalBinary()
			if err != nil {
				return err
			}
			if err := tx.Bucket(bucketMarks).Put([]byte(name), v); err != nil {
				return err
			}
		}
		for key, run := range d.Databases {
			if err := tx.Bucket(bucketDatabases).Put([]byte(key), itob(run)); err != nil {
				return err
			}
		}
		for name, v := range d.Values {
			if err := tx.Bucket(bucketValues).Put([]byte(name), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	return nil
}

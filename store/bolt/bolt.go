package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"time"

	bbolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/stagebot/stagebot/store"
)

// Bucket names.
var (
	bucketMeta      = []byte("meta")
	bucketRuns      = []byte("runs")
	bucketActive    = []byte("runs_active")
	bucketLogs      = []byte("logs")
	bucketHolds     = []byte("holds")
	bucketApprovals = []byte("approvals")
	bucketWatchers  = []byte("watchers")
	bucketEvents    = []byte("events")
	bucketMarks     = []byte("marks")
	bucketDatabases = []byte("databases")
	bucketValues    = []byte("values")
	allBuckets      = [][]byte{bucketMeta, bucketRuns, bucketActive, bucketLogs, bucketHolds, bucketApprovals, bucketWatchers, bucketEvents, bucketMarks, bucketDatabases, bucketValues}
)

const schemaVersion = 1

// MaxLogBytes bounds one run's log: store.MaxLogBytes.
const MaxLogBytes = store.MaxLogBytes

// Store is a store.Store backed by a bbolt file.
type Store struct {
	db *bbolt.DB
}

var _ store.Store = (*Store)(nil)

// LockTimeout is how long Open waits for another process to let go of the file.
var LockTimeout = time.Second

// ErrDamaged means the state file is not a readable stagebot store.
var ErrDamaged = errors.New("the file is damaged")

// Open opens the store at path, creating it only when no file is there. An
// empty or damaged file is refused, never taken for a new store: that
// would lose the history and the holds people rely on.
func Open(path string) (s *Store, err error) {
	switch st, err := os.Stat(path); {
	case err == nil && st.IsDir():
		return nil, fmt.Errorf("open store %s: it is a directory; set store.path to a file", path)
	case err == nil && st.Size() == 0:
		return nil, fmt.Errorf("open store %s: the file is empty, so it is not a stagebot state file (a copy that failed?); restore it from a backup, or remove it to start with no history and no holds", path)
	}
	var db *bbolt.DB
	defer func() {
		// bbolt panics on some damaged pages.
		if p := recover(); p != nil {
			if db != nil {
				db.Close()
			}
			s, err = nil, damaged(path, fmt.Errorf("%v", p))
		}
	}()
	db, err = bbolt.Open(path, 0o600, &bbolt.Options{Timeout: LockTimeout})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("open store %s: another stagebot process is using this file; stop it, or set store.path to another file", path)
	}
	if err != nil {
		if errors.Is(err, berrors.ErrInvalid) || errors.Is(err, berrors.ErrChecksum) || errors.Is(err, berrors.ErrVersionMismatch) {
			return nil, damaged(path, err)
		}
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	// A damaged page shows when it is read: bbolt's panic becomes an error
	// (recoverDamage). Reading every page here would find it sooner, but
	// would also map the whole file into memory, history and logs
	// included, on every start.
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		if v := meta.Get([]byte("schema_version")); v != nil {
			if n := binary.BigEndian.Uint64(v); n > schemaVersion {
				return fmt.Errorf("the file has schema version %d, newer than this stagebot understands (%d); upgrade stagebot", n, schemaVersion)
			}
		}
		return meta.Put([]byte("schema_version"), itob(schemaVersion))
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	return &Store{db: db}, nil
}

// Close closes the file.
func (s *Store) Close() error { return s.db.Close() }

func itob(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}

func damaged(path string, cause error) error {
	return fmt.Errorf("open store %s: %w (%v): restore it from a backup, or move it aside to start with no history and no holds", path, ErrDamaged, cause)
}

func (s *Store) update(ctx context.Context, fn func(tx *bbolt.Tx) error) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	defer recoverDamage(&err)
	return s.db.Update(fn)
}

func (s *Store) view(ctx context.Context, fn func(tx *bbolt.Tx) error) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	defer recoverDamage(&err)
	return s.db.View(fn)
}

// recoverDamage turns bbolt's panic on a damaged page into an error.
func recoverDamage(err *error) {
	if p := recover(); p != nil {
		*err = fmt.Errorf("%w: %v", ErrDamaged, p)
	}
}

func put(b *bbolt.Bucket, key []byte, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(key, data)
}

// CreateRun implements store.Store.
func (s *Store) CreateRun(ctx context.Context, r *store.Run) error {
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketRuns)
		id, err := b.NextSequence()
		if err != nil {
			return err
		}
		c := *r
		c.ID, c.Version = id, 1
		if err := put(b, itob(id), &c); err != nil {
			return err
		}
		if !c.State.Done() {
			if err := tx.Bucket(bucketActive).Put(itob(id), nil); err != nil {
				return err
			}
		}
		r.ID, r.Version = c.ID, c.Version
		return nil
	})
	if err != nil {
		return fmt.Errorf("create run: %w", err)
	}
	return nil
}

// UpdateRun implements store.Store.
func (s *Store) UpdateRun(ctx context.Context, r *store.Run) error {
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketRuns)
		old, err := getRun(b, r.ID)
		if err != nil {
			return err
		}
		if old.Version != r.Version {
			return fmt.Errorf("run %d changed since it was read (version %d, stored %d): %w", r.ID, r.Version, old.Version, store.ErrConflict)
		}
		c := *r
		c.Version++
		if err := put(b, itob(r.ID), &c); err != nil {
			return err
		}
		active := tx.Bucket(bucketActive)
		if c.State.Done() {
			err = active.Delete(itob(r.ID))
		} else {
			err = active.Put(itob(r.ID), nil)
		}
		if err != nil {
			return err
		}
		r.Version = c.Version
		return nil
	})
	if err != nil {
		return fmt.Errorf("update run %d: %w", r.ID, err)
	}
	return nil
}

func getRun(b *bbolt.Bucket, id uint64) (*store.Run, error) {
	v := b.Get(itob(id))
	if v == nil {
		return nil, fmt.Errorf("run %d: %w", id, store.ErrNotFound)
	}
	var r store.Run
	if err := json.Unmarshal(v, &r); err != nil {
		return nil, fmt.Errorf("decode run %d: %w", id, err)
	}
	return &r, nil
}

// Run implements store.Store.
func (s *Store) Run(ctx context.Context, id uint64) (*store.Run, error) {
	var r *store.Run
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		var err error
		r, err = getRun(tx.Bucket(bucketRuns), id)
		return err
	})
	return r, err
}

// Runs implements store.Store.
func (s *Store) Runs(ctx context.Context, f store.RunFilter) ([]*store.Run, error) {
	var out []*store.Run
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		runs := tx.Bucket(bucketRuns)
		keys := runs
		if f.Active {
			keys = tx.Bucket(bucketActive)
		}
		c := keys.Cursor()
		for k, _ := c.Last(); k != nil; k, _ = c.Prev() {
			r, err := getRun(runs, binary.BigEndian.Uint64(k))
			if err != nil {
				return err
			}
			if !f.Match(r) {
				continue
			}
			out = append(out, r)
			if f.Limit > 0 && len(out) >= f.Limit {
				break
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	return out, nil
}

// AppendLog implements store.Store.
func (s *Store) AppendLog(ctx context.Context, runID uint64, text []byte) error {
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		if tx.Bucket(bucketRuns).Get(itob(runID)) == nil {
			return fmt.Errorf("run %d: %w", runID, store.ErrNotFound)
		}
		logs := tx.Bucket(bucketLogs)
		buf, ok := store.AppendLogText(logs.Get(itob(runID)), text)
		if !ok {
			return nil
		}
		return logs.Put(itob(runID), buf)
	})
	if err != nil {
		return fmt.Errorf("append log of run %d: %w", runID, err)
	}
	return nil
}

// Log implements store.Store.
func (s *Store) Log(ctx context.Context, runID uint64) ([]byte, error) {
	var out []byte
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		if tx.Bucket(bucketRuns).Get(itob(runID)) == nil {
			return fmt.Errorf("run %d: %w", runID, store.ErrNotFound)
		}
		out = bytes.Clone(tx.Bucket(bucketLogs).Get(itob(runID)))
		return nil
	})
	if out == nil && err == nil {
		out = []byte{}
	}
	return out, err
}

// CreateHold implements store.Store.
func (s *Store) CreateHold(ctx context.Context, h *store.Hold) error {
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketHolds)
		id, err := b.NextSequence()
		if err != nil {
			return err
		}
		c := *h
		c.ID = id
		if err := put(b, itob(id), &c); err != nil {
			return err
		}
		h.ID = id
		return nil
	})
	if err != nil {
		return fmt.Errorf("create hold: %w", err)
	}
	return nil
}

// UpdateHold implements store.Store.
func (s *Store) UpdateHold(ctx context.Context, h *store.Hold) error {
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketHolds)
		if b.Get(itob(h.ID)) == nil {
			return fmt.Errorf("hold %d: %w", h.ID, store.ErrNotFound)
		}
		return put(b, itob(h.ID), h)
	})
	if err != nil {
		return fmt.Errorf("update hold %d: %w", h.ID, err)
	}
	return nil
}

// Holds implements store.Store.
func (s *Store) Holds(ctx context.Context, activeOnly bool) ([]*store.Hold, error) {
	var out []*store.Hold
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketHolds).ForEach(func(k, v []byte) error {
			var h store.Hold
			if err := json.Unmarshal(v, &h); err != nil {
				return fmt.Errorf("decode hold %d: %w", binary.BigEndian.Uint64(k), err)
			}
			if !activeOnly || h.Active() {
				out = append(out, &h)
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list holds: %w", err)
	}
	return out, nil
}

// approvalKey orders a run's approvals by the time they were added.
func approvalKey(runID, seq uint64) []byte { return append(itob(runID), itob(seq)...) }

// AddApproval implements store.Store.
func (s *Store) AddApproval(ctx context.Context, a store.Approval) error {
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		if tx.Bucket(bucketRuns).Get(itob(a.RunID)) == nil {
			return fmt.Errorf("run %d: %w", a.RunID, store.ErrNotFound)
		}
		b := tx.Bucket(bucketApprovals)
		prefix := itob(a.RunID)
		c := b.Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			var old store.Approval
			if err := json.Unmarshal(v, &old); err != nil {
				return err
			}
			if old.User.ID == a.User.ID {
				return fmt.Errorf("%s already approved run %d: %w", a.User.Display(), a.RunID, store.ErrConflict)
			}
		}
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		return put(b, approvalKey(a.RunID, seq), &a)
	})
	if err != nil {
		return fmt.Errorf("add approval: %w", err)
	}
	return nil
}

// Approvals implements store.Store.
func (s *Store) Approvals(ctx context.Context, runID uint64) ([]store.Approval, error) {
	var out []store.Approval
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		prefix := itob(runID)
		c := tx.Bucket(bucketApprovals).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			var a store.Approval
			if err := json.Unmarshal(v, &a); err != nil {
				return err
			}
			out = append(out, a)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list approvals of run %d: %w", runID, err)
	}
	return out, nil
}

func watcherKey(target, userID string) []byte { return []byte(target + "\x00" + userID) }

// Watch implements store.Store.
func (s *Store) Watch(ctx context.Context, target string, user store.User) error {
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		return put(tx.Bucket(bucketWatchers), watcherKey(target, user.ID), &user)
	})
	if err != nil {
		return fmt.Errorf("watch %s: %w", target, err)
	}
	return nil
}

// Unwatch implements store.Store.
func (s *Store) Unwatch(ctx context.Context, target string, user store.User) error {
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketWatchers)
		k := watcherKey(target, user.ID)
		if b.Get(k) == nil {
			return fmt.Errorf("%s does not watch %s: %w", user.Display(), target, store.ErrNotFound)
		}
		return b.Delete(k)
	})
	if err != nil {
		return fmt.Errorf("unwatch %s: %w", target, err)
	}
	return nil
}

// Watchers implements store.Store.
func (s *Store) Watchers(ctx context.Context, target string) ([]store.User, error) {
	var out []store.User
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		prefix := []byte(target + "\x00")
		c := tx.Bucket(bucketWatchers).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			var u store.User
			if err := json.Unmarshal(v, &u); err != nil {
				return err
			}
			out = append(out, u)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list watchers of %s: %w", target, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// AppendEvent implements store.Store.
func (s *Store) AppendEvent(ctx context.Context, e *store.Event) error {
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketEvents)
		id, err := b.NextSequence()
		if err != nil {
			return err
		}
		c := *e
		c.ID = id
		if err := put(b, itob(id), &c); err != nil {
			return err
		}
		e.ID = id
		return nil
	})
	if err != nil {
		return fmt.Errorf("append event: %w", err)
	}
	return nil
}

// Events implements store.Store.
func (s *Store) Events(ctx context.Context, f store.EventFilter) ([]store.Event, error) {
	var out []store.Event
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketEvents).Cursor()
		for k, v := c.Last(); k != nil; k, v = c.Prev() {
			var e store.Event
			if err := json.Unmarshal(v, &e); err != nil {
				return err
			}
			if !f.Match(&e) {
				continue
			}
			out = append(out, e)
			if f.Limit > 0 && len(out) >= f.Limit {
				break
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	return out, nil
}

// Mark implements store.Store.
func (s *Store) Mark(ctx context.Context, name string) (time.Time, error) {
	var t time.Time
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		v := tx.Bucket(bucketMarks).Get([]byte(name))
		if v == nil {
			return nil
		}
		return t.UnmarshalBinary(v)
	})
	if err != nil {
		return time.Time{}, fmt.Errorf("read mark %s: %w", name, err)
	}
	return t, nil
}

// SetMark implements store.Store.
func (s *Store) SetMark(ctx context.Context, name string, t time.Time) error {
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		v, err := t.MarshalBinary()
		if err != nil {
			return err
		}
		return tx.Bucket(bucketMarks).Put([]byte(name), v)
	})
	if err != nil {
		return fmt.Errorf("set mark %s: %w", name, err)
	}
	return nil
}

// RecordDatabase implements store.Store.
func (s *Store) RecordDatabase(ctx context.Context, key string, run uint64) error {
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketDatabases).Put([]byte(key), itob(run))
	})
	if err != nil {
		return fmt.Errorf("record database %s: %w", key, err)
	}
	return nil
}

// DatabaseRun implements store.Store.
func (s *Store) DatabaseRun(ctx context.Context, key string) (uint64, error) {
	var run uint64
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		v := tx.Bucket(bucketDatabases).Get([]byte(key))
		if len(v) != 8 {
			return store.ErrNotFound
		}
		run = binary.BigEndian.Uint64(v)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("look up database %s: %w", key, err)
	}
	return run, nil
}

// SetValue implements store.Store.
func (s *Store) SetValue(ctx context.Context, name string, v []byte) error {
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketValues).Put([]byte(name), bytes.Clone(v))
	})
	if err != nil {
		return fmt.Errorf("set value %s: %w", name, err)
	}
	return nil
}

// Value implements store.Store.
func (s *Store) Value(ctx context.Context, name string) ([]byte, error) {
	var out []byte
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		v := tx.Bucket(bucketValues).Get([]byte(name))
		if v == nil {
			return store.ErrNotFound
		}
		out = bytes.Clone(v)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("value %s: %w", name, err)
	}
	return out, nil
}

package postgres

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
)

// Registry remembers which databases stagebot made, by their server's
// system identifier and their OID (a rename keeps it), and which run made
// each, so that nothing in the database itself has to say so: a copy
// carries production's comment, not a marker. The bot's store is one.
type Registry interface {
	// RecordDatabase notes that run made the database key names.
	RecordDatabase(ctx context.Context, key string, run uint64) error
	// DatabaseRun returns the run that made the database key names, or an
	// error wrapping store.ErrNotFound.
	DatabaseRun(ctx context.Context, key string) (uint64, error)
}

// memoryRegistry is the registry of a Target that was given none.
type memoryRegistry struct {
	mu sync.Mutex
	m  map[string]uint64
}

var errUnknownDatabase = fmt.Errorf("database not recorded")

func (r *memoryRegistry) RecordDatabase(_ context.Context, key string, run uint64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[string]uint64{}
	}
	r.m[key] = run
	return nil
}

func (r *memoryRegistry) DatabaseRun(_ context.Context, key string) (uint64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	run, ok := r.m[key]
	if !ok {
		return 0, errUnknownDatabase
	}
	return run, nil
}

func (t *Target) registry() Registry {
	t.rt.registryOnce.Do(func() {
		if t.Registry == nil {
			t.Registry = &memoryRegistry{}
		}
	})
	return t.Registry
}

// databaseKey names database name on the server c is connected to, for
// the registry; exists is false when there is no such database.
func databaseKey(ctx context.Context, c *pgx.Conn, name string) (key string, exists bool, err error) {
	id, err := serverID(ctx, c)
	if err != nil {
		return "", false, err
	}
	var oid uint32
	err = c.QueryRow(ctx, "select oid from pg_database where datname = $1", name).Scan(&oid)
	if err == pgx.ErrNoRows {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("look up database %s: %w", name, err)
	}
	return fmt.Sprintf("%s/%d", id, oid), true, nil
}

// madeBy returns the run that made database name (0 when stagebot did not
// make it, or no record says so). Databases made by stagebot before the
// registry existed carry a comment that says so.
func (t *Target) madeBy(ctx context.Context, c *pgx.Conn, name string) (run uint64, managed bool, err error) {
	key, exists, err := databaseKey(ctx, c, name)
	if err != nil || !exists {
		return 0, false, err
	}
	if run, err := t.registry().DatabaseRun(ctx, key); err == nil {
		return run, true, nil
	}
	info, err := database(ctx, c, name)
	if err != nil {
		return 0, false, err
	}
	return 0, strings.HasPrefix(info.comment, commentPrefix), nil
}

// record notes that run made database name.
func (t *Target) record(ctx context.Context, c *pgx.Conn, name string, run uint64) error {
	key, exists, err := databaseKey(ctx, c, name)
	if err != nil {
		return err
	}
	if !exists {
		return fmt.Errorf("record %s: it does not exist", name)
	}
	if err := t.registry().RecordDatabase(ctx, key, run); err != nil {
		return fmt.Errorf("record that stagebot made %s: %w", name, err)
	}
	return nil
}

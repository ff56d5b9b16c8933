package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stagebot/stagebot/runner"
)

// loChunk is how much of a large object one round trip carries.
const loChunk = 1 << 20

// copyLargeObjects copies the contents of production's large objects,
// read on the shared snapshot, into the ones the schema created in the
// shadow. Rows of at most loChunk bytes keep memory flat however large an
// object is.
func (s *streamer) copyLargeObjects(ctx context.Context, count int64) error {
	start := time.Now()
	prod, shadow, done, err := s.bothConns(ctx)
	if err != nil {
		return err
	}
	defer done()
	if _, err := shadow.Exec(ctx, "begin"); err != nil {
		return fmt.Errorf("shadow: %w", err)
	}
	long, bytes, err := loFirstChunks(ctx, prod, shadow)
	if err != nil {
		return err
	}
	for _, oid := range long {
		n, err := loRest(ctx, prod, shadow, oid)
		if err != nil {
			return err
		}
		bytes += n
	}
	if _, err := shadow.Exec(ctx, "commit"); err != nil {
		return fmt.Errorf("shadow: %w", err)
	}
	fmt.Fprintf(s.env.Log, "%d large objects (%s) copied in %s\n", count, runner.Bytes(bytes), time.Since(start).Round(time.Millisecond))
	return nil
}

// loFirstChunks copies the first chunk of every large object in one pass,
// in batches, and returns the objects longer than a chunk.
func loFirstChunks(ctx context.Context, prod, shadow *pgx.Conn) (long []uint32, bytes int64, err error) {
	rows, err := prod.Query(ctx, "select oid, lo_get(oid, 0, $1) from pg_largeobject_metadata order by oid", loChunk)
	if err != nil {
		return nil, 0, fmt.Errorf("production: read large objects: %w", err)
	}
	defer rows.Close()
	var batched int64
	batch := &pgx.Batch{}
	flush := func() error {
		if batch.Len() == 0 {
			return nil
		}
		err := shadow.SendBatch(ctx, batch).Close()
		batch, batched = &pgx.Batch{}, 0
		return err
	}
	for rows.Next() {
		var oid uint32
		var data []byte
		if err := rows.Scan(&oid, &data); err != nil {
			return nil, 0, fmt.Errorf("production: read large objects: %w", err)
		}
		if len(data) == loChunk {
			long = append(long, oid)
		}
		bytes += int64(len(data))
		batched += int64(len(data))
		if len(data) > 0 {
			batch.Queue("select lo_put($1, 0, $2)", oid, data)
		}
		if batch.Len() >= 256 || batched >= 4*loChunk {
			if err := flush(); err != nil {
				return nil, 0, fmt.Errorf("shadow: write large object %d: %w", oid, err)
			}
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("production: read large objects: %w", err)
	}
	if err := flush(); err != nil {
		return nil, 0, fmt.Errorf("shadow: write large objects: %w", err)
	}
	return long, bytes, nil
}

// loRest copies a long large object past its first chunk, chunk by chunk.
func loRest(ctx context.Context, prod, shadow *pgx.Conn, oid uint32) (int64, error) {
	var bytes int64
	for off := int64(loChunk); ; off += loChunk {
		var data []byte
		if err := prod.QueryRow(ctx, "select lo_get($1, $2, $3)", oid, off, loChunk).Scan(&data); err != nil {
			return bytes, fmt.Errorf("production: read large object %d: %w", oid, err)
		}
		if len(data) > 0 {
			if _, err := shadow.Exec(ctx, "select lo_put($1, $2, $3)", oid, off, data); err != nil {
				return bytes, fmt.Errorf("shadow: write large object %d: %w", oid, err)
			}
		}
		bytes += int64(len(data))
		if len(data) < loChunk {
			return bytes, nil
		}
	}
}

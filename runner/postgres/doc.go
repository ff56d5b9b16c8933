// Package postgres holds the runner steps that work on PostgreSQL:
// pg_refresh (copy production, or a backup file, into a shadow database),
// sql, check, pg_swap, pg_drop, and the target-level operations the bot
// needs (recovery after a crash, rollback).
//
// The promise is that staging is never half-replaced. A refresh restores into
// <db>__stagebot_next beside staging; sql and check steps may run on that
// shadow; only then does pg_swap block new connections to staging, end the
// sessions still open and rename staging to <db>__stagebot_prev and the
// shadow to <db> in one transaction. A failure or abort before the swap
// leaves staging untouched and the shadow dropped. Recover repairs what a
// crash left: the shadow is dropped and staging is made connectable again.
//
// Production is only read: every connection to it is read-only, and the
// guards refuse a destination that is the source or a production server.
// No step waits for ever on a silent server: each is probed by the
// runner's stall watchdog, and what is undone after a failure is bounded.
//
// A masked target's rows are masked in the COPY stream, on their way
// from production to the shadow (runner/mask holds the rules and
// functions); the gate refuses a refresh before anything is copied when
// a column is not classified, and the proof compares a sample of the
// shadow's rows with production's before the swap.
//
// Where things are: target.go (a target's configuration), runtime.go
// (what it holds while it runs), guard.go
// (what may be written), refresh.go (pg_refresh: plan and steps), the
// streaming method in stream.go (the phases), streamplan.go (what
// production's catalog says), streamsched.go (the queue and its locks),
// streamwork.go and streamlo.go (the workers), streamfinish.go (what comes
// last), coltypes.go (which tables need text COPY); dumpfile.go
// (pg_dump/pg_restore and backup files), props.go (database-level
// properties), progress.go and readprogress.go (progress of the tools);
// steps.go (sql, check, pg_swap, pg_drop, http_check), rollback.go;
// swap.go (the swap and rollback), recover.go (repairs after a crash),
// base.go (reset), forget.go and disk.go (the kept copies and space),
// changes.go (what a refresh would wipe), probe.go (the watchdog's probes),
// libpq.go (the tools' connections), tools.go (finding and running them),
// masking.go (masks for the copied tables), maskproof.go (the proof).
package postgres

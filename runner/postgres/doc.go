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
package postgres

// Package matrixtest is a fake Matrix homeserver for tests: the
// client-server API (v3 paths, Bearer tokens) on 127.0.0.1 that stagebot's
// adapter and the real mautrix client talk to. It serves /sync with
// long-poll, since tokens, filters and limited timelines (paged back with
// /rooms/{id}/messages), /send with transaction IDs that never post twice,
// joins, invites (direct and encrypted ones), alias lookups, room state,
// reactions (refusing duplicate annotations), edits and redactions.
//
// Knobs: a homeserver that goes away (connections dropped, long polls
// included), 429 M_LIMIT_EXCEEDED with retry_after_ms (and optionally
// Retry-After), a send stored but answered 500, and a revoked token.
package matrixtest

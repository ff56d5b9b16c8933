// Package discordtest is a fake Discord for tests: the gateway websocket
// (HELLO, IDENTIFY or RESUME, READY, heartbeats, MESSAGE_CREATE and
// INTERACTION_CREATE dispatches) and the REST subset stagebot uses (the
// gateway URL, posting and editing messages, interaction callbacks), on
// 127.0.0.1, for the real discordgo client.
//
// Knobs: never answer READY, close the gateway with a code (4014 for a
// refused intent), drop the gateway, fail every call (an outage), and answer
// with 429 and a retry_after.
package discordtest

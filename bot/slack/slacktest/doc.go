// Package slacktest is a fake Slack for tests: an HTTP server on 127.0.0.1
// that speaks the Web API subset stagebot uses (auth.test,
// apps.connections.open, chat.postMessage, chat.update, users.info) and the
// Socket Mode websocket (hello, pings, envelopes and their acks), so that
// the real slack-go client can be tested end to end.
//
// Knobs make it misbehave like the real one: rate limits (HTTP 429 with
// Retry-After), an outage (every call fails), a dropped socket, a
// "disconnect" frame, and silence where pings should be.
package slacktest

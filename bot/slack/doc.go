// Package slack is the Slack adapter: Socket Mode (no public URL needed),
// channel messages with the prefix, mentions, direct messages, the /stage
// slash command, and Block Kit buttons whose clicks become typed commands.
//
// Messages go out through a bot.Outbox, so they are sent in order, wait out
// rate limits (HTTP 429 Retry-After) and outages, and are delivered when
// Slack can be reached again. slack-go reconnects the socket itself after a
// drop, a "disconnect" frame or missing pings. No slack-go type leaves this
// package.
package slack

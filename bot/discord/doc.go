// Package discord is the Discord adapter: the gateway with the
// message-content intent, prefix commands and mentions in the configured
// channels and direct messages, and buttons (message components) whose
// clicks become typed commands.
//
// Startup fails with a clear error when Discord refuses the token or the
// intent (close codes 4004, 4014) or never answers READY, rather than
// hanging. discordgo reconnects and resumes the gateway itself and waits out
// 429s; messages go out through a bot.Outbox, so they keep their order and
// wait out outages. No discordgo type leaves this package.
package discord

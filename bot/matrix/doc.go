// Package matrix is the Matrix adapter, built on mautrix's client: an
// access token, the configured rooms (IDs or aliases) joined at start,
// and /sync long-polled with its position kept in the bot's store, so a
// restart neither runs old commands again nor misses new ones. A limited
// timeline is paged back with /messages; a room joined since the last
// sync counts only what follows the bot's own join.
//
// It reads `!stage …`, mentions (pills and m.mentions) and direct chats,
// and ignores its own events, notices (other bots) and edits of commands.
// Its messages are m.notice events with a plain body and HTML; status
// messages are edited with m.replace; replies go in m.thread threads.
// Matrix has no buttons: a card lists its actions as commands and as
// reactions, and a reaction on the card is the command from whoever
// reacted. Every send carries a transaction ID taken from its outbox
// entry, so a retry never posts twice; 429s wait retry_after_ms; a
// refused token stops the bot with a clear error. Encrypted rooms are
// not supported and are named as such at start and in `stagebot check`.
package matrix

// Package commands is stagebot's command language: the one table that
// defines every verb (usage, description, examples, scope, handler) and Parse,
// a pure function that turns a chat message into one of three results:
// ignore it, reply with an error or help text, or run a command.
//
// Parse never touches the network, the store or the clock: the caller passes
// the current time, the time zone and the known targets. Every error it
// returns is a sentence that says what to do, followed by the verb's usage.
package commands

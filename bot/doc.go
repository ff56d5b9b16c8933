// Package bot is stagebot's mind: it reads commands from a chat adapter,
// checks who may do what, keeps the schedule (announcements, holds,
// approvals), starts runs and reports on them.
//
// Every state change is written to the store and the audit log before it is
// announced. Time comes from a Clock, so tests move time instead of sleeping.
// Adapters (console, Slack, Discord, Matrix) implement Adapter and optionally Editor;
// messages are built here, platform-neutral, and adapters only translate them.
package bot

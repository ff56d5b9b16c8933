// Package bottest has hand-written fakes for testing code that uses package
// bot: a Clock that tests move by hand and an Adapter that records what the
// bot says.
package bottest

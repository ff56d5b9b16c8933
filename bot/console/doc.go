// Package console is the terminal adapter: stagebot in a REPL with line
// editing when stdin is a terminal, or reading one message per line when
// input is piped, so sessions can be scripted.
//
// Messages are printed to the output with a number; an edited message is
// printed again, marked as an edit of the same number, and a button is shown
// as the command it stands for, which can be typed as it is.
package console

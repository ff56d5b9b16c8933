// Package runner plans and executes a target's pipeline.
//
// Plan resolves every step and checks every guard without changing anything;
// only a plan with no problems may be executed. Execute runs the steps in
// order and stops at the first failure, then always runs the pipeline's
// finally steps (on a context that outlives an abort, so "start the app"
// still happens). Aborting the context kills the running step's whole
// process group.
//
// A step reports progress through the Reporter the caller passes (nil means
// nobody listens) and writes its output to the run log.
package runner

// Package store holds stagebot's records (runs, holds, approvals, watchers and
// audit events) and the Store contract that every persistence backend
// implements.
//
// Implementations live in sub-packages named after what they wrap (bolt), and
// all of them pass the contract suite in store/storetest. Errors are wrapped
// with the operation that failed; callers test for ErrNotFound and ErrConflict
// with errors.Is.
package store

// Package postgres is a store.Store kept in a PostgreSQL database, so that
// two or three bots on different hosts share one state, with a lease that
// lets one of them act at a time (Elector) and a fencing token that makes
// the store refuse the writes of a leader that has been replaced.
package postgres

// Package pgtest starts throwaway PostgreSQL servers from the system's
// binaries: initdb into a fresh directory, a free port on 127.0.0.1, the unix
// socket in the same directory, trust authentication, and a stop that
// removes everything. The tests use it for their "production" and "staging"
// servers, and `stagebot demo` for its own.
//
// PostgreSQL refuses to run as root, so when the process is root the server
// runs as the postgres user. Binaries are found through $PG_BINDIR, then the
// newest /usr/lib/postgresql/*/bin, then $PATH.
package pgtest

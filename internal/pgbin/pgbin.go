// Package pgbin finds PostgreSQL's programs on this machine, the one way
// for the runner (pg_dump, pg_restore, psql) and for the test servers
// (initdb, postgres): $PG_BINDIR, else the newest Debian
// /usr/lib/postgresql/<major>/bin that has the program, else $PATH.
package pgbin

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
)

// ErrNotFound is Find's answer when no directory has the program.
var ErrNotFound = errors.New("not found")

// Find returns the directory holding program.
func Find(program string) (string, error) {
	if d := os.Getenv("PG_BINDIR"); d != "" {
		return d, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return major(dirs[i]) > major(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, program)); err == nil {
			return d, nil
		}
	}
	if p, err := exec.LookPath(program); err == nil {
		return filepath.Dir(p), nil
	}
	return "", ErrNotFound
}

// major is the version a Debian directory is for: 15 for
// /usr/lib/postgresql/15/bin.
func major(dir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return n
}

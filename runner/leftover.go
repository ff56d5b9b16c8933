package runner

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/stagebot/stagebot/store"
)

// TokenVar is the variable that carries a run's token into its steps'
// processes.
const TokenVar = "STAGEBOT_RUN_TOKEN"

// EndTokenHolders ends the process groups of every process whose
// environment carries token (its run's steps and whatever they started),
// SIGTERM first and SIGKILL after grace. It returns the groups it ended.
func EndTokenHolders(token string, grace time.Duration) []int {
	if token == "" {
		return nil
	}
	want := []byte("\x00" + TokenVar + "=" + token + "\x00")
	self := os.Getpid()
	groups := map[int]bool{}
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil || pid == self {
			continue
		}
		env, err := os.ReadFile("/proc/" + d.Name() + "/environ")
		if err != nil || !bytes.Contains(append(append([]byte{0}, env...), 0), want) {
			continue
		}
		if pgid, err := syscall.Getpgid(pid); err == nil && pgid > 1 && pgid != syscall.Getpgrp() {
			groups[pgid] = true
		}
	}
	var out []int
	for pgid := range groups {
		syscall.Kill(-pgid, syscall.SIGTERM)
		out = append(out, pgid)
	}
	deadline := time.Now().Add(grace)
	for _, pgid := range out {
		for syscall.Kill(-pgid, 0) == nil && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		syscall.Kill(-pgid, syscall.SIGKILL)
	}
	slices.Sort(out)
	return out
}

// Identify describes the process group pgid so that a later start of the
// bot can tell whether it is still the same group: the leader's start time
// and the boot it started in. A PID the kernel has given to another process
// since does not match.
func Identify(pgid int) store.Process {
	p := store.Process{PGID: pgid, Boot: bootID()}
	p.Start, _ = startTime(pgid)
	return p
}

// EndLeftover ends a process group a step started before the bot stopped
// without ending it, if it is still the same group: SIGTERM, then SIGKILL
// after grace. It reports whether it found the group.
func EndLeftover(p store.Process, grace time.Duration) (bool, error) {
	if p.PGID <= 1 || p.Boot == "" || p.Boot != bootID() {
		return false, nil // another boot: every process of that one is gone
	}
	if st, err := startTime(p.PGID); err != nil || st != p.Start {
		return false, nil // gone, or the PID now belongs to something else
	}
	if err := syscall.Kill(-p.PGID, syscall.SIGTERM); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return false, nil
		}
		return true, fmt.Errorf("end process group %d: %w", p.PGID, err)
	}
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		if syscall.Kill(-p.PGID, 0) != nil {
			return true, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	syscall.Kill(-p.PGID, syscall.SIGKILL)
	return true, nil
}

func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// startTime reads when process pid started, in clock ticks since boot
// (field 22 of /proc/PID/stat).
func startTime(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces and parentheses: count
	// from the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("unreadable stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, errors.New("unreadable stat")
	}
	return strconv.ParseUint(f[19], 10, 64)
}

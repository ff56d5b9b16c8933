package postgres

import (
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// runReading runs a tool that reads a backup of total bytes at path by
// itself (pg_restore of a custom-format file or a directory, -j workers
// included), reporting to prog how much it has read: what the tool and
// its children have read, from /proc, at most total.
func runReading(ctx context.Context, c *exec.Cmd, total int64, prog *progressPoller) error {
	if err := c.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			if err != nil {
				return cmdErrOf(ctx, err, c)
			}
			prog.fileRead(total, total)
			return nil
		case <-tick.C:
			prog.fileRead(min(treeRead(c.Process.Pid), total), total)
		}
	}
}

// treeRead is how many bytes a process and its descendants have read
// (rchar in /proc/PID/io); 0 where /proc says nothing.
func treeRead(pid int) int64 {
	var n int64
	if data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/io"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "rchar: "); ok {
				x, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				n += x
			}
		}
	}
	tasks, _ := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/children")
	for _, t := range tasks {
		data, _ := os.ReadFile(t)
		for _, c := range strings.Fields(string(data)) {
			if child, err := strconv.Atoi(c); err == nil {
				n += treeRead(child)
			}
		}
	}
	return n
}

// backupSize is the size of a backup file, or of every file of a
// directory-format backup.
func backupSize(path string) int64 {
	var n int64
	filepath.WalkDir(path, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}

package main

import (
	"context"
	"net"
	"os"
	"strconv"
	"time"
)

// systemd's notify protocol (Type=notify): a datagram to $NOTIFY_SOCKET
// says the service is ready, stopping, or still alive (the watchdog).
// Without $NOTIFY_SOCKET every call does nothing.

func sdNotify(state string) error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	if path[0] == '@' {
		path = "\x00" + path[1:] // an abstract socket
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Write([]byte(state))
	return err
}

// watchdog pings systemd at half its WatchdogSec while healthy says the
// bot's loop turns; a stuck bot stops pinging and systemd restarts it.
func watchdog(ctx context.Context, healthy func() bool) {
	usec, err := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64)
	if err != nil || usec <= 0 {
		return
	}
	if pid := os.Getenv("WATCHDOG_PID"); pid != "" && pid != strconv.Itoa(os.Getpid()) {
		return
	}
	t := time.NewTicker(time.Duration(usec) * time.Microsecond / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if healthy() {
				sdNotify("WATCHDOG=1")
			}
		}
	}
}

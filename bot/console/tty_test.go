package console_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stagebot/stagebot/bot"
	"github.com/stagebot/stagebot/bot/console"
	"github.com/stagebot/stagebot/internal/patience"
)

// ttyChild is the console on a real terminal: this test binary, run again
// with its standard input and output on a pseudo-terminal. The bot it
// stands for answers "hello" a moment later, while the prompt is showing,
// with bold and code in its text.
func init() {
	if os.Getenv("STAGEBOT_CONSOLE_TTY_CHILD") == "" {
		return
	}
	a := console.New(os.Stdin, os.Stdout, "operator", "infra")
	err := a.Run(context.Background(), func(ctx context.Context, in bot.Incoming) {
		if in.Text == "hello" {
			go func() {
				time.Sleep(300 * time.Millisecond)
				a.Send(ctx, bot.Message{Channel: in.Channel, Text: "*demo* is `ready`"})
			}()
		}
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// openPTY opens a pseudo-terminal pair, 120 columns wide.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("no pseudo-terminal: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.IoctlSetWinsize(int(s.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 40, Col: 120}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(); s.Close() })
	return m, s
}

// TestConsole_OnATerminal types into the console on a real terminal: the
// prompt comes back after the bot speaks, the bot's *bold* and `code` are
// shown as a terminal's bold and colour, /as prints its note before the
// new prompt (which names the new user), and /quit says that it stops.
func TestConsole_OnATerminal(t *testing.T) {
	master, slave := openPTY(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "STAGEBOT_CONSOLE_TTY_CHILD=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &unix.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var out syncBuffer
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			out.Write(buf[:n])
			if err != nil {
				return
			}
		}
	}()
	wait := func(what, want string, from int) int {
		t.Helper()
		deadline := time.Now().Add(patience.D(10 * time.Second))
		for time.Now().Before(deadline) {
			if i := strings.Index(out.String()[from:], want); i >= 0 {
				return from + i + len(want)
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("the terminal never showed %s (%q):\n%q", what, want, out.String()[from:])
		return 0
	}
	at := wait("the first prompt", "operator@#infra> ", 0)
	master.WriteString("hello\r")
	at = wait("the reply in bold and colour", "\x1b[1mdemo\x1b[22m is \x1b[36mready\x1b[39m\r\n", at)
	at = wait("the prompt again after the reply", "operator@#infra> ", at)
	master.WriteString("/as bob\r")
	at = wait("the note of /as on its own line", "\r\n(you are now bob)\r\n", at)
	at = wait("the prompt naming bob", "bob@#infra> ", at)
	if s := out.String(); strings.Contains(s, "operator@#infra> (you are now bob)") {
		t.Errorf("the note of /as came after the old prompt:\n%q", s)
	}
	master.WriteString("/quit\r")
	wait("/quit saying so", "(stopping", at)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("the console exited with %v", err)
		}
	case <-time.After(patience.D(10 * time.Second)):
		t.Fatal("the console did not stop on /quit")
	}
}

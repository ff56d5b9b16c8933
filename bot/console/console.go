package console

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/peterh/liner"
	"golang.org/x/sys/unix"

	"github.com/stagebot/stagebot/bot"
	"github.com/stagebot/stagebot/store"
)

// Adapter is the console chat.
type Adapter struct {
	in  io.Reader
	out io.Writer
	// tty is set when in is a terminal: the REPL then uses line editing.
	tty bool

	mu sync.Mutex
	// prompting is set while the line editor shows the prompt: output
	// then redraws it below.
	prompting bool
	user      store.User
	channel   string
	n         int
	// session makes message IDs unique across restarts: a message of an
	// earlier session is shown as such when the bot edits or answers it.
	session string
	// WaitIdle, when set, is what /wait calls: it returns once no run is
	// running or due to start (the bot's WaitIdle).
	WaitIdle func(ctx context.Context)
}

var (
	_ bot.Adapter = (*Adapter)(nil)
	_ bot.Editor  = (*Adapter)(nil)
)

// New returns a console that reads in and writes out, typing as user in
// channel. Line editing is used when in is a terminal.
func New(in io.Reader, out io.Writer, user, channel string) *Adapter {
	a := &Adapter{in: in, out: out, user: store.User{ID: user, Name: user}, channel: channel, session: strconv.FormatInt(time.Now().UnixNano(), 36)}
	if f, ok := in.(*os.File); ok {
		a.tty = IsTerminal(f)
	}
	return a
}

// IsTerminal reports whether f is a terminal: a character device that
// answers the terminal ioctl (/dev/null is a character device too).
func IsTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

const help = `Console commands: /as NAME (type as another user), /channel NAME (type in another channel), /who, /wait (until no run is running or due), /quit.
Everything else is a chat message; buttons are shown as the command they stand for.`

// Run implements bot.Adapter. It returns nil at the end of the input.
func (a *Adapter) Run(ctx context.Context, handle func(context.Context, bot.Incoming)) error {
	lines := make(chan typed)
	errc := make(chan error, 1)
	var ln *liner.State
	if a.tty {
		ln = liner.NewLiner()
		ln.SetCtrlCAborts(true)
		defer ln.Close()
		fmt.Fprintln(a.out, help)
	}
	go func() {
		defer close(lines)
		if ln != nil {
			a.readTerminal(ctx, ln, lines, errc)
			return
		}
		a.readPiped(ctx, lines, errc)
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case t, ok := <-lines:
			if !ok {
				select {
				case err := <-errc:
					return err
				default:
					return nil
				}
			}
			quit := a.line(ctx, t.text, handle)
			if t.handled != nil {
				close(t.handled)
			}
			if quit {
				return nil
			}
		}
	}
}

// readTerminal reads lines at the line editor's prompt until the end of
// input. The next prompt waits until the line is handled: /as changes who
// it shows, and what the line prints comes before it.
func (a *Adapter) readTerminal(ctx context.Context, ln *liner.State, lines chan<- typed, errc chan<- error) {
	for {
		a.setPrompting(true)
		line, err := ln.Prompt(a.prompt())
		a.setPrompting(false)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, liner.ErrPromptAborted) {
				errc <- err
			}
			return
		}
		ln.AppendHistory(line)
		t := typed{line, make(chan struct{})}
		select {
		case lines <- t:
		case <-ctx.Done():
			return
		}
		select {
		case <-t.handled:
		case <-ctx.Done():
			return
		}
	}
}

// readPiped reads lines of any length from a pipe or file until its end.
func (a *Adapter) readPiped(ctx context.Context, lines chan<- typed, errc chan<- error) {
	r := bufio.NewReaderSize(a.in, 64<<10)
	for {
		line, n, err := readLine(r, maxLine)
		if err != nil && line == "" {
			if err != io.EOF {
				errc <- fmt.Errorf("read console input: %w", err)
			}
			return
		}
		if n > maxLine {
			a.print(fmt.Sprintf("(a line of %d bytes was left out: a command may be at most %d characters)", n, bot.MaxText))
			continue
		}
		select {
		case lines <- typed{line, nil}:
		case <-ctx.Done():
			return
		}
	}
}

// typed is one line read; handled, when set, is closed once it is handled.
type typed struct {
	text    string
	handled chan struct{}
}

func (a *Adapter) setPrompting(on bool) {
	a.mu.Lock()
	a.prompting = on
	a.mu.Unlock()
}

// maxLine is how much of one input line is kept: far more than a command
// may be (the bot refuses it as too long), however long the line is.
const maxLine = 64 << 10

// readLine reads one line of any length, keeping at most max bytes of it;
// n is the whole line's length.
func readLine(r *bufio.Reader, max int) (line string, n int, err error) {
	var buf []byte
	for {
		part, err := r.ReadSlice('\n')
		n += len(part)
		if room := max - len(buf); room > 0 {
			buf = append(buf, part[:min(len(part), room)]...)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		return strings.TrimRight(string(buf), "\r\n"), n, err
	}
}

func (a *Adapter) prompt() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.promptLocked()
}

func (a *Adapter) promptLocked() string { return fmt.Sprintf("%s@#%s> ", a.user.Name, a.channel) }

// line handles one typed line and reports whether the user asked to quit.
func (a *Adapter) line(ctx context.Context, line string, handle func(context.Context, bot.Incoming)) bool {
	text := strings.TrimSpace(line)
	if text == "" || strings.HasPrefix(text, "#") {
		return false
	}
	if !a.tty {
		shown := text
		if len(shown) > 300 {
			shown = strings.ToValidUTF8(shown[:300], "") + fmt.Sprintf("… (%d bytes)", len(text))
		}
		a.print(a.prompt() + shown)
	}
	if fields := strings.Fields(text); strings.HasPrefix(text, "/") {
		if fields[0] == "/wait" && a.WaitIdle != nil {
			// Scripts wait here as a person would: until the runs that
			// are due have finished.
			a.WaitIdle(ctx)
			a.print("(no run is running or due)")
			return false
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		switch {
		case fields[0] == "/quit" || fields[0] == "/exit":
			fmt.Fprintln(a.out, "(stopping: the bot ends here, as on Ctrl-D)")
			return true
		case fields[0] == "/as" && len(fields) == 2:
			a.user = store.User{ID: fields[1], Name: fields[1]}
			fmt.Fprintf(a.out, "(you are now %s)\n", fields[1])
		case fields[0] == "/channel" && len(fields) == 2:
			a.channel = strings.TrimPrefix(fields[1], "#")
			fmt.Fprintf(a.out, "(you are now in #%s)\n", a.channel)
		case fields[0] == "/who":
			fmt.Fprintf(a.out, "(you are %s in #%s)\n", a.user.Name, a.channel)
		default:
			fmt.Fprintln(a.out, help)
		}
		return false
	}
	a.mu.Lock()
	a.n++
	in := bot.Incoming{ID: fmt.Sprint(a.n), Channel: a.channel, User: a.user, Text: text}
	a.mu.Unlock()
	handle(ctx, in)
	return false
}

func (a *Adapter) print(s string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.tty {
		// Start on a clean line: the prompt may be showing.
		fmt.Fprint(a.out, "\r\033[K")
	}
	fmt.Fprintln(a.out, s)
	if a.tty && a.prompting {
		// The prompt again below; what was typed so far comes back with
		// the next key.
		fmt.Fprint(a.out, a.promptLocked())
	}
}

// show renders a message for this console: with bold and code in a
// terminal, as the bot wrote it when piped.
func (a *Adapter) show(head string, m bot.Message) string {
	if a.tty {
		return emphasis(Render(head, m))
	}
	return Render(head, m)
}

var (
	boldRE = regexp.MustCompile("\\*([^*\n ][^*\n]*)\\*")
	codeRE = regexp.MustCompile("`([^`\n]+)`")
)

// emphasis turns the chat's *bold* and `code` into a terminal's bold and
// colour. It runs on text already made inert, so the only escape
// sequences in the result are its own.
func emphasis(s string) string {
	s = codeRE.ReplaceAllString(s, "\033[36m$1\033[39m")
	return boldRE.ReplaceAllString(s, "\033[1m$1\033[22m")
}

// Send implements bot.Adapter.
func (a *Adapter) Send(ctx context.Context, m bot.Message) (store.MessageRef, error) {
	a.mu.Lock()
	a.n++
	n := a.n
	a.mu.Unlock()
	head := fmt.Sprintf("[#%d] stagebot", n)
	if !m.Thread.IsZero() {
		head = fmt.Sprintf("[#%d ↳ %s] stagebot", n, a.label(m.Thread.ID))
	}
	a.print(a.show(head, m))
	return store.MessageRef{Channel: m.Channel, ID: fmt.Sprintf("%s.%d", a.session, n)}, nil
}

// label shows a message ID as #n, noting messages of an earlier session.
func (a *Adapter) label(id string) string {
	session, n, ok := strings.Cut(id, ".")
	if !ok || session != a.session {
		return "an earlier session's message"
	}
	return "#" + n
}

// Edit implements bot.Editor by printing the message again, marked.
func (a *Adapter) Edit(ctx context.Context, ref store.MessageRef, m bot.Message) error {
	a.print(a.show(fmt.Sprintf("[%s edited] stagebot", a.label(ref.ID)), m))
	return nil
}

// inert drops what a terminal would act on (escape sequences, other
// control characters) from text that may have come from people or a
// database; line breaks stay.
func inert(s string) string {
	return strings.Map(func(r rune) rune {
		if r != '\n' && (unicode.IsControl(r) || unicode.In(r, unicode.Bidi_Control)) {
			return -1
		}
		return r
	}, s)
}

// Render shows a message as console text, with nothing in it a terminal
// would act on.
func Render(head string, m bot.Message) string { return inert(render(head, m)) }

func render(head string, m bot.Message) string {
	var sb strings.Builder
	sb.WriteString(head)
	if m.Channel != "" {
		sb.WriteString(" in #" + m.Channel)
	}
	sb.WriteString(": ")
	if len(m.Mentions) > 0 {
		var at []string
		for _, u := range m.Mentions {
			at = append(at, "@"+u.Display())
		}
		sb.WriteString(strings.Join(at, " ") + " ")
	}
	sb.WriteString(strings.ReplaceAll(m.Text, "\n", "\n    "))
	for _, f := range m.Fields {
		fmt.Fprintf(&sb, "\n    %s: %s", f.Label, f.Value)
	}
	if len(m.Buttons) > 0 {
		var bs []string
		for _, b := range m.Buttons {
			bs = append(bs, fmt.Sprintf("[%s: %s]", b.Label, b.Command))
		}
		sb.WriteString("\n    " + strings.Join(bs, " "))
	}
	return sb.String()
}

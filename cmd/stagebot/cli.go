package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/stagebot/stagebot/commands"
)

// invocation is one command line, parsed.
type invocation struct {
	ctx            context.Context
	stdin          io.Reader
	stdout, stderr io.Writer
	config         string // -c, or the default config
	as, channel    string // run and demo: the console's user and channel
	from, to       string // store copy
	connect        bool   // check: connect to the databases
	args           []string
}

// subcommand is one of stagebot's commands: its help comes from here, and
// so do its flags, so that each takes only its own.
type subcommand struct {
	name, args, summary string
	synopsis            string // the flags, as the list of commands shows them
	description         string
	examples            []string
	flags               func(fs *flag.FlagSet, in *invocation)
	maxArgs             int
	run                 func(in *invocation) error
}

func configFlag(fs *flag.FlagSet, in *invocation) {
	fs.StringVar(&in.config, "c", "", "the config file (default $STAGEBOT_CONFIG, else ./stagebot.yaml or "+defaultConfig+", the first that exists)")
}

func consoleFlags(fs *flag.FlagSet, in *invocation) {
	fs.StringVar(&in.as, "as", os.Getenv("USER"), "console: the user you type as")
}

// generated are the commands that write what is generated from this
// table: shell completion and the man page.
var generated = []subcommand{
	{name: "completion", args: "SHELL", maxArgs: 1, summary: "shell completion for bash, zsh or fish",
		description: "Writes a completion script for the shell named: stagebot's commands, their flags with descriptions, and files after the flags that take a path. The packages install them for every shell.",
		examples: []string{
			"source <(stagebot completion bash)",
			"stagebot completion zsh > \"${fpath[1]}/_stagebot\"",
			"stagebot completion fish > ~/.config/fish/completions/stagebot.fish",
		},
		run: func(in *invocation) error {
			if len(in.args) == 0 {
				return usageError{fmt.Errorf("stagebot completion: name a shell: %s", strings.Join(shells, ", "))}
			}
			return writeCompletion(in.stdout, in.args[0])
		}},
	{name: "man", summary: "the manual page, stagebot(1), in roff",
		description: "Writes the manual page: every command with its flags and examples, the files and the environment stagebot reads. The packages install it.",
		examples:    []string{"stagebot man | man -l -", "stagebot man | gzip -9n > stagebot.1.gz"},
		run:         func(in *invocation) error { writeManPage(in.stdout); return nil }},
}

var subcommands = []subcommand{
	{name: "run", synopsis: "-c FILE [--as USER] [--channel NAME]", summary: "serve chat (chat.platform: console, slack, discord or matrix)",
		description: "Connects to the chat platform and serves until stopped (SIGTERM: the running step gets its grace period; a second SIGTERM aborts it). SIGHUP reloads the config.",
		examples:    []string{"stagebot run -c /etc/stagebot/config.yaml", "stagebot run -c config.yaml --as alice --channel infra   # the console"},
		flags: func(fs *flag.FlagSet, in *invocation) {
			configFlag(fs, in)
			consoleFlags(fs, in)
			fs.StringVar(&in.channel, "channel", "", "console: the channel you type in (default: the first control channel)")
		},
		run: func(in *invocation) error {
			cfg, err := loadFlagConfig(in.config)
			if err != nil {
				return err
			}
			if err := consoleHasInput(cfg, in.stdin); err != nil {
				return err
			}
			return run(in.ctx, cfg, in.stdin, in.stdout, in.stderr, in.as, in.channel)
		}},
	{name: "check", synopsis: "-c FILE [--connect]", summary: "validate the config; print the next runs and announcements",
		description: "Reads and validates the config (every problem at once, by field), prints each target's pipelines, next runs and their announcements, and logs in to Matrix to check its rooms. With --connect it also connects to each target's production database (read-only) and staging's server and says what would stop the next refresh before anything is copied: a server that does not answer, missing roles, masking's unclassified columns and stale rules. Nothing is changed.",
		examples:    []string{"stagebot check -c config.yaml", "stagebot check -c config.yaml --connect"},
		flags: func(fs *flag.FlagSet, in *invocation) {
			configFlag(fs, in)
			fs.BoolVar(&in.connect, "connect", false, "connect to production (read-only) and staging's server, and check what the next refresh needs")
		},
		run: func(in *invocation) error {
			cfg, err := loadFlagConfig(in.config)
			if err != nil {
				return err
			}
			if err := check(in.stdout, cfg, time.Now()); err != nil {
				return err
			}
			if in.connect {
				if err := checkConnect(in.ctx, in.stdout, cfg); err != nil {
					return err
				}
			}
			return checkChat(in.ctx, in.stdout, cfg)
		}},
	{name: "demo", synopsis: "[--as USER]", summary: "try it: a demo target in the console, on two throwaway PostgreSQL servers",
		examples: []string{"stagebot demo", "stagebot demo --as alice"},
		flags:    consoleFlags,
		run:      func(in *invocation) error { return demo(in.ctx, in.stdin, in.stdout, in.stderr, in.as) }},
	{name: "mask-rules", synopsis: "-c FILE", args: "TARGET", maxArgs: 1, summary: "read production (read-only) and print masking rules to start from",
		description: "Connects to the target's production database read-only and prints a masking section: the target's rules, and a proposed rule for each column without one (from its name and a sample of its values), with a summary of what is masked, kept and flagged.",
		examples:    []string{"stagebot mask-rules -c config.yaml fas2 > rules.yaml"},
		flags:       configFlag,
		run: func(in *invocation) error {
			cfg, err := loadFlagConfig(in.config)
			if err != nil {
				return err
			}
			target := ""
			if len(in.args) > 0 {
				target = in.args[0]
			}
			return maskRules(in.ctx, in.stdout, cfg, target)
		}},
	{name: "store copy", synopsis: "--from FILE|DSN --to DSN|FILE", summary: "move the state between a bolt file and PostgreSQL (stop the bots first)",
		examples: []string{`stagebot store copy --from /var/lib/stagebot/stagebot.db --to "$STAGEBOT_STORE_DSN"`},
		flags: func(fs *flag.FlagSet, in *invocation) {
			fs.StringVar(&in.from, "from", "", "the store to copy: a bolt file, or a PostgreSQL DSN")
			fs.StringVar(&in.to, "to", "", "the empty store to copy into: a bolt file, or a PostgreSQL DSN")
		},
		run: func(in *invocation) error { return copyStore(in.ctx, in.stdout, in.from, in.to) }},
	{name: "version", summary: "the version, commit and Go it was built with",
		run: func(in *invocation) error { fmt.Fprintln(in.stdout, versionLine()); return nil }},
}

// help reads the table it is in, so it joins it once the table is made.
func init() {
	subcommands = append(subcommands, generated...)
	subcommands = append(subcommands, subcommand{name: "help", args: "[COMMAND]", maxArgs: 1, summary: "this list, or one command's help",
		run: func(in *invocation) error {
			if len(in.args) == 0 {
				fmt.Fprint(in.stdout, usageText())
				return nil
			}
			sc := subcommandNamed(in.args[0])
			if sc == nil {
				return unknownCommand(in.args[0])
			}
			sc.help(in.stdout)
			return nil
		}})
}

// defaultConfig is where a packaged stagebot's config lives.
const defaultConfig = "/etc/stagebot/config.yaml"

// defaultConfigs are read, the first that exists, when neither -c nor
// $STAGEBOT_CONFIG names a config: the working directory's, then the
// package's.
var defaultConfigs = []string{"stagebot.yaml", defaultConfig}

// subcommandNamed is the command called name, or whose first word it is
// (store: store copy).
func subcommandNamed(name string) *subcommand {
	for i := range subcommands {
		if subcommands[i].name == name || strings.Fields(subcommands[i].name)[0] == name {
			return &subcommands[i]
		}
	}
	return nil
}

func unknownCommand(name string) error {
	var names []string
	for _, sc := range subcommands {
		names = append(names, strings.Fields(sc.name)[0])
	}
	msg := fmt.Sprintf("unknown command %q", name)
	return usageError{errors.New(msg + commands.Suggest(name, names) + " (stagebot help lists them)")}
}

// usageText lists the commands.
func usageText() string {
	var sb strings.Builder
	sb.WriteString("stagebot keeps staging databases fresh from chat.\n\nUsage:\n")
	for _, sc := range subcommands {
		fmt.Fprintf(&sb, "  stagebot %s\n      %s\n", strings.Join(strings.Fields(sc.name+" "+sc.synopsis+" "+sc.args), " "), sc.summary)
	}
	sb.WriteString("\nstagebot help COMMAND (or COMMAND --help) says more of one.\n")
	return sb.String()
}

// help is one command's help: what it does, its flags and examples.
func (sc *subcommand) help(w io.Writer) {
	fmt.Fprintf(w, "stagebot %s: %s\n", strings.Join(strings.Fields(sc.name+" "+sc.synopsis+" "+sc.args), " "), sc.summary)
	if sc.description != "" {
		fmt.Fprintf(w, "\n%s\n", sc.description)
	}
	if sc.flags != nil {
		fs := flag.NewFlagSet(sc.name, flag.ContinueOnError)
		sc.flags(fs, &invocation{})
		fmt.Fprintln(w, "\nFlags:")
		fs.SetOutput(w)
		fs.PrintDefaults()
	}
	if len(sc.examples) > 0 {
		fmt.Fprintln(w, "\nExamples:")
		for _, e := range sc.examples {
			fmt.Fprintln(w, "  "+e)
		}
	}
}

// versionLine: the version, the commit it was built from and when, Go.
func versionLine() string {
	s := "stagebot " + Version
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v := bi.Main.Version; Version == "dev" && v != "" && v != "(devel)" {
			s = "stagebot " + v // go install …@v1.2.3
		}
		var rev, at, dirty string
		for _, kv := range bi.Settings {
			switch kv.Key {
			case "vcs.revision":
				rev = kv.Value
			case "vcs.time":
				at = kv.Value
			case "vcs.modified":
				if kv.Value == "true" {
					dirty = ", modified"
				}
			}
		}
		if rev != "" {
			s += fmt.Sprintf(" (commit %.12s%s, %s)", rev, dirty, at)
		}
	}
	return s + fmt.Sprintf(", %s %s/%s", runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// parse reads args (after the command's name) into an invocation; help
// asked for is errHelpShown once printed.
func (sc *subcommand) parse(args []string, in *invocation) error {
	fs := flag.NewFlagSet("stagebot "+sc.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if sc.flags != nil {
		sc.flags(fs, in)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			sc.help(in.stdout)
			return errHelpShown
		}
		return usageError{fmt.Errorf("stagebot %s: %v (stagebot %s --help lists its flags)", sc.name, err, sc.name)}
	}
	if fs.NArg() > sc.maxArgs {
		extra := fs.Args()[sc.maxArgs:]
		return usageError{fmt.Errorf("stagebot %s takes %s, not %q: flags go before arguments (stagebot %s --help)", sc.name, argsWord(sc), strings.Join(extra, " "), sc.name)}
	}
	in.args = fs.Args()
	if in.config == "" && sc.flags != nil {
		in.config = configDefault()
	}
	return nil
}

// configDefault is the config when -c is not given: $STAGEBOT_CONFIG, else
// the first of defaultConfigs that exists.
func configDefault() string {
	if env := os.Getenv("STAGEBOT_CONFIG"); env != "" {
		return env
	}
	for _, p := range defaultConfigs {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// usageError is a command line stagebot cannot act on: it exits 2, while
// a command that ran and failed exits 1.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

func exitCode(err error) int {
	var u usageError
	if errors.Is(err, flag.ErrHelp) || errors.As(err, &u) {
		return 2
	}
	return 1
}

func argsWord(sc *subcommand) string {
	if sc.maxArgs == 0 {
		return "no arguments"
	}
	return sc.args
}

// errHelpShown ends a command whose help was asked for and printed.
var errHelpShown = errors.New("help shown")

// Command stagebot is the chat-ops bot that keeps staging databases fresh.
//
//	stagebot run -c config.yaml      serve chat (the console unless the config names a platform)
//	stagebot check -c config.yaml    validate; print the next runs and their announcements
//	stagebot demo                    a throwaway demo target in the console
//	stagebot version
package main

import (
	"context"
	"crypto/rand"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	_ "time/tzdata"

	"github.com/stagebot/stagebot/bot"
	"github.com/stagebot/stagebot/bot/console"
	discordadapter "github.com/stagebot/stagebot/bot/discord"
	matrixadapter "github.com/stagebot/stagebot/bot/matrix"
	slackadapter "github.com/stagebot/stagebot/bot/slack"
	"github.com/stagebot/stagebot/bot/web"
	"github.com/stagebot/stagebot/runner/postgres"
	"github.com/stagebot/stagebot/store"
	"github.com/stagebot/stagebot/store/bolt"
	pgstore "github.com/stagebot/stagebot/store/postgres"
)

// Version is set at build time with -ldflags "-X main.Version=…".
var Version = "dev"

// httpAddr, when set, hears the address the HTTP endpoint listens on (the
// demo prints it).
var httpAddr func(addr string)

// reloads carries SIGHUP to the running bot.
var reloads = make(chan struct{}, 1)

// hurry closes on a second stop signal: the runs under way are aborted at
// once instead of after their grace period.
var hurry = make(chan struct{})

func main() {
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	sigs := make(chan os.Signal, 3)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	// SIGHUP reloads the config (run does it; before it runs, the signal
	// is only noted).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			select {
			case reloads <- struct{}{}:
			default:
			}
		}
	}()
	go func() {
		<-sigs
		stop()
		<-sigs
		close(hurry)
		<-sigs
		fmt.Fprintln(os.Stderr, "stagebot: told to stop three times: exiting now; the next start repairs what is left")
		os.Exit(1)
	}()
	if err := Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "stagebot:", err)
		}
		os.Exit(exitCode(err))
	}
}

// Main runs one stagebot command; tests call it as the binary would be.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usageText())
		return flag.ErrHelp
	}
	name, rest := args[0], args[1:]
	switch name {
	case "--version", "-v":
		name = "version"
	case "--help", "-h":
		name = "help"
	case "store":
		if len(rest) == 0 || rest[0] != "copy" {
			return usageError{errors.New("stagebot store: the only subcommand is copy (stagebot store copy --from FILE --to DSN)")}
		}
		name, rest = "store copy", rest[1:]
	}
	sc := subcommandNamed(name)
	if sc == nil {
		return unknownCommand(name)
	}
	in := &invocation{ctx: ctx, stdin: stdin, stdout: stdout, stderr: stderr}
	if err := sc.parse(rest, in); err != nil {
		if errors.Is(err, errHelpShown) {
			return nil
		}
		return err
	}
	return sc.run(in)
}

// consoleHasInput refuses to run the console with nothing to read: under
// a service manager stdin is /dev/null, and a bot that reads an empty
// stream to its end and exits 0 sits dead without a word.
func consoleHasInput(cfg *Config, stdin io.Reader) error {
	if cfg.Chat.Platform != "" && cfg.Chat.Platform != "console" {
		return nil
	}
	f, ok := stdin.(*os.File)
	if !ok {
		return nil
	}
	fi, err := f.Stat()
	if err != nil {
		return nil
	}
	if fi.Mode()&os.ModeCharDevice != 0 && !console.IsTerminal(f) {
		return errors.New("chat.platform is console but there is no terminal to read (stdin is " + f.Name() + "): " +
			"as a service, set chat.platform to slack, discord or matrix; to try stagebot, run it in a terminal or pipe commands into it")
	}
	return nil
}

func loadFlagConfig(path string) (*Config, error) {
	if path == "" {
		return nil, errors.New("give the config file with -c FILE, or in $STAGEBOT_CONFIG, or at ./stagebot.yaml or " + defaultConfig + " (config.example.yaml documents every field)")
	}
	return LoadConfig(path)
}

// count is "1 step" or "3 steps".
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// check prints every target's next runs with their announcement times.
func check(w io.Writer, cfg *Config, now time.Time) error {
	o := cfg.botOptions(deps{})
	fmt.Fprintf(w, "Config is valid: %s, times in %s.\n", count(len(o.Targets), "target"), cfg.location)
	if cfg.Chat.Platform == "" || cfg.Chat.Platform == "console" {
		fmt.Fprintln(w, "Note: chat.platform is console, for trying stagebot in a terminal; as a service, set it to slack, discord or matrix.")
	}
	for _, warning := range unstartedHosts(cfg) {
		fmt.Fprintln(w, "⚠ "+warning)
	}
	for _, t := range o.Targets {
		var ps []string
		for _, p := range slices.Sorted(maps.Keys(t.Pipelines)) {
			steps := count(len(t.Pipelines[p].Steps), "step")
			if n := len(t.Pipelines[p].Finally); n > 0 {
				steps += fmt.Sprintf(", %d finally", n)
			}
			ps = append(ps, fmt.Sprintf("%s (%s)", p, steps))
		}
		fmt.Fprintf(w, "\n%s: pipelines %s; a request that names none runs %s\n", t.Name, strings.Join(ps, ", "), t.DefaultPipeline)
		if tc := cfg.Targets[t.Name]; tc != nil && tc.Database != nil && tc.Database.KeepBase {
			db, _ := (&postgres.Target{StagingDSN: tc.Database.Staging}).StagingDB()
			fmt.Fprintf(w, "  keep_base: staging's server keeps one more full copy of %s (%s%s) for `reset`: count its size twice (three times with keep_previous)\n", db, db, postgres.BaseSuffix)
		}
		if tc := cfg.Targets[t.Name]; tc != nil && tc.Database != nil && tc.Database.Masking != nil {
			fmt.Fprintf(w, "  masked %s; check production's columns against the rules with: stagebot mask-rules -c FILE %s\n", maskingSummary(tc.Database.Masking), t.Name)
			if m := tc.Database.Masking.parsed; m != nil && m.NeedsKey() {
				fmt.Fprintf(w, "  ⚠ $%s (the masking key) is not set here: a refresh of %s refuses to start until it is\n", m.KeyEnv, t.Name)
			}
		}
		if len(t.Schedules) == 0 {
			fmt.Fprintln(w, "  no schedule: runs only when asked for")
			continue
		}
		for _, s := range t.Schedules {
			fmt.Fprintf(w, "  schedule %q runs %s\n", s.Spec, s.Pipeline)
		}
		for _, u := range bot.UpcomingRuns(t, now, 3*len(t.Schedules)) {
			fmt.Fprintf(w, "  next run %s (%s), announced", u.Start.In(cfg.location).Format("Mon 2006-01-02 15:04 MST"), u.Pipeline)
			for i, a := range u.Announcements {
				sep := ","
				if i == 0 {
					sep = ""
				}
				fmt.Fprintf(w, "%s %s", sep, a.In(cfg.location).Format("Mon 15:04"))
			}
			fmt.Fprintln(w)
		}
	}
	return nil
}

// checkChat logs in to the chat platform where that is cheap and says
// what would stop the bot there (for now: Matrix's encrypted rooms).
func checkChat(ctx context.Context, w io.Writer, cfg *Config) error {
	if cfg.Chat.Platform != "matrix" {
		return nil
	}
	m := cfg.Chat.Matrix
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	user, problems, err := matrixadapter.Check(ctx, matrixadapter.Options{Homeserver: m.Homeserver, Token: m.AccessToken, Rooms: cfg.matrixRooms()})
	if errors.Is(err, matrixadapter.ErrToken) {
		return err
	}
	if err != nil {
		fmt.Fprintf(w, "\nMatrix: could not reach %s to check the token and rooms: %s\n", m.Homeserver, newRedactor(cfg.secrets)(err.Error()))
		return nil
	}
	fmt.Fprintf(w, "\nMatrix: logged in as %s\n", user)
	for _, p := range problems {
		fmt.Fprintf(w, "  %s\n", p)
	}
	for _, p := range problems {
		if strings.Contains(p, "is end-to-end encrypted") {
			return errors.New("a Matrix room is end-to-end encrypted, which stagebot does not support: use an unencrypted control room")
		}
	}
	return nil
}

// reload reads the config file again; when it is valid the bot takes its
// targets, access and limits, and says what changed in its log and its
// control channel; when it is not, the bot keeps its config and says why.
func reload(cur *Config, b *bot.Bot, logger *slog.Logger, dp deps, metrics *web.Metrics) *Config {
	if cur.path == "" {
		return nil
	}
	next, err := LoadConfig(cur.path)
	if err != nil {
		logger.Error("config reload failed; the old config stays", "err", err)
		b.Say(fmt.Sprintf("⚠ I could not reload my config, so I keep the one I have:\n%v", err))
		return nil
	}
	opts := next.botOptions(dp)
	opts.Observer = metrics
	changes := b.Reconfigure(opts)
	var restart []string
	for _, c := range []struct {
		name     string
		old, new any
	}{
		{"chat", cur.Chat, next.Chat}, {"store", cur.Store.Path + cur.Store.Type, next.Store.Path + next.Store.Type},
		{"prefix", cur.Prefix, next.Prefix}, {"timezone", cur.Timezone, next.Timezone}, {"http", cur.HTTP, next.HTTP},
		{"log", cur.Log, next.Log}, {"defaults.edit_interval", cur.Defaults.EditInterval, next.Defaults.EditInterval},
	} {
		if fmt.Sprint(c.old) != fmt.Sprint(c.new) {
			restart = append(restart, c.name)
		}
	}
	if changes == "" && len(restart) == 0 {
		logger.Info("config reloaded: nothing changed")
		return next
	}
	msg := "🔄 Config reloaded."
	if changes != "" {
		msg += "\n" + changes
	}
	if len(restart) > 0 {
		msg += fmt.Sprintf("\nThese need a restart to apply: %s.", strings.Join(restart, ", "))
	}
	logger.Info("config reloaded", "changes", strings.ReplaceAll(changes, "\n", "; "), "need_restart", strings.Join(restart, ", "))
	b.Say(msg)
	return next
}

// run serves chat until ctx ends (or the console input does).
// errSteppedDown ends a process that lost the leadership lease.
var errSteppedDown = errors.New("stepped down: another process holds the lease now; start this one again to follow it")

// holderName names this process in the lease: host, process ID and a
// random part (a restarted process is another holder).
var holderName = func() string {
	host, _ := os.Hostname()
	var b [3]byte
	rand.Read(b[:])
	return fmt.Sprintf("%s/%d/%x", host, os.Getpid(), b)
}()

// openStore opens the configured store; with postgres, also the elector
// of this process.
func openStore(ctx context.Context, cfg *Config, logger *slog.Logger) (store.Store, *pgstore.Elector, error) {
	if cfg.Store.Type != "postgres" {
		s, err := bolt.Open(cfg.Store.Path)
		return s, nil, err
	}
	s, err := pgstore.Open(ctx, cfg.Store.DSN)
	if err != nil {
		return nil, nil, errors.New(newRedactor(cfg.secrets)(err.Error()))
	}
	return s, pgstore.NewElector(s, holderName, time.Duration(cfg.Store.Lease), logger), nil
}

func run(ctx context.Context, cfg *Config, stdin io.Reader, stdout, stderr io.Writer, as, channel string) (err error) {
	logger := newLogger(cfg, stderr)
	s, el, err := openStore(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer s.Close()
	dp := deps{logger: logger, reg: s, hurry: hurryOf(el), servers: &postgres.Servers{}}
	if el != nil {
		dp.fence = el.Fence
	}
	// The targets tell the bot what their background repairs did; the bot
	// exists only once the options do.
	var b *bot.Bot
	var ready sync.WaitGroup
	ready.Add(1)
	first := dp
	first.tell = func(target, msg string) {
		ready.Wait()
		b.Tell(target, msg)
	}
	opts := cfg.botOptions(first)
	// The redactor can change with a reload (new secrets): the bot calls
	// whichever is current.
	var redactor atomic.Pointer[func(string) string]
	firstRedact := opts.Redact
	redactor.Store(&firstRedact)
	opts.Redact = func(s string) string { return (*redactor.Load())(s) }
	if cfg.Chat.Platform == "" {
		cfg.Chat.Platform = "console"
	}
	metrics := web.NewMetrics(cfg.Chat.Platform)
	opts.Observer = metrics
	adapter, closeAdapter, err := newAdapter(cfg, opts, stdin, stdout, as, channel, logger)
	if err != nil {
		return err
	}
	defer closeAdapter()
	b = bot.New(s, adapter, opts)
	ready.Done()
	metrics.SetSource(b)
	if cfg.HTTP.Listen != "" {
		stopHTTP, err := serveHTTP(ctx, cfg, el, b, s, metrics, logger)
		if err != nil {
			return err
		}
		defer stopHTTP()
	}
	if c, ok := adapter.(*console.Adapter); ok {
		c.WaitIdle = b.WaitIdle
	}
	logger.Info("stagebot started", "version", Version, "store", cfg.Store.Type, "targets", len(opts.Targets))
	go watchReloads(ctx, cfg, b, dp, metrics, &redactor)
	stopNotify := notifyServiceManager(ctx, b, el)
	defer stopNotify()
	if el == nil {
		return b.Run(ctx)
	}
	return lead(ctx, cfg, el, logger, b.Run)
}

// hurryOf is what tells the runs under way to wind up: a stop signal, or
// for a process that lost the lease, the loss (the process that took over
// finishes its runs, so they get no grace).
func hurryOf(el *pgstore.Elector) <-chan struct{} {
	if el == nil {
		return hurry
	}
	h := make(chan struct{})
	go func() {
		select {
		case <-hurry:
		case <-el.Lost():
		}
		close(h)
	}()
	return h
}

// newAdapter connects to the configured chat platform, or the terminal.
func newAdapter(cfg *Config, opts bot.Options, stdin io.Reader, stdout io.Writer, as, channel string, logger *slog.Logger) (bot.Adapter, func(), error) {
	switch cfg.Chat.Platform {
	case "slack":
		a, err := slackadapter.New(slackadapter.Options{AppToken: cfg.Chat.Slack.AppToken, BotToken: cfg.Chat.Slack.BotToken, APIURL: cfg.Chat.Slack.APIURL, Logger: logger})
		if err != nil {
			return nil, nil, err
		}
		return a, a.Close, nil
	case "discord":
		d := cfg.Chat.Discord
		a, err := discordadapter.New(discordadapter.Options{Token: d.Token, Channels: d.Channels, APIURL: d.APIURL, Prefix: opts.Prefix, Logger: logger})
		if err != nil {
			return nil, nil, err
		}
		return a, a.Close, nil
	case "matrix":
		m := cfg.Chat.Matrix
		a, err := matrixadapter.New(matrixadapter.Options{Homeserver: m.Homeserver, Token: m.AccessToken, Rooms: cfg.matrixRooms(),
			AcceptDirect: cfg.knownUser, Logger: logger})
		if err != nil {
			return nil, nil, err
		}
		return a, a.Close, nil
	}
	if channel == "" {
		channel = "infra"
		if len(opts.Access.ControlChannels) > 0 {
			channel = opts.Access.ControlChannels[0]
		}
	}
	if as == "" {
		as = "operator"
	}
	return console.New(stdin, stdout, as, channel), func() {}, nil
}

// serveHTTP serves the status page, /healthz, /readyz and /metrics until
// the bot has stopped (its graceful stop included): the returned stop.
func serveHTTP(ctx context.Context, cfg *Config, el *pgstore.Elector, b *bot.Bot, s store.Store, metrics *web.Metrics, logger *slog.Logger) (func(), error) {
	wo := web.Options{Listen: cfg.HTTP.Listen, Token: cfg.HTTP.Token, Hosts: cfg.HTTP.Hosts, Platform: cfg.Chat.Platform, Logger: logger}
	if el != nil {
		wo.Follower = func() string {
			if el.ValidFor() > 0 {
				return ""
			}
			in, err := el.Info(context.Background())
			if err != nil {
				return "unknown (the store did not answer)"
			}
			if !in.Valid {
				return "nobody yet (the lease is free)"
			}
			return in.Holder
		}
	}
	srv := web.New(wo, b, s, metrics)
	if err := srv.Listen(); err != nil {
		return nil, err
	}
	logger.Info("serving the status page, /healthz, /readyz and /metrics", "url", "http://"+srv.Addr())
	if httpAddr != nil {
		httpAddr(srv.Addr())
	}
	hctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	go srv.Serve(hctx)
	return stop, nil
}

// watchReloads reloads the config on each SIGHUP until ctx ends.
func watchReloads(ctx context.Context, cfg *Config, b *bot.Bot, dp deps, metrics *web.Metrics, redactor *atomic.Pointer[func(string) string]) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-reloads:
			again := dp
			again.tell = b.Tell
			if next := reload(cfg, b, dp.logger, again, metrics); next != nil {
				// Old secrets stay redacted too: they may be in logs and
				// messages still being written.
				r := newRedactor(append(append([]string(nil), cfg.secrets...), next.secrets...))
				redactor.Store(&r)
				cfg.secrets = append(cfg.secrets, next.secrets...)
			}
		}
	}
}

// notifyServiceManager tells the service manager that the bot is up once
// its loop turns, that it is stopping when ctx ends, and pings its
// watchdog while the loop keeps turning, until the returned stop.
func notifyServiceManager(ctx context.Context, b *bot.Bot, el *pgstore.Elector) func() {
	sctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	healthy := func() bool {
		if el != nil && el.ValidFor() <= 0 {
			return true // following: the store answered when it was opened
		}
		ok, _ := b.Health()
		return ok
	}
	go func() {
		for sctx.Err() == nil {
			if healthy() {
				sdNotify("READY=1\nSTATUS=serving chat")
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		go watchdog(sctx, healthy)
		select {
		case <-ctx.Done():
			sdNotify("STOPPING=1\nSTATUS=stopping: runs under way get their grace period")
		case <-sctx.Done():
		}
	}()
	return stop
}

// lead waits for the leadership lease, then runs the bot on the leader's
// term: only the leader talks in chat, runs the schedule and starts runs;
// until then this process serves its status page and waits. A leader that
// loses the lease exits with errSteppedDown, so that the service manager
// starts it again as a follower with nothing of the old term; one that
// stops hands the lease over.
func lead(ctx context.Context, cfg *Config, el *pgstore.Elector, logger *slog.Logger, runBot func(context.Context) error) (err error) {
	logger.Info("waiting for the leadership lease", "holder", holderName, "lease", time.Duration(cfg.Store.Lease))
	last := ""
	aerr := el.Acquire(ctx, func(in pgstore.LeaseInfo) {
		if in.Holder != last {
			last = in.Holder
			logger.Info("follower: another process leads", "leader", in.Holder, "token", in.Token)
		}
	})
	if aerr != nil {
		return nil // stopped while following
	}
	lctx, lost := context.WithCancel(ctx)
	defer lost()
	steppedDown := make(chan struct{})
	go func() {
		select {
		case <-el.Lost():
			close(steppedDown)
			lost()
		case <-lctx.Done():
		}
	}()
	defer func() {
		select {
		case <-steppedDown:
			err = errSteppedDown
		default:
			if rerr := el.Release(context.WithoutCancel(ctx)); rerr != nil {
				logger.Warn("could not hand the lease over; another process takes over when it runs out", "err", rerr)
			}
		}
	}()
	return runBot(lctx)
}

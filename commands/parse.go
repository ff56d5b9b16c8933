package commands

import (
	"errors"
	"fmt"
	"html"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Options is what Parse needs to know about the world.
type Options struct {
	Prefix string // e.g. "!stage"
	// Direct means the message was addressed to the bot (a mention, a direct
	// message or a slash command) with the address already removed, so the
	// prefix is optional.
	Direct bool
	Now    time.Time
	// Location is the zone times like "18:00" are read in.
	Location *time.Location
	// Targets maps each known target to its pipeline names; the first
	// pipeline listed is the default.
	Targets map[string][]string
}

// Outcome is what the caller should do with a message.
type Outcome int

// The three outcomes of Parse.
const (
	Ignore  Outcome = iota // not for the bot
	Reply                  // answer with Result.Text (an error or help)
	Command                // carry out Result.Call
)

// Result is the outcome of Parse.
type Result struct {
	Outcome Outcome
	Text    string
	Call    *Call
}

// WhenKind says how a run's start was given.
type WhenKind int

// Ways to give a start time.
const (
	WhenDefault WhenKind = iota // after the notice period
	WhenIn                      // in <duration>
	WhenAt                      // at <time>
	WhenNow                     // now
)

// When is a requested start.
type When struct {
	Kind     WhenKind
	Duration time.Duration // WhenIn
	Time     time.Time     // WhenAt
}

// Call is a parsed command.
type Call struct {
	Spec *Spec
	// Text is the normalised command text after the prefix, for the audit log.
	Text     string
	Target   string
	Pipeline string
	Run      uint64
	When     When
	// Duration and Until are a hold's length or a defer's amount; at most one
	// is set.
	Duration time.Duration
	Until    time.Time
	Reason   string
	Count    int
	DryRun   bool
	Topic    string
	// Copy is what forget drops: "previous" or "base".
	Copy string
	// ReasonCut says the reason was longer than MaxReason and was cut.
	ReasonCut bool
	// Full asks log for the run's log itself, not only its steps.
	Full bool
}

// Mutates reports whether carrying out the call changes state: its verb
// does (Spec.Mutates) and it is not a dry run, which only plans.
func (c *Call) Mutates() bool { return c.Spec != nil && c.Spec.Mutates && !c.DryRun }

// Limits on what a person types: a command, and the reason it gives
// (shown in every announcement, status and list of holds).
const (
	MaxText   = 4000
	MaxReason = 300
)

// Parse reads one chat message.
func Parse(text string, o Options) Result {
	text = Normalize(text)
	rest, ok := stripPrefix(text, o.Prefix)
	if !ok {
		if !o.Direct {
			return Result{Outcome: Ignore}
		}
		rest = text
	}
	rest = strings.TrimSpace(rest)
	if rest == "" {
		help, _ := HelpText(o.Prefix, "")
		return Result{Outcome: Reply, Text: help}
	}
	if n := utf8.RuneCountInString(rest); n > MaxText {
		return Result{Outcome: Reply, Text: fmt.Sprintf("That command is %d characters long; a command may be at most %d. Keep the reason short and link to the details.", n, MaxText)}
	}
	words, err := split(rest)
	if err != nil {
		return Result{Outcome: Reply, Text: err.Error()}
	}
	verb := strings.ToLower(words[0])
	spec := Lookup(verb)
	if spec == nil {
		return Result{Outcome: Reply, Text: fmt.Sprintf("I don't know the command %q%s. Type `%s help` for the list.", cut(words[0], 40), suggest(verb, names()), o.Prefix)}
	}
	c := &Call{Spec: spec, Text: rest}
	p := &argParser{words: words[1:], o: o}
	if err := spec.parse(p, c); err != nil {
		return Result{Outcome: Reply, Text: fmt.Sprintf("%s\nUsage: `%s`", upperFirst(err.Error()), spec.Usage(o.Prefix))}
	}
	if utf8.RuneCountInString(c.Reason) > MaxReason {
		c.Reason, c.ReasonCut = cut(c.Reason, MaxReason), true
	}
	return Result{Outcome: Command, Call: c}
}

// Cut shortens s to at most n characters, ending it with … when cut.
func Cut(s string, n int) string { return cut(s, n) }

func cut(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}

// Normalize undoes what chat clients do to typed text: smart quotes become
// ASCII quotes, HTML entities (&amp; &lt; &gt;) are decoded and non-breaking
// spaces become spaces. Line breaks and tabs become spaces, and other
// control characters (a NUL, a terminal escape) are dropped: whatever is
// typed is stored and shown again to everyone.
func Normalize(s string) string {
	s = html.UnescapeString(s)
	s = strings.Map(func(r rune) rune {
		switch {
		case r == '\n' || r == '\r' || r == '\t':
			return ' '
		case unicode.IsControl(r) || r == utf8.RuneError || unicode.In(r, unicode.Bidi_Control):
			return -1
		}
		return r
	}, s)
	return strings.NewReplacer(
		"\u201c", `"`, "\u201d", `"`, "\u201e", `"`, "\u00ab", `"`, "\u00bb", `"`,
		"\u2018", "'", "\u2019", "'", "\u201a", "'",
		"\u00a0", " ", "\u2014", "--",
	).Replace(s)
}

func stripPrefix(text, prefix string) (string, bool) {
	t := strings.TrimSpace(text)
	if prefix == "" || len(t) < len(prefix) || !strings.EqualFold(t[:len(prefix)], prefix) {
		return "", false
	}
	rest := t[len(prefix):]
	if rest != "" && rest[0] != ' ' && rest[0] != '\t' {
		return "", false // "!stagecoach" is not for us
	}
	return rest, true
}

// split breaks s into words the way a shell would quote them ("…", '…' and
// backslash escapes) but treats every other character, &, ; and | included,
// as text: a chat message is never a shell command, and nothing is dropped.
func split(s string) ([]string, error) {
	var (
		words []string
		cur   strings.Builder
		in    bool // inside a word
		quote rune
	)
	rs := []rune(s)
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote == 0 && (r == '"' || r == '\''):
			quote, in = r, true
		case r == '\\' && quote != '\'' && i+1 < len(rs):
			i++
			cur.WriteRune(rs[i])
			in = true
		case quote == 0 && unicode.IsSpace(r):
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	if quote != 0 {
		return nil, errors.New("a quote is not closed: close it, or leave quotes out (the rest of the line is taken as the reason)")
	}
	if in {
		words = append(words, cur.String())
	}
	return words, nil
}

type argParser struct {
	words []string
	o     Options
}

func (p *argParser) empty() bool { return len(p.words) == 0 }

func (p *argParser) peek() string {
	if p.empty() {
		return ""
	}
	return p.words[0]
}

func (p *argParser) next() string {
	w := p.peek()
	if !p.empty() {
		p.words = p.words[1:]
	}
	return w
}

func (p *argParser) rest() string {
	s := strings.Join(p.words, " ")
	p.words = nil
	return strings.TrimSpace(s)
}

func (p *argParser) done() error {
	if !p.empty() {
		return fmt.Errorf("unexpected %q", strings.Join(p.words, " "))
	}
	return nil
}

func (p *argParser) target(allowAll bool) (string, error) {
	w := strings.ToLower(p.next())
	if w == "" {
		if len(p.o.Targets) > 0 {
			return "", fmt.Errorf("name a target: %s", strings.Join(p.targetNames(), ", "))
		}
		return "", errors.New("name a target")
	}
	if allowAll && w == "all" {
		return w, nil
	}
	if p.o.Targets == nil {
		return w, nil
	}
	// Spelled the way the config spells it, whatever the case typed: the
	// name is a key everywhere after this.
	if name, ok := canonical(p.targetNames(), w); ok {
		return name, nil
	}
	return "", fmt.Errorf("there is no target %q%s; known targets: %s", w, suggest(w, p.targetNames()), strings.Join(p.targetNames(), ", "))
}

func (p *argParser) targetNames() []string {
	out := make([]string, 0, len(p.o.Targets))
	for t := range p.o.Targets {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

func (p *argParser) run() (uint64, error) {
	w := strings.TrimPrefix(p.next(), "#")
	if w == "" {
		return 0, errors.New("give a run number")
	}
	n, err := strconv.ParseUint(w, 10, 64)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%q is not a run number (runs are numbered 1, 2, 3…)", w)
	}
	return n, nil
}

func isNumber(w string) bool {
	_, err := strconv.Atoi(w)
	return err == nil
}

func parseNothing(p *argParser, c *Call) error { return p.done() }

func parseHelp(p *argParser, c *Call) error {
	c.Topic = strings.ToLower(p.next())
	if c.Topic != "" && Lookup(c.Topic) == nil {
		return fmt.Errorf("there is no command %q%s", c.Topic, suggest(c.Topic, names()))
	}
	return p.done()
}

func parseOptionalTarget(p *argParser, c *Call) error {
	if !p.empty() {
		t, err := p.target(false)
		if err != nil {
			return err
		}
		c.Target = t
	}
	return p.done()
}

func parseTarget(p *argParser, c *Call) error {
	t, err := p.target(false)
	if err != nil {
		return err
	}
	c.Target = t
	return p.done()
}

func parseRunOnly(p *argParser, c *Call) error {
	n, err := p.run()
	if err != nil {
		return err
	}
	c.Run = n
	return p.done()
}

func parseLog(p *argParser, c *Call) error {
	n, err := p.run()
	if err != nil {
		return err
	}
	c.Run = n
	if strings.EqualFold(p.peek(), "full") {
		p.next()
		c.Full = true
	}
	if err := p.done(); err != nil {
		return fmt.Errorf("%w: log takes a run and, to see its output here, full", err)
	}
	return nil
}

func parseRunReason(p *argParser, c *Call) error {
	n, err := p.run()
	if err != nil {
		return err
	}
	c.Run = n
	c.Reason = p.rest()
	return nil
}

func parseHistory(p *argParser, c *Call) error {
	c.Count = 10
	if !p.empty() && !isNumber(p.peek()) {
		t, err := p.target(false)
		if err != nil {
			return err
		}
		c.Target = t
	}
	if !p.empty() {
		n, err := strconv.Atoi(p.next())
		if err != nil || n < 1 || n > 100 {
			return errors.New("the count must be a number from 1 to 100")
		}
		c.Count = n
	}
	return p.done()
}

// ResetPipeline is the pipeline a keep_base target has for reset.
const ResetPipeline = "reset"

func parseReset(p *argParser, c *Call) error {
	t, err := p.target(false)
	if err != nil {
		return err
	}
	if p.o.Targets != nil && !contains(p.o.Targets[t], ResetPipeline) {
		return fmt.Errorf("target %s keeps no base copy to reset to: set keep_base: true in its database section (a refresh from production then keeps one)", t)
	}
	// The rest as for resync, with the reset pipeline.
	p.words = append([]string{t, ResetPipeline}, p.words...)
	return parseResync(p, c)
}

// The copies forget drops.
const (
	CopyPrevious = "previous"
	CopyBase     = "base"
)

func parseForget(p *argParser, c *Call) error {
	t, err := p.target(false)
	if err != nil {
		return err
	}
	c.Target = t
	switch w := strings.ToLower(p.next()); w {
	case CopyPrevious, "prev":
		c.Copy = CopyPrevious
	case CopyBase:
		c.Copy = CopyBase
	case "":
		return fmt.Errorf("say which copy: forget %s previous (kept for rollback) or forget %s base (kept for reset)", t, t)
	default:
		return fmt.Errorf("%q is not a copy stagebot keeps: give previous (kept for rollback) or base (kept for reset)", w)
	}
	return p.done()
}

// RollbackPipeline is the pipeline a target that keeps its previous copy
// has for rollback.
const RollbackPipeline = "rollback"

func parseRollback(p *argParser, c *Call) error {
	t, err := p.target(false)
	if err != nil {
		return err
	}
	if p.o.Targets != nil && !contains(p.o.Targets[t], RollbackPipeline) {
		return fmt.Errorf("target %s keeps no previous copy to roll back to: rollback needs keep_previous (the default) and a pg_refresh step in the default pipeline", t)
	}
	p.words = append([]string{t, RollbackPipeline}, p.words...)
	return parseResync(p, c)
}

func parseResync(p *argParser, c *Call) error {
	t, err := p.target(false)
	if err != nil {
		return err
	}
	c.Target = t
	var words []string
	for _, w := range p.words {
		if w == "--dry-run" || w == "--dryrun" || w == "-n" {
			c.DryRun = true
			continue
		}
		if strings.HasPrefix(w, "--") {
			return fmt.Errorf("unknown option %q (the only option is --dry-run)", w)
		}
		words = append(words, w)
	}
	p.words = words
	if w := strings.ToLower(p.peek()); w != "" && w != "in" && w != "at" && w != "now" {
		c.Pipeline = p.next()
		if p.o.Targets != nil {
			pipelines := p.o.Targets[t]
			name, ok := canonical(pipelines, w)
			if !ok {
				return fmt.Errorf("target %s has no pipeline %q%s; its pipelines: %s", t, w, suggest(w, pipelines), strings.Join(pipelines, ", "))
			}
			c.Pipeline = name
		}
	}
	if c.Pipeline == "" && len(p.o.Targets[t]) > 0 {
		c.Pipeline = p.o.Targets[t][0] // the default: its scope is checked too
	}
	switch strings.ToLower(p.next()) {
	case "":
		return nil
	case "now":
		c.When = When{Kind: WhenNow}
	case "in":
		d, err := ParseDuration(p.next())
		if err != nil {
			return err
		}
		c.When = When{Kind: WhenIn, Duration: d}
	case "at":
		at, err := p.time()
		if err != nil {
			return err
		}
		c.When = When{Kind: WhenAt, Time: at}
	}
	return p.done()
}

func parseDefer(p *argParser, c *Call) error {
	if err := parseDeferWhen(p, c); err != nil {
		return err
	}
	return p.done()
}

// parseDeferWhen reads "<run> <duration>" or "<run> until <time>".
func parseDeferWhen(p *argParser, c *Call) error {
	n, err := p.run()
	if err != nil {
		return err
	}
	c.Run = n
	switch w := p.peek(); {
	case w == "":
		return errors.New("say how long to defer by (e.g. 1h) or until when (e.g. until 18:00)")
	case strings.EqualFold(w, "until"), strings.EqualFold(w, "to"):
		p.next()
		at, err := p.time()
		if err != nil {
			return err
		}
		c.Until = at
	default:
		d, err := ParseDuration(p.next())
		if err != nil {
			return err
		}
		c.Duration = d
	}
	return nil
}

func parseExtend(p *argParser, c *Call) error {
	if err := parseDeferWhen(p, c); err != nil {
		return err
	}
	c.Reason = p.rest()
	if c.Reason == "" {
		return errors.New("give a reason: the team sees why staging may stay older than its max_age")
	}
	return nil
}

func parseHold(p *argParser, c *Call) error {
	t, err := p.target(true)
	if err != nil {
		return err
	}
	c.Target = t
	switch w := p.peek(); {
	case strings.EqualFold(w, "until"):
		p.next()
		at, err := p.time()
		if err != nil {
			return err
		}
		c.Until = at
	case strings.HasPrefix(w, "-") && looksLikeDuration(w[1:]):
		return fmt.Errorf("%q: a hold's length must be positive, like 2h", w)
	case looksLikeDuration(w):
		d, err := ParseDuration(p.next())
		if err != nil {
			return err
		}
		if d <= 0 {
			return fmt.Errorf("%q: a hold's length must be positive, like 2h", w)
		}
		c.Duration = d
	}
	c.Reason = p.rest()
	if c.Reason == "" {
		return errors.New("say why you hold it: the reason is shown to everyone whose run waits for you")
	}
	return nil
}

func parseRelease(p *argParser, c *Call) error {
	t, err := p.target(true)
	if err != nil {
		return err
	}
	c.Target = t
	c.Reason = p.rest()
	return nil
}

// time reads "HH:MM" or "YYYY-MM-DD HH:MM" (two words) or "YYYY-MM-DDTHH:MM".
func (p *argParser) time() (time.Time, error) {
	w := p.next()
	if w == "" {
		return time.Time{}, errors.New("give a time, like 18:00 or 2026-12-01 00:10")
	}
	if len(w) == len("2006-01-02") && strings.Count(w, "-") == 2 && p.peek() != "" {
		w += " " + p.next()
	}
	return ParseTime(w, p.o.Now, p.o.Location)
}

func looksLikeDuration(w string) bool {
	if w == "" || w[0] < '0' || w[0] > '9' {
		return false
	}
	_, err := ParseDuration(w)
	return err == nil || strings.ContainsAny(w[len(w)-1:], "smhdw")
}

// canonical returns the name in list that s spells in any case.
func canonical(list []string, s string) (string, bool) {
	for _, x := range list {
		if x == s {
			return x, true
		}
	}
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return x, true
		}
	}
	return "", false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

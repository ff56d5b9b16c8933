package commands

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

var berlin = mustLoad("Europe/Berlin")

func mustLoad(name string) *time.Location {
	loc, err := time.LoadLocation(name)
	if err != nil {
		panic(err)
	}
	return loc
}

// now is 2026-11-22 14:30 in Berlin.
var now = time.Date(2026, 11, 22, 14, 30, 0, 0, berlin)

func opts() Options {
	return Options{
		Prefix: "!stage", Now: now, Location: berlin,
		Targets: map[string][]string{"fas2": {"default", "db", "reset", "rollback"}, "koji": {"default"}},
	}
}

func TestParse_Commands(t *testing.T) {
	tests := []struct {
		in   string
		want Call
	}{
		{in: "!stage help", want: Call{}},
		{in: "!stage help hold", want: Call{Topic: "hold"}},
		{in: "!stage status", want: Call{}},
		{in: "!STAGE Status fas2", want: Call{Target: "fas2"}},
		{in: "!stage resync fas2", want: Call{Target: "fas2", Pipeline: "default"}},
		{in: "!stage resync fas2 db", want: Call{Target: "fas2", Pipeline: "db"}},
		{in: "!stage resync fas2 in 30m", want: Call{Target: "fas2", Pipeline: "default", When: When{Kind: WhenIn, Duration: 30 * time.Minute}}},
		{in: "!stage resync fas2 db in 1h30m", want: Call{Target: "fas2", Pipeline: "db", When: When{Kind: WhenIn, Duration: 90 * time.Minute}}},
		{in: "!stage resync fas2 at 18:00", want: Call{Target: "fas2", Pipeline: "default", When: When{Kind: WhenAt, Time: time.Date(2026, 11, 22, 18, 0, 0, 0, berlin)}}},
		{in: "!stage resync fas2 at 09:00", want: Call{Target: "fas2", Pipeline: "default", When: When{Kind: WhenAt, Time: time.Date(2026, 11, 23, 9, 0, 0, 0, berlin)}}},
		{in: "!stage resync fas2 at 2026-12-01 00:10", want: Call{Target: "fas2", Pipeline: "default", When: When{Kind: WhenAt, Time: time.Date(2026, 12, 1, 0, 10, 0, 0, berlin)}}},
		{in: "!stage resync fas2 now", want: Call{Target: "fas2", Pipeline: "default", When: When{Kind: WhenNow}}},
		{in: "!stage resync fas2 --dry-run", want: Call{Target: "fas2", Pipeline: "default", DryRun: true}},
		{in: "!stage resync FAS2 now --dry-run", want: Call{Target: "fas2", Pipeline: "default", DryRun: true, When: When{Kind: WhenNow}}},
		{in: "!stage approve 42", want: Call{Run: 42}},
		{in: "!stage approve #42", want: Call{Run: 42}},
		{in: "!stage defer 42 1d", want: Call{Run: 42, Duration: 24 * time.Hour}},
		{in: "!stage defer 42 until 18:00", want: Call{Run: 42, Until: time.Date(2026, 11, 22, 18, 0, 0, 0, berlin)}},
		{in: "!stage cancel 7", want: Call{Run: 7}},
		{in: "!stage cancel 7 not needed", want: Call{Run: 7, Reason: "not needed"}},
		{in: "!stage abort 7", want: Call{Run: 7}},
		{in: "!stage hold fas2 testing the login", want: Call{Target: "fas2", Reason: "testing the login"}},
		{in: "!stage hold fas2 2h testing the login", want: Call{Target: "fas2", Duration: 2 * time.Hour, Reason: "testing the login"}},
		{in: `!stage hold fas2 90m "testing   the login"`, want: Call{Target: "fas2", Duration: 90 * time.Minute, Reason: "testing   the login"}},
		{in: "!stage hold fas2 1h \u201ctesting & fixing\u201d", want: Call{Target: "fas2", Duration: time.Hour, Reason: "testing & fixing"}},
		{in: "!stage hold fas2 1h testing &amp; fixing", want: Call{Target: "fas2", Duration: time.Hour, Reason: "testing & fixing"}},
		{in: "!stage hold fas2 1h a; b | c > d", want: Call{Target: "fas2", Duration: time.Hour, Reason: "a; b | c > d"}},
		{in: `!stage hold fas2 1h it\'s mine`, want: Call{Target: "fas2", Duration: time.Hour, Reason: "it's mine"}},
		{in: "!stage hold fas2 2x testing", want: Call{Target: "fas2", Reason: "2x testing"}},
		{in: "!stage hold all until 18:00 schema upgrade", want: Call{Target: "all", Until: time.Date(2026, 11, 22, 18, 0, 0, 0, berlin), Reason: "schema upgrade"}},
		{in: "!stage release fas2", want: Call{Target: "fas2"}},
		{in: "!stage release fas2 she is away", want: Call{Target: "fas2", Reason: "she is away"}},
		{in: "!stage holds", want: Call{}},
		{in: "!stage schedule koji", want: Call{Target: "koji"}},
		{in: "!stage history", want: Call{Count: 10}},
		{in: "!stage history 5", want: Call{Count: 5}},
		{in: "!stage history fas2 20", want: Call{Target: "fas2", Count: 20}},
		{in: "!stage log 3", want: Call{Run: 3}},
		{in: "!stage log 3 full", want: Call{Run: 3, Full: true}},
		{in: "!stage log #3 FULL", want: Call{Run: 3, Full: true}},
		{in: "!stage rollback fas2", want: Call{Target: "fas2", Pipeline: "rollback"}},
		{in: "!stage watch koji", want: Call{Target: "koji"}},
		{in: "!stage unwatch koji", want: Call{Target: "koji"}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			r := Parse(tt.in, opts())
			if r.Outcome != Command {
				t.Fatalf("outcome %d, text %q; want a command", r.Outcome, r.Text)
			}
			got := *r.Call
			verb := strings.Fields(strings.ToLower(tt.in))[1]
			if got.Spec.Name != verb {
				t.Errorf("verb = %s, want %s", got.Spec.Name, verb)
			}
			got.Spec, got.Text = nil, ""
			if !got.When.Time.Equal(tt.want.When.Time) || !got.Until.Equal(tt.want.Until) {
				t.Errorf("times: when %v until %v; want %v, %v", got.When.Time, got.Until, tt.want.When.Time, tt.want.Until)
			}
			got.When.Time, got.Until = tt.want.When.Time, tt.want.Until
			if got != tt.want {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestParse_Errors(t *testing.T) {
	tests := []struct {
		in       string
		contains []string
	}{
		{in: "!stage resycn fas2", contains: []string{`don't know the command "resycn"`, `did you mean "resync"`, "!stage help"}},
		{in: "!stage resync", contains: []string{"Name a target: fas2, koji", "Usage: `!stage resync <target>"}},
		{in: "!stage resync fas3", contains: []string{`no target "fas3"`, `did you mean "fas2"`, "known targets: fas2, koji"}},
		{in: "!stage resync fas2 dbb", contains: []string{`no pipeline "dbb"`, `did you mean "db"`}},
		{in: "!stage resync fas2 in soon", contains: []string{`"soon" is not a duration`, "Usage:"}},
		{in: "!stage resync fas2 at 25:00", contains: []string{`"25:00" is not a time`}},
		{in: "!stage resync fas2 at 2020-01-01 10:00", contains: []string{"has already passed"}},
		{in: "!stage resync fas2 --force", contains: []string{`Unknown option "--force"`}},
		{in: "!stage resync fas2 now please", contains: []string{`Unexpected "please"`}},
		{in: "!stage hold fas2", contains: []string{"Say why you hold it", "Usage: `!stage hold <target | all>"}},
		{in: "!stage hold fas2 2h", contains: []string{"Say why you hold it"}},
		{in: "!stage hold fas2 2hrs testing", contains: []string{`"2hrs" is not a duration`}},
		{in: "!stage hold fas2 200d testing", contains: []string{"too long"}},
		{in: `!stage hold fas2 "testing`, contains: []string{"quote is not closed"}},
		{in: "!stage approve", contains: []string{"Give a run number"}},
		{in: "!stage approve abc", contains: []string{`"abc" is not a run number`}},
		{in: "!stage approve 0", contains: []string{`"0" is not a run number`}},
		{in: "!stage defer 4", contains: []string{"Say how long to defer"}},
		{in: "!stage history fas2 0", contains: []string{"from 1 to 100"}},
		{in: "!stage help hodl", contains: []string{`did you mean "hold"`}},
		{in: "!stage holds now", contains: []string{`Unexpected "now"`}},
		{in: "!stage log 3 everything", contains: []string{`Unexpected "everything"`, "full"}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			r := Parse(tt.in, opts())
			if r.Outcome != Reply {
				t.Fatalf("outcome %d, want a reply", r.Outcome)
			}
			for _, c := range tt.contains {
				if !strings.Contains(r.Text, c) {
					t.Errorf("reply %q does not contain %q", r.Text, c)
				}
			}
		})
	}
}

func TestParse_Ignore(t *testing.T) {
	for _, in := range []string{"", "hello", "stage resync fas2", "!stagecoach", "  !stag resync"} {
		if r := Parse(in, opts()); r.Outcome != Ignore {
			t.Errorf("Parse(%q) outcome %d, want Ignore", in, r.Outcome)
		}
	}
}

func TestParse_Direct(t *testing.T) {
	o := opts()
	o.Direct = true
	r := Parse("hold fas2 1h lunch test", o)
	if r.Outcome != Command || r.Call.Spec.Name != "hold" || r.Call.Reason != "lunch test" {
		t.Fatalf("direct message not parsed as a command: %+v", r)
	}
	r = Parse("!stage holds", o)
	if r.Outcome != Command || r.Call.Spec.Name != "holds" {
		t.Fatalf("direct message with prefix not parsed: %+v", r)
	}
}

func TestParse_BarePrefixGivesHelp(t *testing.T) {
	r := Parse("!stage", opts())
	if r.Outcome != Reply || !strings.Contains(r.Text, "Commands") {
		t.Fatalf("bare prefix: %+v", r)
	}
}

func TestHelpText_ListsEveryVerb(t *testing.T) {
	list, err := HelpText("!stage", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range Table() {
		if !strings.Contains(list, "`"+s.Usage("!stage")+"`") {
			t.Errorf("help list lacks %s", s.Name)
		}
		one, err := HelpText("!stage", s.Name)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(one, s.Description) || len(s.Examples) == 0 {
			t.Errorf("help for %s lacks its description or examples", s.Name)
		}
		// Every example parses as the verb it illustrates.
		for _, ex := range s.Examples {
			r := Parse("!stage "+ex, opts())
			if r.Outcome != Command || r.Call.Spec != s {
				t.Errorf("example %q of %s does not parse: %q", ex, s.Name, r.Text)
			}
		}
	}
}

func TestScopes(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{in: "!stage resync fas2", want: []string{"stage.resync.fas2.default"}},
		{in: "!stage resync fas2 DB", want: []string{"stage.resync.fas2.db"}},
		{in: "!stage resync fas2 now", want: []string{"stage.resync.fas2.default", "stage.now.fas2"}},
		{in: "!stage resync fas2 now --dry-run", want: []string{"stage.read.fas2"}},
		{in: "!stage hold all 1h x", want: []string{"stage.hold.all"}},
		{in: "!stage status", want: []string{"stage.read"}},
		{in: "!stage log 4", want: []string{"stage.read"}},
		{in: "!stage help", want: nil},
	}
	for _, tt := range tests {
		c := Parse(tt.in, opts()).Call
		var got []string
		if c.Spec.Scopes != nil {
			got = c.Spec.Scopes(c)
		}
		if strings.Join(got, ",") != strings.Join(tt.want, ",") {
			t.Errorf("%s: scopes %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestParseTime_DST(t *testing.T) {
	// 02:30 does not exist in Berlin on 2026-03-29; Go moves it forward.
	before := time.Date(2026, 3, 28, 23, 0, 0, 0, berlin)
	got, err := ParseTime("03:30", before, berlin)
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2026, 3, 29, 3, 30, 0, 0, berlin); !got.Equal(want) {
		t.Fatalf("03:30 on DST day = %v, want %v", got, want)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"!stage resync fas2 at 2026-12-01 00:10 --dry-run", "!stage hold all until 18:00 \u201cx y\u201d",
		"!stage defer #9 1w2d", "!stage history fas2 100", `!stage hold fas2 "a`, "!stage \x00", "!stage log 18446744073709551616",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		r := Parse(in, opts())
		switch r.Outcome {
		case Ignore:
		case Reply:
			if r.Text == "" {
				t.Fatalf("empty reply for %q", in)
			}
			if !utf8.ValidString(in) {
				return
			}
		case Command:
			c := r.Call
			if c.Spec == nil || c.Spec.Handler == nil {
				t.Fatalf("command without spec or handler for %q", in)
			}
			if c.Spec.Name == "hold" && c.Reason == "" {
				t.Fatalf("hold without reason accepted: %q", in)
			}
			if c.Spec.RunArg && c.Run == 0 {
				t.Fatalf("%s without run number accepted: %q", c.Spec.Name, in)
			}
			if c.When.Kind == WhenAt && !c.When.Time.After(now) {
				t.Fatalf("start in the past accepted: %q", in)
			}
		default:
			t.Fatalf("unknown outcome %d", r.Outcome)
		}
	})
}

func TestParse_Limits(t *testing.T) {
	// Control characters go; line breaks and tabs become spaces.
	r := Parse("!stage hold fas2 1h testing\x00 the\tlogin\nagain\x1b[31m", opts())
	if r.Outcome != Command || r.Call.Reason != "testing the login again[31m" {
		t.Fatalf("reason = %q (%v %q)", r.Call.Reason, r.Outcome, r.Text)
	}
	// A long reason is cut, and the call says so.
	r = Parse("!stage hold fas2 1h "+strings.Repeat("ä", 1000), opts())
	if r.Outcome != Command || !r.Call.ReasonCut || utf8.RuneCountInString(r.Call.Reason) != MaxReason || !strings.HasSuffix(r.Call.Reason, "…") {
		t.Fatalf("long reason: cut=%v, %d characters", r.Call.ReasonCut, utf8.RuneCountInString(r.Call.Reason))
	}
	// A command over MaxText is refused, saying why.
	r = Parse("!stage hold fas2 1h "+strings.Repeat("x", 100_000), opts())
	if r.Outcome != Reply || !strings.Contains(r.Text, "a command may be at most 4000") {
		t.Fatalf("huge command: %v %.200q", r.Outcome, r.Text)
	}
	// An unknown verb is echoed short.
	r = Parse("!stage "+strings.Repeat("z", 3000), opts())
	if r.Outcome != Reply || len(r.Text) > 200 || !strings.Contains(r.Text, "I don't know the command") {
		t.Fatalf("unknown long verb: %d bytes: %.200q", len(r.Text), r.Text)
	}
	// Chatter that is not for the bot stays ignored, however long.
	if r := Parse(strings.Repeat("y", 100_000), opts()); r.Outcome != Ignore {
		t.Fatalf("long chatter: %v", r.Outcome)
	}
}

func TestParse_Reset(t *testing.T) {
	r := Parse("!stage reset fas2 in 10m", opts())
	if r.Outcome != Command || r.Call.Target != "fas2" || r.Call.Pipeline != "reset" || r.Call.When.Kind != WhenIn || r.Call.When.Duration != 10*time.Minute {
		t.Fatalf("reset fas2 in 10m: %+v %q", r.Call, r.Text)
	}
	r = Parse("!stage reset koji", opts())
	if r.Outcome == Command || !strings.Contains(r.Text, "keep_base: true") {
		t.Fatalf("reset of a target without a base: %q", r.Text)
	}
}

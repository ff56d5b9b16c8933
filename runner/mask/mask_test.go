package mask

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"math/big"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

var key = []byte("a test key, not a secret")

func TestParse(t *testing.T) {
	for spec, want := range map[string]Func{
		"email":             {Kind: Email},
		" keep ":            {Kind: Keep},
		"keep: reviewed":    {Kind: Keep, Value: Reviewed},
		"fixed: nobody":     {Kind: Fixed, Value: "nobody"},
		"fixed:":            {Kind: Fixed},
		"text: keep_length": {Kind: Text},
		"date: shift 30":    {Kind: Date, Days: 30},
		"date: shift ±7":    {Kind: Date, Days: 7},
		"number: noise 10%": {Kind: Number, Percent: 10},
		"sql: lower(email)": {Kind: SQL, Value: "lower(email)"},
		"truncate":          {Kind: Truncate},
	} {
		got, err := Parse(spec)
		if err != nil || got != want {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", spec, got, err, want)
		}
		if back, err := Parse(got.String()); err != nil || back != got {
			t.Errorf("Parse(%q.String() = %q) = %+v, %v", spec, got.String(), back, err)
		}
	}
	for spec, want := range map[string]string{
		"emial":             `unknown masking function "emial": use one of keep, null`,
		"date: shift 0":     "date takes shift and a whole number of days",
		"date: shift 1.5":   "whole number",
		"number: noise 0%":  "above 0 and below 100",
		"number: noise abc": "number takes noise",
		"sql:":              "sql needs an expression",
		"hash: sha1":        "hash takes no argument",
		"text: shuffle":     "text takes keep_length",
		"keep: forever":     "keep takes no argument, or reviewed",
	} {
		if _, err := Parse(spec); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v, want an error with %q", spec, err, want)
		}
	}
}

func col(name, base string) Column { return Column{Name: name, Type: base, Base: base} }

func TestPlan_FailsClosed(t *testing.T) {
	users := Table{Schema: "public", Name: "users", Columns: []Column{
		{Name: "id", Type: "bigint", Base: "int8", NotNull: true, Unique: true},
		{Name: "email", Type: "character varying(20)", Base: "varchar", MaxLen: 20, Unique: true},
		{Name: "phone", Type: "text", Base: "text", NotNull: true},
		col("born", "date"),
		col("prefs", "jsonb"),
	}}
	audit := Table{Schema: "public", Name: "audit", Columns: []Column{col("what", "text")}}
	rules := []Rule{
		{"public.users.id", Func{Kind: Hash}},
		{"public.users.email", Func{Kind: Email}},
		{"public.users.phone", Func{Kind: Null}},
		{"public.users.prefs", Func{Kind: Name}},
		{"public.users.gone", Func{Kind: Keep}},
		{"public.audit", Func{Kind: Truncate}},
		{"public.*.born", Func{Kind: Date, Days: 3}},
		{"public.u*.born", Func{Kind: Keep}},
	}
	plans, problems := Plan(rules, nil, []Table{users, audit})
	got := fmt.Sprint(problems)
	for _, want := range []string{
		"public.users.email: email needs at least 25 characters and the column has 20",
		"public.users.phone: null cannot mask a NOT NULL column",
		"public.users.prefs: name cannot produce a value of type jsonb",
		"public.users.gone: this rule covers no column of production",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("problems lack %q:\n%s", want, strings.Join(strings.Split(got, "} {"), "\n"))
		}
	}
	if len(problems) != 4 {
		t.Errorf("%d problems, want 4: %v", len(problems), problems)
	}
	// The most specific rule wins (and the other counts as used).: public.u*.born over public.*.born.
	if f := plans["public.users"].Funcs[3]; f.Kind != Keep {
		t.Errorf("born masked by %v, want keep (the more specific rule)", f)
	}
	if !plans["public.audit"].Truncate {
		t.Error("audit is not truncated")
	}
	// A column no rule covers stops the run, and the problem proposes a rule.
	_, problems = Plan(nil, nil, []Table{users})
	if len(problems) != 5 || !strings.Contains(fmt.Sprint(problems), `"public.users.email": hash # looks like an email address`) {
		t.Errorf("with no rules: %v", problems)
	}
	// A default covers the rest.
	if _, problems = Plan(nil, &Func{Kind: Keep}, []Table{users}); len(problems) != 0 {
		t.Errorf("with keep as default: %v", problems)
	}
	// Two rules as specific as each other that disagree.
	_, problems = Plan([]Rule{{"public.*.what", Func{Kind: Text}}, {"p*.audit.what", Func{Kind: Null}}}, nil, []Table{audit})
	if len(problems) != 1 || !strings.Contains(problems[0].What, "disagree") {
		t.Errorf("ambiguous rules: %v", problems)
	}
}

func TestSuggest(t *testing.T) {
	for c, want := range map[Column]string{
		col("email", "text"):                      "email",
		col("contact_email", "citext"):            "email",
		col("mobile", "text"):                     "phone",
		col("password_hash", "text"):              "fixed: masked",
		col("ssn", "text"):                        "hash",
		col("first_name", "varchar"):              "name",
		col("date_of_birth", "date"):              "date: shift 30",
		col("street", "text"):                     "text: keep_length",
		col("last_ip", "inet"):                    "null",
		col("created", "timestamptz"):             "keep",
		{Name: "email", Base: "int8"}:             "hash",
		{Name: "ip", Base: "inet", NotNull: true}: "keep",
	} {
		if got := Suggest(c).Func.String(); got != want {
			t.Errorf("Suggest(%s %s) = %s, want %s", c.Name, c.Base, got, want)
		}
	}
}

// TestPermutation: a masked integer key is one-to-one (all of int2
// checked), deterministic, and changes with the key.
func TestPermutation(t *testing.T) {
	p := newPermutation(key, "app", 16)
	seen := map[int64]bool{}
	for n := int64(math.MinInt16); n <= math.MaxInt16; n++ {
		m := p.apply(n)
		if m < math.MinInt16 || m > math.MaxInt16 || seen[m] {
			t.Fatalf("apply(%d) = %d: out of range or seen before", n, m)
		}
		seen[m] = true
	}
	for _, bits := range []int{32, 64} {
		p, q := newPermutation(key, "app", bits), newPermutation([]byte("rotated"), "app", bits)
		lo, hi := intRange(map[int]string{32: "int4", 64: "int8"}[bits])
		same, seen := 0, map[int64]bool{}
		for n := int64(1); n <= 20000; n++ {
			m := p.apply(n)
			if m < lo || m > hi || seen[m] || m != p.apply(n) {
				t.Fatalf("%d bits: apply(%d) = %d", bits, n, m)
			}
			seen[m] = true
			if q.apply(n) == m {
				same++
			}
		}
		if same > 2 {
			t.Errorf("%d bits: %d values unchanged by rotating the key", bits, same)
		}
	}
}

// TestFunctions: every function on every family it accepts gives values
// of the column's type, within its length, and changes them.
func TestFunctions(t *testing.T) {
	uuidRE := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	tests := []struct {
		f     Func
		c     Column
		in    string
		check func(out string) error
	}{
		{Func{Kind: Email}, Column{Base: "varchar", MaxLen: 30}, "ada@fedoraproject.org", matches(`^u[0-9a-f]{13}@example\.invalid$`)},
		{Func{Kind: Email}, col("", "citext"), "Ada@Example.org", matches(`^u[0-9a-f]{16}@example\.invalid$`)},
		{Func{Kind: Hash}, col("", "text"), "secret", matches(`^[0-9a-f]{32}$`)},
		{Func{Kind: Hash}, Column{Base: "bpchar", MaxLen: 20}, "secret", matches(`^[0-9a-f]{20}$`)},
		{Func{Kind: Hash}, col("", "uuid"), "0b1d3c6a-3c41-4d2e-9d65-5a8a4a0f0e11", matches(uuidRE.String())},
		{Func{Kind: Hash}, col("", "bytea"), `\x0102`, matches(`^\\x[0-9a-f]{64}$`)},
		{Func{Kind: Hash}, col("", "int4"), "42", inRange(math.MinInt32, math.MaxInt32)},
		{Func{Kind: Hash}, col("", "int8"), "-9223372036854775808", inRange(math.MinInt64, math.MaxInt64)},
		{Func{Kind: Name}, col("", "text"), "Ada Lovelace", matches(`^\p{Lu}\p{Ll}+ \p{Lu}\p{Ll}+$`)},
		{Func{Kind: Name}, Column{Base: "text", Unique: true}, "Ada Lovelace", matches(`^\p{Lu}\p{Ll}+ \p{Lu}\p{Ll}+ [0-9a-f]{12}$`)},
		{Func{Kind: Phone}, col("", "varchar"), "+44 20 7946 0958", matches(`^\+1-555-\d{3}-\d{4}$`)},
		{Func{Kind: UUID}, col("", "text"), "anything", matches(uuidRE.String())},
		{Func{Kind: Text}, col("", "text"), "Flat 4, 221B Baker Street — Zoë", sameShape},
		{Func{Kind: Date, Days: 30}, col("", "date"), "1990-02-28", dateWithin(30, "")},
		{Func{Kind: Date, Days: 30}, col("", "timestamptz"), "1990-02-28 13:14:15.123456+01", dateWithin(30, " 13:14:15.123456+01")},
		{Func{Kind: Number, Percent: 10}, col("", "numeric"), "1234.50", numberWithin(1234.5, 10, 2)},
		{Func{Kind: Number, Percent: 10}, col("", "int4"), "1000000", numberWithin(1e6, 10, 0)},
		{Func{Kind: Number, Percent: 10}, col("", "float8"), "3.25", numberWithin(3.25, 10, -1)},
	}
	for _, tt := range tests {
		if why := tt.f.check(tt.c); why != "" {
			t.Errorf("%v on %s: refused: %s", tt.f, tt.c.Base, why)
			continue
		}
		a := newApplier(tt.f, tt.c, key, "app")
		out, null := a.apply([]byte(tt.in))
		out = append([]byte(nil), out...) // apply reuses its buffer
		if null || string(out) == tt.in {
			t.Errorf("%v on %s: %q → %q (null %v): unchanged", tt.f, tt.c.Base, tt.in, out, null)
			continue
		}
		if err := tt.check(string(out)); err != nil {
			t.Errorf("%v on %s: %q → %q: %v", tt.f, tt.c.Base, tt.in, out, err)
		}
		if again, _ := a.apply([]byte(tt.in)); !bytes.Equal(again, out) {
			t.Errorf("%v on %s is not deterministic: %q then %q", tt.f, tt.c.Base, out, again)
		}
		if rotated, _ := newApplier(tt.f, tt.c, []byte("rotated"), "app").apply([]byte(tt.in)); bytes.Equal(rotated, out) && tt.f.Kind != Number {
			t.Errorf("%v on %s: the same after rotating the key: %q", tt.f, tt.c.Base, out)
		}
	}
	// Infinity, NaN and values that are not what the function reads stay.
	for _, tt := range []struct {
		f  Func
		c  Column
		in string
	}{{Func{Kind: Date, Days: 3}, col("", "date"), "infinity"}, {Func{Kind: Number, Percent: 5}, col("", "numeric"), "NaN"}, {Func{Kind: Number, Percent: 5}, col("", "float8"), "-Infinity"}} {
		if out, _ := newApplier(tt.f, tt.c, key, "app").apply([]byte(tt.in)); string(out) != tt.in {
			t.Errorf("%v: %q → %q", tt.f, tt.in, out)
		}
	}
}

func matches(re string) func(string) error {
	r := regexp.MustCompile(re)
	return func(s string) error {
		if !r.MatchString(s) {
			return fmt.Errorf("does not match %s", re)
		}
		return nil
	}
}

func inRange(lo, hi int64) func(string) error {
	return func(s string) error {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < lo || n > hi {
			return fmt.Errorf("not an integer in [%d, %d]", lo, hi)
		}
		return nil
	}
}

func sameShape(s string) error {
	in := []rune("Flat 4, 221B Baker Street — Zoë")
	out := []rune(s)
	if len(in) != len(out) {
		return fmt.Errorf("%d characters, want %d", len(out), len(in))
	}
	for i := range in {
		letter := func(r rune) bool { return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' }
		switch {
		case in[i] == ' ' || in[i] == ',' || in[i] == '—':
			if out[i] != in[i] {
				return fmt.Errorf("punctuation %q at %d became %q", in[i], i, out[i])
			}
		case letter(in[i]) && out[i] == in[i]:
			return fmt.Errorf("letter %q at %d unchanged", in[i], i)
		}
	}
	return nil
}

func dateWithin(days int, rest string) func(string) error {
	return func(s string) error {
		d, err := time.Parse("2006-01-02", s[:10])
		if err != nil || s[10:] != rest {
			return fmt.Errorf("not a date followed by %q", rest)
		}
		off := int(d.Sub(time.Date(1990, 2, 28, 0, 0, 0, 0, time.UTC)).Hours() / 24)
		if off == 0 || off < -days || off > days {
			return fmt.Errorf("moved by %d days", off)
		}
		return nil
	}
}

func numberWithin(v, pct float64, places int) func(string) error {
	return func(s string) error {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || math.Abs(f-v) > math.Abs(v)*pct/100+1e-9 {
			return fmt.Errorf("not within %g%% of %g", pct, v)
		}
		if places >= 0 {
			got := 0
			if i := strings.IndexByte(s, '.'); i >= 0 {
				got = len(s) - i - 1
			}
			if got != places {
				return fmt.Errorf("%d decimal places, want %d", got, places)
			}
		}
		return nil
	}
}

// TestUnique: deterministic functions keep a unique column unique.
func TestUnique(t *testing.T) {
	for _, f := range []Func{{Kind: Email}, {Kind: Hash}, {Kind: UUID}, {Kind: Name}} {
		a := newApplier(f, Column{Base: "text", Unique: true}, key, "app")
		seen := map[string]bool{}
		for i := range 100000 {
			out, _ := a.apply([]byte(fmt.Sprintf("user%d@example.org", i)))
			if seen[string(out)] {
				t.Fatalf("%v: two values masked to %q", f, out)
			}
			seen[string(out)] = true
		}
	}
}

func plan(t *testing.T, funcs ...Func) *Rows {
	t.Helper()
	tb := Table{Schema: "s", Name: "t"}
	var rules []Rule
	for i, f := range funcs {
		c := col(fmt.Sprintf("c%d", i), "text")
		tb.Columns = append(tb.Columns, c)
		rules = append(rules, Rule{"s.t." + c.Name, f})
	}
	plans, problems := Plan(rules, nil, []Table{tb})
	if len(problems) > 0 {
		t.Fatal(problems)
	}
	return plans["s.t"].Rows(key, "app")
}

// TestLine: kept fields pass byte for byte, escapes are read and written
// back, NULL stays NULL, and a row of the wrong width is an error.
func TestLine(t *testing.T) {
	r := plan(t, Func{Kind: Keep}, Func{Kind: Fixed, Value: "a\tb\\c\nd"}, Func{Kind: Text}, Func{Kind: Null})
	out, err := r.Line(nil, []byte(`x\t\\y\N`+"\t"+`old`+"\t"+`ab\ncd\\`+"\t"+`gone`))
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.Split(string(out), "\t")
	if len(fields) != 4 || fields[0] != `x\t\\y\N` || fields[1] != `a\tb\\c\nd` || fields[3] != `\N` {
		t.Fatalf("masked row = %q", out)
	}
	if text := unescape([]byte(fields[2])); len(text) != 6 || text[2] != '\n' || text[5] != '\\' || text[0] == 'a' {
		t.Errorf("text of %q = %q: want letters changed, the newline and backslash kept", `ab\ncd\\`, text)
	}
	if out, _ := r.Line(nil, []byte("k\t\\N\t\\N\t\\N")); string(out) != "k\t\\N\t\\N\t\\N" {
		t.Errorf("NULLs: %q", out)
	}
	for _, bad := range []string{"a\tb", "a\tb\tc\td\te"} {
		if _, err := r.Line(nil, []byte(bad)); err == nil {
			t.Errorf("row %q of the wrong width accepted", bad)
		}
	}
	if got := unescape([]byte(`\101\x42\x4a\7\q`)); string(got) != "ABJ\aq" {
		t.Errorf("unescape = %q", got)
	}
}

// TestWriter: a stream cut anywhere masks as the whole does.
func TestWriter(t *testing.T) {
	r := plan(t, Func{Kind: Email}, Func{Kind: Keep})
	var in strings.Builder
	for i := range 50 {
		fmt.Fprintf(&in, "user%d@example.org\tkept %d\\twith a tab\n", i, i)
	}
	var whole bytes.Buffer
	w := NewWriter(&whole, r)
	if _, err := w.Write([]byte(in.String())); err != nil || w.Close() != nil {
		t.Fatal(err)
	}
	if strings.Contains(whole.String(), "@example.org") || strings.Count(whole.String(), "\n") != 50 || !strings.Contains(whole.String(), "\tkept 7\\twith a tab\n") {
		t.Fatalf("masked stream:\n%s", whole.String())
	}
	for cut := 1; cut < 200; cut += 7 {
		var got bytes.Buffer
		w := NewWriter(&got, r)
		s := in.String()
		for len(s) > 0 {
			n := min(cut, len(s))
			if _, err := w.Write([]byte(s[:n])); err != nil {
				t.Fatal(err)
			}
			s = s[n:]
		}
		if err := w.Close(); err != nil || got.String() != whole.String() {
			t.Fatalf("cut every %d bytes: %v\n%s", cut, err, got.String())
		}
	}
	w = NewWriter(&whole, r)
	w.Write([]byte("half a row"))
	if w.Close() == nil {
		t.Error("a stream that ends inside a row closed cleanly")
	}
}

// FuzzLine: any row masks without a panic to a row of as many fields,
// valid UTF-8 values in, valid UTF-8 values out.
func FuzzLine(f *testing.F) {
	f.Add([]byte("a\tb\\tc\t\\N\t1990-01-01\t12.5"))
	f.Add([]byte("\\\t\\x\t\\777\t\t"))
	tb := Table{Schema: "s", Name: "t", Columns: []Column{col("a", "text"), col("b", "text"), col("c", "text"), col("d", "date"), col("e", "numeric")}}
	plans, _ := Plan([]Rule{{"s.t.a", Func{Kind: Text}}, {"s.t.b", Func{Kind: Email}}, {"s.t.c", Func{Kind: Name}}, {"s.t.d", Func{Kind: Date, Days: 9}}, {"s.t.e", Func{Kind: Number, Percent: 3}}}, nil, []Table{tb})
	r := plans["s.t"].Rows(key, "app")
	f.Fuzz(func(t *testing.T, line []byte) {
		line = bytes.ReplaceAll(line, []byte("\n"), nil)
		out, err := r.Line(nil, line)
		if err != nil {
			return
		}
		if got, want := bytes.Count(out, []byte("\t")), bytes.Count(line, []byte("\t")); got != want {
			t.Fatalf("%q → %q: %d fields, want %d", line, out, got+1, want+1)
		}
		if bytes.IndexByte(out, '\n') >= 0 {
			t.Fatalf("%q → %q: a raw newline", line, out)
		}
		// What PostgreSQL sends decodes to valid UTF-8; so must the masked row.
		if utf8.Valid(unescape(line)) && !utf8.Valid(unescape(out)) {
			t.Fatalf("%q → %q: invalid UTF-8", line, out)
		}
	})
}

func TestDetect(t *testing.T) {
	for what, values := range map[string][]string{
		"email addresses":      {"ada@example.org", "bob@corp.example", "c.d@x.io", ""},
		"payment card numbers": {"4111 1111 1111 1111", "5500-0000-0000-0004", "340000000000009"},
		"IBANs":                {"GB82 WEST 1234 5698 7654 32", "DE89370400440532013000", "FR1420041010050500013M02606"},
		"JSON web tokens":      {"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abc", "eyJ0eXAiOiJKV1QifQ.e30.sig", "eyJhIjoxfQ.eyJiIjoyfQ.c"},
		"IP addresses":         {"192.0.2.1", "2001:db8::1", "10.0.0.7"},
		"phone numbers":        {"+44 20 7946 0958", "(555) 010-0199", "+1-555-010-0100"},
	} {
		f, ok := Detect("s.t.c", values)
		if !ok || f.What != what {
			t.Errorf("Detect(%q) = %+v, %v; want %s", values, f, ok, what)
		}
	}
	for _, values := range [][]string{
		{"hello", "world", "ada@example.org"},           // a minority
		{"4111 1111 1111 1112", "1234567890123", "x"},   // Luhn fails
		{"GB82 WEST 1234 5698 7654 33", "DE00", "FR14"}, // mod 97 fails
		{"2026-01-01", "2026-01-02", "2026-01-03"},      // dates are not phones
	} {
		if f, ok := Detect("s.t.c", values); ok {
			t.Errorf("Detect(%q) = %+v: want nothing", values, f)
		}
	}
}

// TestSmallDecimal: the integer path gives what big.Rat gives.
func TestSmallDecimal(t *testing.T) {
	for _, s := range []string{"0", "1", "-1", "0.00", "1234.50", "-1234.50", "999999999999", "-0.01", "0.5", "12.345", "100"} {
		for _, delta := range []int64{-50000, -1, 0, 1, 499999, 33333, -33333} {
			places := 0
			if i := strings.IndexByte(s, '.'); i >= 0 {
				places = len(s) - i - 1
			}
			got, ok := smallDecimal(s, places, delta)
			r, _ := new(big.Rat).SetString(s)
			want := r.Mul(r, big.NewRat(1e6+delta, 1e6)).FloatString(places)
			if !ok || got != want {
				t.Errorf("smallDecimal(%s, %d) = %q, %v; big.Rat says %q", s, delta, got, ok, want)
			}
		}
	}
}

// TestBinary: each function masks a value in binary COPY as it does in
// text (the same text in, the same value out), every row of a stream cut
// anywhere, NULLs and the trailer kept.
func TestBinary(t *testing.T) {
	be := func(bits int, n int64) []byte {
		switch bits {
		case 16:
			return binary.BigEndian.AppendUint16(nil, uint16(n))
		case 32:
			return binary.BigEndian.AppendUint32(nil, uint32(n))
		}
		return binary.BigEndian.AppendUint64(nil, uint64(n))
	}
	days := func(s string) int64 { d, _ := time.Parse("2006-01-02", s); return (d.Unix() - epoch.Unix()) / 86400 }
	for _, tt := range []struct {
		f          Func
		c          Column
		bin        []byte
		text       string
		leftAsItIs bool
	}{
		{Func{Kind: Email}, Column{Base: "text"}, []byte("ada@example.org"), "ada@example.org", false},
		{Func{Kind: Hash}, Column{Base: "int2"}, be(16, -1234), "-1234", false},
		{Func{Kind: Hash}, Column{Base: "int4"}, be(32, 123456), "123456", false},
		{Func{Kind: Number, Percent: 10}, Column{Base: "int8"}, be(64, 1e12), "1000000000000", false},
		{Func{Kind: Hash}, Column{Base: "uuid"}, []byte{0x0b, 0x1d, 0x3c, 0x6a, 0x3c, 0x41, 0x4d, 0x2e, 0x9d, 0x65, 0x5a, 0x8a, 0x4a, 0x0f, 0x0e, 0x11}, "0b1d3c6a-3c41-4d2e-9d65-5a8a4a0f0e11", false},
		{Func{Kind: Hash}, Column{Base: "bytea"}, []byte{1, 2, 0xff}, `\x0102ff`, false},
		{Func{Kind: Number, Percent: 10}, Column{Base: "float8"}, be(64, int64(math.Float64bits(-2.5e10))), "-2.5e+10", false},
		{Func{Kind: Date, Days: 30}, Column{Base: "date"}, be(32, days("1990-02-28")), "1990-02-28", false},
		{Func{Kind: Date, Days: 30}, Column{Base: "date"}, be(32, days("0500-02-28")), "0500-02-28", false},
		{Func{Kind: Date, Days: 30}, Column{Base: "timestamp"}, be(64, days("1990-02-28")*86400e6+(13*3600+14*60+15)*1e6+500000), "1990-02-28 13:14:15.5", false},
		{Func{Kind: Date, Days: 30}, Column{Base: "timestamptz"}, be(64, days("2150-07-04")*86400e6), "2150-07-04 00:00:00+00", false},
		{Func{Kind: Date, Days: 30}, Column{Base: "date"}, be(32, math.MaxInt32), "infinity", true},
		{Func{Kind: Date, Days: 30}, Column{Base: "timestamptz"}, be(64, math.MinInt64), "-infinity", true},
	} {
		a := newApplier(tt.f, tt.c, key, "app")
		if !a.binaryOK() {
			t.Errorf("%v on %s: not maskable in binary", tt.f, tt.c.Base)
			continue
		}
		got, null, err := a.applyBinary(tt.bin)
		if err != nil || null {
			t.Errorf("%v on %s: %v, null %v", tt.f, tt.c.Base, err, null)
			continue
		}
		got = append([]byte(nil), got...)
		if tt.leftAsItIs {
			if !bytes.Equal(got, tt.bin) {
				t.Errorf("%v on %s %s: changed", tt.f, tt.c.Base, tt.text)
			}
			continue
		}
		viaText, _ := newApplier(tt.f, tt.c, key, "app").apply([]byte(tt.text))
		back, ok := a.toText(got)
		if !ok || string(back) != string(viaText) {
			t.Errorf("%v on %s %s: binary gives %q, text gives %q", tt.f, tt.c.Base, tt.text, back, viaText)
		}
	}
	// A stream: header, rows (one with a NULL), trailer; cut anywhere.
	tb := Table{Schema: "s", Name: "t", Columns: []Column{{Name: "id", Base: "int4"}, {Name: "email", Base: "text"}}}
	plans, _ := Plan([]Rule{{"s.t.id", Func{Kind: Keep}}, {"s.t.email", Func{Kind: Email}}}, nil, []Table{tb})
	stream := append([]byte(nil), copySignature...)
	stream = append(stream, 0, 0, 0, 0, 0, 0, 0, 0)
	for i := range 20 {
		stream = binary.BigEndian.AppendUint16(stream, 2)
		stream = binary.BigEndian.AppendUint32(stream, 4)
		stream = binary.BigEndian.AppendUint32(stream, uint32(i))
		if i == 7 {
			stream = binary.BigEndian.AppendUint32(stream, math.MaxUint32)
			continue
		}
		v := fmt.Sprintf("user%d@example.org", i)
		stream = binary.BigEndian.AppendUint32(stream, uint32(len(v)))
		stream = append(stream, v...)
	}
	stream = binary.BigEndian.AppendUint16(stream, math.MaxUint16)
	var whole bytes.Buffer
	w := NewBinaryWriter(&whole, plans["s.t"].Rows(key, "app"))
	if _, err := w.Write(stream); err != nil || w.Close() != nil {
		t.Fatal(err)
	}
	if bytes.Contains(whole.Bytes(), []byte("@example.org")) || bytes.Count(whole.Bytes(), []byte("@example.invalid")) != 19 || !bytes.HasSuffix(whole.Bytes(), []byte{0xff, 0xff}) {
		t.Fatalf("masked stream: %q", whole.Bytes())
	}
	for cut := 1; cut < 60; cut += 3 {
		var got bytes.Buffer
		w := NewBinaryWriter(&got, plans["s.t"].Rows(key, "app"))
		for s := stream; len(s) > 0; {
			n := min(cut, len(s))
			if _, err := w.Write(s[:n]); err != nil {
				t.Fatal(err)
			}
			s = s[n:]
		}
		if err := w.Close(); err != nil || !bytes.Equal(got.Bytes(), whole.Bytes()) {
			t.Fatalf("cut every %d bytes: %v", cut, err)
		}
	}
	w = NewBinaryWriter(io.Discard, plans["s.t"].Rows(key, "app"))
	w.Write(stream[:40])
	if w.Close() == nil {
		t.Error("a stream that ends inside a row closed cleanly")
	}
}

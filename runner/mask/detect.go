package mask

import (
	"fmt"
	"net"
	"regexp"
	"strings"
)

// A detector says what a value looks like, and which function masks it.
type detector struct {
	what  string
	fn    Func
	looks func(string) bool
}

var (
	emailRE = regexp.MustCompile(`(?i)^[^@\s]+@[^@\s]+\.[a-z]{2,}$`)
	phoneRE = regexp.MustCompile(`^\+?[\d\s().-]{7,20}$`)
	jwtRE   = regexp.MustCompile(`^eyJ[\w-]+\.[\w-]+\.[\w-]+$`)
	ibanRE  = regexp.MustCompile(`^[A-Z]{2}\d{2}[A-Z0-9]{11,30}$`)
	dateRE  = regexp.MustCompile(`^\d{4}-\d\d-\d\d`)
)

var detectors = []detector{
	{"email addresses", Func{Kind: Email}, emailRE.MatchString},
	{"payment card numbers", Func{Kind: Hash}, luhnCard},
	{"IBANs", Func{Kind: Hash}, iban},
	{"JSON web tokens", Func{Kind: Fixed, Value: "masked"}, jwtRE.MatchString},
	{"IP addresses", Func{Kind: Null}, func(s string) bool { return net.ParseIP(s) != nil }},
	{"phone numbers", Func{Kind: Phone}, func(s string) bool { return phoneRE.MatchString(s) && digits(s) >= 7 && !dateRE.MatchString(s) }},
}

// Finding is a column whose sampled values look like personal data.
type Finding struct {
	Column  string // schema.table.column
	What    string // "email addresses"
	Of, In  int    // Of the In sampled values look so
	Propose Func
}

func (f Finding) String() string {
	return fmt.Sprintf("%s: %d of %d sampled values look like %s", f.Column, f.Of, f.In, f.What)
}

// Detect looks at a sample of a column's values (NULLs and empty strings
// left out) and says what most of them look like, if anything does.
func Detect(column string, values []string) (Finding, bool) {
	n := 0
	counts := make([]int, len(detectors))
	for _, v := range values {
		v = strings.TrimSpace(v)
		if v == "" {
			continue
		}
		n++
		for i, d := range detectors {
			if d.looks(v) {
				counts[i]++
				break
			}
		}
	}
	for i, d := range detectors {
		if n > 0 && counts[i]*2 >= n && counts[i] >= 3 {
			return Finding{Column: column, What: d.what, Of: counts[i], In: n, Propose: d.fn}, true
		}
	}
	return Finding{}, false
}

func digits(s string) int {
	n := 0
	for _, c := range s {
		if c >= '0' && c <= '9' {
			n++
		}
	}
	return n
}

// luhnCard: 13 to 19 digits (spaces and dashes aside) passing Luhn's check.
func luhnCard(s string) bool {
	var d []int
	for _, c := range s {
		switch {
		case c >= '0' && c <= '9':
			d = append(d, int(c-'0'))
		case c == ' ' || c == '-':
		default:
			return false
		}
	}
	if len(d) < 13 || len(d) > 19 {
		return false
	}
	sum := 0
	for i := range d {
		x := d[len(d)-1-i]
		if i%2 == 1 {
			if x *= 2; x > 9 {
				x -= 9
			}
		}
		sum += x
	}
	return sum%10 == 0
}

// iban: the shape and the mod-97 check of ISO 13616.
func iban(s string) bool {
	s = strings.ReplaceAll(s, " ", "")
	if !ibanRE.MatchString(s) {
		return false
	}
	r := 0
	for _, c := range s[4:] + s[:4] {
		v := int(c - '0')
		if c >= 'A' {
			v = int(c-'A') + 10
		}
		if v >= 10 {
			r = (r*100 + v) % 97
		} else {
			r = (r*10 + v) % 97
		}
	}
	return r == 1
}

// Textual says whether a column holds text a detector can read.
func (c Column) Textual() bool { return c.family() == textual }

package mask

import (
	"fmt"
	"strconv"
	"strings"
)

// Kind is a masking function.
type Kind string

const (
	Keep     Kind = "keep"     // the value as it is: an explicit decision
	Null     Kind = "null"     // NULL
	Fixed    Kind = "fixed"    // one value for every row
	Hash     Kind = "hash"     // a keyed hash, in the column's type
	Email    Kind = "email"    // u<hash>@example.invalid
	Name     Kind = "name"     // a made-up first and last name
	Phone    Kind = "phone"    // a made-up +1 555 number
	UUID     Kind = "uuid"     // a keyed UUID
	Text     Kind = "text"     // letters and digits replaced, length kept
	Date     Kind = "date"     // the date shifted by 1 to N days either way
	Number   Kind = "number"   // the number moved by up to P percent
	SQL      Kind = "sql"      // an expression over production's row
	Truncate Kind = "truncate" // no rows at all (a whole table)
)

// Func is one masking function with its argument.
type Func struct {
	Kind Kind
	// Value is fixed's value and sql's expression.
	Value string
	// Days is date's largest shift; Percent is number's largest change.
	Days    int
	Percent float64
}

// kinds lists the functions, in the order help lists them.
var kinds = []Kind{Keep, Null, Fixed, Hash, Email, Name, Phone, UUID, Text, Date, Number, SQL, Truncate}

// Kinds lists the functions' names.
func Kinds() []string {
	out := make([]string, len(kinds))
	for i, k := range kinds {
		out[i] = string(k)
	}
	return out
}

// Parse reads a function as a rule gives it: "email", "fixed: VALUE",
// "text: keep_length", "date: shift 30" (days), "number: noise 10%",
// "sql: EXPR".
func Parse(spec string) (Func, error) {
	name, arg, _ := strings.Cut(spec, ":")
	name, arg = strings.TrimSpace(name), strings.TrimSpace(arg)
	f := Func{Kind: Kind(name)}
	switch f.Kind {
	case Keep:
		// keep: reviewed keeps a column whose values look personal, on
		// purpose: the proof does not look into it.
		if arg != "" && arg != Reviewed {
			return Func{}, fmt.Errorf("keep takes no argument, or reviewed (keep: reviewed: its values look personal and are kept on purpose; got %q)", arg)
		}
		f.Value = arg
	case Null, Hash, Email, Name, Phone, UUID, Truncate:
		if arg != "" {
			return Func{}, fmt.Errorf("%s takes no argument (got %q)", name, arg)
		}
	case Fixed:
		f.Value = arg
	case SQL:
		if arg == "" {
			return Func{}, fmt.Errorf("sql needs an expression over the row's columns, as in sql: lower(email)")
		}
		f.Value = arg
	case Text:
		if arg != "keep_length" && arg != "" {
			return Func{}, fmt.Errorf("text takes keep_length (got %q)", arg)
		}
	case Date:
		n, err := parseArg(arg, "shift", "")
		if err != nil || n < 1 || n != float64(int(n)) {
			return Func{}, fmt.Errorf("date takes shift and a whole number of days, as in date: shift 30 (got %q)", arg)
		}
		f.Days = int(n)
	case Number:
		p, err := parseArg(arg, "noise", "%")
		if err != nil || p <= 0 || p >= 100 {
			return Func{}, fmt.Errorf("number takes noise and a percentage above 0 and below 100, as in number: noise 10%% (got %q)", arg)
		}
		f.Percent = p
	default:
		return Func{}, fmt.Errorf("unknown masking function %q: use one of %s", name, strings.Join(Kinds(), ", "))
	}
	return f, nil
}

// parseArg reads "word N[unit]", the word optional.
func parseArg(arg, word, unit string) (float64, error) {
	arg = strings.TrimSpace(strings.TrimPrefix(arg, word))
	arg = strings.TrimPrefix(arg, "±")
	arg = strings.TrimSpace(strings.TrimSuffix(arg, unit))
	return strconv.ParseFloat(arg, 64)
}

// Reviewed is keep's argument for a column kept on purpose although its
// values look personal.
const Reviewed = "reviewed"

func (f Func) String() string {
	switch f.Kind {
	case Keep:
		if f.Value != "" {
			return "keep: " + f.Value
		}
	case Fixed, SQL:
		return string(f.Kind) + ": " + f.Value
	case Text:
		return "text: keep_length"
	case Date:
		return fmt.Sprintf("date: shift %d", f.Days)
	case Number:
		return fmt.Sprintf("number: noise %g%%", f.Percent)
	}
	return string(f.Kind)
}

// Keyed says whether the function needs the masking key.
func (f Func) Keyed() bool {
	switch f.Kind {
	case Keep, Null, Fixed, SQL, Truncate:
		return false
	}
	return true
}

// Changes says whether the function always changes a value (so that a
// masked value equal to production's, for the same row, is a defect the
// proof looks for); keep, sql and fixed may leave a value as it was, and
// a made-up name or a number moved by noise may land on the real one.
func (f Func) Changes() bool {
	switch f.Kind {
	case Hash, Email, UUID, Text, Date, Phone:
		return true
	}
	return false
}

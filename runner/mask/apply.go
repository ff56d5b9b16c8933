package mask

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Column is one column of a production table, as its catalog says.
type Column struct {
	Name string
	// Type is the column's type as PostgreSQL writes it
	// ("character varying(40)"); Base the name of the type under any
	// domains ("varchar", "int4", "timestamptz").
	Type, Base string
	MaxLen     int  // a length limit in characters (varchar(n), char(n)); 0: none
	Array      bool // the column holds arrays of Base
	NotNull    bool
	Unique     bool // a unique index or constraint covers this column alone
}

// family is what a function sees of a type.
type family int

const (
	other family = iota
	textual
	integer
	decimal
	uuidType
	byteaType
	dateType
)

func (c Column) family() family {
	if c.Array {
		return other
	}
	switch c.Base {
	case "text", "varchar", "bpchar", "name", "citext":
		return textual
	case "int2", "int4", "int8":
		return integer
	case "numeric", "float4", "float8":
		return decimal
	case "uuid":
		return uuidType
	case "bytea":
		return byteaType
	case "date", "timestamp", "timestamptz":
		return dateType
	}
	return other
}

// accepts says which families each function can produce values of.
var accepts = map[Kind][]family{
	Hash:   {textual, integer, uuidType, byteaType},
	Email:  {textual},
	Name:   {textual},
	Phone:  {textual},
	UUID:   {textual, uuidType},
	Text:   {textual},
	Date:   {dateType},
	Number: {integer, decimal},
}

// check says why f cannot mask c ("" when it can).
func (f Func) check(c Column) string {
	switch f.Kind {
	case Keep, SQL:
		return ""
	case Null:
		if c.NotNull {
			return "null cannot mask a NOT NULL column"
		}
		return ""
	case Fixed:
		if c.Unique {
			return "fixed would give every row of a unique column the same value: use hash"
		}
		if c.MaxLen > 0 && utf8.RuneCountInString(f.Value) > c.MaxLen {
			return fmt.Sprintf("the fixed value is longer than the column's %d characters", c.MaxLen)
		}
		return ""
	case Truncate:
		return "truncate is for a whole table: write the rule as schema.table: truncate"
	}
	ok := false
	for _, fam := range accepts[f.Kind] {
		ok = ok || fam == c.family()
	}
	if !ok {
		return fmt.Sprintf("%s cannot produce a value of type %s", f.Kind, c.Type)
	}
	if need := f.minLen(c); c.family() == textual && c.MaxLen > 0 && c.MaxLen < need {
		return fmt.Sprintf("%s needs at least %d characters and the column has %d", f.Kind, need, c.MaxLen)
	}
	return ""
}

// minLen is the fewest characters f's values take in a textual column.
func (f Func) minLen(c Column) int {
	switch f.Kind {
	case Email:
		return len("u12345678@example.invalid")
	case Phone:
		return len("+1-555-123-4567")
	case UUID:
		return 36
	case Hash:
		if c.Unique {
			return 16 // 64 bits: no two of a few billion rows alike
		}
	}
	return 1
}

// applier masks the values of one column.
type applier struct {
	f    Func
	col  Column
	fam  family
	key  []byte
	salt string
	perm *permutation // hash of an integer column
}

func newApplier(f Func, col Column, key []byte, salt string) *applier {
	a := &applier{f: f, col: col, fam: col.family(), key: key, salt: salt}
	if f.Kind == Hash && a.fam == integer {
		a.perm = newPermutation(key, salt, map[string]int{"int2": 16, "int4": 32, "int8": 64}[col.Base])
	}
	return a
}

// sum is the keyed hash of v: the same for the same value, target and
// key, in every column, so that joins over masked values survive.
func (a *applier) sum(v []byte) []byte {
	m := hmac.New(sha256.New, a.key)
	m.Write([]byte(a.salt))
	m.Write([]byte{0})
	m.Write(v)
	return m.Sum(nil)
}

// apply masks one value (NULL stays NULL, except that null masks all).
func (a *applier) apply(v []byte) (out []byte, null bool) {
	switch a.f.Kind {
	case Keep, SQL:
		return v, false
	case Null:
		return nil, true
	case Fixed:
		return []byte(a.f.Value), false
	}
	var s string
	switch a.f.Kind {
	case Hash:
		s = a.hash(v)
	case Email:
		h := hex.EncodeToString(a.sum(v))
		n := 16
		if a.col.MaxLen > 0 {
			n = min(n, a.col.MaxLen-len("u@example.invalid"))
		}
		s = "u" + h[:n] + "@example.invalid"
	case Name:
		s = a.name(v)
	case Phone:
		h := a.sum(v)
		s = fmt.Sprintf("+1-555-%03d-%04d", binary.BigEndian.Uint16(h)%1000, binary.BigEndian.Uint16(h[2:])%10000)
	case UUID:
		s = uuidOf(a.sum(v))
	case Text:
		s = a.text(v)
	case Date:
		s = a.date(v)
	case Number:
		s = a.number(v)
	}
	return []byte(a.fit(s)), false
}

// fit cuts s to the column's length limit.
func (a *applier) fit(s string) string {
	if a.col.MaxLen <= 0 || a.fam != textual || utf8.RuneCountInString(s) <= a.col.MaxLen {
		return s
	}
	r := []rune(s)
	return string(r[:a.col.MaxLen])
}

func (a *applier) hash(v []byte) string {
	switch a.fam {
	case integer:
		n, err := strconv.ParseInt(string(v), 10, 64)
		if err != nil {
			return string(v)
		}
		return strconv.FormatInt(a.perm.apply(n), 10)
	case uuidType:
		return uuidOf(a.sum(v))
	case byteaType:
		return `\x` + hex.EncodeToString(a.sum(v))
	}
	return hex.EncodeToString(a.sum(v))[:32]
}

func uuidOf(h []byte) string {
	b := append([]byte(nil), h[:16]...)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	x := hex.EncodeToString(b)
	return x[:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:]
}

func (a *applier) name(v []byte) string {
	h := a.sum(v)
	s := firstNames[int(binary.BigEndian.Uint16(h))%len(firstNames)] + " " + lastNames[int(binary.BigEndian.Uint16(h[2:]))%len(lastNames)]
	if a.col.Unique {
		s += " " + hex.EncodeToString(h[4:10])
	}
	return s
}

// text replaces each letter by another letter of the same case and each
// digit by another digit; the rest (spaces, punctuation) stays, and so
// does the length in characters.
func (a *applier) text(v []byte) string {
	stream := a.keystream(v)
	var sb strings.Builder
	for _, r := range string(v) {
		k := int(stream())
		switch {
		case r >= 'a' && r <= 'z':
			sb.WriteRune('a' + (r-'a'+1+rune(k%25))%26)
		case r >= 'A' && r <= 'Z':
			sb.WriteRune('A' + (r-'A'+1+rune(k%25))%26)
		case r >= '0' && r <= '9':
			sb.WriteRune('0' + (r-'0'+1+rune(k%9))%10)
		case unicode.IsLetter(r):
			sb.WriteRune('a' + rune(k%26))
		case unicode.IsDigit(r):
			sb.WriteRune('0' + rune(k%10))
		default:
			sb.WriteRune(r)
		}
	}
	return sb.String()
}

// keystream is an endless run of keyed bytes for v.
func (a *applier) keystream(v []byte) func() byte {
	block, i, n := a.sum(v), 0, uint32(0)
	return func() byte {
		if i == len(block) {
			n++
			var c [4]byte
			binary.BigEndian.PutUint32(c[:], n)
			block, i = a.sum(append(append([]byte(nil), v...), c[:]...)), 0
		}
		i++
		return block[i-1]
	}
}

// date moves the date part of an ISO date or timestamp by 1 to Days days
// either way (never 0), keeping the time and zone; infinity stays.
func (a *applier) date(v []byte) string {
	s := string(v)
	if len(s) < 10 {
		return s
	}
	d, err := time.Parse("2006-01-02", s[:10])
	if err != nil {
		return s
	}
	h := a.sum(v)
	off := 1 + int(binary.BigEndian.Uint32(h)%uint32(a.f.Days))
	if h[4]&1 == 1 {
		off = -off
	}
	return d.AddDate(0, 0, off).Format("2006-01-02") + s[10:]
}

// number moves a number by up to Percent percent either way, keeping an
// integer an integer in its type's range and a numeric's decimal places.
func (a *applier) number(v []byte) string {
	s := string(v)
	h := a.sum(v)
	// δ in [-P%, +P%], in millionths.
	span := int64(a.f.Percent * 10000)
	delta := int64(binary.BigEndian.Uint64(h)%uint64(2*span+1)) - span
	switch a.col.Base {
	case "int2", "int4", "int8":
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return s
		}
		lo, hi := intRange(a.col.Base)
		m := float64(n) * (1 + float64(delta)/1e6)
		return strconv.FormatInt(int64(math.Max(float64(lo), math.Min(float64(hi), math.Round(m)))), 10)
	case "float4", "float8":
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			return s
		}
		return strconv.FormatFloat(f*(1+float64(delta)/1e6), 'g', -1, 64)
	}
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		return s // NaN, Infinity
	}
	places := 0
	if i := strings.IndexByte(s, '.'); i >= 0 {
		places = len(s) - i - 1
	}
	r.Mul(r, big.NewRat(1e6+delta, 1e6))
	return r.FloatString(places)
}

func intRange(base string) (lo, hi int64) {
	switch base {
	case "int2":
		return math.MinInt16, math.MaxInt16
	case "int4":
		return math.MinInt32, math.MaxInt32
	}
	return math.MinInt64, math.MaxInt64
}

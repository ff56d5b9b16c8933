package mask

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
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

// applier masks the values of one column. It is not safe for concurrent
// use: each COPY stream has its own (Rows).
type applier struct {
	f    Func
	col  Column
	fam  family
	key  []byte
	salt string
	perm *permutation // hash of an integer column
	mac  hash.Hash    // HMAC-SHA256 under key, reset for each value
	buf  []byte
	out  []byte // the value apply returns, until its next call
}

func newApplier(f Func, col Column, key []byte, salt string) *applier {
	a := &applier{f: f, col: col, fam: col.family(), key: key, salt: salt, mac: hmac.New(sha256.New, key)}
	if f.Kind == Hash && a.fam == integer {
		a.perm = newPermutation(key, salt, map[string]int{"int2": 16, "int4": 32, "int8": 64}[col.Base])
	}
	return a
}

// sum is the keyed hash of v: the same for the same value, target and
// key, in every column, so that joins over masked values survive.
func (a *applier) sum(v []byte) []byte {
	a.mac.Reset()
	a.mac.Write([]byte(a.salt))
	a.mac.Write([]byte{0})
	a.mac.Write(v)
	a.buf = a.mac.Sum(a.buf[:0])
	return a.buf // until the next sum
}

// apply masks one value (NULL stays NULL, except that null masks all).
func (a *applier) apply(v []byte) (masked []byte, null bool) {
	switch a.f.Kind {
	case Keep, SQL:
		return v, false
	case Null:
		return nil, true
	case Fixed:
		return []byte(a.f.Value), false
	}
	out := a.out[:0]
	switch a.f.Kind {
	case Hash:
		out = a.hash(out, v)
	case Email:
		n := 16
		if a.col.MaxLen > 0 {
			n = min(n, a.col.MaxLen-len("u@example.invalid"))
		}
		out = append(out, 'u')
		out = hex.AppendEncode(out, a.sum(v)[:(n+1)/2])[:1+n]
		out = append(out, "@example.invalid"...)
	case Name:
		out = append(out, a.name(v)...)
	case Phone:
		h := a.sum(v)
		out = fmt.Appendf(out, "+1-555-%03d-%04d", binary.BigEndian.Uint16(h)%1000, binary.BigEndian.Uint16(h[2:])%10000)
	case UUID:
		out = append(out, uuidOf(a.sum(v))...)
	case Text:
		out = a.text(out, v)
	case Date:
		out = append(out, a.date(v)...)
	case Number:
		out = append(out, a.number(v)...)
	}
	a.out = a.fit(out)
	return a.out, false
}

// fit cuts b to the column's length limit, at a character's boundary.
func (a *applier) fit(b []byte) []byte {
	if a.col.MaxLen <= 0 || a.fam != textual || len(b) <= a.col.MaxLen {
		return b
	}
	n, i := 0, 0
	for i < len(b) && n < a.col.MaxLen {
		_, size := utf8.DecodeRune(b[i:])
		i += size
		n++
	}
	return b[:i]
}

func (a *applier) hash(dst, v []byte) []byte {
	switch a.fam {
	case integer:
		n, err := strconv.ParseInt(string(v), 10, 64)
		if err != nil {
			return append(dst, v...)
		}
		return strconv.AppendInt(dst, a.perm.apply(n), 10)
	case uuidType:
		return append(dst, uuidOf(a.sum(v))...)
	case byteaType:
		return hex.AppendEncode(append(dst, `\x`...), a.sum(v))
	}
	return hex.AppendEncode(dst, a.sum(v)[:16])
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
func (a *applier) text(out, v []byte) []byte {
	stream := a.keystream(v)
	for len(v) > 0 {
		r, n := rune(v[0]), 1
		if r >= utf8.RuneSelf {
			r, n = utf8.DecodeRune(v)
		}
		v = v[n:]
		k := stream.next()
		switch {
		case r >= 'a' && r <= 'z':
			out = append(out, byte('a'+(r-'a'+1+rune(k%25))%26))
		case r >= 'A' && r <= 'Z':
			out = append(out, byte('A'+(r-'A'+1+rune(k%25))%26))
		case r >= '0' && r <= '9':
			out = append(out, byte('0'+(r-'0'+1+rune(k%9))%10))
		case unicode.IsLetter(r):
			out = append(out, 'a'+k%26)
		case unicode.IsDigit(r):
			out = append(out, '0'+k%10)
		default:
			out = utf8.AppendRune(out, r)
		}
	}
	return out
}

// keystream is an endless run of keyed bytes for a value: splitmix64
// seeded by the value's keyed hash (one hash a value, however long), so
// that nobody without the key can tell the stream, and the same value gets
// the same stream.
type keystream struct {
	state, word uint64
	left        int
}

func (a *applier) keystream(v []byte) *keystream {
	h := a.sum(v)
	return &keystream{state: binary.BigEndian.Uint64(h) ^ binary.BigEndian.Uint64(h[8:])}
}

func (k *keystream) next() byte {
	if k.left == 0 {
		k.state += 0x9e3779b97f4a7c15
		z := k.state
		z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
		z = (z ^ z>>27) * 0x94d049bb133111eb
		k.word, k.left = z^z>>31, 8
	}
	k.left--
	b := byte(k.word)
	k.word >>= 8
	return b
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
	return d.AddDate(0, 0, a.shift(v)).Format("2006-01-02") + s[10:]
}

// shift is how many days date moves v (its text form): 1 to Days either
// way, never 0.
func (a *applier) shift(v []byte) int {
	h := a.sum(v)
	off := 1 + int(binary.BigEndian.Uint32(h)%uint32(a.f.Days))
	if h[4]&1 == 1 {
		off = -off
	}
	return off
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
	places := 0
	if i := strings.IndexByte(s, '.'); i >= 0 {
		places = len(s) - i - 1
	}
	if out, ok := smallDecimal(s, places, delta); ok {
		return out
	}
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		return s // NaN, Infinity
	}
	r.Mul(r, big.NewRat(1e6+delta, 1e6))
	return r.FloatString(places)
}

// smallDecimal moves a numeric of up to 12 digits by delta millionths in
// integers, rounding half away from zero as FloatString does; ok is false
// for the rest (big numbers, exponents, NaN), which take big.Rat's way.
func smallDecimal(s string, places int, delta int64) (string, bool) {
	digits := strings.Replace(s, ".", "", 1)
	if len(strings.TrimLeft(digits, "+-")) > 12 {
		return "", false
	}
	m, err := strconv.ParseInt(digits, 10, 64)
	if err != nil {
		return "", false
	}
	p := m * (1e6 + delta) // at most 10¹² × 2·10⁶: fits
	q, rem := p/1e6, p%1e6
	if rem >= 5e5 {
		q++
	} else if rem <= -5e5 {
		q--
	}
	neg := q < 0
	if neg {
		q = -q
	}
	out := strconv.FormatInt(q, 10)
	if places > 0 {
		if len(out) <= places {
			out = strings.Repeat("0", places-len(out)+1) + out
		}
		out = out[:len(out)-places] + "." + out[len(out)-places:]
	}
	if neg {
		out = "-" + out
	}
	return out, true
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

package mask

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"time"
)

// PostgreSQL's binary COPY: a header, then per row a 16-bit field count
// and per field a 32-bit length (-1: NULL) and the value in its type's
// binary form, then -1 as the count. Masking there keeps the COPY binary,
// which both servers read and write faster than text.

var copySignature = []byte("PGCOPY\n\xff\r\n\x00")

// Binary says whether every masked column's values can be masked in
// binary COPY (the others need the text format).
func (r *Rows) Binary() bool {
	for _, a := range r.cols {
		if a != nil && !a.binaryOK() {
			return false
		}
	}
	return true
}

// epoch is where PostgreSQL's binary dates and timestamps count from.
var epoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

func (a *applier) binaryOK() bool {
	switch a.f.Kind {
	case Keep, SQL, Null:
		return true
	}
	switch a.fam {
	case textual, integer, uuidType, byteaType:
		return true
	case dateType:
		return a.col.Base == "date" || a.col.Base == "timestamp" || a.col.Base == "timestamptz"
	case decimal:
		return a.col.Base == "float4" || a.col.Base == "float8"
	}
	return false
}

// applyBinary masks one value in its type's binary form, by way of its
// text form, so that a value masks alike in either format; ok false when
// the value is one the function leaves (infinity, a year out of 1-9999).
func (a *applier) applyBinary(v []byte) (out []byte, null bool, err error) {
	if a.f.Kind == Null {
		return nil, true, nil
	}
	text, ok := a.toText(v)
	if !ok {
		return v, false, nil
	}
	if a.f.Kind == Date {
		// The shift the text form gets, added in binary: no parsing back.
		return shiftBinary(a.col.Base, v, a.shift(text)), false, nil
	}
	masked, null := a.apply(text)
	if null {
		return nil, true, nil
	}
	out, err = a.fromText(masked)
	if err != nil {
		return nil, false, fmt.Errorf("%s: %w", a.col.Name, err)
	}
	return out, false, nil
}

func (a *applier) toText(v []byte) ([]byte, bool) {
	switch a.fam {
	case textual:
		return v, true
	case integer:
		switch len(v) {
		case 2:
			return strconv.AppendInt(nil, int64(int16(binary.BigEndian.Uint16(v))), 10), true
		case 4:
			return strconv.AppendInt(nil, int64(int32(binary.BigEndian.Uint32(v))), 10), true
		case 8:
			return strconv.AppendInt(nil, int64(binary.BigEndian.Uint64(v)), 10), true
		}
	case uuidType:
		if len(v) == 16 {
			x := hex.EncodeToString(v)
			return []byte(x[:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:]), true
		}
	case byteaType:
		return hex.AppendEncode([]byte(`\x`), v), true
	case decimal:
		switch len(v) {
		case 4:
			return strconv.AppendFloat(nil, float64(math.Float32frombits(binary.BigEndian.Uint32(v))), 'g', -1, 32), true
		case 8:
			return strconv.AppendFloat(nil, math.Float64frombits(binary.BigEndian.Uint64(v)), 'g', -1, 64), true
		}
	case dateType:
		return timeText(a.col.Base, v)
	}
	return nil, false
}

// timeText is a binary date or timestamp as ISO text; ok is false for
// infinity and years outside 1 to 9999 (left as they are).
func timeText(base string, v []byte) ([]byte, bool) {
	var t time.Time
	switch {
	case base == "date" && len(v) == 4:
		d := int32(binary.BigEndian.Uint32(v))
		if d == math.MaxInt32 || d == math.MinInt32 {
			return nil, false
		}
		t = epoch.AddDate(0, 0, int(d))
	case len(v) == 8:
		us := int64(binary.BigEndian.Uint64(v))
		if us == math.MaxInt64 || us == math.MinInt64 {
			return nil, false
		}
		// Days apart from the rest: a Duration spans only 292 years.
		t = epoch.AddDate(0, 0, int(us/86400e6)).Add(time.Duration(us%86400e6) * time.Microsecond)
	default:
		return nil, false
	}
	if t.Year() < 1 || t.Year() > 9999 {
		return nil, false
	}
	return isoTime(base, t), true
}

// isoTime writes t as PostgreSQL's ISO output does (in UTC): the date; for
// timestamps the time, its microseconds without trailing zeros, and for
// timestamptz +00. By hand: time.Format costs as much as the masking.
func isoTime(base string, t time.Time) []byte {
	y, mo, d := t.Date()
	b := make([]byte, 0, 32)
	b = pad(b, y, 4)
	b = pad(append(b, '-'), int(mo), 2)
	b = pad(append(b, '-'), d, 2)
	if base == "date" {
		return b
	}
	h, mi, sec := t.Clock()
	b = pad(append(b, ' '), h, 2)
	b = pad(append(b, ':'), mi, 2)
	b = pad(append(b, ':'), sec, 2)
	if us := t.Nanosecond() / 1000; us > 0 {
		frac := pad(nil, us, 6)
		for frac[len(frac)-1] == '0' {
			frac = frac[:len(frac)-1]
		}
		b = append(append(b, '.'), frac...)
	}
	if base == "timestamptz" {
		b = append(b, "+00"...)
	}
	return b
}

func pad(b []byte, n, width int) []byte {
	var d [8]byte
	i := len(d)
	for ; n > 0 || i > len(d)-width; n /= 10 {
		i--
		d[i] = byte('0' + n%10)
	}
	return append(b, d[i:]...)
}

func (a *applier) fromText(s []byte) ([]byte, error) {
	switch a.fam {
	case textual:
		return s, nil
	case integer:
		n, err := strconv.ParseInt(string(s), 10, 64)
		if err != nil {
			return nil, err
		}
		switch a.col.Base {
		case "int2":
			return binary.BigEndian.AppendUint16(nil, uint16(n)), nil
		case "int4":
			return binary.BigEndian.AppendUint32(nil, uint32(n)), nil
		}
		return binary.BigEndian.AppendUint64(nil, uint64(n)), nil
	case uuidType:
		b, err := hex.DecodeString(string(bytes.ReplaceAll(s, []byte("-"), nil)))
		if err != nil || len(b) != 16 {
			return nil, fmt.Errorf("not a uuid: %q", s)
		}
		return b, nil
	case byteaType:
		if !bytes.HasPrefix(s, []byte(`\x`)) {
			return nil, fmt.Errorf("not bytea's hex form: %q", s)
		}
		return hex.DecodeString(string(s[2:]))
	case decimal:
		f, err := strconv.ParseFloat(string(s), 64)
		if err != nil {
			return nil, err
		}
		if a.col.Base == "float4" {
			return binary.BigEndian.AppendUint32(nil, math.Float32bits(float32(f))), nil
		}
		return binary.BigEndian.AppendUint64(nil, math.Float64bits(f)), nil
	case dateType:
		return timeBinary(a.col.Base, s)
	}
	return nil, fmt.Errorf("no binary form for %s", a.col.Type)
}

// shiftBinary moves a binary date or timestamp by days (a timestamptz
// by days of 24 hours, as its date in UTC moves).
func shiftBinary(base string, v []byte, days int) []byte {
	if base == "date" {
		return binary.BigEndian.AppendUint32(nil, uint32(int32(binary.BigEndian.Uint32(v))+int32(days)))
	}
	return binary.BigEndian.AppendUint64(nil, uint64(int64(binary.BigEndian.Uint64(v))+int64(days)*86400e6))
}

func timeBinary(base string, s []byte) ([]byte, error) {
	layout := map[string]string{"date": "2006-01-02", "timestamptz": "2006-01-02 15:04:05.999999-07", "timestamp": "2006-01-02 15:04:05.999999"}[base]
	t, err := time.Parse(layout, string(s))
	if err != nil {
		return nil, err
	}
	// In seconds from the Unix epoch: a Duration spans only 292 years.
	secs := t.Unix() - epoch.Unix()
	if base == "date" {
		return binary.BigEndian.AppendUint32(nil, uint32(int32(secs/86400))), nil
	}
	us := secs*1e6 + int64(t.Nanosecond()/1000)
	return binary.BigEndian.AppendUint64(nil, uint64(us)), nil
}

// BinaryWriter masks a binary COPY stream on its way to w: whole rows are
// masked and written; a row split over writes waits for its end.
type BinaryWriter struct {
	w      io.Writer
	rows   *Rows
	buf    []byte
	out    []byte
	header bool // the header has gone by
	ended  bool // the trailer has gone by
}

// NewBinaryWriter masks the binary COPY rows written to it with rows.
func NewBinaryWriter(w io.Writer, rows *Rows) *BinaryWriter { return &BinaryWriter{w: w, rows: rows} }

var errShort = errors.New("short")

func (m *BinaryWriter) Write(p []byte) (int, error) {
	m.buf = append(m.buf, p...)
	m.out = m.out[:0]
	used := 0
	for {
		n, err := m.next(m.buf[used:])
		if errors.Is(err, errShort) {
			break
		}
		if err != nil {
			return 0, err
		}
		used += n
	}
	m.buf = append(m.buf[:0], m.buf[used:]...)
	if len(m.out) > 0 {
		if _, err := m.w.Write(m.out); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// next masks what b starts with (the header, a row or the trailer) into
// m.out and says how many bytes it took; errShort: b ends first.
func (m *BinaryWriter) next(b []byte) (int, error) {
	if !m.header {
		if len(b) < len(copySignature)+8 {
			return 0, errShort
		}
		if !bytes.Equal(b[:len(copySignature)], copySignature) {
			return 0, errors.New("not a binary COPY stream")
		}
		n := len(copySignature) + 8 + int(binary.BigEndian.Uint32(b[len(copySignature)+4:]))
		if len(b) < n {
			return 0, errShort
		}
		m.out = append(m.out, b[:n]...)
		m.header = true
		return n, nil
	}
	if len(b) < 2 || m.ended {
		return 0, errShort
	}
	count := int16(binary.BigEndian.Uint16(b))
	if count == -1 {
		m.out = append(m.out, b[:2]...)
		m.ended = true
		return 2, nil
	}
	if int(count) != m.rows.n {
		return 0, errColumns
	}
	// Find the row's end before changing anything.
	pos := 2
	for i := 0; i < m.rows.n; i++ {
		if len(b) < pos+4 {
			return 0, errShort
		}
		l := int32(binary.BigEndian.Uint32(b[pos:]))
		pos += 4
		if l > 0 {
			if len(b) < pos+int(l) {
				return 0, errShort
			}
			pos += int(l)
		}
	}
	m.out = append(m.out, b[:2]...)
	at := 2
	for i := 0; i < m.rows.n; i++ {
		l := int32(binary.BigEndian.Uint32(b[at:]))
		field := b[at : at+4+max(0, int(l))]
		at += len(field)
		a := m.rows.cols[i]
		if a == nil || l < 0 && a.f.Kind != Null {
			m.out = append(m.out, field...)
			continue
		}
		v, null, err := a.applyBinary(field[4:])
		if err != nil {
			return 0, err
		}
		if null {
			m.out = binary.BigEndian.AppendUint32(m.out, math.MaxUint32)
			continue
		}
		m.out = binary.BigEndian.AppendUint32(m.out, uint32(len(v)))
		m.out = append(m.out, v...)
	}
	return pos, nil
}

// Close reports a stream that ended inside a row or without its trailer.
func (m *BinaryWriter) Close() error {
	if len(m.buf) > 0 || m.header && !m.ended {
		return errors.New("the binary COPY stream ended inside a row")
	}
	return nil
}

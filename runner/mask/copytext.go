package mask

import (
	"bytes"
	"errors"
	"io"
)

// Rows masks the rows of one table in PostgreSQL's COPY text format. It
// is not safe for concurrent use: make one per stream.
type Rows struct {
	cols []*applier // nil where the column is kept as it is
	n    int        // columns in a row
}

// Rows makes p's masker for the target salt and key.
func (p *TablePlan) Rows(key []byte, salt string) *Rows {
	r := &Rows{cols: make([]*applier, len(p.Funcs)), n: len(p.Funcs)}
	for i, f := range p.Funcs {
		if f.Kind != Keep && f.Kind != SQL {
			r.cols[i] = newApplier(f, p.Table.Columns[i], key, salt)
		}
	}
	return r
}

var errColumns = errors.New("a COPY row has another number of columns than the table")

// Line appends to dst the masked form of one row (without its newline).
func (r *Rows) Line(dst, line []byte) ([]byte, error) {
	for i := 0; i < r.n; i++ {
		field := line
		if j := bytes.IndexByte(line, '\t'); j >= 0 {
			field, line = line[:j], line[j+1:]
		} else if i != r.n-1 {
			return dst, errColumns
		} else {
			line = nil
		}
		if i > 0 {
			dst = append(dst, '\t')
		}
		a := r.cols[i]
		if a == nil {
			dst = append(dst, field...)
			continue
		}
		if string(field) == `\N` && a.f.Kind != Null {
			dst = append(dst, field...)
			continue
		}
		out, null := a.apply(unescape(field))
		if null {
			dst = append(dst, `\N`...)
		} else {
			dst = escape(dst, out)
		}
	}
	if line != nil {
		return dst, errColumns
	}
	return dst, nil
}

// Value masks one value of column i as its text form (nil: NULL); what
// the proof asks: what would this production value have become?
func (r *Rows) Value(i int, v []byte) []byte {
	a := r.cols[i]
	if a == nil || v == nil && a.f.Kind != Null {
		return v
	}
	out, null := a.apply(v)
	if null {
		return nil
	}
	return out
}

// unescape decodes one field of COPY's text format.
func unescape(f []byte) []byte {
	if bytes.IndexByte(f, '\\') < 0 {
		return f
	}
	out := make([]byte, 0, len(f))
	for i := 0; i < len(f); i++ {
		c := f[i]
		if c != '\\' || i+1 == len(f) {
			out = append(out, c)
			continue
		}
		i++
		switch c = f[i]; c {
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'v':
			out = append(out, '\v')
		case 'x':
			n, v := 0, byte(0)
			for ; n < 2 && i+1 < len(f) && isHex(f[i+1]); n++ {
				i++
				v = v<<4 | hexVal(f[i])
			}
			if n == 0 {
				out = append(out, 'x')
			} else {
				out = append(out, v)
			}
		case '0', '1', '2', '3', '4', '5', '6', '7':
			v := c - '0'
			for n := 1; n < 3 && i+1 < len(f) && f[i+1] >= '0' && f[i+1] <= '7'; n++ {
				i++
				v = v<<3 | (f[i] - '0')
			}
			out = append(out, v)
		default:
			out = append(out, c)
		}
	}
	return out
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

func hexVal(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}

// escape appends v in COPY's text format.
func escape(dst, v []byte) []byte {
	for _, c := range v {
		switch c {
		case '\\':
			dst = append(dst, '\\', '\\')
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

// Writer masks a COPY text stream on its way to w: whole rows are masked
// and written; a row split over writes waits for its end.
type Writer struct {
	w       io.Writer
	rows    *Rows
	partial []byte
	out     []byte
}

// NewWriter masks the COPY text rows written to it with rows.
func NewWriter(w io.Writer, rows *Rows) *Writer { return &Writer{w: w, rows: rows} }

func (m *Writer) Write(p []byte) (int, error) {
	n := len(p)
	m.out = m.out[:0]
	if len(m.partial) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			m.partial = append(m.partial, p...)
			return n, nil
		}
		m.partial = append(m.partial, p[:i]...)
		var err error
		if m.out, err = m.rows.Line(m.out, m.partial); err != nil {
			return 0, err
		}
		m.out = append(m.out, '\n')
		m.partial, p = m.partial[:0], p[i+1:]
	}
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			m.partial = append(m.partial, p...)
			break
		}
		var err error
		if m.out, err = m.rows.Line(m.out, p[:i]); err != nil {
			return 0, err
		}
		m.out = append(m.out, '\n')
		p = p[i+1:]
	}
	if len(m.out) > 0 {
		if _, err := m.w.Write(m.out); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// Close reports a row left without its end.
func (m *Writer) Close() error {
	if len(m.partial) > 0 {
		return errors.New("the COPY stream ended inside a row")
	}
	return nil
}

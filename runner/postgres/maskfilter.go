package postgres

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/stagebot/stagebot/runner/mask"
)

// maskFilter passes a plain SQL stream to psql in two parts, through
// sqlFilter: the schema (everything before the first COPY data), then,
// once the masking plan is made, the rest, with each COPY block's rows
// masked by its table's plan.
type maskFilter struct {
	sql     *sqlFilter
	br      *bufio.Reader
	masks   map[string]*tableMask // schema.table → its mask, for the data
	pending string                // the COPY line the schema part stopped at
	// settings are the session's SET lines of the schema part, given to
	// the data part's session too (client_encoding, search_path…).
	settings []string
	// largeObjectsKept: masking has a default, so the gate lets large
	// objects through as they are.
	largeObjectsKept  bool
	masked, truncated int
	bypass            bool // tests only: rows pass unmasked, for the proof to catch
}

// schema writes the stream up to its first COPY block.
func (m *maskFilter) schema(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	for {
		line, err := m.br.ReadString('\n')
		if len(line) > 0 {
			start := !m.sql.inStatement
			if start && isCopyHeader(line) {
				m.pending = line
				return flush(bw)
			}
			if start {
				m.noteSetting(line)
			}
			if _, werr := bw.WriteString(m.sql.filter(line)); werr != nil {
				return errBrokenPipe
			}
		}
		if errors.Is(err, io.EOF) {
			return flush(bw)
		}
		if err != nil {
			return fmt.Errorf("the backup is unreadable: %w", err)
		}
	}
}

// noteSetting keeps what the data part's session must say again: SET
// lines, search_path, and pg_dump's \restrict while it is in force (psql
// then refuses meta-commands until \unrestrict; a dump made with -C
// lifts and renews it around its \connect).
func (m *maskFilter) noteSetting(line string) {
	restricted := func(s string) bool { return strings.HasPrefix(s, `\restrict `) }
	switch {
	case strings.HasPrefix(line, "SET "), strings.HasPrefix(line, "SELECT pg_catalog.set_config("):
		m.settings = append(m.settings, line)
	case restricted(line):
		m.settings = append(slices.DeleteFunc(m.settings, restricted), line)
	case strings.HasPrefix(line, `\unrestrict `):
		m.settings = slices.DeleteFunc(m.settings, restricted)
	}
}

// data writes the rest of the stream, masking COPY rows.
func (m *maskFilter) data(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	for _, s := range m.settings {
		bw.WriteString(s)
	}
	var rows *mask.Rows
	drop := false
	var buf []byte
	line, rest := m.pending, error(nil)
	if line == "" {
		line, rest = m.br.ReadString('\n')
	}
	for {
		if len(line) > 0 {
			out, err := m.dataLine(line, &rows, &drop, buf[:0])
			if err != nil {
				return err
			}
			buf = out
			if _, werr := bw.Write(out); werr != nil {
				return errBrokenPipe
			}
		}
		if errors.Is(rest, io.EOF) {
			return flush(bw)
		}
		if rest != nil {
			return fmt.Errorf("the backup is unreadable: %w", rest)
		}
		line, rest = m.br.ReadString('\n')
	}
}

// dataLine is what one line of the data part becomes.
func (m *maskFilter) dataLine(line string, rows **mask.Rows, drop *bool, dst []byte) ([]byte, error) {
	if m.sql.inCopy {
		if !strings.HasSuffix(line, "\n") {
			return dst, errors.New("the backup is incomplete: it ends in the middle of a row")
		}
		if line == "\\.\n" {
			m.sql.inCopy = false
			return append(dst, line...), nil
		}
		switch {
		case *drop:
			return dst, nil
		case *rows == nil:
			return append(dst, line...), nil
		}
		out, err := (*rows).Line(dst, []byte(strings.TrimSuffix(line, "\n")))
		if err != nil {
			return dst, err
		}
		return append(out, '\n'), nil
	}
	if !m.sql.inStatement && isCopyHeader(line) {
		tm, err := m.copyMask(line)
		if err != nil {
			return dst, err
		}
		*rows, *drop = nil, tm.plan.Truncate
		if !tm.plan.Truncate && !m.bypass {
			*rows = tm.plan.Rows(tm.key, tm.salt)
			m.masked++
		} else {
			m.truncated++
		}
	}
	if !m.sql.inStatement && strings.HasPrefix(line, "SELECT pg_catalog.lowrite(") && !m.largeObjectsKept {
		return dst, errors.New("the backup holds large objects, which masking cannot look into: give masking a default (keep) to copy them as they are")
	}
	return append(dst, m.sql.filter(line)...), nil
}

// copyMask is the mask of the table a COPY line loads, whose columns must
// be the plan's, in its order.
func (m *maskFilter) copyMask(line string) (*tableMask, error) {
	schema, table, cols, err := parseCopyHeader(line)
	if err != nil {
		return nil, fmt.Errorf("%w: %s", err, strings.TrimSpace(line))
	}
	tm := m.masks[schema+"."+table]
	if tm == nil {
		return nil, fmt.Errorf("the backup loads %s.%s, which its schema did not create: masking has no plan for it", schema, table)
	}
	want := tm.plan.Table.Columns
	same := len(cols) == len(want)
	for i := 0; same && i < len(cols); i++ {
		same = cols[i] == want[i].Name
	}
	if !same {
		return nil, fmt.Errorf("the backup loads %s.%s with other columns than its schema gave it (%s): masking cannot tell which is which", schema, table, strings.Join(cols, ", "))
	}
	return tm, nil
}

func flush(bw *bufio.Writer) error {
	if bw.Flush() != nil {
		return errBrokenPipe
	}
	return nil
}

func isCopyHeader(line string) bool {
	return strings.HasPrefix(line, "COPY ") && strings.HasSuffix(line, " FROM stdin;\n")
}

// parseCopyHeader reads pg_dump's COPY line: COPY schema.table (a, "B")
// FROM stdin; identifiers quoted where they must be.
func parseCopyHeader(line string) (schema, table string, cols []string, err error) {
	s := strings.TrimSuffix(strings.TrimPrefix(line, "COPY "), " FROM stdin;\n")
	var names []string
	for s != "" && s[0] != ' ' {
		var name string
		if name, s, err = parseIdent(s); err != nil {
			return "", "", nil, err
		}
		names = append(names, name)
		if !strings.HasPrefix(s, ".") {
			break
		}
		s = s[1:]
	}
	if len(names) != 2 {
		return "", "", nil, errors.New("a COPY line stagebot cannot read (no schema.table)")
	}
	s = strings.TrimSpace(s)
	if s == "" {
		return names[0], names[1], nil, nil
	}
	if !strings.HasPrefix(s, "(") || !strings.HasSuffix(s, ")") {
		return "", "", nil, errors.New("a COPY line stagebot cannot read (its column list)")
	}
	s = s[1 : len(s)-1]
	for s != "" {
		var name string
		if name, s, err = parseIdent(strings.TrimLeft(s, " ")); err != nil {
			return "", "", nil, err
		}
		cols = append(cols, name)
		s = strings.TrimPrefix(strings.TrimLeft(s, " "), ",")
	}
	return names[0], names[1], cols, nil
}

// parseIdent reads one identifier, quoted ("a""b") or plain.
func parseIdent(s string) (name, rest string, err error) {
	if strings.HasPrefix(s, `"`) {
		var sb strings.Builder
		for i := 1; i < len(s); i++ {
			if s[i] == '"' {
				if i+1 < len(s) && s[i+1] == '"' {
					sb.WriteByte('"')
					i++
					continue
				}
				return sb.String(), s[i+1:], nil
			}
			sb.WriteByte(s[i])
		}
		return "", "", errors.New("a COPY line with an unclosed quoted name")
	}
	end := strings.IndexAny(s, ".,() ")
	if end < 0 {
		end = len(s)
	}
	if end == 0 {
		return "", "", errors.New("a COPY line stagebot cannot read")
	}
	return s[:end], s[end:], nil
}

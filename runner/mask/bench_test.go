package mask

import (
	"fmt"
	"io"
	"strings"
	"testing"
)

// BenchmarkWriter: the masker's throughput over rows of eight columns, a
// quarter of them masked (an email and a text), against the same rows
// passed through unmasked (every column kept), in bytes of COPY text.
func BenchmarkWriter(b *testing.B) {
	var in strings.Builder
	for i := range 10000 {
		fmt.Fprintf(&in, "%d\tuser%d@example.org\t%d\tSome note about row %d\t2026-01-%02d\t%d.50\tkept text %d\tt\n", i, i, i%97, i, 1+i%28, i, i)
	}
	data := []byte(in.String())
	tb := Table{Schema: "s", Name: "t"}
	for i, base := range []string{"int8", "text", "int4", "text", "date", "numeric", "text", "bool"} {
		tb.Columns = append(tb.Columns, Column{Name: fmt.Sprintf("c%d", i), Base: base, Type: base})
	}
	for _, bb := range []struct {
		name  string
		rules []Rule
	}{
		{"kept", nil},
		{"quarter-masked", []Rule{{"s.t.c1", Func{Kind: Email}}, {"s.t.c3", Func{Kind: Text}}}},
	} {
		b.Run(bb.name, func(b *testing.B) {
			plans, _ := Plan(bb.rules, &Func{Kind: Keep}, []Table{tb})
			rows := plans["s.t"].Rows([]byte("bench key"), "bench")
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				w := NewWriter(io.Discard, rows)
				// Whole rows per write, as COPY sends them.
				for p := data; len(p) > 0; {
					i := strings.IndexByte(string(p[:min(len(p), 200)]), '\n') + 1
					w.Write(p[:i])
					p = p[i:]
				}
			}
		})
	}
}

// BenchmarkFunctions: one value through each function, for where the
// masker's time goes.
func BenchmarkFunctions(b *testing.B) {
	for _, bb := range []struct {
		f  Func
		c  Column
		in string
	}{
		{Func{Kind: Email}, Column{Base: "text"}, "someone.long@example.org"},
		{Func{Kind: Hash}, Column{Base: "text"}, "someone.long@example.org"},
		{Func{Kind: Hash}, Column{Base: "int8"}, "1234567"},
		{Func{Kind: Text}, Column{Base: "bpchar"}, strings.Repeat("x", 84)},
		{Func{Kind: Number, Percent: 5}, Column{Base: "int4"}, "-4711"},
		{Func{Kind: Number, Percent: 5}, Column{Base: "numeric"}, "1234.50"},
		{Func{Kind: Date, Days: 30}, Column{Base: "timestamptz"}, "2026-01-01 12:00:00+00"},
	} {
		b.Run(fmt.Sprintf("%s-%s", bb.f.Kind, bb.c.Base), func(b *testing.B) {
			a := newApplier(bb.f, bb.c, []byte("bench key"), "bench")
			v := []byte(bb.in)
			for b.Loop() {
				a.apply(v)
			}
		})
	}
}

// BenchmarkBinaryRow: one row like a big table's (an id, a text masked
// keeping its length, a timestamptz shifted, a kept text) through the
// binary masker.
func BenchmarkBinaryRow(b *testing.B) {
	tb := Table{Schema: "s", Name: "t", Columns: []Column{{Name: "id", Base: "int8"}, {Name: "subject", Base: "text"}, {Name: "at", Base: "timestamptz"}, {Name: "kind", Base: "text"}}}
	plans, _ := Plan([]Rule{{"s.t.subject", Func{Kind: Text}}, {"s.t.at", Func{Kind: Date, Days: 30}}}, &Func{Kind: Keep}, []Table{tb})
	w := NewBinaryWriter(io.Discard, plans["s.t"].Rows([]byte("bench key"), "bench"))
	hdr := append(append([]byte(nil), copySignature...), 0, 0, 0, 0, 0, 0, 0, 0)
	w.Write(hdr)
	row := []byte{0, 4, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 42, 0, 0, 0, 32}
	row = append(row, "0123456789abcdef0123456789abcdef"...)
	row = append(row, 0, 0, 0, 8, 0, 2, 0x8f, 0x1c, 0x34, 0x6f, 0x20, 0x00, 0, 0, 0, 5)
	row = append(row, "login"...)
	b.SetBytes(int64(len(row)))
	for b.Loop() {
		if _, err := w.Write(row); err != nil {
			b.Fatal(err)
		}
	}
}

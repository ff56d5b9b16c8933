package postgres_test

import (
	"strings"
	"testing"

	"github.com/stagebot/stagebot/internal/pgtest"
)

// Every kind of column type PostgreSQL can hand the streaming copy:
// types with no binary input/output (aclitem, contrib's isn, seg and
// intarray's query_int, a user-defined base type) directly and through
// domains, arrays and composites, and user-defined types inside arrays
// and composites, whose binary form names OIDs the shadow does not share.
// Those tables go in text format, the rest stay binary, and staging ends
// up equal to production.
func TestRefresh_StreamCopiesEveryColumnType(t *testing.T) {
	f := newFixture(t)
	pgtest.Exec(t, f.prod.DSN(f.prodDB),
		`create extension isn`,
		`create extension seg`,
		`create extension intarray`,
		// A base type of our own, with text input and output only.
		`create type plaintext`,
		`create function plaintext_in(cstring) returns plaintext language internal immutable strict as 'textin'`,
		`create function plaintext_out(plaintext) returns cstring language internal immutable strict as 'textout'`,
		`create type plaintext (input = plaintext_in, output = plaintext_out, internallength = variable, storage = extended)`,
		`create type mood as enum ('sad', 'ok', 'happy')`,
		`create type pair as (m mood, n int)`,
		`create domain acl as aclitem`,
		`create domain isbns as isbn13[]`,
		`create table books (id int primary key, isbn isbn13, ean ean13, many isbns)`,
		`insert into books select g, isbn13('978-0-306-40615-7'), ean13('9780306406157'), array[isbn13('978-0-306-40615-7')] from generate_series(1, 300) g`,
		`create table ranges (id int, s seg, q query_int)`,
		`insert into ranges select g, (g || ' .. ' || (g + 5))::seg, ('1&' || g)::query_int from generate_series(1, 300) g`,
		`create table grants (id int, a aclitem, d acl, many aclitem[])`,
		`insert into grants select g, 'postgres=r/postgres', 'postgres=arw/postgres', array['postgres=r/postgres'::aclitem] from generate_series(1, 50) g`,
		`create table notes (id int, body plaintext)`,
		`insert into notes select g, plaintext_in(('note ' || g)::cstring) from generate_series(1, 50) g`,
		`create table moods (id int, m mood, ms mood[], p pair, ps pair[])`,
		`insert into moods select g, 'ok', array['sad', 'happy']::mood[], row('happy', g)::pair, array[row('sad', g)::pair] from generate_series(1, 200) g`,
		`create table plain (id int, tags int[], m mood)`,
		`insert into plain select g, array[g, g + 1], 'sad' from generate_series(1, 200) g`,
		`analyze`,
	)
	prod := fingerprint(t, f.prod.DSN(f.prodDB))
	log, err := run(t, refreshSteps(f.target), nil)
	if err != nil {
		t.Fatalf("%v\n%s", err, log)
	}
	if d := diffPrints(prod, fingerprint(t, f.stg.DSN(f.stgDB))); d != "" {
		t.Fatalf("streamed staging differs from production:\n%s\n%s", d, log)
	}
	for table, types := range map[string][]string{
		"public.books":  {"isbn13", "ean13"},
		"public.ranges": {"seg", "query_int"},
		"public.grants": {"aclitem"},
		"public.notes":  {"plaintext"},
		"public.moods":  {"mood", "pair"},
	} {
		line := lineWith(log, table+" is copied in text format")
		if line == "" {
			t.Errorf("the log does not say %s is copied in text:\n%s", table, log)
			continue
		}
		for _, ty := range types {
			if !strings.Contains(line, ty) {
				t.Errorf("the log does not name %s as why %s is copied in text: %s", ty, table, line)
			}
		}
	}
	for _, table := range []string{"public.plain", "public.users", "public.orders"} {
		if line := lineWith(log, table+" is copied in text format"); line != "" {
			t.Errorf("%s has only types binary COPY carries, but: %s", table, line)
		}
	}
	if !strings.Contains(log, "binary format") {
		t.Errorf("the refresh did not use binary COPY for the rest:\n%s", log)
	}
}

// lineWith returns the first line of log that contains s.
func lineWith(log, s string) string {
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, s) {
			return l
		}
	}
	return ""
}

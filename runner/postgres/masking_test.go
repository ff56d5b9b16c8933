package postgres_test

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stagebot/stagebot/internal/pgtest"
	"github.com/stagebot/stagebot/runner"
	"github.com/stagebot/stagebot/runner/mask"
	"github.com/stagebot/stagebot/runner/postgres"
)

// maskedSQL is a production with people in it: unique emails that another
// table's foreign key refers to, names, phones, birthdays, secrets, money,
// a table keyed by a masked token and an audit table to leave behind.
var maskedSQL = []string{
	`create table users (id bigint primary key, email text not null unique, name text, phone varchar(30), born date,
		secret text, seen timestamptz, kept text)`,
	`create table accounts (login text primary key, user_email text not null references users(email), balance numeric(12,2))`,
	`create table tokens (token text primary key, user_id bigint references users(id))`,
	`create table audit (at timestamptz default now(), what text)`,
	// No primary key: 200 rows told apart by their unmasked user_id, and
	// 100 in pairs that share it.
	`create table logins (user_id bigint, email text)`,
	`insert into users select g, 'person' || g || '@corp-secret.example', 'Real Person ' || g, '+44 20 7946 ' || lpad(g::text, 4, '0'),
		date '1980-01-01' + g, 'hunter' || g || '-pw', timestamptz '2026-01-01 12:00:00+00' + g * interval '1 hour', 'kept-marker-' || g from generate_series(1, 3000) g`,
	`insert into accounts select 'login' || g, 'person' || g || '@corp-secret.example', g * 1.25 from generate_series(1, 3000) g`,
	`insert into tokens select 'tok-secret-' || g, g from generate_series(1, 500) g`,
	`insert into audit (what) select 'person' || g || '@corp-secret.example logged in' from generate_series(1, 100) g`,
	`insert into logins select g, 'login' || g || '@corp-secret.example' from generate_series(1, 200) g
		union all select 1000 + g % 50, 'paired' || g || '@corp-secret.example' from generate_series(1, 100) g`,
	`analyze`,
}

func maskRules(t *testing.T) []mask.Rule {
	t.Helper()
	var rules []mask.Rule
	for pattern, spec := range map[string]string{
		"public.users.id":         "keep",
		"public.users.email":      "email",
		"public.users.name":       "name",
		"public.users.phone":      "phone",
		"public.users.born":       "date: shift 30",
		"public.users.secret":     "hash",
		"public.users.seen":       "date: shift 3",
		"public.users.kept":       "keep",
		"public.accounts.login":   "keep",
		"public.accounts.*_email": "email",
		"public.accounts.balance": "number: noise 10%",
		"public.tokens.token":     "hash",
		"public.tokens.user_id":   "keep",
		"public.audit":            "truncate",
		"public.logins.user_id":   "keep",
		"public.logins.email":     "email",
	} {
		f, err := mask.Parse(spec)
		if err != nil {
			t.Fatal(err)
		}
		rules = append(rules, mask.Rule{Pattern: pattern, Func: f})
	}
	return rules
}

type maskFixture struct {
	prod, stg *pgtest.Server
	target    func(key string) *postgres.Target
}

func newMaskFixture(t *testing.T) *maskFixture {
	prod, _ := pair(t)
	stg := pgtest.New(t) // its own server, so that its files hold only this test's copies
	db := fmt.Sprintf("masked%d", dbSeq.Add(1))
	pgtest.Exec(t, prod.DSN("postgres"), "create database "+db)
	pgtest.Exec(t, prod.DSN(db), maskedSQL...)
	reg := newMemoryValues() // one record of what stagebot made, for every target of the test
	return &maskFixture{prod: prod, stg: stg, target: func(key string) *postgres.Target {
		return &postgres.Target{Name: "people", ProductionDSN: prod.DSN(db), StagingDSN: stg.DSN("people"), KeepPrevious: true, Jobs: 2, Registry: reg,
			Masking: &postgres.Masking{Rules: maskRules(t), Key: []byte(key)}}
	}}
}

// refreshed makes a first masked copy on staging and returns staging's
// fingerprint: what a failed refresh after it must leave as it is.
func (f *maskFixture) refreshed(t *testing.T) map[string]string {
	t.Helper()
	if out, err := run(t, refreshSteps(f.target("k")), nil); err != nil {
		t.Fatalf("first refresh: %v\n%s", err, out)
	}
	return fingerprint(t, f.stg.DSN("people"))
}

// fixtureSecrets are production values of maskedSQL that masking changes
// or leaves behind; fixtureKept is one it keeps.
var fixtureSecrets = []string{"person17@corp-secret.example", "Real Person 17", "+44 20 7946 0017", "hunter17-pw", "tok-secret-17", "logged in", "login17@corp", "paired17@corp"}

const fixtureKept = "kept-marker-17"

// noSecretsOnStaging searches staging's data files and WAL, after a
// checkpoint, for production's values: none may be there, and the kept
// one must be, or the search proves nothing.
func (f *maskFixture) noSecretsOnStaging(t *testing.T) {
	t.Helper()
	pgtest.Exec(t, f.stg.DSN("postgres"), "checkpoint")
	found := filesHolding(t, filepath.Join(f.stg.Dir, "data"), append(fixtureSecrets, fixtureKept)...)
	for _, s := range fixtureSecrets {
		if len(found[s]) > 0 {
			t.Errorf("production's %q is in staging's files: %v", s, found[s])
		}
	}
	if len(found[fixtureKept]) == 0 {
		t.Fatal("the search found not even a kept value in staging's files: it proves nothing")
	}
}

// filesHolding lists the files under dir that contain s.
func filesHolding(t *testing.T, dir string, s ...string) map[string][]string {
	t.Helper()
	found := map[string][]string{}
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return nil
		}
		for _, v := range s {
			if bytes.Contains(data, []byte(v)) {
				found[v] = append(found[v], strings.TrimPrefix(path, dir))
			}
		}
		return nil
	})
	return found
}

// TestMasking_InFlight: a masked refresh writes no production value to
// staging's server (its data files and WAL are searched), keeps unique
// keys unique and foreign keys valid, gives the same values with the same
// key and others once the key is rotated, and says what it proved.
func TestMasking_InFlight(t *testing.T) {
	f := newMaskFixture(t)
	out, err := run(t, refreshSteps(f.target("first key")), nil)
	if err != nil {
		t.Fatalf("masked refresh: %v\n%s", err, out)
	}
	if !strings.Contains(out, "masking: masked 10 columns in 4 tables; 0 production values found in 6,700 sampled rows") {
		t.Errorf("the log does not say what masking proved:\n%s", out)
	}
	stg := f.stg.DSN("people")
	f.noSecretsOnStaging(t)
	// The values are of their kind, unique where they must be, and joins
	// over masked keys still hold.
	for q, want := range map[string]string{
		"select count(*) from users where email like 'u%@example.invalid'":                                                               "3000",
		"select count(distinct email) from users":                                                                                        "3000",
		"select count(*) from accounts a join users u on u.email = a.user_email":                                                         "3000",
		"select count(*) from pg_constraint where contype in ('f', 'u', 'p') and convalidated and connamespace = 'public'::regnamespace": "6",
		"select count(*) from users where phone ~ '^\\+1-555-\\d{3}-\\d{4}$'":                                                            "3000",
		"select count(*) from users where born between date '1980-01-01' - 30 and date '1990-01-01' + 30":                                "3000",
		"select count(*) from users u where u.born = date '1980-01-01' + u.id::int":                                                      "0",
		"select count(*) from users where kept = 'kept-marker-' || id":                                                                   "3000",
		"select count(*) from accounts where balance between login_n(login) * 1.25 * 0.9 and login_n(login) * 1.25 * 1.1":                "3000",
		"select count(*) from audit":                                  "0",
		"select count(*) from tokens where token like 'tok-secret-%'": "0",
	} {
		if strings.Contains(q, "login_n") {
			pgtest.Exec(t, stg, `create or replace function login_n(text) returns int language sql as $$ select substr($1, 6)::int $$`)
		}
		if got := pgtest.Value(t, stg, q); got != want {
			t.Errorf("%s = %s, want %s", q, got, want)
		}
	}
	first := pgtest.Value(t, stg, "select string_agg(email || secret, ',' order by id) from users")
	// The same key: the same values.
	if out, err := run(t, refreshSteps(f.target("first key")), nil); err != nil {
		t.Fatalf("second masked refresh: %v\n%s", err, out)
	}
	if again := pgtest.Value(t, stg, "select string_agg(email || secret, ',' order by id) from users"); again != first {
		t.Error("the same key gave other masked values")
	}
	// A rotated key: others.
	if out, err := run(t, refreshSteps(f.target("rotated key")), nil); err != nil {
		t.Fatalf("refresh with a rotated key: %v\n%s", err, out)
	}
	if rotated := pgtest.Value(t, stg, "select string_agg(email || secret, ',' order by id) from users"); rotated == first {
		t.Error("rotating the key left the masked values as they were")
	}
}

// TestMasking_GateFailsClosed: a column production gained that no rule
// covers, and a rule for a column production dropped, stop the refresh
// before anything is copied, saying which and what to add; staging stays.
func TestMasking_GateFailsClosed(t *testing.T) {
	f := newMaskFixture(t)
	tg := f.target("k")
	before := f.refreshed(t)
	pgtest.Exec(t, tg.ProductionDSN, "alter table users add column ssn text", "alter table tokens drop column user_id")
	out, err := run(t, refreshSteps(f.target("k")), nil)
	if err == nil {
		t.Fatalf("a refresh with an unclassified column succeeded:\n%s", out)
	}
	for _, want := range []string{
		"masking stops the refresh before anything is copied: 2 problems",
		`public.users.ssn: no rule covers this column (text): add "public.users.ssn": hash # looks like an identifier of a person`,
		"public.tokens.user_id: this rule covers no column of production (renamed or dropped?)",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the refusal lacks %q:\n%v", want, err)
		}
	}
	if strings.Contains(out, "copied public.") {
		t.Errorf("rows were copied before the gate refused:\n%s", out)
	}
	if after := fingerprint(t, f.stg.DSN("people")); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Error("staging changed after the refused refresh")
	}
	if n := pgtest.Value(t, f.stg.DSN("postgres"), "select count(*) from pg_database where datname = 'people__stagebot_next'"); n != "0" {
		t.Error("the shadow was left behind")
	}
	// Without its key, a keyed function cannot run: refused, saying why.
	pgtest.Exec(t, tg.ProductionDSN, "alter table users drop column ssn", "alter table tokens add column user_id bigint")
	keyless := f.target("")
	keyless.Masking.KeyEnv = "PEOPLE_MASK_KEY"
	if _, err := run(t, refreshSteps(keyless), nil); err == nil || !strings.Contains(err.Error(), "the masking key: $PEOPLE_MASK_KEY is not set in stagebot's environment") {
		t.Errorf("a masked refresh without its key: %v", err)
	}
	// pg_dump's copy is masked by stagebot, which cannot compute sql:
	// rules: refused, saying so.
	computed := f.target("k")
	for i, r := range computed.Masking.Rules {
		if r.Pattern == "public.users.kept" {
			computed.Masking.Rules[i].Func = mask.Func{Kind: mask.SQL, Value: "upper(kept)"}
		}
	}
	dump := &postgres.Refresh{StepName: "refresh", Target: computed, Method: postgres.MethodDump}
	if _, err := run(t, []runner.Step{dump, &postgres.Swap{StepName: "swap", Target: dump.Target}}, nil); err == nil || !strings.Contains(err.Error(), "masked with sql: rules (public.users.kept)") {
		t.Errorf("a masked refresh by pg_dump with an sql: rule: %v", err)
	}
}

// TestMasking_ProofCatchesABypass: rows that reach the shadow unmasked
// fail the refresh before the swap, and staging stays as it was: from the
// stream, and from pg_dump (compared with production at the dump's
// snapshot).
func TestMasking_ProofCatchesABypass(t *testing.T) {
	f := newMaskFixture(t)
	before := f.refreshed(t)
	// Two tables a batch: the proof's batches end between the masked
	// tables, and each table's rows stay its own.
	defer postgres.SetProofBatch(2)()
	for _, method := range []string{postgres.MethodStream, postgres.MethodDump} {
		tg := f.target("k")
		tg.BypassMasking()
		steps := refreshSteps(tg)
		steps[0].(*postgres.Refresh).Method = method
		out, err := run(t, steps, nil)
		// By the primary key, by the unmasked columns where the key is
		// masked (tokens) or there is none (logins: the 200 rows told
		// apart).
		for _, want := range []string{"masking proof failed: ", "public.users.email (3000)", "public.tokens.token (500)", "public.logins.email (200)"} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("%s: a refresh whose masking was bypassed: %v, want %q\n%s", method, err, want, out)
			}
		}
		if after := fingerprint(t, f.stg.DSN("people")); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Errorf("%s: staging changed after the failed proof", method)
		}
	}
}

// TestMasking_Report: the look at production classifies its columns by
// the rules, flags kept columns whose values look personal, and proposes
// rules, from names and sampled values, for the columns no rule covers.
func TestMasking_Report(t *testing.T) {
	f := newMaskFixture(t)
	tg := f.target("k")
	pgtest.Exec(t, tg.ProductionDSN,
		"alter table users add column contact text, add column card text",
		"update users set contact = 'c' || id || '@mail.example', card = '4111 1111 1111 1111'",
		"update users set kept = id || '@kept.example' where id <= 2000")
	r, err := tg.MaskReport(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if r.Tables != 5 || r.Masked != 10 || r.Kept != 5 || len(r.Truncated) != 1 {
		t.Errorf("report = %+v", r)
	}
	if len(r.Findings) != 1 || r.Findings[0].Column != "public.users.kept" || r.Findings[0].What != "email addresses" {
		t.Errorf("findings = %v, want public.users.kept as email addresses", r.Findings)
	}
	var lines []string
	for _, p := range r.Proposals {
		lines = append(lines, p.YAML())
	}
	got := strings.Join(lines, "\n")
	for _, want := range []string{`"public.users.card": hash # 200 of 200 sampled values look like payment card numbers`, `"public.users.contact": email # 200 of 200 sampled values look like email addresses`} {
		if !strings.Contains(got, want) {
			t.Errorf("proposals lack %s:\n%s", want, got)
		}
	}
	// Without rules: a proposal for every column.
	tg.Masking = nil
	if r, err = tg.MaskReport(context.Background()); err != nil || len(r.Proposals) != 19 || !r.ProposalsComplete {
		t.Errorf("with no masking: %d proposals, %v", len(r.Proposals), err)
	}
}

// TestMasking_EveryTypeAFunctionAccepts: each function, on each type it
// accepts, writes values staging's server takes in that type (COPY would
// fail otherwise), changed, within the column's length, NULLs kept.
// Both formats: binary where every masked column's type has a binary form
// the masker reads (numeric has none: its table goes in text), and text.
func TestMasking_EveryTypeAFunctionAccepts(t *testing.T) {
	prod, _ := pair(t)
	stg := pgtest.New(t)
	for _, format := range []string{"binary", "text"} {
		t.Run(format, func(t *testing.T) { everyType(t, prod, stg, format) })
	}
}

func everyType(t *testing.T, prod, stg *pgtest.Server, format string) {
	db := fmt.Sprintf("types%d", dbSeq.Add(1))
	pgtest.Exec(t, prod.DSN("postgres"), "create database "+db)
	cols := []struct{ name, typ, value, fn string }{
		{"h_text", "text", "'secret text'", "hash"},
		{"h_varchar", "varchar(20)", "'secret varchar'", "hash"},
		{"h_char", "char(18)", "'secret char'", "hash"},
		{"h_name", "name", "'secret name'", "hash"},
		{"h_int2", "int2", "1234", "hash"},
		{"h_int4", "int4", "123456", "hash"},
		{"h_int8", "int8", "1234567890123", "hash"},
		{"h_uuid", "uuid", "'0b1d3c6a-3c41-4d2e-9d65-5a8a4a0f0e11'", "hash"},
		{"h_bytea", "bytea", `'\x0102ff'`, "hash"},
		{"h_domain", "short_text", "'in a domain'", "hash"},
		{"e_text", "text", "'ada@example.org'", "email"},
		{"e_varchar", "varchar(30)", "'ada@example.org'", "email"},
		{"n_text", "text", "'Ada Lovelace'", "name"},
		{"p_varchar", "varchar(20)", "'+44 20 7946 0958'", "phone"},
		{"u_uuid", "uuid", "'0b1d3c6a-3c41-4d2e-9d65-5a8a4a0f0e11'", "uuid"},
		{"u_text", "text", "'an id'", "uuid"},
		{"t_text", "text", "'Flat 4, Baker St — Zoë'", "'text: keep_length'"},
		{"t_char", "char(10)", "'abc'", "'text: keep_length'"},
		{"d_date", "date", "'1990-02-28'", "'date: shift 30'"},
		{"d_ts", "timestamp", "'1990-02-28 13:14:15.5'", "'date: shift 30'"},
		{"d_tstz", "timestamptz", "'1990-02-28 13:14:15.5+02'", "'date: shift 30'"},
		{"m_int2", "int2", "30000", "'number: noise 20%'"},
		{"m_int4", "int4", "-123456", "'number: noise 20%'"},
		{"m_int8", "int8", "9223372036854775000", "'number: noise 20%'"},

		{"m_float4", "float4", "3.25", "'number: noise 20%'"},
		{"m_float8", "float8", "-2.5e10", "'number: noise 20%'"},
		{"z_inet", "inet", "'192.0.2.1'", "null"},
		{"s_text", "text", "'from sql'", "'sql: upper(s_text)'"},
	}
	var defs, values []string
	var rules []mask.Rule
	for _, c := range cols {
		defs = append(defs, c.name+" "+c.typ)
		values = append(values, c.value)
		f, err := mask.Parse(strings.Trim(c.fn, "'"))
		if err != nil {
			t.Fatal(err)
		}
		rules = append(rules, mask.Rule{Pattern: "public.t." + c.name, Func: f})
	}
	rules = append(rules, mask.Rule{Pattern: "public.t.id", Func: mask.Func{Kind: mask.Keep}})
	rules = append(rules, mask.Rule{Pattern: "public.events.at", Func: mask.Func{Kind: mask.Keep}},
		mask.Rule{Pattern: "public.events.note", Func: mask.Func{Kind: mask.Text}},
		mask.Rule{Pattern: "public.money.*", Func: mask.Func{Kind: mask.Number, Percent: 20}},
		mask.Rule{Pattern: "public.money.doc", Func: mask.Func{Kind: mask.Fixed, Value: "{}"}})
	pgtest.Exec(t, prod.DSN(db), "create domain short_text as varchar(24)",
		"create table t (id int primary key, "+strings.Join(defs, ", ")+")",
		"insert into t values (1, "+strings.Join(values, ", ")+")",
		"insert into t (id) values (2)", // every column NULL
		// numeric and jsonb have no binary form the masker reads: their
		// table goes in text.
		"create table money (amount numeric(8,2), none numeric(8,2), doc jsonb)", `insert into money values (1234.56, null, '{"a": 1}')`,
		// Keyed by a time: the proof finds its rows in the shadow although
		// staging's sessions write times in another zone.
		"create table events (at timestamptz primary key, note text)",
		"insert into events select timestamptz '2026-03-29 00:30:00+00' + g * interval '1 hour', 'event ' || g from generate_series(1, 3) g")
	pgtest.Exec(t, stg.DSN("postgres"), "alter role postgres set timezone = 'Asia/Tokyo'", "alter role postgres set datestyle = 'German'")
	// A production whose sessions write dates and times otherwise than ISO
	// in UTC: masking must read them all the same (it would leave what it
	// cannot read as it is).
	pgtest.Exec(t, prod.DSN("postgres"), "alter database "+db+" set datestyle = 'SQL, DMY'", "alter database "+db+" set timezone = 'America/New_York'",
		"alter database "+db+" set bytea_output = 'escape'", "alter database "+db+" set extra_float_digits = -3")
	tg := &postgres.Target{Name: "types", ProductionDSN: prod.DSN(db), StagingDSN: stg.DSN("types"), Adopt: true, Masking: &postgres.Masking{Rules: rules, Key: []byte("a key for the types test")}}
	if format == "text" {
		tg.MaskInText()
	}
	out, err := run(t, refreshSteps(tg), nil)
	if err != nil {
		t.Fatalf("masked refresh: %v\n%s", err, out)
	}
	wantFormat := map[string]string{"binary": "; 3 tables masked on the way (1 of them in text format)", "text": "; 3 tables masked on the way (3 of them in text format)"}[format]
	for _, want := range []string{wantFormat, "in 3 tables; 0 production values found in 5 sampled rows"} {
		if !strings.Contains(out, want) {
			t.Errorf("the log does not say %q:\n%s", want, out)
		}
	}
	if got := pgtest.Value(t, stg.DSN("types"), "select amount::text || ' ' || coalesce(none::text, 'NULL') || ' ' || doc::text from money"); strings.HasPrefix(got, "1234.56 ") || !strings.HasSuffix(got, " NULL {}") {
		t.Errorf("money: %s", got)
	}
	for _, c := range cols {
		same := pgtest.Value(t, stg.DSN("types"), fmt.Sprintf("select (%s)::%s::text = %s::text from t where id = 1", c.value, c.typ, c.name))
		nulls := pgtest.Value(t, stg.DSN("types"), fmt.Sprintf("select count(*) from t where id = 2 and %s is null", c.name))
		switch {
		case c.fn == "null":
			if got := pgtest.Value(t, stg.DSN("types"), "select count(*) from t where "+c.name+" is null"); got != "2" {
				t.Errorf("%s (%s, null): %s NULL rows, want 2", c.name, c.typ, got)
			}
		case strings.HasPrefix(c.fn, "'sql"):
			if got := pgtest.Value(t, stg.DSN("types"), "select s_text from t where id = 1"); got != "FROM SQL" {
				t.Errorf("sql rule: %q", got)
			}
		case same != "false":
			t.Errorf("%s (%s, %s): the value is as in production (%s)", c.name, c.typ, c.fn, pgtest.Value(t, stg.DSN("types"), "select "+c.name+"::text from t where id = 1"))
		}
		if nulls != "1" {
			t.Errorf("%s (%s, %s): NULL did not stay NULL", c.name, c.typ, c.fn)
		}
	}
}

// TestMasking_ProofNamesWhatItCannotCompare: a masked table with nothing
// unmasked to tell its rows apart (every column masked, or unmasked
// columns every row shares) is named in the proof's line as not
// compared, never counted as proved.
func TestMasking_ProofNamesWhatItCannotCompare(t *testing.T) {
	f := newMaskFixture(t)
	tg := f.target("k")
	pgtest.Exec(t, tg.ProductionDSN,
		"create table only_masked (email text)",
		"insert into only_masked select 'om' || g || '@corp-secret.example' from generate_series(1, 50) g",
		"create table shared (kind text, email text)",
		"insert into shared select 'same', 'sh' || g || '@corp-secret.example' from generate_series(1, 50) g",
		"analyze")
	for pattern, spec := range map[string]string{"public.only_masked.email": "email", "public.shared.kind": "keep", "public.shared.email": "email"} {
		fn, err := mask.Parse(spec)
		if err != nil {
			t.Fatal(err)
		}
		tg.Masking.Rules = append(tg.Masking.Rules, mask.Rule{Pattern: pattern, Func: fn})
	}
	out, err := run(t, refreshSteps(tg), nil)
	if err != nil {
		t.Fatalf("masked refresh: %v\n%s", err, out)
	}
	if !strings.Contains(out, "0 production values found in 6,700 sampled rows (not compared, as no row is told apart by an unmasked primary key or by its unmasked columns: public.only_masked.email, public.shared.email)") {
		t.Errorf("the proof's line does not name the tables it could not compare:\n%s", out)
	}
}

// TestMasking_ProofFailsOnAKeptColumnThatLooksPersonal: a kept column
// whose values came to look personal (emails in it since the rule was
// written) fails the proof, naming it, and staging stays as it was;
// keep: reviewed keeps it on purpose.
func TestMasking_ProofFailsOnAKeptColumnThatLooksPersonal(t *testing.T) {
	f := newMaskFixture(t)
	before := f.refreshed(t)
	tg := f.target("k")
	pgtest.Exec(t, tg.ProductionDSN, "update users set kept = 'someone' || id || '@mail.example'")
	out, err := run(t, refreshSteps(tg), nil)
	if err == nil || !strings.Contains(err.Error(), "kept columns hold values that look personal (public.users.kept: ") || !strings.Contains(err.Error(), "look like email addresses") {
		t.Fatalf("a kept column of emails: %v\n%s", err, out)
	}
	if after := fingerprint(t, f.stg.DSN("people")); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Error("staging changed after the failed proof")
	}
	for i, r := range tg.Masking.Rules {
		if r.Pattern == "public.users.kept" {
			tg.Masking.Rules[i].Func = mask.Func{Kind: mask.Keep, Value: mask.Reviewed}
		}
	}
	if out, err := run(t, refreshSteps(tg), nil); err != nil {
		t.Fatalf("with keep: reviewed: %v\n%s", err, out)
	}
}

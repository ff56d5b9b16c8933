package mask

import (
	"fmt"
	"path"
	"regexp"
	"sort"
	"strings"
)

// Rule says which function masks the columns its pattern matches:
// schema.table.column, each part a glob ("public.*.email"), or
// schema.table for a table's rule (truncate).
type Rule struct {
	Pattern string
	Func    Func
}

// Table is one production table whose rows are copied.
type Table struct {
	Schema, Name string
	Columns      []Column
}

func (t Table) qualified() string { return t.Schema + "." + t.Name }

// TablePlan is what becomes of one table's rows.
type TablePlan struct {
	Table    Table
	Truncate bool   // no rows are copied
	Funcs    []Func // one per column of Table, Keep where nothing changes
}

// Masked says whether any column's values are changed in the bot (not
// kept, and not computed by production's server in a sql rule).
func (p *TablePlan) Masked() bool {
	for _, f := range p.Funcs {
		if f.Kind != Keep && f.Kind != SQL {
			return true
		}
	}
	return false
}

// Problem is one reason the gate stops a refresh, with what to do.
type Problem struct {
	Where string // schema.table.column, or the rule's pattern
	What  string
}

func (p Problem) String() string { return p.Where + ": " + p.What }

// Plan checks rules against production's tables and says what becomes of
// each table (by schema.table). It fails closed: every column must be
// covered by a rule (or Default), every rule must cover something, and
// every function must be able to produce its columns' type; otherwise
// the problems say which and what to add, and nothing is to be copied.
func Plan(rules []Rule, def *Func, tables []Table) (map[string]*TablePlan, []Problem) {
	used := make([]bool, len(rules))
	var problems []Problem
	out := map[string]*TablePlan{}
	for _, t := range tables {
		p := &TablePlan{Table: t, Funcs: make([]Func, len(t.Columns))}
		out[t.qualified()] = p
		if i, ok, amb := match(rules, used, t.Schema, t.Name, ""); ok {
			problems = append(problems, amb...)
			if rules[i].Func.Kind != Truncate {
				problems = append(problems, Problem{rules[i].Pattern, "a rule for a whole table may only be truncate; give columns their functions as schema.table.column"})
			}
			p.Truncate = true
			for j := range p.Funcs {
				p.Funcs[j] = Func{Kind: Keep}
			}
			continue
		}
		for j, c := range t.Columns {
			where := t.qualified() + "." + c.Name
			var f Func
			switch i, ok, amb := match(rules, used, t.Schema, t.Name, c.Name); {
			case ok:
				problems = append(problems, amb...)
				f = rules[i].Func
			case def != nil:
				f = *def
			default:
				problems = append(problems, Problem{where, fmt.Sprintf("no rule covers this column (%s): add %s", c.Type, Suggest(c).yaml(where))})
				continue
			}
			if why := f.check(c); why != "" {
				problems = append(problems, Problem{where, why})
			}
			p.Funcs[j] = f
		}
	}
	for i, r := range rules {
		if !used[i] {
			problems = append(problems, Problem{r.Pattern, "this rule covers no column of production (renamed or dropped?): correct or remove it"})
		}
	}
	return out, problems
}

// match finds the rule for schema.table.column (column "" for the table
// itself): the most specific one (the most parts without wildcards, then
// the longest pattern). Two rules as specific as each other that say
// different things are a problem. Every rule that matches is marked used.
func match(rules []Rule, used []bool, schema, table, column string) (best int, ok bool, amb []Problem) {
	name := []string{schema, table}
	if column != "" {
		name = append(name, column)
	}
	best, bestScore := -1, [2]int{}
	for i, r := range rules {
		parts := strings.Split(r.Pattern, ".")
		if len(parts) != len(name) {
			continue
		}
		score, matched := [2]int{0, len(r.Pattern)}, true
		for k, part := range parts {
			m, err := path.Match(part, name[k])
			matched = matched && err == nil && m
			if !strings.ContainsAny(part, "*?[") {
				score[0]++
			}
		}
		if matched {
			used[i] = true
		}
		switch {
		case !matched:
		case best < 0 || score[0] > bestScore[0] || score[0] == bestScore[0] && score[1] > bestScore[1]:
			best, bestScore, amb = i, score, nil
		case score == bestScore && rules[i].Func != rules[best].Func:
			amb = append(amb, Problem{strings.Join(name, "."), fmt.Sprintf("rules %q and %q match it alike and disagree: make one more specific", rules[best].Pattern, r.Pattern)})
		}
	}
	return best, best >= 0, amb
}

// Suggestion is a rule the catalog (or the values) suggest for a column.
type Suggestion struct {
	Column string // schema.table.column, when it names one
	Func   Func
	Why    string // what suggested it; "" for keep
}

// yaml is the rule as a config line, with why in a comment.
func (s Suggestion) yaml(where string) string {
	v := s.Func.String()
	if strings.Contains(v, ": ") {
		v = "'" + strings.ReplaceAll(v, "'", "''") + "'"
	}
	out := fmt.Sprintf("%q: %s", where, v)
	if s.Why != "" {
		out += " # " + s.Why
	}
	return out
}

// YAML is the suggestion as a line of masking.rules.
func (s Suggestion) YAML() string { return s.yaml(s.Column) }

// sensitive names, by what they suggest.
var sensitive = []struct {
	re  *regexp.Regexp
	fn  Func
	why string
}{
	{regexp.MustCompile(`e_?mail`), Func{Kind: Email}, "an email address"},
	{regexp.MustCompile(`phone|mobile|^tel|fax`), Func{Kind: Phone}, "a phone number"},
	{regexp.MustCompile(`pass(word|wd)?(_?hash)?$|secret|token|api_?key|salt|otp|private`), Func{Kind: Fixed, Value: "masked"}, "a secret"},
	{regexp.MustCompile(`ssn|iban|card|account_?n|passport|tax_?id|national`), Func{Kind: Hash}, "an identifier of a person"},
	{regexp.MustCompile(`(first|last|full|sur|given|family|display|user)_?name$|^name$|nick|irc`), Func{Kind: Name}, "a person's name"},
	{regexp.MustCompile(`birth|dob`), Func{Kind: Date, Days: 30}, "a date of birth"},
	{regexp.MustCompile(`address|street|city|zip|postcode|postal|ssh_?key|gpg|bio`), Func{Kind: Text}, "a person's details"},
	{regexp.MustCompile(`(^|_)ip(_|$)|ip_?addr`), Func{Kind: Null}, "an IP address"},
}

// Suggest proposes a function for a column from its name and type: one
// that suits a sensitive-looking name and that the type accepts, else
// keep (a decision left to whoever adds the rule).
func Suggest(c Column) Suggestion {
	name := strings.ToLower(c.Name)
	for _, s := range sensitive {
		if !s.re.MatchString(name) {
			continue
		}
		f := s.fn
		if f.check(c) != "" {
			if f = (Func{Kind: Hash}); f.check(c) != "" {
				if f = (Func{Kind: Null}); f.check(c) != "" {
					continue
				}
			}
		}
		return Suggestion{Func: f, Why: "looks like " + s.why}
	}
	return Suggestion{Func: Func{Kind: Keep}}
}

// Suggestions are the rules the catalog and the sampled values (found,
// by schema.table.column) suggest for tables' columns, sensitive-looking
// ones first: a starting config. only, when set, says which columns to
// give a rule (the others have one).
func Suggestions(tables []Table, found map[string]Finding, only func(column string) bool) []Suggestion {
	var flagged, rest []Suggestion
	for _, t := range tables {
		for _, c := range t.Columns {
			where := t.qualified() + "." + c.Name
			if only != nil && !only(where) {
				continue
			}
			s := Suggest(c)
			if f, ok := found[where]; ok && f.Propose.check(c) == "" {
				s = Suggestion{Func: f.Propose, Why: fmt.Sprintf("%d of %d sampled values look like %s", f.Of, f.In, f.What)}
			}
			s.Column = where
			if s.Why != "" {
				flagged = append(flagged, s)
			} else {
				rest = append(rest, s)
			}
		}
	}
	sort.Slice(flagged, func(i, j int) bool { return flagged[i].Column < flagged[j].Column })
	return append(flagged, rest...)
}

// Report is what a look at production says of a target's masking: how
// its columns are classified, the gate's problems, kept columns whose
// values look personal, and rules for the columns no rule covers.
type Report struct {
	Tables, Columns   int
	Masked, Kept      int // columns, by their rules
	Truncated         []string
	Problems          []Problem
	Findings          []Finding    // kept columns whose sampled values look personal
	Proposals         []Suggestion // rules for the columns no rule covers
	ProposalsComplete bool         // Proposals covers every column (no rules yet)
}

// NewReport classifies tables by rules (and def) and proposes rules from
// what found says of the sampled values.
func NewReport(rules []Rule, def *Func, tables []Table, found map[string]Finding) Report {
	plans, problems := Plan(rules, def, tables)
	r := Report{Tables: len(tables), Problems: problems}
	uncovered := map[string]bool{}
	for _, p := range problems {
		if strings.HasPrefix(p.What, "no rule covers") {
			uncovered[p.Where] = true
		}
	}
	for _, t := range tables {
		p := plans[t.qualified()]
		r.Columns += len(t.Columns)
		if p.Truncate {
			r.Truncated = append(r.Truncated, t.qualified())
			continue
		}
		for i, c := range t.Columns {
			where := t.qualified() + "." + c.Name
			switch {
			case uncovered[where]:
			case p.Funcs[i].Kind == Keep:
				r.Kept++
				// keep: reviewed is kept on purpose, looks aside.
				if f, ok := found[where]; ok && p.Funcs[i].Value != Reviewed {
					r.Findings = append(r.Findings, f)
				}
			default:
				r.Masked++
			}
		}
	}
	r.Proposals = Suggestions(tables, found, func(c string) bool { return uncovered[c] })
	r.ProposalsComplete = len(rules) == 0 && def == nil
	return r
}

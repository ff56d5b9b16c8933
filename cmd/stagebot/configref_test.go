package main

import (
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// updating reports -update, which bottest defines for the golden files and
// which rewrites docs/configuration.md too.
func updating() bool {
	f := flag.Lookup("update")
	return f != nil && f.Value.String() == "true"
}

func init() {
	if flag.Lookup("update") == nil {
		flag.Bool("update", false, "rewrite docs/configuration.md from the config types")
	}
}

// referencePath is the generated reference, from this package's folder.
const referencePath = "../../docs/configuration.md"

// TestConfigReference_IsGeneratedAndComplete: docs/configuration.md is what
// the config types and their doc comments say, every field has a
// description, and every default the reference gives is the one the
// config loader applies.
func TestConfigReference_IsGeneratedAndComplete(t *testing.T) {
	ref := newReference(t)
	got := ref.render()
	if len(ref.undocumented) > 0 {
		t.Errorf("fields with no doc comment (write one above the field in cmd/stagebot; it becomes the field's line in docs/configuration.md):\n  %s", strings.Join(ref.undocumented, "\n  "))
	}
	for _, p := range ref.wrongDefault {
		t.Error(p)
	}
	if updating() {
		if err := os.WriteFile(referencePath, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(referencePath)
	if err != nil || string(want) != got {
		t.Errorf("docs/configuration.md is not what the config types say: run go test ./cmd/stagebot -run TestConfigReference -update and commit it")
	}
}

// TestConfigReference_FindsAnUndocumentedField: the check above can fail.
func TestConfigReference_FindsAnUndocumentedField(t *testing.T) {
	ref := newReference(t)
	delete(ref.docs["HoldConfig"], "Max")
	ref.render()
	if !strings.Contains(strings.Join(ref.undocumented, "\n"), "defaults.hold.max") {
		t.Errorf("a field without a comment was not reported: %v", ref.undocumented)
	}
	ref = newReference(t)
	ref.docs["HoldConfig"]["Max"] = "The longest hold. Default: `9d`."
	ref.render()
	if !strings.Contains(strings.Join(ref.wrongDefault, "\n"), "defaults.hold.max") {
		t.Errorf("a wrong default was not reported: %v", ref.wrongDefault)
	}
}

// reference renders the config types as Markdown.
type reference struct {
	docs                       map[string]map[string]string // type → Go field ("" the type) → doc
	defaults                   reflect.Value                // a minimal config after loading
	sections                   []section
	seen                       map[reflect.Type]string // struct type → the path it is described at
	values                     map[string]string       // path → its loaded default, as written
	undocumented, wrongDefault []string
}

type section struct {
	path string
	doc  string
	rows []row
}

type row struct{ field, kind, def, doc string }

// minimalConfig is the smallest config with every section that has
// defaults: its loaded values are checked against the documented ones.
const minimalConfig = `
targets:
  t:
    database: {production: "postgres://prod/app", staging: "postgres://stg/app"}
    pipelines:
      default:
        steps: [{pg_refresh: {}}]
`

func newReference(t *testing.T) *reference {
	t.Helper()
	c, err := ParseConfig([]byte(minimalConfig), "minimal.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return &reference{docs: docComments(t), defaults: reflect.ValueOf(c).Elem(), seen: map[reflect.Type]string{}, values: map[string]string{}}
}

// docComments reads the doc comments of this package's types and fields.
func docComments(t *testing.T) map[string]map[string]string {
	t.Helper()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]string{}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			if g, ok := d.(*ast.GenDecl); ok && g.Tok == token.TYPE {
				for _, s := range g.Specs {
					ts := s.(*ast.TypeSpec)
					out[ts.Name.Name] = typeDocs(g, ts)
				}
			}
		}
	}
	return out
}

// typeDocs is one type's doc ("") and its fields' docs.
func typeDocs(g *ast.GenDecl, ts *ast.TypeSpec) map[string]string {
	m := map[string]string{}
	if ts.Doc != nil {
		m[""] = ts.Doc.Text()
	} else if g.Doc != nil && len(g.Specs) == 1 {
		m[""] = g.Doc.Text()
	}
	st, ok := ts.Type.(*ast.StructType)
	if !ok {
		return m
	}
	for _, f := range st.Fields.List {
		doc := f.Doc
		if doc == nil {
			doc = f.Comment
		}
		for _, n := range f.Names {
			if doc != nil {
				m[n.Name] = doc.Text()
			}
		}
	}
	return m
}

// nodeTypes are the fields kept as yaml.Node, by what they decode into
// (nil: they take an empty map).
var nodeTypes = map[string]reflect.Type{
	"pg_refresh": reflect.TypeOf(refreshConfig{}),
	"pg_swap":    nil,
	"pg_drop":    nil,
}

// mapKeys name the keys of maps of sections in their paths.
var mapKeys = map[string]string{"targets": "<name>", "pipelines": "<pipeline>", "groups": "<group>"}

func (r *reference) render() string {
	r.describe("", reflect.TypeOf(Config{}), r.defaults, "")
	var b strings.Builder
	b.WriteString(referenceHead)
	for _, s := range r.sections {
		title := "Top level"
		if s.path != "" {
			title = "`" + s.path + "`"
		}
		fmt.Fprintf(&b, "\n## %s\n\n", title)
		if s.doc != "" {
			fmt.Fprintf(&b, "%s\n\n", markdown(s.doc))
		}
		b.WriteString("| Field | Type | Default | Meaning |\n|---|---|---|---|\n")
		for _, w := range s.rows {
			fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", w.field, w.kind, markdown(w.def), markdown(w.doc))
		}
	}
	return b.String()
}

const referenceHead = `# Configuration reference

Every setting of stagebot's config file, generated from the config types in
` + "`cmd/stagebot`" + ` and their doc comments: a test fails when a field has no
description, when a default given here is not the one the bot applies, or
when this file is stale (` + "`go test ./cmd/stagebot -run TestConfigReference -update`" + `
rewrites it). [config.example.yaml](../config.example.yaml) shows the
settings in use, and [examples/](../examples) whole procedures.

Values may read the environment with ` + "`${VAR}`" + ` or ` + "`${VAR:-default}`" + `.
Durations are written like ` + "`90s`, `30m`, `2h`, `1d` or `1w`" + `; sizes like
` + "`40GB`" + ` or ` + "`512MiB`" + ` (units of 1024). A field left out takes its default;
"—" means none.
`

// describe adds the section of struct type t at path, and those below it;
// doc, the description of the field that leads to it, opens it.
func (r *reference) describe(path string, t reflect.Type, def reflect.Value, doc string) {
	r.seen[t] = path
	i := len(r.sections)
	r.sections = append(r.sections, section{path: path, doc: doc})
	for j := range t.NumField() {
		f := t.Field(j)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		full := join(path, name)
		doc := r.fieldDoc(t, f, name, full)
		text, documented, _ := strings.Cut(doc, "Default: ")
		documented = strings.TrimSuffix(strings.TrimSpace(documented), ".")
		r.checkDefault(full, documented, fieldValue(def, j))
		kind := r.kind(full, name, f.Type, fieldValue(def, j), strings.TrimSpace(text))
		if documented == "" {
			documented = "—"
		}
		r.sections[i].rows = append(r.sections[i].rows, row{field: full, kind: kind, def: documented, doc: strings.TrimSpace(text)})
	}
}

// fieldDoc is a field's doc comment, with its Go name turned into what
// the file says.
func (r *reference) fieldDoc(t reflect.Type, f reflect.StructField, name, full string) string {
	doc := oneLine(r.docs[t.Name()][f.Name])
	if doc == "" {
		r.undocumented = append(r.undocumented, full)
		return ""
	}
	for _, verb := range []string{" is ", " are "} {
		if rest, ok := strings.CutPrefix(doc, f.Name+verb); ok {
			return strings.ToUpper(rest[:1]) + rest[1:]
		}
	}
	if rest, ok := strings.CutPrefix(doc, f.Name); ok {
		return "`" + name + "`" + rest
	}
	return doc
}

// kind names a field's type, describing the sections it leads to.
func (r *reference) kind(path, name string, t reflect.Type, def reflect.Value, doc string) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
		def = deref(def)
	}
	if t == reflect.TypeOf(yaml.Node{}) {
		nt, ok := nodeTypes[name]
		if !ok {
			panic("a yaml.Node field the reference does not know: " + path)
		}
		if nt == nil {
			return "`{}`"
		}
		return r.sectionKind(path, nt, reflect.Value{}, "map", doc)
	}
	if label, ok := leafKinds[t]; ok {
		return label
	}
	switch t.Kind() {
	case reflect.Struct:
		return r.sectionKind(path, t, def, "section", doc)
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Struct {
			return r.sectionKind(path+"[]", t.Elem(), reflect.Value{}, "list", doc)
		}
		return "list of " + plural(r.kind(path, name, t.Elem(), reflect.Value{}, ""))
	case reflect.Map:
		e := t.Elem()
		for e.Kind() == reflect.Pointer {
			e = e.Elem()
		}
		if e.Kind() == reflect.Struct {
			key, ok := mapKeys[name]
			if !ok {
				panic("a map of sections with no key name in mapKeys: " + path)
			}
			return r.sectionKind(path+"."+key, e, mapValue(def), "map of `"+key+"` to", doc)
		}
		return "map of names to " + plural(r.kind(path, name, e, reflect.Value{}, ""))
	}
	return leafKinds[reflect.TypeOf("")]
}

// sectionKind describes the struct t at path once, and points to it.
func (r *reference) sectionKind(path string, t reflect.Type, def reflect.Value, how, doc string) string {
	if at, ok := r.seen[t]; ok {
		return fmt.Sprintf("%s: as [`%s`](#%s)", how, at, anchor(at))
	}
	r.describe(path, t, def, doc)
	return fmt.Sprintf("%s: see [`%s`](#%s)", how, path, anchor(path))
}

// anchor is the id GitHub gives the heading of the section at path:
// lower case, punctuation but - and _ dropped.
func anchor(path string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
			return r
		case r >= 'A' && r <= 'Z':
			return r + 'a' - 'A'
		}
		return -1
	}, path)
}

var leafKinds = map[reflect.Type]string{
	reflect.TypeOf(""):           "text",
	reflect.TypeOf(false):        "`true` or `false`",
	reflect.TypeOf(0):            "number",
	reflect.TypeOf(Duration(0)):  "duration",
	reflect.TypeOf(Size(0)):      "size",
	reflect.TypeOf(KeepMode("")): "`true`, `false` or `space_permitting`",
	reflect.TypeOf(MaskSpec("")): "masking function",
	reflect.TypeOf(ExecConfig{}): "command: text (run by `/bin/sh -c`) or a list (argv)",
}

func plural(kind string) string {
	switch kind {
	case "text":
		return "texts"
	case "duration":
		return "durations"
	case "number":
		return "numbers"
	case "masking function":
		return "masking functions"
	}
	return kind
}

// minimalSets are the fields minimalConfig sets itself: their values are
// not defaults.
var minimalSets = map[string]bool{
	"targets.<name>.database.production": true,
	"targets.<name>.database.staging":    true,
}

// checkDefault compares a documented default with the loaded minimal
// config's value, where the loader set one. A default may name another
// field ("Default: `+"`defaults.notice`"+`."): its value is then that field's.
func (r *reference) checkDefault(path, documented string, v reflect.Value) {
	v = deref(v)
	if !v.IsValid() || v.IsZero() || minimalSets[path] {
		return
	}
	switch v.Kind() {
	case reflect.Struct, reflect.Map:
		return
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Struct {
			return
		}
	}
	got := "`" + formatDefault(v) + "`"
	r.values[path] = got
	if other, ok := r.values[strings.Trim(documented, "`")]; ok && other == got {
		return
	}
	if documented != got {
		r.wrongDefault = append(r.wrongDefault, fmt.Sprintf("%s: the loader's default is %s; its doc comment says Default: %s", path, got, documented))
	}
}

func formatDefault(v reflect.Value) string {
	switch x := v.Interface().(type) {
	case Duration:
		return shortDuration(x.D())
	case []Duration:
		s := make([]string, len(x))
		for i, d := range x {
			s[i] = shortDuration(d.D())
		}
		return "[" + strings.Join(s, ", ") + "]"
	}
	return fmt.Sprint(v.Interface())
}

// shortDuration writes d as a config would: 24h, 10m, 1m30s, 7d.
func shortDuration(d time.Duration) string {
	if d >= 24*time.Hour && d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func fieldValue(v reflect.Value, i int) reflect.Value {
	if !v.IsValid() {
		return v
	}
	return v.Field(i)
}

func deref(v reflect.Value) reflect.Value {
	for v.IsValid() && v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return reflect.Value{}
		}
		v = v.Elem()
	}
	return v
}

// mapValue is the first value of a map of sections (the minimal config's
// one target, pipeline or group), for its defaults.
func mapValue(v reflect.Value) reflect.Value {
	if !v.IsValid() || v.Len() == 0 {
		return reflect.Value{}
	}
	keys := v.MapKeys()
	sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
	return deref(v.MapIndex(keys[0]))
}

var spaces = regexp.MustCompile(`\s+`)

func oneLine(s string) string { return strings.TrimSpace(spaces.ReplaceAllString(s, " ")) }

// markdown makes doc text safe in a table cell: | escaped, and * < > & outside
// code spans written as entities, so that <db> or <token> shows as typed
// instead of vanishing as an HTML tag.
func markdown(s string) string {
	var b strings.Builder
	code := false
	for _, r := range s {
		switch {
		case r == '`':
			code = !code
			b.WriteRune(r)
		case r == '|':
			b.WriteString(`\|`)
		case !code && r == '<':
			b.WriteString("&lt;")
		case !code && r == '>':
			b.WriteString("&gt;")
		case !code && r == '*':
			b.WriteString(`\*`)
		case !code && r == '&':
			b.WriteString("&amp;")
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/stagebot/stagebot/commands"
)

// LoadConfig reads, expands and validates a config file. The error lists
// every problem found, each naming its field.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	cfg, err := ParseConfig(data, path)
	if cfg != nil {
		cfg.path = path
	}
	return cfg, err
}

// ConfigError lists every problem of a config file.
type ConfigError struct {
	File     string
	Problems []string
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("%s has %s:\n  %s", e.File, count(len(e.Problems), "problem"), strings.Join(e.Problems, "\n  "))
}

var unknownField = regexp.MustCompile(`field (\S+) not found in type (\S+)`)

// yamlFields are the fields each config type takes, by the type's name as
// the decoder gives it (main.TargetConfig), for "did you mean".
var yamlFields = func() map[string][]string {
	m := map[string][]string{}
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || m[t.String()] != nil {
			return
		}
		m[t.String()] = []string{}
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if !f.IsExported() || name == "" || name == "-" {
				continue
			}
			m[t.String()] = append(m[t.String()], name)
			walk(f.Type)
		}
	}
	walk(reflect.TypeOf(Config{}))
	return m
}()

// withLines adds the config's line to each problem that names a field
// written in it: "targets.app.schedule: … (line 3)".
func withLines(problems []string, data []byte) {
	lines := map[string]int{}
	for pos, path := range fieldsAt(data) {
		n, err := strconv.Atoi(strings.SplitN(pos, ":", 2)[0])
		if err == nil && (lines[path] == 0 || n < lines[path]) {
			lines[path] = n
		}
	}
	for i, p := range problems {
		field, _, ok := strings.Cut(p, ": ")
		if n := lines[field]; ok && n > 0 {
			problems[i] = fmt.Sprintf("%s (line %d)", p, n)
		}
	}
}

// linePos finds the position yaml puts at the head of an error.
var linePos = regexp.MustCompile(`^line (\d+)(?: column (\d+))?: `)

// fieldsAt maps the position of every value in a YAML document ("line:col",
// and "line" for the first value on a line) to its field's path.
func fieldsAt(data []byte) map[string]string {
	var root yaml.Node
	out := map[string]string{}
	if yaml.Unmarshal(data, &root) != nil {
		return out
	}
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		if path != "" {
			out[fmt.Sprintf("%d:%d", n.Line, n.Column)] = path
			if _, ok := out[fmt.Sprint(n.Line)]; !ok {
				out[fmt.Sprint(n.Line)] = path
			}
		}
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, path)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				walk(n.Content[i+1], join(path, n.Content[i].Value))
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				walk(c, fmt.Sprintf("%s[%d]", path, i))
			}
		}
	}
	walk(&root, "")
	return out
}

// ParseConfig is LoadConfig for bytes already read; name is used in errors.
func ParseConfig(data []byte, name string) (*Config, error) {
	cfg := &Config{}
	errs := &ConfigError{File: name}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			fields := fieldsAt(data)
			for _, e := range te.Errors {
				e = strings.TrimPrefix(e, "yaml: ")
				// Name the field, not only the line.
				if m := linePos.FindStringSubmatch(e); m != nil {
					f, ok := fields[m[1]+":"+m[2]]
					if !ok && m[2] == "" {
						f, ok = fields[m[1]]
					}
					if ok {
						e = fmt.Sprintf("%s (line %s): %s", f, m[1], e[len(m[0]):])
					}
				}
				indent := indentHint(data, e)
				errs.Problems = append(errs.Problems, unknownField.ReplaceAllStringFunc(e, func(m string) string {
					sm := unknownField.FindStringSubmatch(m)
					switch hint := commands.Suggest(sm[1], yamlFields[sm[2]]); {
					case indent != "":
						return "unknown field " + sm[1] + indent
					case hint != "":
						return "unknown field " + sm[1] + hint + " (docs/configuration.md lists every field)"
					}
					return "unknown field " + sm[1] + " (check its spelling; docs/configuration.md lists every field)"
				}))
			}
		} else {
			msg := realLine(data, strings.TrimPrefix(err.Error(), "yaml: "))
			errs.Problems = append(errs.Problems, msg+layoutHint(data, msg))
			return nil, errs
		}
	}
	decoded := len(errs.Problems)
	cfg.expandEnv(errs)
	cfg.validate(errs)
	withLines(errs.Problems[decoded:], data)
	if len(errs.Problems) > 0 {
		return nil, errs
	}
	return cfg, nil
}

// runtimeVars are set by the bot for a step when it runs; a reference to
// one is left for the step's shell.
var runtimeVars = map[string]bool{"STAGEBOT_RUN": true, "STAGEBOT_TARGET": true, "STAGEBOT_PIPELINE": true, "STAGEBOT_HOST": true, "STAGEBOT_DATABASE": true}

// expandRefs replaces each ${…} reference in s by what fn says; $${…} is a
// literal ${…}.
func expandRefs(s string, fn func(ref string) string) string {
	if !strings.Contains(s, "${") {
		return s
	}
	var out strings.Builder
	for i := 0; i < len(s); {
		switch {
		case strings.HasPrefix(s[i:], "$${"):
			out.WriteString("${")
			i += 3
		case strings.HasPrefix(s[i:], "${"):
			if loc := envRef.FindStringIndex(s[i:]); loc != nil && loc[0] == 0 {
				out.WriteString(fn(s[i : i+loc[1]]))
				i += loc[1]
				continue
			}
			out.WriteString("${")
			i += 2
		default:
			out.WriteByte(s[i])
			i++
		}
	}
	return out.String()
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}`)

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

var secretName = regexp.MustCompile(`(?i)(TOKEN|PASS|SECRET|KEY|DSN|CREDENTIAL)`)

// expandEnv replaces ${VAR} (or ${VAR:-default}) in every string of the
// config. A variable that is not set is a problem, named by field.
func (c *Config) expandEnv(errs *ConfigError) {
	var walk func(v reflect.Value, path string)
	expand := func(s, path string) string {
		return expandRefs(s, func(ref string) string {
			m := envRef.FindStringSubmatch(ref)
			if runtimeVars[m[1]] {
				// Set by the bot when a step runs: the step's shell reads it.
				if !strings.Contains(path, ".exec") && !strings.Contains(path, ".env.") {
					errs.Problems = append(errs.Problems, fmt.Sprintf("%s: ${%s} is set only for exec steps, when they run (their shell reads it)", path, m[1]))
				}
				return ref
			}
			val, ok := os.LookupEnv(m[1])
			if !ok && m[2] != "" {
				val, ok = m[3], true
			}
			if !ok {
				errs.Problems = append(errs.Problems, fmt.Sprintf("%s: environment variable %s is not set: export it, or write ${%s:-default}", path, m[1], m[1]))
				if c.unset == nil {
					c.unset = map[string]bool{}
				}
				c.unset[path] = true
				return ref
			}
			if secretName.MatchString(m[1]) && len(val) >= 4 {
				c.secrets = append(c.secrets, val)
			}
			return val
		})
	}
	walk = func(v reflect.Value, path string) {
		switch v.Kind() {
		case reflect.Pointer:
			if !v.IsNil() {
				walk(v.Elem(), path)
			}
		case reflect.String:
			if v.CanSet() {
				v.SetString(expand(v.String(), path))
			}
		case reflect.Struct:
			t := v.Type()
			for i := 0; i < t.NumField(); i++ {
				f := t.Field(i)
				if !f.IsExported() {
					continue
				}
				name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
				if name == "" {
					name = strings.ToLower(f.Name)
				}
				walk(v.Field(i), join(path, name))
			}
		case reflect.Slice:
			for i := 0; i < v.Len(); i++ {
				walk(v.Index(i), fmt.Sprintf("%s[%d]", path, i))
			}
		case reflect.Map:
			for _, k := range v.MapKeys() {
				e := v.MapIndex(k)
				p := join(path, fmt.Sprint(k.Interface()))
				if e.Kind() == reflect.String {
					v.SetMapIndex(k, reflect.ValueOf(expand(e.String(), p)).Convert(e.Type())) // a named string type too
					continue
				}
				if e.Kind() == reflect.Slice && e.Type().Elem().Kind() == reflect.String {
					for i := 0; i < e.Len(); i++ {
						e.Index(i).SetString(expand(e.Index(i).String(), fmt.Sprintf("%s[%d]", p, i)))
					}
					continue
				}
				walk(e, p)
			}
		}
	}
	walk(reflect.ValueOf(c).Elem(), "")
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// strictDecode decodes a node, rejecting unknown keys (Node.Decode alone
// would ignore them, and a misspelt option would be lost).
func strictDecode(n *yaml.Node, out any) error {
	data, err := yaml.Marshal(n)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(out); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			var msgs []string
			for _, e := range te.Errors {
				// Line numbers refer to the fragment; leave them out.
				_, msg, _ := strings.Cut(e, ": ")
				msgs = append(msgs, unknownField.ReplaceAllString(msg, `unknown field $1`))
			}
			return errors.New(strings.Join(msgs, "; "))
		}
		return err
	}
	return nil
}

// parserError is a syntax error of yaml's parser (its scanner's errors
// are worded otherwise): yaml counts their lines from 0.
var parserError = regexp.MustCompile(`^line (\d+): (did not find expected (key|node content|'-' indicator|',' or '\]'|',' or '\}'|<document start>))`)

// realLine gives a parser error the line a person counts: yaml.v3 names
// the line before (its scanner's errors it counts right). A missing '-'
// it names at the list item before the line that broke the list: that
// line is the next one written.
func realLine(data []byte, msg string) string {
	m := parserError.FindStringSubmatchIndex(msg)
	if m == nil {
		return msg
	}
	n, _ := strconv.Atoi(msg[m[2]:m[3]])
	what := msg[m[4]:]
	if !strings.HasPrefix(what, "did not find expected '-' indicator") {
		return fmt.Sprintf("line %d: %s", n+1, what)
	}
	lines := strings.Split(string(data), "\n")
	for i := n + 1; i < len(lines); i++ {
		if t := strings.TrimSpace(lines[i]); t != "" && !strings.HasPrefix(t, "#") {
			return fmt.Sprintf("line %d: %s after the list item on line %d", i+1, what, n+1)
		}
	}
	return fmt.Sprintf("line %d: %s", n+1, what)
}

// errLine is the line a YAML error names, or 0.
var errLine = regexp.MustCompile(`line (\d+)`)

// layoutHint says what in the file's layout most likely caused a YAML
// syntax error: a tab in the indentation (YAML takes spaces only), or a
// list item indented differently from the item above it (yaml reports that
// at the list's parent, lines away).
func layoutHint(data []byte, msg string) string {
	lines := strings.Split(string(data), "\n")
	if m := errLine.FindStringSubmatch(msg); m != nil {
		if n, _ := strconv.Atoi(m[1]); n >= 1 && n <= len(lines) {
			indent := lines[n-1][:len(lines[n-1])-len(strings.TrimLeft(lines[n-1], " \t"))]
			if strings.Contains(indent, "\t") {
				return fmt.Sprintf(" (line %d is indented with a tab: YAML indents with spaces only)", n)
			}
		}
	}
	for i, l := range lines {
		if strings.Contains(l[:len(l)-len(strings.TrimLeft(l, " \t"))], "\t") {
			return fmt.Sprintf(" (line %d is indented with a tab: YAML indents with spaces only)", i+1)
		}
	}
	// Sibling list items: consecutive "- " lines with nothing less
	// indented between them.
	prev, prevIndent := -1, 0
	for i, l := range lines {
		t := strings.TrimLeft(l, " ")
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		ind := len(l) - len(t)
		if !strings.HasPrefix(t, "- ") && t != "-" {
			if prev >= 0 && ind <= prevIndent-1 {
				prev = -1
			}
			continue
		}
		if prev >= 0 && ind != prevIndent && absInt(ind-prevIndent) < 4 {
			return fmt.Sprintf(" (line %d: this list item is indented by %d spaces, the one above it (line %d) by %d: line them up)", i+1, ind, prev+1, prevIndent)
		}
		prev, prevIndent = i, ind
	}
	return ""
}

func absInt(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

// indentHint says, for a field yaml found where it does not belong, when
// the line above it opens a section with nothing in it at the same
// indentation: the field most likely belongs inside that section.
func indentHint(data []byte, msg string) string {
	m := errLine.FindStringSubmatch(msg)
	if m == nil || !strings.Contains(msg, "not found in type") {
		return ""
	}
	n, _ := strconv.Atoi(m[1])
	lines := strings.Split(string(data), "\n")
	if n < 2 || n > len(lines) {
		return ""
	}
	cur := lines[n-1]
	ind := len(cur) - len(strings.TrimLeft(cur, " "))
	for i := n - 2; i >= 0; i-- {
		t := strings.TrimLeft(lines[i], " ")
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		key, rest, ok := strings.Cut(strings.TrimSpace(t), ":")
		if ok && strings.TrimSpace(rest) == "" && len(lines[i])-len(t) == ind {
			return fmt.Sprintf(" (the line above opens %s: with nothing in it: indent this line by two more spaces to put it inside)", key)
		}
		return ""
	}
	return ""
}

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode"

	"go.yaml.in/yaml/v3"

	"github.com/stagebot/stagebot/commands"
)

// mdBlock is one fenced block of a Markdown file.
type mdBlock struct {
	lang, body string
	line       int
	// notRun is why the README test does not run the block, from a
	// "<!-- not run by the README test: … -->" line just above it.
	notRun string
}

var notRunNote = regexp.MustCompile(`^<!-- not run by the README test: (.*) -->$`)

// fencedBlocks returns the fenced blocks of a Markdown text.
func fencedBlocks(md string) []mdBlock {
	var out []mdBlock
	lines := strings.Split(md, "\n")
	for i := 0; i < len(lines); i++ {
		lang, ok := strings.CutPrefix(lines[i], "```")
		if !ok {
			continue
		}
		b := mdBlock{lang: strings.TrimSpace(lang), line: i + 1}
		if i > 0 {
			if m := notRunNote.FindStringSubmatch(lines[i-1]); m != nil {
				b.notRun = m[1]
			}
		}
		var body []string
		for i++; i < len(lines) && !strings.HasPrefix(lines[i], "```"); i++ {
			body = append(body, lines[i])
		}
		b.body = strings.Join(body, "\n") + "\n"
		out = append(out, b)
	}
	return out
}

func readme(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestReadme_ShellBlocksRunAsWritten runs every sh block of the README
// that is not marked as needing what a test does not have (root, chat
// tokens, a production server), with stagebot on PATH, in a directory
// holding what the repository's root holds; the marked ones are parsed.
func TestReadme_ShellBlocksRunAsWritten(t *testing.T) {
	dir, bin := t.TempDir(), t.TempDir()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	wrapper := "#!/bin/sh\nSTAGEBOT_TEST_AS_MAIN=1 exec " + self + ` "$@"` + "\n"
	if err := os.WriteFile(filepath.Join(bin, "stagebot"), []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile("../../config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "config.example.yaml"), example, 0o644)
	ran := 0
	for _, b := range fencedBlocks(readme(t)) {
		if b.lang != "sh" {
			continue
		}
		if out, err := exec.Command("bash", "-n", "-c", b.body).CombinedOutput(); err != nil {
			t.Errorf("README line %d: the sh block is not valid shell: %v\n%s", b.line, err, out)
		}
		if b.notRun != "" {
			continue
		}
		cmd := exec.Command("bash", "-e", "-c", b.body)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "HOME="+dir)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("README line %d: the sh block fails as written: %v\n%s\n%s", b.line, err, b.body, out)
		}
		ran++
	}
	if ran == 0 {
		t.Error("no sh block of the README was run: each is marked not run")
	}
}

// readmeEnv are the variables the README's config snippets read.
var readmeEnv = map[string]string{
	"SLACK_APP_TOKEN": "xapp-1-readme", "SLACK_BOT_TOKEN": "xoxb-readme", "DISCORD_TOKEN": "readme",
	"MATRIX_TOKEN": "syt_readme", "STAGEBOT_STORE_DSN": "postgres://stagebot@db-ops/stagebot",
	"APP_PRODUCTION_DSN": "postgres://stagebot_ro@db.prod/app", "APP_STAGING_DSN": "postgres://stagebot@db.stg/app",
	"FAS2_MASK_KEY": "a key of sixteen characters or more",
}

// TestReadme_ConfigSnippetsLoad loads every yaml block of the README: the
// first whole config as it is, and each part of one (chat and access, a
// store, a target's database) in that config's place, as a reader would
// paste it.
func TestReadme_ConfigSnippetsLoad(t *testing.T) {
	for k, v := range readmeEnv {
		t.Setenv(k, v)
	}
	var base map[string]any
	n := 0
	for _, b := range fencedBlocks(readme(t)) {
		if b.lang != "yaml" {
			continue
		}
		var snippet map[string]any
		if err := yaml.Unmarshal([]byte(b.body), &snippet); err != nil {
			t.Errorf("README line %d: the yaml block does not parse: %v", b.line, err)
			continue
		}
		if base == nil {
			if snippet["targets"] == nil {
				t.Fatalf("README line %d: the first config in the README should be a whole one, with targets", b.line)
			}
			base = snippet
		}
		whole := pasted(base, snippet)
		data, _ := yaml.Marshal(whole)
		if _, err := ParseConfig(data, "README.md"); err != nil {
			t.Errorf("README line %d: the config does not load once pasted into the README's first one:\n%s\n%v", b.line, b.body, err)
		}
		n++
	}
	if n < 3 {
		t.Errorf("%d yaml blocks found in the README; the test looks for more", n)
	}
}

// pasted is base with snippet's keys in place: top-level keys replace
// base's, and a target's keys (database:) replace those of base's first
// target.
func pasted(base, snippet map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range base {
		out[k] = v
	}
	if _, top := yamlTop[firstKey(snippet)]; top {
		for k, v := range snippet {
			out[k] = v
		}
		return out
	}
	targets := map[string]any{}
	for name, tc := range base["targets"].(map[string]any) {
		merged := map[string]any{}
		for k, v := range tc.(map[string]any) {
			merged[k] = v
		}
		for k, v := range snippet {
			merged[k] = v
		}
		targets[name] = merged
		break
	}
	out["targets"] = targets
	return out
}

var yamlTop = func() map[string]bool {
	m := map[string]bool{}
	for _, f := range yamlFields["main.Config"] {
		m[f] = true
	}
	return m
}()

func firstKey(m map[string]any) string {
	for k := range m {
		if yamlTop[k] {
			return k
		}
	}
	for k := range m {
		return k
	}
	return ""
}

// TestReadme_ListsEveryCommand: the README's command table has a row for
// every verb the bot knows.
func TestReadme_ListsEveryCommand(t *testing.T) {
	s := readme(t)
	i := strings.Index(s, "## Commands")
	if i < 0 {
		t.Fatal("README has no Commands section")
	}
	table := s[i:]
	table = table[:strings.Index(table, "\n\n"+"Durations:")]
	for _, spec := range commands.Table() {
		if !regexp.MustCompile("[|/] `" + regexp.QuoteMeta(spec.Name) + "[ `]").MatchString(table) {
			t.Errorf("the README's Commands table has no row for %s", spec.Name)
		}
	}
}

var mdLink = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// TestDocs_LinksResolve: every link in the README and docs/ to a file of
// the repository leads to one, and every #anchor to a heading there.
func TestDocs_LinksResolve(t *testing.T) {
	docs, _ := filepath.Glob("../../docs/*.md")
	checked := 0
	for _, from := range append([]string{"../../README.md"}, docs...) {
		text, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range mdLink.FindAllStringSubmatch(string(text), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			file, anchor, _ := strings.Cut(target, "#")
			path := from
			if file != "" {
				path = filepath.Join(filepath.Dir(from), file)
			}
			checked++
			if _, err := os.Stat(path); err != nil {
				t.Errorf("%s links to %s, which does not exist", filepath.Base(from), target)
				continue
			}
			if anchor != "" && !headingAnchors(t, path)[anchor] {
				t.Errorf("%s links to %s: %s has no heading with that anchor", filepath.Base(from), target, filepath.Base(path))
			}
		}
	}
	if checked < 10 {
		t.Errorf("only %d links checked; the link pattern finds too few", checked)
	}
}

// headingAnchors are the anchors GitHub gives a Markdown file's headings:
// lower case, spaces as -, punctuation but - and _ dropped.
func headingAnchors(t *testing.T, path string) map[string]bool {
	t.Helper()
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	inCode := false
	for _, line := range strings.Split(string(text), "\n") {
		if strings.HasPrefix(line, "```") {
			inCode = !inCode
		}
		if inCode || !strings.HasPrefix(line, "#") {
			continue
		}
		title := strings.TrimSpace(strings.TrimLeft(line, "#"))
		slug := strings.Map(func(r rune) rune {
			switch {
			case r == ' ':
				return '-'
			case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
				return unicode.ToLower(r)
			}
			return -1
		}, title)
		out[slug] = true
	}
	return out
}

package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// generate runs `stagebot ARGS…` as the binary would and returns what it
// wrote to a file in dir.
func generate(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	if err := Main(context.Background(), args, nil, &out, &errOut); err != nil {
		t.Fatalf("stagebot %v: %v", args, err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func needShell(t *testing.T, shell string) {
	t.Helper()
	if _, err := exec.LookPath(shell); err != nil {
		t.Fatalf("%s is needed to test its completion: make test installs it (Debian's %s package)", shell, shell)
	}
}

// completionCases: what a person has typed, and a word the completion
// must offer. Every command is offered after "stagebot", and every flag
// of every command after "stagebot COMMAND -".
func completionCases() [][2]string {
	cases := [][2]string{
		{"stagebot ch", "check"},
		{"stagebot store ", "copy"},
		{"stagebot completion ", "fish"},
		{"stagebot help ", "mask-rules"},
	}
	for _, w := range topWords() {
		cases = append(cases, [2]string{"stagebot ", w})
	}
	for i := range subcommands {
		sc := &subcommands[i]
		for _, f := range flagsOf(sc) {
			cases = append(cases, [2]string{"stagebot " + sc.name + " -", "-" + f.name})
		}
	}
	return cases
}

// TestCompletion_Bash: the script, sourced in a real bash, completes
// commands, their flags and words, and files after -c.
func TestCompletion_Bash(t *testing.T) {
	needShell(t, "bash")
	dir := t.TempDir()
	script := generate(t, dir, "stagebot.bash", "completion", "bash")
	os.WriteFile(filepath.Join(dir, "config-prod.yaml"), nil, 0o644)
	cases := append(completionCases(), [2]string{"stagebot check -c " + filepath.Join(dir, "config-p"), filepath.Join(dir, "config-prod.yaml")})
	for _, c := range cases {
		line := c[0]
		words := strings.Fields(line)
		if strings.HasSuffix(line, " ") {
			words = append(words, "")
		}
		var quoted []string
		for _, w := range words {
			quoted = append(quoted, "'"+w+"'")
		}
		prog := "source " + script + "\nCOMP_WORDS=(" + strings.Join(quoted, " ") + ")\nCOMP_CWORD=" + strconv.Itoa(len(words)-1) + "\n_stagebot\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n"
		out, err := exec.Command("bash", "-c", prog).CombinedOutput()
		if err != nil {
			t.Fatalf("bash: %v\n%s", err, out)
		}
		if !hasLine(string(out), c[1]) && !hasLine(string(out), "-"+c[1]) {
			t.Errorf("bash completes %q with %q, not %q", line, strings.Fields(string(out)), c[1])
		}
	}
	// Nothing is offered that stagebot would refuse.
	out, _ := exec.Command("bash", "-c", "source "+script+"\nCOMP_WORDS=(stagebot check -); COMP_CWORD=2; _stagebot; echo ${COMPREPLY[@]}").CombinedOutput()
	if strings.Contains(string(out), "--as") || strings.Contains(string(out), "--from") {
		t.Errorf("bash offers another command's flags after check: %s", out)
	}
}

// TestCompletion_Fish: fish itself answers `complete -C` from the script.
func TestCompletion_Fish(t *testing.T) {
	needShell(t, "fish")
	dir := t.TempDir()
	script := generate(t, dir, "stagebot.fish", "completion", "fish")
	for _, c := range completionCases() {
		cmd := exec.Command("fish", "--no-config", "-c", "source "+script+"; complete -C "+fishQuote(c[0]))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("fish: %v\n%s", err, out)
		}
		found := false
		for _, l := range strings.Split(string(out), "\n") {
			w, _, _ := strings.Cut(l, "\t")
			found = found || w == c[1] || w == "-"+c[1]
		}
		if !found {
			t.Errorf("fish completes %q with:\n%s\nnot %q", c[0], out, c[1])
		}
	}
	out, _ := exec.Command("fish", "--no-config", "-c", "source "+script+"; complete -C 'stagebot ch'").CombinedOutput()
	if !strings.Contains(string(out), "check\tvalidate the config") {
		t.Errorf("fish shows no description for check: %q", out)
	}
}

// TestCompletion_Zsh: the script parses in zsh, and with the completion
// system's _describe and _arguments standing in as recorders, each
// command is dispatched to its own flags.
func TestCompletion_Zsh(t *testing.T) {
	needShell(t, "zsh")
	dir := t.TempDir()
	script := generate(t, dir, "_stagebot", "completion", "zsh")
	if out, err := exec.Command("zsh", "-n", script).CombinedOutput(); err != nil {
		t.Fatalf("zsh -n: %v\n%s", err, out)
	}
	run := func(words string, current int) string {
		prog := `compdef() { :; }
_describe() { shift 3; print -l -- "${(@P)1}"; }
_arguments() { print -l -- "$@"; }
source ` + script + `
words=(` + words + `); CURRENT=` + strconv.Itoa(current) + `
_stagebot`
		out, err := exec.Command("zsh", "-f", "-c", prog).CombinedOutput()
		if err != nil {
			t.Fatalf("zsh: %v\n%s", err, out)
		}
		return string(out)
	}
	top := run("stagebot ''", 2)
	for _, w := range topWords() {
		if !strings.Contains(top, "\n"+w+":") && !strings.HasPrefix(top, w+":") {
			t.Errorf("zsh does not offer %q:\n%s", w, top)
		}
	}
	for i := range subcommands {
		sc := &subcommands[i]
		got := run("stagebot "+strings.Fields(sc.name)[0]+" ''", 3)
		for _, f := range flagsOf(sc) {
			if !strings.Contains(got, "--"+f.name+"[") {
				t.Errorf("zsh offers no --%s after %s:\n%s", f.name, sc.name, got)
			}
		}
		if sc.name == "check" && strings.Contains(got, "--as[") {
			t.Errorf("zsh offers run's flags after check:\n%s", got)
		}
	}
}

// TestManPage: the page formats without a warning and documents every
// command and flag; text that looks like a roff request stays text.
func TestManPage(t *testing.T) {
	for _, tool := range []string{"groff", "man"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed to check the man page (Debian's groff-base and man-db packages)", tool)
		}
	}
	page := generate(t, t.TempDir(), "stagebot.1", "man")
	warn, err := exec.Command("groff", "-man", "-Tutf8", "-ww", "-z", page).CombinedOutput()
	if err != nil || len(warn) > 0 {
		t.Errorf("groff warns: %v\n%s", err, warn)
	}
	cmd := exec.Command("man", "-l", page)
	cmd.Env = append(os.Environ(), "MANWIDTH=200", "MAN_KEEP_FORMATTING=0", "PAGER=cat")
	text, err := cmd.Output()
	if err != nil {
		t.Fatalf("man -l: %v", err)
	}
	plain := stripOverstrike(string(text))
	for i := range subcommands {
		sc := &subcommands[i]
		if !strings.Contains(plain, "stagebot "+sc.name) || !strings.Contains(plain, capitalise(sc.summary)) {
			t.Errorf("the man page lacks %q or its summary", sc.name)
		}
		for _, f := range flagsOf(sc) {
			if !strings.Contains(plain, "-"+f.name) {
				t.Errorf("the man page lacks %s's flag -%s", sc.name, f.name)
			}
		}
		for _, e := range sc.examples {
			if !strings.Contains(plain, e) {
				t.Errorf("the man page lacks the example %q", e)
			}
		}
	}
	if got := roffText(".SH not a request\n'also not\na\\b -x"); got != "\\&.SH not a request\n\\&'also not\na\\eb \\-x" {
		t.Errorf("roffText = %q", got)
	}
}

// stripOverstrike removes man's bold and underline (x\bx, _\bx).
func stripOverstrike(s string) string {
	var b strings.Builder
	r := []rune(s)
	for i := 0; i < len(r); i++ {
		if i+2 < len(r) && r[i+1] == '\b' {
			continue
		}
		if r[i] == '\b' {
			continue
		}
		b.WriteRune(r[i])
	}
	return strings.ReplaceAll(b.String(), "\u2010", "-")
}

func hasLine(out, want string) bool {
	for _, l := range strings.Split(out, "\n") {
		if l == want {
			return true
		}
	}
	return false
}

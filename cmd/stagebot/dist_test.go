package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestDist_PackagesInstallWhatTheServiceNeeds: make dist's .deb carries
// the binary, a unit that runs it, the config and secrets file kept on
// upgrade and readable by stagebot only, the state directory, and scripts
// that create the stagebot user before the files are unpacked (once); the
// same commit gives the same bytes twice; the packaged binary runs.
func TestDist_PackagesInstallWhatTheServiceNeeds(t *testing.T) {
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Fatal("dpkg-deb is needed to look into the .deb (Debian's dpkg package)")
	}
	a, b := t.TempDir(), t.TempDir()
	first, second := makeDist(t, a), makeDist(t, b)
	// A tarball, a .deb, an .rpm and an SBOM.
	if !bytes.Equal(first, second) || strings.Count(string(first), "\n") != 4 {
		t.Errorf("two builds of one commit differ, or lack a file:\n%s\n%s", first, second)
	}
	checkSBOM(t, a)
	deb := distDeb(t, a)
	contents, _ := exec.Command("dpkg-deb", "--contents", deb).CombinedOutput()
	for _, want := range []string{
		"-rwxr-xr-x root/root", "./usr/bin/stagebot",
		"./lib/systemd/system/stagebot.service",
		"-rw-r----- root/stagebot", "./etc/stagebot/config.yaml", "./etc/stagebot/env",
		"drwxr-x--- stagebot/stagebot", "./var/lib/stagebot/",
		"./usr/share/doc/stagebot/LICENSE", "./usr/share/doc/stagebot/sbom.cdx.json", "./usr/share/doc/stagebot/docs/configuration.md",
		"./usr/share/man/man1/stagebot.1.gz",
		"./usr/share/bash-completion/completions/stagebot",
		"./usr/share/zsh/vendor-completions/_stagebot",
		"./usr/share/fish/vendor_completions.d/stagebot.fish",
	} {
		if !strings.Contains(string(contents), want) {
			t.Errorf("the .deb lacks %q:\n%s", want, contents)
		}
	}
	x := t.TempDir()
	if out, err := exec.Command("dpkg-deb", "-R", deb, x).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -R: %v\n%s", err, out)
	}
	conffiles, _ := os.ReadFile(filepath.Join(x, "DEBIAN", "conffiles"))
	if !strings.Contains(string(conffiles), "/etc/stagebot/config.yaml") || !strings.Contains(string(conffiles), "/etc/stagebot/env") {
		t.Errorf("conffiles (kept on upgrade) = %q", conffiles)
	}
	unit, _ := os.ReadFile(filepath.Join(x, "lib/systemd/system/stagebot.service"))
	if !strings.Contains(string(unit), "ExecStart=/usr/bin/stagebot run -c /etc/stagebot/config.yaml") || strings.Contains(string(unit), "/usr/local/bin") {
		t.Errorf("the packaged unit does not run the packaged binary:\n%s", unit)
	}
	// The binary runs and says its version.
	if out, err := exec.Command(filepath.Join(x, "usr/bin/stagebot"), "version").CombinedOutput(); err != nil || !strings.HasPrefix(string(out), "stagebot ") {
		t.Errorf("the packaged binary: %v %s", err, out)
	}
	// The user exists before the files are unpacked: preinst makes it,
	// once, with stand-ins for the system's tools.
	bin := t.TempDir()
	calls := filepath.Join(bin, "calls")
	for _, tool := range []string{"groupadd", "useradd"} {
		os.WriteFile(filepath.Join(bin, tool), []byte("#!/bin/sh\necho "+tool+" \"$@\" >> "+calls+"\n"), 0o755)
	}
	os.WriteFile(filepath.Join(bin, "getent"), []byte("#!/bin/sh\ngrep -q \"^$1 $2\\$\" "+calls+".known 2>/dev/null\n"), 0o755)
	preinst := func() *exec.Cmd {
		c := exec.Command("sh", filepath.Join(x, "DEBIAN", "preinst"), "install")
		c.Env = append(os.Environ(), "PATH="+bin+":/usr/bin:/bin")
		return c
	}
	if out, err := preinst().CombinedOutput(); err != nil {
		t.Fatalf("preinst: %v\n%s", err, out)
	}
	got, _ := os.ReadFile(calls)
	if !strings.Contains(string(got), "groupadd --system stagebot") || !strings.Contains(string(got), "useradd --system --gid stagebot --home-dir /var/lib/stagebot") {
		t.Errorf("preinst made: %s", got)
	}
	os.WriteFile(calls+".known", []byte("group stagebot\npasswd stagebot\n"), 0o644)
	os.Remove(calls)
	if out, err := preinst().CombinedOutput(); err != nil {
		t.Fatalf("preinst again: %v\n%s", err, out)
	} else if again, _ := os.ReadFile(calls); len(again) > 0 {
		t.Errorf("preinst made the user again on upgrade: %s", again)
	}
}

// makeDist runs make dist's script for this machine's architecture into
// dir and returns its SHA256SUMS.
func makeDist(t *testing.T, dir string) []byte {
	t.Helper()
	root, _ := filepath.Abs("../..")
	cmd := exec.Command("sh", "packaging/dist.sh")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "DIST="+dir, "ARCHS="+runtime.GOARCH)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("packaging/dist.sh: %v\n%s", err, out)
	}
	sums, err := os.ReadFile(filepath.Join(dir, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	return sums
}

func distDeb(t *testing.T, dir string) string {
	t.Helper()
	debs, _ := filepath.Glob(filepath.Join(dir, "*_"+runtime.GOARCH+".deb"))
	if len(debs) != 1 {
		t.Fatalf("no .deb in %s", dir)
	}
	return debs[0]
}

// checkSBOM: the SBOM is CycloneDX JSON naming stagebot, built for this
// architecture, and the modules its binary is built from, with versions.
func checkSBOM(t *testing.T, dir string) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*_linux_"+runtime.GOARCH+".cdx.json"))
	if len(files) != 1 {
		t.Fatalf("no SBOM in %s", dir)
	}
	raw, _ := os.ReadFile(files[0])
	var bom struct {
		BOMFormat string `json:"bomFormat"`
		Metadata  struct {
			Component struct {
				Name string `json:"name"`
				PURL string `json:"purl"`
			} `json:"component"`
		} `json:"metadata"`
		Components []struct {
			Name, Version string
		} `json:"components"`
	}
	if err := json.Unmarshal(raw, &bom); err != nil {
		t.Fatalf("the SBOM is not JSON: %v", err)
	}
	if bom.BOMFormat != "CycloneDX" || bom.Metadata.Component.Name != "github.com/stagebot/stagebot" || !strings.Contains(bom.Metadata.Component.PURL, "goarch="+runtime.GOARCH) {
		t.Errorf("the SBOM is not CycloneDX for stagebot on %s: %s %+v", runtime.GOARCH, bom.BOMFormat, bom.Metadata.Component)
	}
	mods := map[string]string{}
	for _, c := range bom.Components {
		mods[c.Name] = c.Version
	}
	gomod, _ := os.ReadFile("../../go.mod")
	for _, m := range []string{"github.com/jackc/pgx/v5", "github.com/slack-go/slack", "github.com/bwmarrin/discordgo", "go.etcd.io/bbolt", "github.com/robfig/cron/v3"} {
		if v := mods[m]; v == "" || !strings.Contains(string(gomod), m+" "+v) {
			t.Errorf("the SBOM gives %s as %q, not go.mod's version", m, v)
		}
	}
	if root, _ := filepath.Abs("../.."); strings.Contains(string(raw), root) || strings.Contains(string(raw), dir) {
		t.Errorf("the SBOM holds a path of the machine that built it")
	}
}

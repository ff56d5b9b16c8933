//go:build installtest

package main

import (
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestDist_InstallsAndPurges installs make dist's .deb on this machine
// with dpkg, as a person would: the stagebot user and paths exist with the
// modes the service needs, systemd accepts the unit, the packaged stagebot
// checks the packaged config as the service would run it, the man page
// and completions are where the tools look; a purge takes it all away.
//
// It changes the machine (a package, a system user), so it is not part of
// go test ./...: make test-dist runs it, as root, and CI does too.
func TestDist_InstallsAndPurges(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("installing a .deb needs root: run make test-dist as root (sudo make test-dist)")
	}
	for _, tool := range []string{"dpkg", "systemd-analyze", "runuser", "man"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed to install and check the package", tool)
		}
	}
	if out, err := exec.Command("dpkg-query", "-W", "-f=${Status}", "stagebot").Output(); err == nil && strings.HasSuffix(string(out), " installed") {
		t.Fatalf("stagebot is already installed here (%s): the test would replace it; remove it first (dpkg --purge stagebot)", out)
	}
	dir := t.TempDir()
	makeDist(t, dir)
	deb := distDeb(t, dir)
	t.Cleanup(func() { exec.Command("dpkg", "--purge", "stagebot").Run() })
	out, err := exec.Command("dpkg", "-i", deb).CombinedOutput()
	if err != nil {
		t.Fatalf("dpkg -i: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "stagebot check -c /etc/stagebot/config.yaml") {
		t.Errorf("the install does not say what to do next:\n%s", out)
	}
	checkInstalledUser(t)
	for _, f := range []struct {
		path, mode, owner string
	}{
		{"/usr/bin/stagebot", "755", "root:root"},
		{"/etc/stagebot", "750", "root:stagebot"},
		{"/etc/stagebot/config.yaml", "640", "root:stagebot"},
		{"/etc/stagebot/env", "640", "root:stagebot"},
		{"/var/lib/stagebot", "750", "stagebot:stagebot"},
		{"/lib/systemd/system/stagebot.service", "644", "root:root"},
	} {
		got, err := exec.Command("stat", "-c", "%a %U:%G", f.path).Output()
		if err != nil || strings.TrimSpace(string(got)) != f.mode+" "+f.owner {
			t.Errorf("%s is %q (%v), want %s %s", f.path, strings.TrimSpace(string(got)), err, f.mode, f.owner)
		}
	}
	if out, err := exec.Command("systemd-analyze", "verify", "/lib/systemd/system/stagebot.service").CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	checkInstalledService(t)
	if out, err := exec.Command("man", "-w", "stagebot").CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "/usr/share/man/man1/stagebot.1.gz" {
		t.Errorf("man -w stagebot: %v %s", err, out)
	}
	if out, err := exec.Command("bash", "-c", "source /usr/share/bash-completion/completions/stagebot; COMP_WORDS=(stagebot che); COMP_CWORD=1; _stagebot; echo ${COMPREPLY[@]}").CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "check" {
		t.Errorf("the installed bash completion: %v %q", err, out)
	}

	if out, err := exec.Command("dpkg", "--purge", "stagebot").CombinedOutput(); err != nil {
		t.Fatalf("dpkg --purge: %v\n%s", err, out)
	}
	for _, p := range []string{"/usr/bin/stagebot", "/etc/stagebot/config.yaml", "/etc/stagebot/env", "/lib/systemd/system/stagebot.service", "/usr/share/man/man1/stagebot.1.gz"} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s is left after a purge", p)
		}
	}
}

// checkInstalledUser: a system user and group, at home in the state
// directory, with no login shell.
func checkInstalledUser(t *testing.T) {
	t.Helper()
	u, err := user.Lookup("stagebot")
	if err != nil {
		t.Fatalf("the package made no stagebot user: %v", err)
	}
	g, err := user.LookupGroup("stagebot")
	if err != nil || g.Gid != u.Gid {
		t.Errorf("the stagebot group: %v (user's gid %s)", err, u.Gid)
	}
	if u.HomeDir != "/var/lib/stagebot" {
		t.Errorf("stagebot's home is %s", u.HomeDir)
	}
	passwd, _ := exec.Command("getent", "passwd", "stagebot").Output()
	if !strings.HasSuffix(strings.TrimSpace(string(passwd)), ":/usr/sbin/nologin") {
		t.Errorf("stagebot may log in: %s", passwd)
	}
	// Debian's system users are below 1000 (adduser.conf's FIRST_UID).
	if uid, err := strconv.Atoi(u.Uid); err != nil || uid >= 1000 || uid == 0 {
		t.Errorf("stagebot is not a system user: uid %s", u.Uid)
	}
}

// checkInstalledService runs what the unit's ExecStartPre runs, as the
// unit runs it: the stagebot user, the env file's variables, the
// packaged config, stdin not a terminal.
func checkInstalledService(t *testing.T) {
	t.Helper()
	env, _ := os.ReadFile("/etc/stagebot/env")
	cmd := exec.Command("runuser", "-u", "stagebot", "--", "/usr/bin/stagebot", "check", "-c", "/etc/stagebot/config.yaml")
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	for _, l := range strings.Split(string(env), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			cmd.Env = append(cmd.Env, l)
		}
	}
	cmd.Dir = filepath.Clean("/")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Config is valid") {
		t.Errorf("the packaged stagebot check, as the service runs it: %v\n%s", err, out)
	}
	// As the service it would run the console with no terminal: check says so.
	if !strings.Contains(string(out), "chat.platform is console") {
		t.Errorf("check does not warn that the packaged config's console needs a terminal:\n%s", out)
	}
}

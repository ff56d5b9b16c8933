package main

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
)

// stopWord finds "stop" as a word of a command (systemctl stop httpd).
var stopWord = regexp.MustCompile(`\bstop\b`)

// unstartedHosts warns of steps that stop something on a host that no
// finally step starts again there: a run that fails after the stop would
// leave it stopped. A stop step's counterpart is the same command with
// stop replaced by start (or restart), on the same host.
func unstartedHosts(cfg *Config) []string {
	var out []string
	for _, name := range slices.Sorted(maps.Keys(cfg.Targets)) {
		tc := cfg.Targets[name]
		for _, p := range slices.Sorted(maps.Keys(tc.Pipelines)) {
			pc := tc.Pipelines[p]
			started := map[string]bool{}
			for _, s := range pc.Finally {
				for _, c := range concreteCommands(s) {
					started[c] = true
				}
			}
			for i, s := range pc.Steps {
				if missing := notStartedAgain(s, started); len(missing) > 0 {
					out = append(out, fmt.Sprintf("targets.%s.pipelines.%s.steps[%d] (%s) stops something %s that no finally step starts again: a run that fails after it leaves it stopped. Add a finally step that runs %q there.",
						name, p, i, stepLabel(s), onHosts(missing), stopWord.ReplaceAllString(commandLine(s), "start")))
				}
			}
		}
	}
	return out
}

// notStartedAgain are the hosts (or "" for the bot's own) where step s
// stops something that started has no start or restart for.
func notStartedAgain(s StepConfig, started map[string]bool) []string {
	if s.Exec == nil || !stopWord.MatchString(commandLine(s)) {
		return nil
	}
	var missing []string
	for i, c := range concreteCommands(s) {
		if !started[stopWord.ReplaceAllString(c, "start")] && !started[stopWord.ReplaceAllString(c, "restart")] {
			if len(s.Hosts) > 0 {
				missing = append(missing, s.Hosts[i])
			} else {
				missing = append(missing, "")
			}
		}
	}
	return missing
}

// concreteCommands are an exec step's commands as run: one per host, with
// {host} replaced.
func concreteCommands(s StepConfig) []string {
	if s.Exec == nil {
		return nil
	}
	line := commandLine(s)
	if len(s.Hosts) == 0 {
		return []string{line}
	}
	out := make([]string, len(s.Hosts))
	for i, h := range s.Hosts {
		out[i] = strings.ReplaceAll(line, "{host}", h)
	}
	return out
}

// commandLine is an exec step's command as one line, words separated by
// single spaces.
func commandLine(s StepConfig) string {
	if s.Exec.Shell != "" {
		return strings.Join(strings.Fields(s.Exec.Shell), " ")
	}
	return strings.Join(s.Exec.Argv, " ")
}

func stepLabel(s StepConfig) string {
	if s.Name != "" {
		return s.Name
	}
	return commandLine(s)
}

func onHosts(hosts []string) string {
	if len(hosts) == 1 && hosts[0] == "" {
		return "where the bot runs"
	}
	return "on " + strings.Join(hosts, ", ")
}

package commands

import "strings"

// A SlashOption is one typed option of a verb as a slash command's
// subcommand, derived from the verb's usage line.
type SlashOption struct {
	Name        string
	Kind        string // "target", "pipeline", "run" (completed from the bot's state) or "text"
	Required    bool
	Description string
}

// Slash describes a verb as a subcommand of a platform's slash command
// (Discord's /stage), so that the two never drift: the options are the
// verb's leading target or run, its pipeline, and the rest of its words as
// typed.
func (s *Spec) Slash() []SlashOption {
	args := strings.Fields(s.Args)
	var out []SlashOption
	if len(args) > 0 {
		head := strings.Trim(args[0], "<>[]")
		required := strings.HasPrefix(args[0], "<")
		switch {
		case head == "target" || strings.HasPrefix(s.Args, "<target | all>"):
			out = append(out, SlashOption{Name: "target", Kind: "target", Required: required, Description: "the target"})
			args = args[1:]
			if strings.HasPrefix(s.Args, "<target | all>") {
				out[0].Description = "the target, or all"
				args = args[2:] // "|" "all>"
			}
		case head == "run":
			out = append(out, SlashOption{Name: "run", Kind: "run", Required: required, Description: "the run's number"})
			args = args[1:]
		}
	}
	if len(args) > 0 && args[0] == "[pipeline]" {
		out = append(out, SlashOption{Name: "pipeline", Kind: "pipeline", Description: "the pipeline (default: the target's default)"})
		args = args[1:]
	}
	if len(args) > 0 {
		desc := "the rest, as you would type it: " + strings.Join(args, " ")
		if len(desc) > 100 {
			desc = desc[:97] + "…"
		}
		out = append(out, SlashOption{Name: "rest", Kind: "text", Description: desc})
	}
	return out
}

// SlashText is the command a slash command's subcommand and options stand
// for, as the bot parses it: prefix, verb, then the options in the order
// Slash gives them.
func (s *Spec) SlashText(prefix string, values map[string]string) string {
	words := []string{prefix, s.Name}
	for _, o := range s.Slash() {
		if v := strings.TrimSpace(values[o.Name]); v != "" {
			words = append(words, v)
		}
	}
	return strings.Join(words, " ")
}
